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

In CI the shard folders travel between jobs as artifacts that a pull request's workflow writes,
so ``gate merge`` takes nothing from them unchecked: shard.json and extras.json are read against
their schemas (``gate/schemas/shard.schema.json``, ``extras.schema.json``), which type every value
and allow only the keys the writer writes; a violation is bad input (exit 2) naming the file,
line:column and JSON pointer. The code checks what a schema cannot: that the shards are the parts
of one run, and that each covers its rows of the suite's data.

Equal arrays give equal results; the arrays are equal when both sides embedded the same
texts into the same vectors. On a CPU, padded batches of different composition move an
embedding by ~1e-7, so shards that encode independently can differ from a single run in
the last digits (and near-tied rankings can flip); a shared embedding cache (``--cache``
restored on every runner, see the README's ``actions/cache`` recipe) makes them identical.
"""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np

import gate
from gate import limits
from gate.documents import decode, file_sha256, load_document, load_schema, read_bytes, too_deep_at, validate
from gate.errors import BadInput
from gate.results import _clean, mark_same_model
from gate.runner import ROLES, RunOutput, TaskRun, decide_run, draw_maps
from gate.secrets import redact
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
                       "data_sha256": run.task.data.data_sha256, "setup": run.setup,
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
        paths = {"shard": out / "shard.json", "raw": out / "raw.npz", "extras": out / "extras.json",
                 "maps": out / "maps.npz"}
        np.savez_compressed(paths["raw"], **arrays)
        np.savez_compressed(paths["maps"], **{_SEP.join((task, role)): points
                                              for task, by_role in output.map_points.items()
                                              for role, points in by_role.items()})
        # NaN and infinity (an unpriced model's cost, a saturated perplexity) as null, as results.json and
        # examples.jsonl write them: JSON has neither, and merge reads these files strictly
        paths["extras"].write_text(redact(json.dumps(_clean(extras), ensure_ascii=False, allow_nan=False)),
                                   encoding="utf-8")
        paths["shard"].write_text(redact(json.dumps(_clean(meta), indent=2, ensure_ascii=False,
                                                    allow_nan=False) + "\n"), encoding="utf-8")
    except OSError as exc:
        raise BadInput(f"cannot write the shard: {exc.strerror}", exc.filename or out) from None
    return paths


def _read_shard(folder: Path) -> dict[str, Any]:
    """``folder/shard.json``, valid against ``gate/schemas/shard.schema.json``.

    Shard folders are CI artifacts a pull request controls: any value in them may be forged, and the
    schema (not code that happens to look at it) decides what may reach results.json and the report.
    A problem is bad input (exit 2) naming the file, line:column and JSON pointer."""
    path = folder / "shard.json"
    if not path.is_file():
        raise BadInput("not a shard folder: no shard.json (written by `gate run --shard I/N`)", folder)
    doc = load_document(path, "shard file")
    if not isinstance(doc.data, dict) or doc.data.get("format") != FORMAT:
        # another kind of file (or a later format) deserves one sentence, not every schema violation
        raise doc.error("/format", f"not a gate shard: expected \"format\": \"{FORMAT}\" "
                                   "(written by `gate run --shard I/N`)")
    validate(doc, "shard")
    meta = doc.data
    meta["_folder"] = folder
    return meta


def _read_extras(path: Path) -> dict[str, Any]:
    """``extras.json``, valid against ``gate/schemas/extras.schema.json`` (bad input, exit 2, naming where not).

    It holds every example's extras (a query's top documents, a model's answer) and grows with the suite's
    data, to tens of megabytes: more than :func:`~gate.documents.load_document` takes from a hand-written
    document, and its line:column map of every value costs about ten times the parsing and checking. So
    the file is parsed and checked first; only a file that fails is read through load_document and
    validate, to say what is wrong and where."""
    text = decode(read_bytes(path, "extras file", limit="data"), path)
    data = _strict_json(text)
    if data is not None and _validator("extras").is_valid(data):
        return data
    doc = load_document(path, "extras file")
    validate(doc, "extras")
    return doc.data


def _strict_json(text: str) -> Any:
    """``text`` parsed, when load_document would take it as it is (no repeated key, no NaN or Infinity, no
    escaped lone surrogate, no nesting past GATE_MAX_DEPTH), else None."""
    if _SURROGATE_ESCAPE.search(text) or too_deep_at(text, limits.get("depth")) is not None:
        return None
    try:
        return json.loads(text, object_pairs_hook=_unique_keys, parse_constant=_no_constant)
    except (ValueError, RecursionError):
        return None


_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")  # \uD800-\uDFFF: json.loads lets a lone one through


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """An object whose keys are distinct: a forged second key would replace the first unseen."""
    out = dict(pairs)
    if len(out) != len(pairs):
        raise ValueError("duplicate key")
    return out


def _no_constant(name: str) -> Any:
    """NaN and Infinity are not JSON (the writer writes null)."""
    raise ValueError(name)


@functools.cache
def _validator(name: str) -> jsonschema.Draft202012Validator:
    """One compiled validator per schema (building it costs more than checking a small file)."""
    return jsonschema.Draft202012Validator(load_schema(name))


def _same_models(mine: dict[str, Any], theirs: dict[str, Any]) -> dict[str, Any] | None:
    """The two shards' models as one (a fingerprint one side lacks is taken from the other), or None when
    they differ. A shard with nothing to embed for a model never loads it and records no fingerprint."""
    if set(mine) != set(theirs):
        return None
    out = {}
    for role, model in mine.items():
        other = theirs[role]
        if not isinstance(model, dict) or not isinstance(other, dict) or model.get("spec") != other.get("spec"):
            return None
        a, b = model.get("fingerprint"), other.get("fingerprint")
        if a is not None and b is not None and a != b:
            return None
        out[role] = {**model, "fingerprint": a if a is not None else b}
    return out


def _same_setup(mine: dict[str, Any], theirs: dict[str, Any]) -> bool:
    """The same options per role, and the same variant (float16) where both shards loaded the model."""
    if set(mine) != set(theirs):
        return False
    for role, a in mine.items():
        b = theirs[role]
        if a.get("options") != b.get("options"):
            return False
        if a.get("loaded") and b.get("loaded") and a.get("variant") != b.get("variant"):
            return False
    return True


def _check_together(shards: list[dict[str, Any]]) -> tuple[int, dict[str, Any]]:
    """The shard count and the run's models, after checking that the shards are the N parts of one run."""
    first = shards[0]
    models = first["models"]
    for meta in shards[1:]:
        for key, what in (("suite_sha256", "suite file"), ("suite", "suite"), ("seed", "seed"),
                          ("resamples", "resample count")):
            if meta[key] != first[key]:
                raise BadInput(f"this shard was run with another {what} than {first['_folder']} "
                               f"({meta[key]!r} vs {first[key]!r}): only shards of one run can be merged",
                               meta["_folder"] / "shard.json")
        joined = _same_models(models, meta["models"])
        if joined is None:
            raise BadInput(f"this shard was run with other models than {first['_folder']} "
                           f"({meta['models']!r} vs {models!r}): only shards of one run can be merged",
                           meta["_folder"] / "shard.json")
        models = joined
    count = first["shard"][1]
    indices = sorted(meta["shard"][0] for meta in shards)
    if any(meta["shard"][1] != count for meta in shards) or indices != list(range(1, count + 1)):
        raise BadInput(f"expected the shards 1..{count} of {count} exactly once; got "
                       f"{', '.join('/'.join(map(str, m['shard'])) for m in shards)}")
    return count, models


def _suite_path(first: dict[str, Any], given: Path | None) -> Path:
    """The suite file to merge with: ``given`` (``gate merge --suite``), else the one the shards name, but
    only inside the current folder (the checkout): shard folders are artifacts, and the suite file decides
    which data files merge reads. Either way its sha256 must be the one the shards ran with."""
    if given is not None:
        candidates = [given]
    else:
        here = Path.cwd().resolve()
        candidates = [c for c in (Path(first["suite_file"]), Path(first["suite_file_resolved"]))
                      if c.resolve().is_relative_to(here)]
        if not candidates:
            raise BadInput(f"the shards name the suite file {first['suite_file']!r}, which is not inside this "
                           f"checkout ({here}); merge in the checkout the shards ran on, or pass --suite",
                           location="--suite")
    for candidate in candidates:
        if candidate.is_file():
            if file_sha256(candidate) != first["suite_sha256"]:
                raise BadInput("the suite file changed since the shards ran (its sha256 differs); merge in the "
                               "checkout the shards ran on", candidate)
            return candidate
    raise BadInput("the shards' suite file is not here: merge in the checkout the shards ran on",
                   given or first["suite_file"])


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
                 log: Any = lambda msg: None, maps_dir: Path | None = None, suite_file: Path | None = None,
                 suite: Any = None) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The results and example rows of the single run the shards in ``folders`` are parts of (and its
    embedding maps in ``maps_dir``, drawn from the shards' vectors of the maps' texts)."""
    from gate.suite import load_suite
    from gate.tasks import load_task

    shards = sorted((_read_shard(Path(f)) for f in folders), key=lambda m: m["shard"][0])
    if not shards:
        raise BadInput("no shard folders given")
    count, models = _check_together(shards)
    first = shards[0]
    if suite is None:  # else a suite loaded by the caller (from a base commit); its file must still match
        suite = load_suite(_suite_path(first, suite_file))
    else:
        _suite_path(first, suite.path)
    raws = [_read_arrays(meta) for meta in shards]
    log(f"merging {count} shard(s) of suite {suite.name!r}")
    task_runs: list[TaskRun] = []
    points: dict[str, dict[str, np.ndarray]] = {}
    errors: list[str] = []
    for meta in shards:
        errors.extend(e for e in meta["errors"] if e not in errors)
    for spec in suite.tasks:
        task = load_task(spec)
        pieces = [(meta, arrays, extras, maps) for meta, (arrays, extras, maps) in zip(shards, raws)
                  if spec.name in meta["tasks"]]
        covered = 0
        for meta, _, _, _ in pieces:
            mine = meta["tasks"][spec.name]
            lo, hi = mine["rows"]
            if lo != covered or mine["n"] != task.data.n:
                raise BadInput(f"task {spec.name!r}: the shards do not cover its {task.data.n} examples in order "
                               f"(rows {lo}-{hi} after {covered}); were they run on other data?", meta["_folder"])
            if mine.get("data_sha256") != task.data.data_sha256:
                changed = sorted(k for k, v in task.data.data_sha256.items()
                                 if (mine.get("data_sha256") or {}).get(k) != v)
                raise BadInput(f"task {spec.name!r}: its data ({', '.join(changed) or 'files'}) differs from what "
                               "this shard scored; merge in the checkout the shards ran on", meta["_folder"])
            if not _same_setup(pieces[0][0]["tasks"][spec.name]["setup"], mine["setup"]):
                raise BadInput(f"task {spec.name!r} was run with other model settings here than in "
                               f"{pieces[0][0]['_folder']} ({mine['setup']!r} vs "
                               f"{pieces[0][0]['tasks'][spec.name]['setup']!r}): only shards of one run can be merged",
                               meta["_folder"] / "shard.json")
            covered = hi
        if covered != task.data.n:
            raise BadInput(f"task {spec.name!r}: the shards cover {covered} of its {task.data.n} examples; "
                           "were they run on other data?", first["_folder"])
        try:
            task_runs.append(_merge_task(task, [(m, a, e) for m, a, e, _ in pieces]))
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise BadInput(f"task {spec.name!r}: the shards' scores are incomplete or were edited "
                           f"({type(exc).__name__}: {exc})", first["_folder"]) from None
        for role in ROLES:
            parts = [maps.get(_SEP.join((spec.name, role))) for _, _, _, maps in pieces]
            if parts and all(part is not None for part in parts):
                try:
                    points.setdefault(spec.name, {})[role] = np.concatenate(parts)
                except ValueError as exc:  # an edited maps.npz: no map, never a wrong one
                    task.data.notes.append(f"the embedding map could not be drawn: the shards' map vectors do "
                                           f"not fit together ({exc})")
                    points.pop(spec.name, None)
                    break
    if maps_dir is not None and points:
        draw_maps(task_runs, points, maps_dir, first.get("seed") or 0, log)
    results, examples = decide_run(suite.name, task_runs, models, errors, rules, first.get("seed"),
                                   first["resamples"], thresholds_sha256, log)
    mark_same_model(results, _pairs_as_run(shards, results))
    return results, examples


def _pairs_as_run(shards: list[dict[str, Any]], results: dict[str, Any]) -> list[tuple[Any, Any]]:
    """Each task's (baseline, candidate) as the shards ran them (provider and the options that change the
    outputs), for :func:`gate.results.mark_same_model`: a merge says "the candidate is the baseline" exactly
    when the single run would."""
    from types import SimpleNamespace

    pairs = []
    for name, info in results["tasks"].items():
        setup = next((m["tasks"][name]["setup"] for m in shards if name in m["tasks"]), None)
        specs = info.get("models") or results["models"]
        if not setup:
            continue
        pairs.append(tuple(SimpleNamespace(provider=specs[role]["spec"].partition(":")[0],
                                           options=tuple((setup.get(role) or {}).get("options", {}).items()))
                           for role in ROLES))
    return pairs


def _read_arrays(meta: dict[str, Any]) -> tuple[dict[str, np.ndarray], dict[str, Any], dict[str, np.ndarray]]:
    """A shard's raw scores, extras and map points (a shard written before maps were kept has none)."""
    folder = meta["_folder"]
    try:
        with np.load(folder / "raw.npz", allow_pickle=False) as raw:
            arrays = {k: raw[k] for k in raw.files}
        maps: dict[str, np.ndarray] = {}
        if (folder / "maps.npz").is_file():
            with np.load(folder / "maps.npz", allow_pickle=False) as stored:
                maps = {k: stored[k] for k in stored.files}
    except (OSError, ValueError) as exc:
        raise BadInput(f"cannot read the shard's scores: {exc}", folder) from None
    return arrays, _read_extras(folder / "extras.json"), maps


def _joined_extras(name: str, role: str, pieces: list[tuple[dict[str, Any], Any, dict[str, Any]]]
                   ) -> list[dict[str, Any]] | None:
    """A model's extras of one task over every shard, in example order (None when a shard kept none).

    Each shard's list must hold one entry per example of its rows: a longer or shorter one (an edited
    extras.json) would show one example's answer under another, or fail while the examples are written."""
    parts = []
    for meta, _, extras in pieces:
        where = meta["_folder"] / "extras.json"
        if name not in extras:  # located only now: a valid file is never mapped line by line
            raise load_document(where, "extras file").error("", f"no extras of task {name!r}, which shard.json "
                                                               "says this shard scored; was the file edited?")
        part = extras[name].get(role)
        lo, hi = meta["tasks"][name]["rows"]
        if part is not None and len(part) != hi - lo:
            raise load_document(where, "extras file").error(
                f"/{name}/{role}", f"{len(part)} examples' extras, but shard.json says this shard scored the "
                                   f"task's rows {lo}-{hi} ({hi - lo} examples); was the file edited?")
        parts.append(part)
    return None if any(p is None for p in parts) else [e for p in parts for e in p]


def _merge_task(task: Any, pieces: list[tuple[dict[str, Any], dict[str, np.ndarray], dict[str, Any]]]) -> TaskRun:
    """One task's raw scores, joined in example order, with what the shards recorded about it."""
    name = task.data.spec.name
    scores: dict[str, Scores | None] = {}
    for role in ROLES:
        if not pieces or not all(meta["tasks"][name]["roles"][role] for meta, _, _ in pieces):
            scores[role] = None
            continue
        prefix = _SEP.join((name, role, ""))
        keys = [k[len(prefix):] for k in pieces[0][1] if k.startswith(prefix)]
        merged = {key: np.concatenate([arrays[prefix + key] for _, arrays, _ in pieces]) for key in keys}
        scores[role] = Scores(merged, _joined_extras(name, role, pieces))
    for meta, _, _ in pieces:  # what scoring noticed (a probe that did not converge), once each
        task.data.notes.extend(n for n in meta["tasks"][name].get("notes", []) if n not in task.data.notes)
    info = dict(pieces[0][0]["tasks"][name]["info"]) if pieces else {}
    if "models" in info:  # a task's own models: the same in every shard (fingerprints filled in where known)
        for meta, _, _ in pieces[1:]:
            joined = _same_models(info["models"], meta["tasks"][name]["info"].get("models") or {})
            if joined is None:
                raise BadInput(f"task {name!r} was run with other models in {meta['_folder']} than in "
                               f"{pieces[0][0]['_folder']}: only shards of one run can be merged",
                               meta["_folder"] / "shard.json")
            info["models"] = joined
    usages = [meta["tasks"][name]["info"]["usage"] for meta, _, _ in pieces if "usage" in meta["tasks"][name]["info"]]
    if usages:
        info["usage"] = _sum_usage(usages)
    return TaskRun(task, scores, info)
