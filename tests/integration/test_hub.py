"""Models from the Hugging Face Hub (``ORG/NAME[@REVISION]``), with the real huggingface_hub client.

The Hub is tests/hub_emulator.py: the real API paths, headers and error codes the installed
huggingface_hub uses for ``snapshot_download``, on 127.0.0.1. ``gate run`` runs in a subprocess with
``HF_ENDPOINT`` pointing at it and ``HF_HUB_OFFLINE`` unset (the test conftest sets it for everything
else; huggingface_hub reads both once, at import). The repository ``gate-test/minilm`` holds the
embedded default model: tag ``v1`` is an exact copy (commit A), ``main`` has one config changed since
(commit B), so a branch and a commit give different commits and fingerprints.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gate.hub import HubRef, parse_hub_ref
from tests.conftest import DEMO_DATA, read_jsonl, valid_results, write_jsonl, write_tiny_lm
from tests.hub_emulator import HubEmulator

TOKEN = "hf_gateTestToken0123456789abcdefXYZ"
REPO = "gate-test/minilm"
PRIVATE = "gate-test/private-minilm"
TIMEOUT = 600


@pytest.fixture(scope="module")
def model_files() -> dict[str, bytes]:
    from gate.providers.sentence_transformers import default_model_path

    root = default_model_path()
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def hub(model_files):
    """The emulated Hub with its repositories; ``hub.commits`` names the commits by role."""
    with HubEmulator(tokens=(TOKEN,)) as emulator:
        first = emulator.commit(REPO, model_files, message="the embedded model")
        emulator.tag(REPO, "v1", first)
        changed = dict(model_files)
        config = json.loads(changed["sentence_bert_config.json"])
        changed["sentence_bert_config.json"] = json.dumps({**config, "max_seq_length": 128}).encode()
        main = emulator.commit(REPO, changed, message="shorter max_seq_length")
        emulator.create_repo(PRIVATE, private=True)
        emulator.commit(PRIVATE, model_files)
        pickled = {k: v for k, v in model_files.items() if k != "model.safetensors"}
        emulator.commit("gate-test/pickle-only", {**pickled, "pytorch_model.bin": b"\x80\x04 not loaded"})
        modules = json.loads(model_files["modules.json"])
        modules[0]["type"] = "evil_module.Evil"
        emulator.commit("gate-test/custom-code", {**model_files, "modules.json": json.dumps(modules).encode(),
                                                  "evil_module.py": b"raise SystemExit('ran')\n"})
        emulator.commits = {"v1": first, "main": main}  # type: ignore[attr-defined]
        yield emulator
        assert emulator.errors == []


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    """A suite comparing the embedded model (baseline) with whatever ``--candidate`` names."""
    root = tmp_path_factory.mktemp("hub-suite")
    write_jsonl(root / "sts.jsonl", read_jsonl(DEMO_DATA / "stsb" / "test.jsonl")[:12])
    (root / "suite.yaml").write_text(
        "version: 1\nname: hub\nmodels:\n  baseline: {provider: sentence-transformers, model: default}\n"
        "  candidate: {provider: sentence-transformers, model: default}\n"
        "tasks:\n  - {name: sts, type: sts, data: sts.jsonl}\n")
    return root


@pytest.fixture(scope="module")
def gen_workspace(tmp_path_factory) -> Path:
    """A generation suite, so that a ``transformers:`` candidate gets as far as the Hub."""
    root = tmp_path_factory.mktemp("hub-gen-suite")
    write_jsonl(root / "cases.jsonl", [{"id": "c1", "prompt": "Say yes.", "expected": "yes"}])
    (root / "suite.yaml").write_text(
        "version: 1\nname: hub-gen\nmodels:\n  baseline: {provider: transformers, model: smollm2}\n"
        "  candidate: {provider: transformers, model: smollm2}\n"
        "tasks:\n  - {name: qa, type: generation, cases: cases.jsonl, scorers: [contains], max_tokens: 4}\n")
    return root


def gate(workspace: Path, *args: str, endpoint: str, home: Path, token: str | None = None,
         offline: bool = False) -> subprocess.CompletedProcess:
    """``python -m gate ARGS`` as a user runs it: HF_ENDPOINT set, HF_HUB_OFFLINE unset unless ``offline``."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_ENDPOINT",
                        "HF_HOME", "HF_HUB_CACHE")}
    env.update(HF_ENDPOINT=endpoint, HF_HOME=str(home / "hf-home"), CI="1", GATE_PROGRESS="0")
    if token is not None:
        env["HF_TOKEN"] = token
    if offline:
        env["HF_HUB_OFFLINE"] = "1"
    proc = subprocess.run([sys.executable, "-m", "gate", *args], cwd=workspace, env=env, capture_output=True,
                          text=True, timeout=TIMEOUT)
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stdout + proc.stderr
    return proc


def run(workspace: Path, tmp: Path, candidate: str | None, hub: HubEmulator, *extra: str,
        **kw) -> subprocess.CompletedProcess:
    args = ["run", "suite.yaml", "--cache", str(tmp / "cache"), "--out", str(tmp / "out"), *extra]
    if candidate is not None:
        args += ["--candidate", candidate]
    return gate(workspace, *args, endpoint=kw.pop("endpoint", hub.url), home=tmp, **kw)


def everything(proc: subprocess.CompletedProcess, out: Path) -> str:
    files = [p.read_text(encoding="utf-8", errors="replace") for p in out.rglob("*") if p.is_file()] \
        if out.exists() else []
    return "\n".join([proc.stdout, proc.stderr, *files])


# -- the reference syntax ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("text, expected", [
    ("BAAI/bge-small-en-v1.5", HubRef("BAAI/bge-small-en-v1.5")),
    ("BAAI/bge-small-en-v1.5@main", HubRef("BAAI/bge-small-en-v1.5", "main")),
    ("org/name@refs/pr/3", HubRef("org/name", "refs/pr/3")),
    ("org/name@" + "a" * 40, HubRef("org/name", "a" * 40)),
    ("./org/name", None), ("../org/name", None), ("/org/name", None), ("~/org/name", None), ("~org/name", None),
    ("org/name/extra", None), ("name", None), ("org/name@", None), ("org/name@../x", None), ("-org/name", None),
    ("org--x/name", None), ("org/name.", None), ("C:\\models\\x", None),
])
def test_what_reads_as_a_hub_reference(text, expected):
    assert parse_hub_ref(text) == expected


def test_a_local_path_wins_over_a_hub_id(tmp_path):
    from gate.suite import ModelSpec

    spec = ModelSpec("sentence-transformers", "org/name@v2", base_dir=tmp_path)
    assert spec.hub == HubRef("org/name", "v2") and spec.key[1] == "hub:org/name@v2"
    (tmp_path / "org" / "name@v2").mkdir(parents=True)
    assert spec.hub is None and spec.key[1] == str((tmp_path / "org" / "name@v2").resolve())
    assert ModelSpec("sentence-transformers", "default", base_dir=tmp_path).hub is None
    assert ModelSpec("openai", "org/name", base_dir=tmp_path).hub is None


def test_an_existing_folder_of_that_name_is_used_and_the_hub_never_asked(hub, workspace, tmp_path):
    local = workspace / "gate-test" / "local-only"
    local.mkdir(parents=True)
    before = len(hub.requests)
    try:
        proc = run(workspace, tmp_path, "sentence-transformers:gate-test/local-only", hub)
    finally:
        local.rmdir()
        local.parent.rmdir()
    assert proc.returncode == 2, proc.stderr
    assert "is not a sentence-transformers model folder" in proc.stderr
    assert len(hub.requests) == before


@pytest.mark.parametrize("candidate, needles", [
    ("sentence-transformers:nope", ["--candidate", "'default'", "ORG/NAME[@REVISION]", "local", "does not exist"]),
    ("sentence-transformers:./gate-test/minilm", ["does not exist", "write it without './'"]),
    ("transformers:no/such@", ["does not exist", "'smollm2'", "ORG/NAME[@REVISION]"]),
])
def test_a_reference_that_is_neither_names_the_forms_it_may_take(hub, workspace, tmp_path, candidate, needles):
    before = len(hub.requests)
    proc = run(workspace, tmp_path, candidate, hub)
    assert proc.returncode == 2
    for needle in needles:
        assert needle in proc.stderr, proc.stderr
    assert len(hub.requests) == before


def suite_with_candidate(workspace: Path, folder: Path, model: str) -> Path:
    """The workspace's suite, copied into ``folder`` with its data, naming ``model`` as the candidate."""
    suite = folder / "suite.yaml"
    suite.write_text((workspace / "suite.yaml").read_text().replace(
        "candidate: {provider: sentence-transformers, model: default}",
        f"candidate: {{provider: sentence-transformers, model: '{model}'}}"))
    write_jsonl(folder / "sts.jsonl", read_jsonl(workspace / "sts.jsonl"))
    return suite


def test_validate_checks_the_form_and_downloads_nothing(hub, workspace, tmp_path):
    suite_with_candidate(workspace, tmp_path, f"{REPO}@main")
    before = len(hub.requests)
    proc = gate(tmp_path, "validate", "suite.yaml", endpoint=hub.url, home=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert len(hub.requests) == before


def test_a_dry_run_downloads_nothing(hub, workspace, tmp_path):
    before = len(hub.requests)
    proc = run(workspace, tmp_path, f"sentence-transformers:{REPO}@main", hub, "--dry-run")
    assert proc.returncode == 0, proc.stderr
    assert f"sentence-transformers:{REPO}@main" in proc.stdout
    assert len(hub.requests) == before


# -- downloads that work ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def branch_run(hub, workspace, tmp_path_factory):
    """``--candidate sentence-transformers:gate-test/minilm@main``, run once; later tests reuse its cache."""
    tmp = tmp_path_factory.mktemp("branch")
    before = len(hub.requests)
    proc = run(workspace, tmp, f"sentence-transformers:{REPO}@main", hub)
    results = json.loads((tmp / "out" / "results.json").read_text()) if proc.returncode == 0 else None
    return tmp, proc, hub.requests[before:], results


def test_a_branch_is_resolved_to_its_commit_recorded_and_evaluated(branch_run, hub):
    tmp, proc, requests, _ = branch_run
    main = hub.commits["main"]
    assert proc.returncode == 0, proc.stdout + proc.stderr
    results = valid_results(tmp / "out")
    candidate, baseline = results["models"]["candidate"], results["models"]["baseline"]
    assert candidate["spec"] == f"sentence-transformers:{REPO}@main"
    assert candidate["revision"] == main and candidate["requested_revision"] == "main"
    assert "revision" not in baseline
    # a changed config: another fingerprint, so the candidate's vectors were encoded, not taken from the cache
    assert candidate["fingerprint"].startswith("sha256:") and candidate["fingerprint"] != baseline["fingerprint"]
    assert results["verdict"] == "pass" and results["metrics"]
    assert f"main → {main[:12]}" in proc.stderr  # the log says what the branch was resolved to
    report = (tmp / "out" / "report.md").read_text()
    assert f"`main` → `{main}`" in report
    # what was fetched: the branch resolved once, then only what loading needs, never a pickle or the model card
    paths = [p for _, p, _ in requests]
    assert paths[0] == f"/api/models/{REPO}/revision/main"
    fetched = set(hub.downloaded()) | {p.split(f"/resolve/{main}/", 1)[1] for p in paths if "/resolve/" in p}
    assert "sentence_bert_config.json" in fetched and "1_Pooling/config.json" in fetched
    assert "README.md" not in fetched and ".gitattributes" not in fetched
    snapshot = tmp / "cache" / "hub" / "models--gate-test--minilm" / "snapshots" / main
    assert (snapshot / "model.safetensors").is_file()
    assert (tmp / "cache" / "hub" / "models--gate-test--minilm" / "refs" / "main").read_text() == main


def test_a_second_run_with_hf_hub_offline_uses_only_the_cache(branch_run, hub, workspace):
    tmp, _, _, first = branch_run
    assert first is not None
    before = len(hub.requests) + len(hub.cdn_requests)
    proc = run(workspace, tmp, f"sentence-transformers:{REPO}@main", hub, offline=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert len(hub.requests) + len(hub.cdn_requests) == before  # not one request
    results = valid_results(tmp / "out")
    assert results["models"]["candidate"] == first["models"]["candidate"]  # the same commit, the same files
    assert "from the cache" in proc.stderr


def test_offline_with_nothing_cached_is_an_error_that_says_so(hub, workspace, tmp_path):
    before = len(hub.requests)
    proc = run(workspace, tmp_path, f"sentence-transformers:{REPO}@main", hub, offline=True)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "HF_HUB_OFFLINE" in proc.stdout + proc.stderr
    assert len(hub.requests) == before
    assert valid_results(tmp_path / "out")["verdict"] == "error"


def test_an_exact_commit_in_the_suite_needs_no_resolving(hub, workspace, tmp_path, model_files):
    first = hub.commits["v1"]
    suite_with_candidate(workspace, tmp_path, f"{REPO}@{first}")
    before = len(hub.requests)
    proc = run(tmp_path, tmp_path, None, hub)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    results = valid_results(tmp_path / "out")
    candidate = results["models"]["candidate"]
    assert candidate["revision"] == first and candidate["requested_revision"] == first
    # the same bytes as the embedded model: the same fingerprint, wherever they came from
    assert candidate["fingerprint"] == results["models"]["baseline"]["fingerprint"]
    assert not any("/revision/" in p for _, p, _ in hub.requests[before:])
    assert f"commit {first[:12]}" in proc.stderr
    report = (tmp_path / "out" / "report.md").read_text()
    assert f"| `{first}` |" in report


def test_a_private_repository_with_the_token_works_and_the_token_is_never_shown(hub, workspace, tmp_path):
    before, cdn_before = len(hub.requests), len(hub.cdn_requests)
    proc = run(workspace, tmp_path, f"sentence-transformers:{PRIVATE}", hub, token=f"  {TOKEN}\n")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    results = valid_results(tmp_path / "out")
    assert results["models"]["candidate"]["requested_revision"] is None
    assert "default branch → " in proc.stderr
    assert TOKEN not in everything(proc, tmp_path / "out")
    assert all(authorized for _, _, authorized in hub.requests[before:])
    # the CDN is another origin: the token never goes there
    assert hub.cdn_requests[cdn_before:] and not any(a for _, _, a in hub.cdn_requests[cdn_before:])


# -- downloads that fail ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("candidate, token, needles", [
    (f"sentence-transformers:{PRIVATE}", None,
     [f"--candidate: model sentence-transformers:{PRIVATE}", "has no public repository", "private", "set HF_TOKEN"]),
    (f"sentence-transformers:{PRIVATE}", "hf_notAValidToken000000000", ["refused the token in HF_TOKEN"]),
    (f"sentence-transformers:{REPO}@no-such-branch", None,
     ["has no revision 'no-such-branch'", "branch, tag or commit"]),
    ("sentence-transformers:gate-test/no-such-model", TOKEN,
     ["no repository 'gate-test/no-such-model' that the token in HF_TOKEN can read", "ORG/NAME[@REVISION]"]),
    ("sentence-transformers:gate-test/no-such-model", None, ["has no public repository 'gate-test/no-such-model'"]),
    ("sentence-transformers:gate-test/pickle-only", None, ["pytorch_model.bin", "pickle", "safetensors"]),
    ("sentence-transformers:gate-test/custom-code", None, ["'evil_module.Evil' is not a module class"]),
    ("transformers:gate-test/pickle-only", None, ["pickle weights"]),
])
def test_what_the_user_must_fix_is_bad_input(hub, workspace, gen_workspace, tmp_path, candidate, token, needles):
    if candidate.startswith("transformers:"):  # an STS task cannot take a language model: that is refused first
        workspace = gen_workspace
    before = len(hub.requests)
    proc = run(workspace, tmp_path, candidate, hub, token=token)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    for needle in needles:
        assert needle in proc.stderr, proc.stderr
    if token:
        assert token not in proc.stdout + proc.stderr
    assert not (tmp_path / "out" / "results.json").exists()  # refused before anything ran
    asked = [p for _, p, _ in hub.requests[before:]]
    assert not any(p.endswith((".bin", ".py")) for p in asked)  # pickle weights and code are never downloaded


def test_a_model_the_task_cannot_use_is_refused_before_the_hub_is_asked(hub, workspace, tmp_path):
    before = len(hub.requests)
    proc = run(workspace, tmp_path, "transformers:gate-test/pickle-only", hub)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "task 'sts' (sts) needs a model that can embed" in proc.stderr
    assert hub.requests[before:] == []


def test_a_hostile_snapshot_is_checked_after_download(hub, workspace, tmp_path):
    """The custom module type is refused by the folder checks on the downloaded snapshot itself."""
    proc = run(workspace, tmp_path, "sentence-transformers:gate-test/custom-code", hub)
    assert proc.returncode == 2
    snapshots = tmp_path / "cache" / "hub" / "models--gate-test--custom-code" / "snapshots"
    downloaded = [p.name for p in snapshots.rglob("*")]
    assert "modules.json" in downloaded and "evil_module.py" not in downloaded


def test_a_model_over_the_download_limit_is_refused_before_any_file_is_fetched(hub, workspace, tmp_path,
                                                                             monkeypatch):
    monkeypatch.setenv("GATE_MAX_MODEL_DOWNLOAD_BYTES", "1000")
    proc = run(workspace, tmp_path, f"sentence-transformers:{REPO}@v1", hub)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "over the limit of 1,000 bytes to download for one Hugging Face Hub model" in proc.stderr
    assert "GATE_MAX_MODEL_DOWNLOAD_BYTES" in proc.stderr
    assert not list((tmp_path / "cache" / "hub").rglob("*.safetensors"))


def test_a_server_error_is_exit_3_with_results_that_say_why(hub, workspace, tmp_path):
    hub.fail(500, "/api/models/")
    try:
        proc = run(workspace, tmp_path, f"sentence-transformers:{REPO}@v1", hub,
                   "--baseline", f"sentence-transformers:{REPO}@main")
    finally:
        hub.heal()
    assert proc.returncode == 3, proc.stdout + proc.stderr
    results = valid_results(tmp_path / "out")
    assert results["verdict"] == "error"
    assert any("HTTP 500" in e and "try again later" in e for e in results["errors"]), results["errors"]
    assert "revision" not in results["models"]["candidate"]


def test_an_unreachable_endpoint_is_exit_3(hub, workspace, tmp_path):
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = run(workspace, tmp_path, f"sentence-transformers:{REPO}@v1", hub,
               "--baseline", f"sentence-transformers:{REPO}@main", endpoint=f"http://127.0.0.1:{port}")
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "cannot reach" in proc.stdout + proc.stderr
    assert valid_results(tmp_path / "out")["verdict"] == "error"


# -- the transformers provider, in this process -----------------------------------------------------------------


@pytest.fixture
def online(monkeypatch, hub):
    """This process as a user's: HF_HUB_OFFLINE unset (the conftest sets it), HF_ENDPOINT at the emulator.
    gate reads both at each download and sets huggingface_hub's constants for its duration."""
    import gate.hub

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.setattr(gate.hub, "_USER_OFFLINE", None)
    monkeypatch.setattr(gate.hub, "_RESOLVED", {})
    return hub


def test_a_transformers_model_from_the_hub_loads_offline_from_its_snapshot(online, tmp_path, monkeypatch):
    from gate.hub import Resolver
    from gate.providers import check_model
    from gate.providers.fingerprint import fingerprint_dir
    from gate.providers.transformers_lm import TransformersGenerator, identity_of
    from gate.suite import ModelSpec

    folder = write_tiny_lm(tmp_path / "tiny-lm", "a model from the hub")
    commit = online.commit("gate-test/tiny-lm", folder)

    spec = ModelSpec("transformers", "gate-test/tiny-lm", base_dir=tmp_path, origin="suite.yaml:3:5")
    check_model(spec, hub=Resolver(tmp_path / "cache"))
    generator = TransformersGenerator.load(spec, cache_dir=tmp_path / "cache")
    assert generator.path == tmp_path / "cache" / "hub" / "models--gate-test--tiny-lm" / "snapshots" / commit
    assert generator.identity() == identity_of(fingerprint_dir(folder), None)
    assert os.environ["HF_HUB_OFFLINE"] == "1"  # the load itself ran offline, as every library load does
