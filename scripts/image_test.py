#!/usr/bin/env python3
"""Build the Action's image and run it the way GitHub runs a Docker container action.

What GitHub does for ``runs: using: docker``, and this script does with buildah and podman:

- ``docker build`` of the Dockerfile (here ``buildah bud``; ``--base`` may name a stand-in for the
  pinned base image where Docker Hub cannot be reached: ``scripts/image_test.sh`` builds one from a
  Debian bookworm ``debootstrap``);
- ``docker run --workdir /github/workspace`` with the workspace, ``/github/home``,
  ``/github/workflow`` (the event file) and ``/github/file_commands`` (``GITHUB_OUTPUT``,
  ``GITHUB_STEP_SUMMARY``) mounted, every input as ``INPUT_<NAME>`` with its hyphens kept, and the
  ``GITHUB_*`` variables of a ``pull_request`` run;
- as root, over a workspace that belongs to the runner's user (uid 1001).

The GitHub REST API is the local emulator of the tests (real paths, real PyGithub inside the
container). Runs: a pull request run twice (one sticky comment, cold then warm cache), a failing run
(exit 1 and ``::error::`` lines), bad input (exit 2 with the step outputs written). It prints the
build time, the image size and the run times. Exit 0 when every check held.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.conftest import parse_outputs, read_jsonl, write_jsonl  # noqa: E402
from tests.git_checkout import commit_base, open_pull_request  # noqa: E402
from tests.github_emulator import GitHubEmulator  # noqa: E402

REPO, PR, TOKEN = "octo/app", 7, "ghs_imageTestToken0123456789"
RUNNER_UID, RUNNER_GID = 1001, 121
#: the image's ENTRYPOINT (action.yml runs the image with no arguments)
ENTRYPOINT = ["/opt/gate/venv/bin/python", "/opt/gate/entrypoint.py"]
SUITE = """\
version: 1
name: image-test
models:
  baseline: {provider: sentence-transformers, model: default}
  candidate: {provider: sentence-transformers, model: default}
tasks:
  - {name: sts, type: sts, group: general, data: data/sts.jsonl}
  - {name: search, type: retrieval, group: target, queries: data/queries.jsonl, corpus: data/corpus.jsonl,
     qrels: data/qrels.jsonl, k: [1, 10]}
"""
PASS = {"version": 1, "rules": [{"name": "general does not drop", "group": "general", "max_drop": 0.0}]}
FAIL = {"version": 1, "rules": [{"name": "target must improve", "group": "target", "metric": "*/ndcg@10",
                                 "min_delta": 0.05}]}


def sh(*cmd: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(list(cmd), check=True, text=True, **kw)


def workspace(root: Path) -> tuple[Path, dict]:
    """A checkout as actions/checkout leaves it for a pull_request event (the merge commit, fetch-depth 2),
    with a small suite on real data, owned by the runner's user."""
    ws = root / "workspace"
    data = ROOT / "examples" / "demo" / "data"
    write_jsonl(ws / "eval" / "data" / "sts.jsonl", read_jsonl(ROOT / "tests" / "data" / "stsb-dev-400.jsonl")[:60])
    queries = read_jsonl(data / "cranfield" / "queries-test.jsonl")[:10]
    qrels = [r for r in read_jsonl(data / "cranfield" / "qrels-test.jsonl") if r["query_id"] in {q["id"] for q in queries}]
    judged = {r["doc_id"] for r in qrels}
    corpus = [d for d in read_jsonl(data / "cranfield" / "corpus.jsonl") if d["id"] in judged][:200]
    write_jsonl(ws / "eval" / "data" / "queries.jsonl", queries)
    write_jsonl(ws / "eval" / "data" / "corpus.jsonl", corpus)
    write_jsonl(ws / "eval" / "data" / "qrels.jsonl", [r for r in qrels if r["doc_id"] in {d["id"] for d in corpus}])
    (ws / "eval" / "suite.yaml").write_text(SUITE)
    (ws / "eval" / "pass.json").write_text(json.dumps(PASS))
    (ws / "eval" / "fail.json").write_text(json.dumps(FAIL))
    commit_base(ws)
    base, head = open_pull_request(ws)
    for path in [ws, *ws.rglob("*")]:
        os.chown(path, RUNNER_UID, RUNNER_GID, follow_symlinks=False)
    event = {"action": "synchronize", "number": PR, "repository": {"full_name": REPO},
             "pull_request": {"number": PR, "head": {"sha": head, "repo": {"full_name": REPO}},
                              "base": {"sha": base, "repo": {"full_name": REPO}}}}
    return ws, event


def run_in_image(buildah: list[str], image: str, command: list[str], *, mounts: dict[Path, str] | None = None,
                 env: dict[str, str] | None = None, workdir: str | None = None,
                 timeout: float = 1800) -> tuple[subprocess.CompletedProcess, float]:
    """`docker run --rm IMAGE COMMAND` as buildah does it without a daemon: a fresh working container from the
    image, one `buildah run` in it (chroot isolation, the host's network), then the container is removed.
    (`podman run` cannot set the container's rlimits in this sandbox; buildah's chroot isolation sets none.)
    Returns the process and the seconds the command itself ran."""
    name = sh(*buildah, "from", "--pull=never", image, capture_output=True).stdout.strip().splitlines()[-1]
    try:
        cmd = [*buildah, "run", "--isolation", "chroot"]
        for host, inside in (mounts or {}).items():
            cmd += ["-v", f"{host}:{inside}"]
        for key, value in (env or {}).items():
            cmd += ["--env", f"{key}={value}"]
        if workdir:
            cmd += ["--workingdir", workdir]
        start = time.perf_counter()
        proc = subprocess.run([*cmd, name, "--", *command], capture_output=True, text=True, timeout=timeout)
        return proc, time.perf_counter() - start
    finally:
        subprocess.run([*buildah, "rm", name], capture_output=True)


class Runner:
    """One `docker run` of the action per call, with GitHub's mounts and environment."""

    def __init__(self, engine: list[str], image: str, root: Path, ws: Path, event: dict, api: str):
        self.engine, self.image, self.root, self.ws, self.api = engine, image, root, ws, api
        self.home = root / "github-home"
        self.workflow = root / "github-workflow"
        self.commands = root / "file-commands"
        for folder in (self.home, self.workflow, self.commands):
            folder.mkdir(parents=True, exist_ok=True)
            os.chown(folder, RUNNER_UID, RUNNER_GID)
        (self.workflow / "event.json").write_text(json.dumps(event))

    def run(self, name: str, **inputs: str) -> dict:
        output, summary = self.commands / f"set_output_{name}", self.commands / f"step_summary_{name}"
        output.write_text("")
        summary.write_text("")
        env = {
            "HOME": "/github/home", "CI": "true", "GITHUB_ACTIONS": "true", "GITHUB_REPOSITORY": REPO,
            "GITHUB_API_URL": self.api, "GITHUB_SERVER_URL": "https://github.com", "GITHUB_RUN_ID": "4242",
            "GITHUB_EVENT_NAME": "pull_request", "GITHUB_EVENT_PATH": "/github/workflow/event.json",
            "GITHUB_WORKSPACE": "/github/workspace", "GITHUB_OUTPUT": f"/github/file_commands/{output.name}",
            "GITHUB_STEP_SUMMARY": f"/github/file_commands/{summary.name}", "RUNNER_TEMP": "/github/runner_temp",
            "GATE_CACHE_DIR": "/github/home/gate-cache",
            "INPUT_GITHUB-TOKEN": TOKEN, "INPUT_COMMENT": "always", "INPUT_FAIL-ON-REGRESSION": "true",
            "INPUT_OUTPUT-DIR": "gate-out", "INPUT_BASE-CONFIG": "thresholds",
            **{f"INPUT_{k.upper().replace('_', '-')}": v for k, v in inputs.items()},
        }
        mounts = {self.ws: "/github/workspace", self.home: "/github/home", self.workflow: "/github/workflow",
                  self.commands: "/github/file_commands"}
        proc, took = run_in_image(self.engine, self.image, ENTRYPOINT, mounts=mounts, env=env,
                                  workdir="/github/workspace")
        outputs = parse_outputs(output.read_text())
        print(f"  {name}: exit {proc.returncode} in {took:.1f} s; outputs {outputs}", flush=True)
        if os.environ.get("IMAGE_TEST_VERBOSE"):
            print(proc.stdout[-4000:], proc.stderr[-4000:], sep="\n", flush=True)
        return {"proc": proc, "seconds": took, "outputs": outputs, "summary": summary.read_text()}


def pull_cost(podman: list[str], image: str) -> dict[str, str]:
    """What a runner pays to pull the image instead of building it: the compressed size of its layers (what
    a registry sends) and the time to unpack them into local storage (`podman load` of the saved image, the
    local half of a pull). The network half is that size over the runner's bandwidth."""
    with tempfile.TemporaryDirectory(prefix="gate-image-save-", dir="/var/tmp") as tmp:
        archive = Path(tmp) / "image.tar"
        sh(*podman, "save", "--format", "docker-archive", "-o", str(archive), image, capture_output=True)
        start = time.perf_counter()
        compressed = Path(tmp) / "image.tar.gz"
        sh("sh", "-c", f"gzip -1 -c {archive} > {compressed}")
        gzip_seconds = time.perf_counter() - start
        start = time.perf_counter()
        fresh = [*podman, "--root", f"{tmp}/storage", "--runroot", f"{tmp}/run"]  # as on a runner: nothing local
        compressed_size = compressed.stat().st_size
        compressed.unlink()
        sh(*fresh, "load", "-q", "-i", str(archive), capture_output=True)
        load_seconds = time.perf_counter() - start
        return {"compressed layers (what a pull transfers)": f"{compressed_size / 1e9:.2f} GB",
                "unpacking a pulled image (podman load)": f"{load_seconds:.0f} s",
                "(gzip -1 of the layers, for reference)": f"{gzip_seconds:.0f} s"}


def owned_by_runner(folder: Path) -> bool:
    """Whether ``folder`` exists and it and everything in it belong to the runner's user."""
    return folder.is_dir() and all((p.lstat().st_uid, p.lstat().st_gid) == (RUNNER_UID, RUNNER_GID)
                                   for p in [folder, *folder.rglob("*")])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", help="the base image to build on (a stand-in for the pinned one)")
    parser.add_argument("--image", default="localhost/gate:image-test")
    parser.add_argument("--storage-driver", default="vfs")
    parser.add_argument("--find-links", help="a folder with the torch CPU wheel, mounted into the build")
    parser.add_argument("--torch-index", default="https://download.pytorch.org/whl/cpu")
    parser.add_argument("--pip-cert", help="a CA bundle pip needs on this machine (a build secret, not a layer)")
    parser.add_argument("--skip-build", action="store_true")
    args = parser.parse_args()
    storage = ["--storage-driver", args.storage_driver]
    podman = ["podman", *storage]
    buildah = ["buildah", *storage]
    figures: dict[str, str] = {}
    failures: list[str] = []

    if not args.skip_build:
        build = ["buildah", *storage, "bud", "--format", "docker", "--isolation", "chroot", "--layers", "-t", args.image,
                 "--build-arg", f"TORCH_INDEX={args.torch_index}"]
        if args.base:
            build += ["--build-arg", f"BASE={args.base}"]
        if args.find_links:
            build += ["-v", f"{args.find_links}:/wheels:ro", "--build-arg", "PIP_FIND_LINKS=/wheels"]
        if args.pip_cert:
            build += ["--secret", f"id=pipcert,src={args.pip_cert}"]
        print("building:", " ".join(build), flush=True)
        start = time.perf_counter()
        sh(*build, str(ROOT))
        figures["build (cold layers)"] = f"{time.perf_counter() - start:.0f} s"
    size = int(sh(*podman, "image", "inspect", "--format", "{{.Size}}", args.image, capture_output=True).stdout)
    figures["image size"] = f"{size / 1e9:.2f} GB ({size:,} bytes)"
    figures.update(pull_cost(podman, args.image))
    listed, _ = run_in_image(buildah, args.image, ["sh", "-c", "ls -A /opt/gate; /opt/gate/venv/bin/pip list "
                                                             "2>/dev/null | grep -ciE '^(nvidia-|triton|cuda)' || true"])
    listing = listed.stdout.split()
    if any(name in listing for name in ("tests", "docs", "examples", ".git")) or listing[-1] != "0":
        failures.append(f"the image holds more than it should: {listing}")

    with tempfile.TemporaryDirectory(prefix="gate-image-test-") as tmp, GitHubEmulator(token=TOKEN) as emu:
        root = Path(tmp)
        root.chmod(0o755)  # mkdtemp's 0700 would keep the runner user out of its own workspace
        emu.add_pull(REPO, PR)
        ws, event = workspace(root)
        runner = Runner(buildah, args.image, root, ws, event, emu.url)
        first = runner.run("cold", suite="eval/suite.yaml", thresholds="eval/pass.json")
        second = runner.run("warm", suite="eval/suite.yaml", thresholds="eval/pass.json")
        failing = runner.run("failing", suite="eval/suite.yaml", thresholds="eval/fail.json")
        bad = runner.run("bad-input", suite="eval/missing.yaml")
        comments = [c for c in emu.comments(REPO, PR) if c["body"].startswith("<!-- gate-report")]
        figures["run, cold cache"] = f"{first['seconds']:.1f} s"
        figures["run, warm cache"] = f"{second['seconds']:.1f} s"

        checks = {
            "cold run passes": first["proc"].returncode == 0 and first["outputs"].get("verdict") == "pass",
            "warm run passes": second["proc"].returncode == 0,
            "one sticky comment after three PR runs": len(comments) == 1,
            "the comment shows the last verdict": bool(comments) and "FAIL" in comments[0]["body"].split("\n")[1],
            "failing run exits 1": failing["proc"].returncode == 1 and failing["outputs"].get("verdict") == "fail",
            "failing run annotates": "::error title=gate::target must improve" in failing["proc"].stdout,
            "bad input exits 2": bad["proc"].returncode == 2,
            "bad input still writes the outputs": bad["outputs"].get("verdict") == "error",
            "the summary is written": "gate-report" in first["summary"],
            "gate-out belongs to the runner user": owned_by_runner(ws / "gate-out"),
            "the cache belongs to the runner user": owned_by_runner(runner.home / "gate-cache"),
            "git clean works as the runner user": subprocess.run(
                ["setpriv", f"--reuid={RUNNER_UID}", f"--regid={RUNNER_GID}", "--clear-groups", "git", "-C", str(ws),
                 "-c", "safe.directory=*", "clean", "-ffdxq"], capture_output=True).returncode == 0,
            "no 403 noise in the log": "403" not in first["proc"].stdout + first["proc"].stderr,
            "the token is never printed": all(TOKEN not in r["proc"].stdout + r["proc"].stderr
                                              for r in (first, second, failing, bad)),
        }
        for name, ok in checks.items():
            print(f"  [{'ok' if ok else 'FAILED'}] {name}")
            if not ok:
                failures.append(name)
        if failures:
            for r in (first, failing, bad):
                print(r["proc"].stdout[-3000:], r["proc"].stderr[-3000:], sep="\n")
    print("\nfigures:")
    for name, value in figures.items():
        print(f"  {name}: {value}")
    if failures:
        print(f"\nFAILED: {', '.join(failures)}")
        return 1
    print("\nall checks held")
    return 0


if __name__ == "__main__":
    sys.exit(main())
