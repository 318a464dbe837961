"""Model folders from a pull request: loading one runs none of its code and reads no pickle.

Each hostile folder is a copy of the embedded default model with one edit, named by a
suite and driven through the real CLI (``gate validate`` and ``gate run``): gate must
refuse it as bad input (exit 2) before any library reads it, and the code it carries
must never run. The untouched copy is the control: it still loads and encodes.
The transformers provider gets the same checks on a tiny random GPT-2.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from gate.cli import cli
from gate.errors import BadInput, ModelLoadError
from gate.suite import ModelSpec
from tests.conftest import DEMO_DATA, read_jsonl, write_jsonl, write_tiny_lm

SECRET = "sk-test-not-a-real-key"

SUITE = """\
version: 1
name: hostile-model
models:
  baseline: {provider: sentence-transformers, model: default}
  candidate: {provider: sentence-transformers, model: ./cand}
tasks:
  - name: sts
    type: sts
    group: general
    data: sts.jsonl
"""

#: code a hostile folder carries: if it ever runs, it leaves the marker holding the API key it read
EVIL_CODE = """\
import os, pathlib
pathlib.Path({marker!r}).write_text(os.environ.get("OPENAI_API_KEY", "ran without a key"))
import torch


class {name}(torch.nn.Module):
    pass
"""


def invoke(*args: object):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def _link_or_copy(src: str, dst: str) -> None:
    """The 90 MB weights are hard-linked (tests only ever delete them, never write them); the small files
    are copied, since the tests edit them and must never touch the installed package."""
    if src.endswith(".safetensors"):
        try:
            os.link(src, dst)
            return
        except OSError:
            pass
    shutil.copy2(src, dst)


@pytest.fixture
def workspace(tmp_path, monkeypatch) -> Path:
    """A suite (tmp_path/suite.yaml) whose candidate is tmp_path/cand, a copy of the default model folder;
    OPENAI_API_KEY is set, as in a CI job that also evaluates an endpoint."""
    from gate.providers.sentence_transformers import default_model_path

    shutil.copytree(default_model_path(), tmp_path / "cand", copy_function=_link_or_copy)
    write_jsonl(tmp_path / "sts.jsonl", read_jsonl(DEMO_DATA / "stsb" / "test.jsonl")[:24])
    (tmp_path / "suite.yaml").write_text(SUITE, encoding="utf-8")
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    return tmp_path


def validate(ws: Path):
    return invoke("validate", ws / "suite.yaml")


def run(ws: Path):
    return invoke("run", ws / "suite.yaml", "--out", ws / "out", "--cache", ws / "cache", "-q")


def edit_json(file: Path, edit) -> None:
    data = json.loads(file.read_text(encoding="utf-8"))
    edit(data)
    file.write_text(json.dumps(data, indent=2), encoding="utf-8")


def assert_refused(result, *needles: str) -> None:
    """Exit 2, and the message names each needle (the file, the JSON pointer, the offending value)."""
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    for needle in needles:
        assert needle in result.output, (needle, result.output)


@pytest.fixture
def library_trusts_local_code(monkeypatch, tmp_path):
    """sentence-transformers as it was before 6.0 (e.g. 5.1, which ``>=3.0`` allowed): the module class a
    local folder's modules.json names is imported from the folder, trusted. gate's own check must refuse
    the folder whatever the installed library does."""
    import sentence_transformers.base.model as base_model
    import transformers.dynamic_module_utils as dynamic

    monkeypatch.setattr(dynamic, "HF_MODULES_CACHE", str(tmp_path / "hf-modules"))  # not the user's cache
    real = base_model.import_module_class

    def trusting(class_ref, *args, **kwargs):
        return real(class_ref, *args, **{**kwargs, "trust_remote_code": True})

    monkeypatch.setattr(base_model, "import_module_class", trusting)


# -- modules.json ------------------------------------------------------------------------------------------------


def add_custom_module(ws: Path) -> Path:
    """The reported attack: modules.json names ``evil.Evil``, and evil.py sits beside it."""
    marker = ws / "marker.txt"
    (ws / "cand" / "evil.py").write_text(EVIL_CODE.format(marker=str(marker), name="Evil"), encoding="utf-8")
    evil = {"idx": 3, "name": "3", "path": "", "type": "evil.Evil"}
    edit_json(ws / "cand" / "modules.json", lambda m: m.append(evil))
    return marker


def test_validate_refuses_a_custom_module_type(workspace):
    marker = add_custom_module(workspace)
    assert_refused(validate(workspace), "modules.json:/3/type", "'evil.Evil'", "not a module class of "
                   "sentence-transformers", "sentence_transformers.models.Transformer")
    assert not marker.exists()


@pytest.mark.model
def test_run_refuses_a_custom_module_type_even_if_the_library_would_trust_it(workspace, library_trusts_local_code):
    marker = add_custom_module(workspace)
    assert_refused(run(workspace), "modules.json:/3/type", "'evil.Evil'")
    assert not marker.exists(), f"the folder's code ran and read {marker.read_text()!r}"
    assert not (workspace / "out" / "results.json").exists()


@pytest.mark.parametrize("bad_type", ["sentence_transformers.base.modules.dense.torch",
                                      "sentence_transformers.util.misc.import_from_string",
                                      "sentence_transformers_evil.models.Transformer",
                                      "transformers.BertModel"])
def test_validate_refuses_types_that_are_not_module_classes_of_the_library(workspace, bad_type):
    edit_json(workspace / "cand" / "modules.json", lambda m: m[1].update(type=bad_type))
    assert_refused(validate(workspace), "modules.json:/1/type", repr(bad_type))


@pytest.mark.parametrize("bad_path", ["../outside", "/tmp", "1_Pooling/../../outside", "..\\outside"])
def test_validate_refuses_a_module_path_outside_the_folder(workspace, bad_path):
    outside = workspace / "outside"
    shutil.copytree(workspace / "cand" / "1_Pooling", outside)  # a real Pooling config: loadable if reached
    edit_json(workspace / "cand" / "modules.json", lambda m: m[1].update(path=bad_path))
    assert_refused(validate(workspace), "modules.json:/1/path", repr(bad_path), "outside the model folder")


@pytest.mark.model
def test_run_refuses_a_module_path_outside_the_folder(workspace):
    shutil.copytree(workspace / "cand" / "1_Pooling", workspace / "outside")
    edit_json(workspace / "cand" / "modules.json", lambda m: m[1].update(path="../outside"))
    assert_refused(run(workspace), "modules.json:/1/path", "'../outside'")


def test_validate_refuses_a_router_whose_sub_module_is_custom_code(workspace):
    """A Router loads the classes its own config names: they are held to the same rule."""
    router = workspace / "cand" / "1_Router"
    router.mkdir()
    (router / "router_config.json").write_text(json.dumps({
        "types": {"query_0_Pooling": "evil.Evil"}, "structure": {"query": ["query_0_Pooling"]},
        "parameters": {"default_route": "query", "allow_empty_key": True}}), encoding="utf-8")
    edit_json(workspace / "cand" / "modules.json",
              lambda m: m[1].update(path="1_Router", type="sentence_transformers.models.Router"))
    assert_refused(validate(workspace), "1_Router/router_config.json:/types/query_0_Pooling", "'evil.Evil'")


# -- weights: safetensors only -----------------------------------------------------------------------------------


def make_pickle_only(folder: Path) -> None:
    """The same weights saved with torch.save (a pickle) as pytorch_model.bin, and no model.safetensors."""
    import torch
    from safetensors.torch import load_file

    torch.save(load_file(str(folder / "model.safetensors")), str(folder / "pytorch_model.bin"))
    (folder / "model.safetensors").unlink()


def test_validate_refuses_pickle_only_weights(workspace):
    make_pickle_only(workspace / "cand")
    assert_refused(validate(workspace), "pytorch_model.bin", "pickle", "model.safetensors",
                   "SentenceTransformer(folder).save(folder)")


@pytest.mark.model
def test_run_refuses_pickle_only_weights(workspace):
    make_pickle_only(workspace / "cand")
    assert_refused(run(workspace), "pytorch_model.bin", "pickle")
    assert not (workspace / "out" / "results.json").exists()


def test_validate_refuses_pickle_weights_of_a_module_without_safetensors(workspace):
    """sentence-transformers modules (Dense, ...) torch.load a pytorch_model.bin of their own folder when it
    has no model.safetensors, whatever the root folder holds."""
    dense = workspace / "cand" / "2_Dense"
    dense.mkdir()
    import torch

    torch.save({"linear.weight": torch.zeros(4, 384)}, str(dense / "pytorch_model.bin"))
    assert_refused(validate(workspace), "2_Dense/pytorch_model.bin", "2_Dense has no model.safetensors")


@pytest.mark.model
def test_the_library_is_told_safetensors_only(workspace):
    """Past gate's check too, the model loads with use_safetensors=True: transformers will not unpickle."""
    from gate.providers.sentence_transformers import SentenceTransformerEmbedder

    make_pickle_only(workspace / "cand")
    embedder = SentenceTransformerEmbedder(spec="sentence-transformers:./cand", path=workspace / "cand")
    with pytest.raises(ModelLoadError, match="model.safetensors"):
        embedder.encode(["a sentence"])


# -- configs that name code, and links out of the folder -----------------------------------------------------


@pytest.mark.parametrize("file, auto_map", [
    ("config.json", {"AutoModel": "modeling_evil.EvilModel", "AutoConfig": "modeling_evil.EvilConfig"}),
    ("tokenizer_config.json", {"AutoTokenizer": ["modeling_evil.EvilTokenizer", None]}),
])
def test_validate_refuses_auto_map(workspace, file, auto_map):
    marker = workspace / "marker.txt"
    (workspace / "cand" / "modeling_evil.py").write_text(EVIL_CODE.format(marker=str(marker), name="EvilModel"))
    edit_json(workspace / "cand" / file, lambda c: c.update(auto_map=auto_map))
    assert_refused(validate(workspace), f"{file}:/auto_map", "custom code", "trust_remote_code")
    assert not marker.exists()


@pytest.mark.model
def test_run_refuses_auto_map(workspace):
    marker = workspace / "marker.txt"
    (workspace / "cand" / "modeling_evil.py").write_text(EVIL_CODE.format(marker=str(marker), name="EvilModel"))
    edit_json(workspace / "cand" / "config.json", lambda c: c.update(auto_map={"AutoModel": "modeling_evil.EvilModel"}))
    assert_refused(run(workspace), "config.json:/auto_map")
    assert not marker.exists()


@pytest.mark.parametrize("file, field, value, needle", [
    ("sentence_bert_config.json", "model_args", {"trust_remote_code": True}, "/model_args/trust_remote_code"),
    ("sentence_bert_config.json", "tokenizer_name_or_path", "../other-model", "/tokenizer_name_or_path"),
    ("tokenizer_config.json", "vocab_file", "/proc/self/environ", "/vocab_file"),
    ("tokenizer_config.json", "vocab_file", ".git/config", "/vocab_file"),
    ("config.json", "transformers_weights", "adapter_model.bin", "/transformers_weights"),
    ("config.json", "model_type", "os.path", "/model_type"),
    ("1_Pooling/config.json", "activation_function", "os.system", "/activation_function"),
])
def test_validate_refuses_config_fields_that_reach_code_or_files_outside(workspace, file, field, value, needle):
    edit_json(workspace / "cand" / file, lambda c: c.update({field: value}))
    shown = repr(value) if isinstance(value, str) else "trust_remote_code"  # the offending value
    assert_refused(validate(workspace), f"{file}:{needle}", shown)


def test_validate_refuses_a_link_out_of_the_folder(workspace):
    """A vocabulary linked to a file of the runner would make its secrets the model's tokens."""
    secret = workspace / "secret.txt"
    secret.write_text(f"OPENAI_API_KEY={SECRET}\n")
    (workspace / "cand" / "vocab.txt").unlink()
    (workspace / "cand" / "vocab.txt").symlink_to(secret)
    assert_refused(validate(workspace), "vocab.txt", "outside the model folder")


# -- the control: the untouched copy --------------------------------------------------------------------------------


@pytest.mark.model
def test_the_untouched_copy_validates_loads_and_encodes(workspace):
    """Not an attack: must pass before and after the checks (the embedded model ships model.safetensors)."""
    assert validate(workspace).exit_code == 0
    result = run(workspace)
    assert result.exit_code == 0, result.output
    results = json.loads((workspace / "out" / "results.json").read_text())
    models = results["models"]
    assert models["candidate"]["fingerprint"] == models["baseline"]["fingerprint"]  # the same bytes
    assert results["metrics"]["sts/spearman"]["candidate"] > 0.5


def test_the_embedded_default_model_ships_safetensors_only():
    """A control too: the package gate embeds has nothing for the safetensors-only rule to refuse."""
    from gate.providers.sentence_transformers import default_model_path

    files = [p.name for p in default_model_path().rglob("*") if p.is_file()]
    assert "model.safetensors" in files
    assert not [f for f in files if f.endswith((".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt"))]


# -- the transformers provider -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory) -> Path:
    """A randomly initialised 1-layer GPT-2 with a tiny byte-level tokenizer (loads in milliseconds)."""
    return write_tiny_lm(tmp_path_factory.mktemp("tiny-lm"), "a model folder from a pull request")


def lm_spec(path: Path) -> ModelSpec:
    return ModelSpec("transformers", str(path))


def lm_copy(tiny_lm: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(tiny_lm, tmp_path / "lm"))


def test_transformers_folder_with_pickle_weights_only_is_refused_and_never_unpickled(tiny_lm, tmp_path, monkeypatch):
    from gate.providers import transformers_lm

    folder = lm_copy(tiny_lm, tmp_path)
    make_pickle_only(folder)
    with pytest.raises(BadInput, match="pickle") as info:
        transformers_lm.check(lm_spec(folder))
    assert "model.safetensors" in str(info.value) and "save_pretrained" in str(info.value)
    monkeypatch.setattr(transformers_lm, "check", lambda spec: None)  # past the check, transformers itself
    with pytest.raises(ModelLoadError, match="model.safetensors"):  # is told safetensors only
        transformers_lm.TransformersGenerator.load(lm_spec(folder))


@pytest.mark.parametrize("field, value", [
    ("auto_map", {"AutoModelForCausalLM": "modeling_evil.EvilModel"}),
    ("transformers_weights", "adapter_model.bin"),
    ("custom_pipelines", {"text-generation": {"impl": "pipeline_evil.EvilPipeline"}}),
])
def test_transformers_folder_whose_config_names_code_is_refused(tiny_lm, tmp_path, field, value):
    from gate.providers.transformers_lm import check

    folder = lm_copy(tiny_lm, tmp_path)
    edit_json(folder / "config.json", lambda c: c.update({field: value}))
    with pytest.raises(BadInput, match=f"config.json:/{field}") as info:
        check(lm_spec(folder))
    assert "model transformers:" in str(info.value)


def test_transformers_folder_untouched_loads(tiny_lm, tmp_path):
    """The control; a GGUF file beside the weights is not a pickle and is not refused."""
    from gate.providers.transformers_lm import TransformersGenerator, check

    folder = lm_copy(tiny_lm, tmp_path)
    (folder / "model.Q4_1.gguf").write_bytes(b"GGUF" + bytes(28))
    check(lm_spec(folder))
    assert TransformersGenerator.load(lm_spec(folder)).model is not None
