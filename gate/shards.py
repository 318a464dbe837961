"""``gate run --shard I/N`` and ``gate merge``: split a suite's examples across machines, then combine.

A shard evaluates a contiguous slice of every task's examples (tasks that need all their
examples at once, such as clustering, run whole in shard 1) and writes its *raw* outcome,
not a verdict: the per-example arrays of both models (``raw.npz``), the per-example extras
(``extras.json``) and what it ran (``shard.json``: the suite file and its sha256, the shard,
the models and their fingerprints, the seed, the resample count, the rows of each task, the
errors met). ``gate merge`` checks that the shards belong together, reloads the suite's
tasks (their data, no model), concatenates the arrays in example order and derives
metrics, statistics, rules and the report through exactly the code a single run uses
(:func:`gate.runner.decide_run`), so the merged results equal the single run's.

Equal arrays give equal results; the arrays are equal when both sides embedded the same
texts into the same vectors. On a CPU, padded batches of different composition move an
embedding by ~1e-7, so shards that encode independently can differ from a single run in
the last digits (and near-tied rankings can flip); a shared embedding cache (``--cache``
restored on every runner, see the README's ``actions/cache`` recipe) makes them identical.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np

import gate
from gate.documents import file_sha256
from gate.errors import BadInput
from gate.runner import ROLES, RunOutput, TaskRun, decide_run
from gate.tasks import Scores

FORMAT = "gate-shard-v1"
_SEP = "|"  # task|role|array in raw.npz (task names cannot hold it: see the suite schema)


def parse_shard(text: str) -> tuple[int, int]:
    """``"I/N"`` with 1 <= I <= N, as (I, N); anything else is bad input (exit 2)."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text or "")
    if not match:
        raise BadInput(f"expected I/N (e.g. 2/3: the second of three shards), got {text!r}", location="--shard")
    index, count = int(match.group(1)), int(match.group(2))
    if count < 1 or not 1 <= index <= count:
        raise BadInput(f"shard {index}/{count} does not exist: I must be between 1 and N (N >= 1)",
                       location="--shard")
    return index, count


def write_shard(out: Path, suite_file: Path, output: RunOutput, shard: tuple[int, int]) -> dict[str, Path]:
    """Write a shard's raw outcome into ``out`` (``shard.json``, ``raw.npz``, ``extras.json``)."""
    arrays: dict[str, np.ndarray] = {}
    extras: dict[str, dict[str, Any]] = {}
    tasks: dict[str, Any] = {}
    for run in output.task_runs:
        name = run.task.data.spec.name
        lo, hi, total = getattr(run.task, "shard_rows", (0, run.task.data.n, run.task.data.n))
        tasks[name] = {"rows": [lo, hi], "n": total, "info": run.info, "notes": list(run.task.data.notes),
                       "roles": {role: run.scores[role] is not None for role in ROLES}}
        extras[name] = {}
        for role in ROLES:
            scores = run.scores[role]
            if scores is None:
                continue
            for key, value in scores.arrays.items():
                arrays[_SEP.join((name, role, key))] = np.asarray(value)
            extras[name][role] = scores.extras
    meta = {"format": FORMAT, "gate_version": gate.__version__, "suite": output.results["suite"],
            "suite_file": str(suite_file), "suite_file_resolved": str(Path(suite_file).resolve()),
            "suite_sha256": file_sha256(suite_file), "shard": list(shard), "seed": output.results["seed"],
            "resamples": output.results["resamples"], "models": output.results["models"],
            "errors": output.results["errors"], "tasks": tasks}
    try:
        out.mkdir(parents=True, exist_ok=True)
        paths = {"shard": out / "shard.json", "raw": out / "raw.npz", "extras": out / "extras.json"}
        np.savez_compressed(paths["raw"], **arrays)
        paths["extras"].write_text(json.dumps(extras, ensure_ascii=False), encoding="utf-8")
        paths["shard"].write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    except OSError as exc:
        raise BadInput(f"cannot write the shard: {exc.strerror}", exc.filename or out) from None
    return paths


def _read_shard(folder: Path) -> dict[str, Any]:
    path = folder / "shard.json"
    if not path.is_file():
        raise BadInput("not a shard folder: no shard.json (written by `gate run --shard I/N`)", folder)
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadInput(f"cannot read the shard: {exc}", path) from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise BadInput(f"not a gate shard (expected \"format\": \"{FORMAT}\")", path)
    meta["_folder"] = folder
    return meta


def _check_together(shards: list[dict[str, Any]]) -> int:
    """The shard count, after checking that the shards are the N parts of one run (bad input otherwise)."""
    first = shards[0]
    for meta in shards[1:]:
        for key, what in (("suite_sha256", "suite file"), ("suite", "suite"), ("models", "models"),
                          ("seed", "seed"), ("resamples", "resample count")):
            if meta[key] != first[key]:
                raise BadInput(f"this shard was run with another {what} than {first['_folder']} "
                               f"({meta[key]!r} vs {first[key]!r}): only shards of one run can be merged",
                               meta["_folder"] / "shard.json")
    count = first["shard"][1]
    indices = sorted(meta["shard"][0] for meta in shards)
    if any(meta["shard"][1] != count for meta in shards) or indices != list(range(1, count + 1)):
        raise BadInput(f"expected the shards 1..{count} of {count} exactly once; got "
                       f"{', '.join('/'.join(map(str, m['shard'])) for m in shards)}")
    return count


def _suite_path(first: dict[str, Any]) -> Path:
    for candidate in (Path(first["suite_file"]), Path(first["suite_file_resolved"])):
        if candidate.is_file():
            if file_sha256(candidate) != first["suite_sha256"]:
                raise BadInput("the suite file changed since the shards ran (its sha256 differs); merge in the "
                               "checkout the shards ran on", candidate)
            return candidate
    raise BadInput("the shards' suite file is not here: merge in the checkout the shards ran on",
                   first["suite_file"])


def _sum_usage(pieces: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for usage in pieces:
        for role, counters in usage.items():
            if role not in out:
                out[role] = dict(counters)
                continue
            mine = out[role]
            for key, value in counters.items():
                if isinstance(value, (int, float)) and isinstance(mine.get(key), (int, float)):
                    mine[key] = mine[key] + value
                elif value is None:
                    mine[key] = None
    return out


def merge_shards(folders: list[Path], rules: Any, thresholds_sha256: str | None,
                 log: Any = lambda msg: None) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The results and example rows of the single run the shards in ``folders`` are parts of."""
    from gate.suite import load_suite
    from gate.tasks import load_task

    shards = sorted((_read_shard(Path(f)) for f in folders), key=lambda m: m["shard"][0])
    if not shards:
        raise BadInput("no shard folders given")
    count = _check_together(shards)
    first = shards[0]
    suite = load_suite(_suite_path(first))
    raws = []
    for meta in shards:
        try:
            with np.load(meta["_folder"] / "raw.npz") as raw:
                arrays = {k: raw[k] for k in raw.files}
            extras = json.loads((meta["_folder"] / "extras.json").read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise BadInput(f"cannot read the shard's scores: {exc}", meta["_folder"]) from None
        raws.append((arrays, extras))
    log(f"merging {count} shard(s) of suite {suite.name!r}")
    task_runs: list[TaskRun] = []
    errors: list[str] = []
    for meta in shards:
        errors.extend(e for e in meta["errors"] if e not in errors)
    for spec in suite.tasks:
        task = load_task(spec)
        pieces = [(meta, arrays, extras) for meta, (arrays, extras) in zip(shards, raws) if spec.name in meta["tasks"]]
        covered = 0
        for meta, _, _ in pieces:
            lo, hi = meta["tasks"][spec.name]["rows"]
            if lo != covered or meta["tasks"][spec.name]["n"] != task.data.n:
                raise BadInput(f"task {spec.name!r}: the shards do not cover its {task.data.n} examples in order "
                               f"(rows {lo}-{hi} after {covered}); were they run on other data?", meta["_folder"])
            covered = hi
        if covered != task.data.n:
            raise BadInput(f"task {spec.name!r}: the shards cover {covered} of its {task.data.n} examples; "
                           "were they run on other data?", first["_folder"])
        scores: dict[str, Scores | None] = {}
        for role in ROLES:
            if not pieces or not all(meta["tasks"][spec.name]["roles"][role] for meta, _, _ in pieces):
                scores[role] = None
                continue
            prefix = _SEP.join((spec.name, role, ""))
            keys = [k[len(prefix):] for k in pieces[0][1] if k.startswith(prefix)]
            merged = {key: np.concatenate([arrays[prefix + key] for _, arrays, _ in pieces]) for key in keys}
            parts = [extras[spec.name].get(role) for _, _, extras in pieces]
            scores[role] = Scores(merged, None if any(p is None for p in parts) else [e for p in parts for e in p])
        for meta, _, _ in pieces:  # what scoring noticed (a probe that did not converge), once each
            task.data.notes.extend(n for n in meta["tasks"][spec.name].get("notes", []) if n not in task.data.notes)
        info = dict(pieces[0][0]["tasks"][spec.name]["info"]) if pieces else {}
        usages = [meta["tasks"][spec.name]["info"]["usage"] for meta, _, _ in pieces
                  if "usage" in meta["tasks"][spec.name]["info"]]
        if usages:
            info["usage"] = _sum_usage(usages)
        task_runs.append(TaskRun(task, scores, info))
    return decide_run(suite.name, task_runs, first["models"], errors, rules, first["seed"], first["resamples"],
                      thresholds_sha256, log)
