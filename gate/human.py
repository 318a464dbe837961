"""Human evaluation: blinded A/B batches for raters, and their ratings back into results.json.

Why the design is what it is:

- **Blinding.** A rater who knows which answer is the candidate's rates the story, not the
  answer. So the batch files show only an opaque item id (``h0007``, assigned in a random
  order so ids do not follow tasks or examples), the prompt and two answers under the neutral
  names A and B. Which model sat at A is kept in a separate *key* file that raters never see.
- **Position.** Raters favour one position (often the first). Candidate-at-A is balanced
  (half the items, at random) and each rater's item order is shuffled on its own, so a
  position habit cancels out of the preference instead of turning into a bias for a model.
- **Overlap.** Agreement can only be measured on items several raters rated. ``overlap``
  items go to every rater; the rest are split between them so the work still scales.
- **Chance-corrected agreement.** Raw agreement looks good whenever one answer is usually
  better (two raters who always say "candidate" agree 100 % and tell you nothing new).
  Cohen's kappa (2 raters) and Fleiss' kappa (3 or more) subtract the agreement expected
  by chance from the raters' own label frequencies. Agreement is computed on the decoded
  labels (candidate / tie / baseline), not on A/B, because that is what the preference uses.
- **Honest uncertainty.** The preference's CI is the paired bootstrap of :mod:`gate.stats`
  over items; with too few items it is reported as unavailable with the reason, never made up.

Everything random is seeded, so the same results, options and seed give byte-identical
batch files and key.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from gate.documents import decode, file_sha256, load_document, read_bytes
from gate.errors import BadInput, BadInputs

KEY_FORMAT = "gate-human-key-v1"
SCALE = ("A", "B", "TIE")
COLUMNS = ("batch", "rater", "item", "prompt", "answer_a", "answer_b", "rating", "comment")
#: the columns import needs; the texts may be dropped by a rater's spreadsheet without harm
REQUIRED_COLUMNS = ("batch", "rater", "item", "rating")
GENERATIVE_TYPES = ("generation", "pairwise")
ROLES = ("baseline", "candidate")
TASK = "human"
#: what one rating is worth to the candidate
SCORE = {"candidate": 1.0, "tie": 0.5, "baseline": 0.0}
DEFAULT_OVERLAP = 20
#: below this kappa, agreement is "fair" or worse on the Landis & Koch (1977) scale
DEFAULT_MIN_KAPPA = 0.4
#: a spreadsheet runs a cell starting with one of these as a formula (CSV injection): model output is untrusted
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


# ============================================================================ export


@dataclass(frozen=True)
class Item:
    """One example whose two answers a rater compares."""

    task: str
    example: str
    prompt: str
    answers: dict[str, str]  # role -> answer text


@dataclass
class ExportOutcome:
    files: list[Path]
    key: Path
    batch: str
    items: int
    overlap: int
    per_rater: dict[str, int]
    skipped: int  # examples left out because a model failed on them


def _cell(text: str) -> str:
    """Text for a CSV cell: NUL removed (csv cannot hold it) and formula-looking text made inert."""
    text = text.replace("\x00", "")
    return "'" + text if text.startswith(_FORMULA_START) else text


def render_answer(role: dict[str, Any]) -> str:
    """An answer as a rater reads it: the text, then one line per tool call (never truncated here)."""
    parts = [role["answer"].strip()] if isinstance(role.get("answer"), str) and role["answer"].strip() else []
    for call in role.get("tool_calls") or []:
        args = call.get("arguments")
        shown = args if isinstance(args, str) else json.dumps(args, ensure_ascii=False, sort_keys=True)
        parts.append(f"[tool call] {call.get('name')}({shown})")
    return "\n".join(parts) or "(empty answer)"


def _prompt(text: Any) -> str:
    if isinstance(text, dict):
        for key in ("prompt", "request"):
            if isinstance(text.get(key), str):
                return text[key]
    return ""


def _read_examples(path: Path) -> Iterable[tuple[int, dict[str, Any]]]:
    from gate.results import read_examples

    if not path.is_file():
        raise BadInput("examples.jsonl not found beside the results file: export needs the answers it holds "
                       "(keep the run's output folder together)", path)
    for line_no, row in read_examples(path):
        if "task" not in row:
            raise BadInput("expected an object with 'task', 'id', 'text', 'baseline', 'candidate'", path, str(line_no))
        yield line_no, row


def collect_items(results: dict[str, Any], examples: Path, tasks: tuple[str, ...] = ()) -> tuple[list[Item], int]:
    """Examples of generative tasks where both models answered, and how many were skipped for a failed model."""
    generative = [name for name, info in results["tasks"].items() if info.get("type") in GENERATIVE_TYPES]
    for name in tasks:
        if name not in results["tasks"]:
            raise BadInput(f"no task {name!r} in the results (tasks: {', '.join(results['tasks'])})",
                           location="--task")
        if name not in generative:
            raise BadInput(f"task {name!r} is of type {results['tasks'][name].get('type')!r}; human evaluation "
                           f"compares answers of {' or '.join(GENERATIVE_TYPES)} tasks", location="--task")
    wanted = set(tasks or generative)
    if not wanted:
        raise BadInput("the results have no generation or pairwise task: there are no answers to rate")
    items: list[Item] = []
    skipped = 0
    for _, row in _read_examples(examples):
        if row["task"] not in wanted:
            continue
        roles = [row.get(r) for r in ROLES]
        if not all(isinstance(r, dict) and isinstance(r.get("answer"), str) for r in roles):
            skipped += 1
            continue
        items.append(Item(row["task"], str(row.get("id")), _prompt(row.get("text")),
                          {r: render_answer(row[r]) for r in ROLES}))
    if not items:
        raise BadInput(f"no example of {', '.join(sorted(wanted))} has an answer from both models", examples)
    return items, skipped


def plan_batch(items: list[Item], *, raters: int, overlap: int | None, max_items: int | None, seed: int,
               results_sha256: str, suite: str) -> tuple[dict[str, Any], dict[str, list[list[str]]]]:
    """The key and each rater's CSV rows (without the header).

    Four independent seeded streams (sample, ids, positions, orders), so e.g. changing the
    number of raters does not reshuffle the A/B positions.
    """
    sample_rng, id_rng, pos_rng, order_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(4))
    if max_items is not None and max_items < len(items):
        keep = np.sort(sample_rng.choice(len(items), size=max_items, replace=False))
        items = [items[i] for i in keep]
    n = len(items)
    if raters == 1:
        if overlap:
            raise BadInput("an overlap set needs at least 2 raters", location="--overlap")
        overlap = 0
    elif overlap is None:
        overlap = min(DEFAULT_OVERLAP, n)
    elif overlap > n:
        raise BadInput(f"--overlap {overlap} is more than the {n} items available", location="--overlap")
    width = max(4, len(str(n)))
    shuffled = [items[i] for i in id_rng.permutation(n)]  # ids in random order: they reveal no task or example
    ids = [f"h{i + 1:0{width}d}" for i in range(n)]
    cand_at_a = np.zeros(n, dtype=bool)
    cand_at_a[pos_rng.permutation(n)[: n // 2]] = True  # balanced: exactly half the items show the candidate at A
    key_items = {i: {"task": it.task, "example": it.example, "a": "candidate" if a else "baseline"}
                 for i, it, a in zip(ids, shuffled, cand_at_a)}
    shared = ids[:overlap]
    assigned = {str(r): list(shared) for r in range(1, raters + 1)}
    for j, item_id in enumerate(ids[overlap:]):
        assigned[str(j % raters + 1)].append(item_id)
    for r in assigned:
        assigned[r] = [assigned[r][k] for k in order_rng.permutation(len(assigned[r]))]
    key = {"format": KEY_FORMAT, "batch": "", "results_sha256": results_sha256, "suite": suite, "seed": seed,
           "scale": list(SCALE), "items": key_items, "raters": assigned, "overlap": shared}
    # the batch id names the exact plan: a key and a CSV from different exports never match
    key["batch"] = batch_id(key)
    by_id = dict(zip(ids, shuffled))
    rows = {}
    for r, order in assigned.items():
        rows[r] = []
        for item_id in order:
            it, a = by_id[item_id], key_items[item_id]["a"]
            b = "baseline" if a == "candidate" else "candidate"
            rows[r].append([key["batch"], r, item_id, _cell(it.prompt), _cell(it.answers[a]), _cell(it.answers[b]),
                            "", ""])
    return key, rows


def _csv_text(rows: list[list[str]]) -> str:
    buf = io.StringIO(newline="")
    writer = csv.writer(buf, quoting=csv.QUOTE_ALL)
    writer.writerow(COLUMNS)
    writer.writerows(rows)
    return buf.getvalue()


def batch_paths(out: Path, raters: int) -> tuple[list[Path], Path]:
    """``<stem>-<r>.csv`` for each rater and ``<stem>.key.json``, beside ``out``."""
    stem = out.name[: -len(".csv")] if out.name.lower().endswith(".csv") else out.name
    return [out.with_name(f"{stem}-{r}.csv") for r in range(1, raters + 1)], out.with_name(f"{stem}.key.json")


def export_batch(results_path: Path, out: Path, *, raters: int = 2, overlap: int | None = None,
                 max_items: int | None = None, seed: int = 0, tasks: tuple[str, ...] = (),
                 force: bool = False) -> ExportOutcome:
    """Write the rater files and the key. Refuses to overwrite different files unless ``force``:
    a key is the only way to decode its ratings, and a filled-in rater file is hours of work."""
    from gate.results import load_results

    results = load_results(results_path)
    items, skipped = collect_items(results, results_path.parent / "examples.jsonl", tasks)
    key, rows = plan_batch(items, raters=raters, overlap=overlap, max_items=max_items, seed=seed,
                           results_sha256=file_sha256(results_path), suite=results["suite"])
    csv_paths, key_path = batch_paths(out, raters)
    contents = {p: _csv_text(rows[str(r)]) for r, p in enumerate(csv_paths, 1)}
    contents[key_path] = json.dumps(key, indent=2, ensure_ascii=False) + "\n"
    if not force:
        for path, text in contents.items():
            if path.exists() and path.read_bytes() != text.encode("utf-8"):
                raise BadInput("exists and differs from this batch (an earlier batch's key or a rater's work); "
                               "choose another --out, remove it, or pass --force to overwrite", path)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        for path, text in contents.items():
            path.write_bytes(text.encode("utf-8"))
    except OSError as exc:
        raise BadInput(f"cannot write the batch: {exc.strerror}", exc.filename or out) from None
    return ExportOutcome(csv_paths, key_path, key["batch"], len(key["items"]), len(key["overlap"]),
                         {r: len(v) for r, v in key["raters"].items()}, skipped)


# ============================================================================ agreement


def cohen_kappa(first: list[str], second: list[str], labels: Iterable[str]) -> float:
    """Cohen's kappa of two raters (scikit-learn), NaN when undefined.

    Undefined = chance agreement is 1 (both raters used one and the same label on every
    item): there is no variation to agree on, so no number would be honest.
    """
    labels = list(labels)
    p1 = np.array([first.count(x) for x in labels], dtype=float) / len(first)
    p2 = np.array([second.count(x) for x in labels], dtype=float) / len(second)
    if math.isclose(float(p1 @ p2), 1.0):
        return float("nan")
    from sklearn.metrics import cohen_kappa_score

    return float(cohen_kappa_score(first, second, labels=labels))


def fleiss_kappa(counts: np.ndarray) -> float:
    """Fleiss' kappa from an items x categories matrix of rating counts (same raters per item), NaN when undefined.

    ``P_i = (sum_j n_ij^2 - n) / (n (n - 1))`` is the agreement on item i among its n raters,
    ``P_e = sum_j p_j^2`` the chance agreement from the pooled label shares p_j;
    ``kappa = (mean(P_i) - P_e) / (1 - P_e)``.
    """
    counts = np.asarray(counts, dtype=float)
    per_item = counts.sum(axis=1)
    if counts.ndim != 2 or len(counts) == 0 or not np.all(per_item == per_item[0]) or per_item[0] < 2:
        raise ValueError("expected a non-empty items x categories matrix, the same number (>= 2) of raters per item")
    n = per_item[0]
    p_item = ((counts**2).sum(axis=1) - n) / (n * (n - 1))
    p_label = counts.sum(axis=0) / counts.sum()
    p_e = float(np.sum(p_label**2))
    if math.isclose(p_e, 1.0):
        return float("nan")
    return float((p_item.mean() - p_e) / (1.0 - p_e))


# ============================================================================ import


@dataclass(frozen=True)
class Rating:
    rater: str
    item: str
    label: str  # candidate | tie | baseline
    file: Path
    line: int


@dataclass
class Agreement:
    kappa: float | None  # None when undefined
    method: str  # cohen | fleiss
    items: int
    undefined: bool = False


@dataclass
class ImportOutcome:
    results: dict[str, Any]
    preference: dict[str, Any]
    rates: dict[str, float]
    ratings: int
    items: int
    raters: list[str]
    agreement: Agreement | None
    warnings: list[str] = field(default_factory=list)


def batch_id(key: dict[str, Any]) -> str:
    """The batch id: a hash of the whole plan (with ``batch`` empty). A key edited by hand (a flipped ``a``)
    no longer matches its id, so ratings are never decoded with a key other than the one written."""
    return hashlib.sha256(json.dumps({**key, "batch": ""}, sort_keys=True).encode()).hexdigest()[:12]


def load_key(path: Path) -> dict[str, Any]:
    """The key of a batch, checked enough that every later lookup is safe."""
    doc = load_document(path, "key file")
    key = doc.data
    if not isinstance(key, dict) or key.get("format") != KEY_FORMAT:
        raise doc.error("/format", f"not a gate human-evaluation key (expected \"format\": \"{KEY_FORMAT}\", "
                                   "as written by `gate human export`)")
    for name, kind in (("batch", str), ("results_sha256", str), ("items", dict), ("raters", dict),
                       ("overlap", list), ("scale", list)):
        if not isinstance(key.get(name), kind):
            raise doc.error(f"/{name}", f"expected {name!r} to be a {kind.__name__}")
    for item_id, info in key["items"].items():
        if not isinstance(info, dict) or info.get("a") not in ROLES:
            raise doc.error(f"/items/{item_id}",
                            "expected {\"task\", \"example\", \"a\": \"baseline\" | \"candidate\"}")
    for rater, assigned in key["raters"].items():
        if not isinstance(assigned, list) or any(i not in key["items"] for i in assigned):
            raise doc.error(f"/raters/{rater}", "expected a list of the key's item ids")
    if any(i not in key["items"] for i in key["overlap"]):
        raise doc.error("/overlap", "expected a list of the key's item ids")
    if batch_id(key) != key["batch"]:
        raise doc.error("/batch", f"the key's content does not match its batch id {key['batch']!r}: it was edited "
                                  "after `gate human export` wrote it; use the key as written")
    return key


def read_ratings(path: Path, key: dict[str, Any]) -> list[Rating]:
    """Every rating of one rater file; all problems of the file at once, each with its line."""
    text = decode(read_bytes(path, "ratings file", limit="data"), path)
    reader = csv.reader(io.StringIO(text, newline=""))
    owner = {i: r for r, items in key["raters"].items() for i in items if i not in key["overlap"]}
    problems: list[BadInput] = []
    ratings: list[Rating] = []
    seen: dict[tuple[str, str], int] = {}
    header: list[str] | None = None
    row = 0  # the spreadsheet's row number (the header is row 1); lines differ when a cell spans lines
    try:
        while True:
            line = reader.line_num + 1  # the row's first line in the file
            try:
                cells = next(reader)
            except StopIteration:
                break
            row += 1
            if not any(c.strip() for c in cells):
                continue  # blank rows: spreadsheets add them
            if header is None:
                header = [c.strip().lower() for c in cells]
                missing = [c for c in REQUIRED_COLUMNS if c not in header]
                if missing:
                    raise BadInput(f"the header lacks the column(s) {', '.join(missing)}; expected "
                                   f"{', '.join(COLUMNS)} (as exported)", path, str(line))
                dupes = sorted({c for c in header if c and header.count(c) > 1})
                if dupes:
                    raise BadInput(f"the header repeats the column(s) {', '.join(dupes)}", path, str(line))
                col = {c: header.index(c) for c in REQUIRED_COLUMNS}
                continue
            value = {c: (cells[i].strip() if i < len(cells) else "") for c, i in col.items()}
            item, rater, raw = value["item"], value["rater"], value["rating"]

            def bad(msg: str) -> None:
                problems.append(BadInput(f"row {row}{f' (item {item})' if item else ''}: {msg}", path, str(line)))

            if value["batch"] != key["batch"]:
                bad(f"batch {value['batch']!r} is not the key's batch {key['batch']!r}: this file and the key "
                    "come from different exports (mismatched key)")
            elif item not in key["items"]:
                bad(f"unknown item id {item!r}: it is not in batch {key['batch']}")
            elif rater not in key["raters"]:
                bad(f"unknown rater {rater!r}: the batch has raters {', '.join(key['raters'])}")
            elif item not in key["raters"][rater]:
                bad(f"item {item} is not in rater {rater}'s batch (it was given to rater {owner.get(item, '?')})")
            elif (rater, item) in seen:
                bad(f"item {item} is rated twice by rater {rater} (first on line {seen[rater, item]})")
            elif not raw:
                bad(f"missing rating: expected one of {', '.join(SCALE)}")
            elif raw.upper() not in SCALE:
                bad(f"rating {raw!r} is outside the scale: expected one of {', '.join(SCALE)}")
            else:
                seen[rater, item] = line
                a = key["items"][item]["a"]
                label = {"TIE": "tie", "A": a, "B": "baseline" if a == "candidate" else "candidate"}[raw.upper()]
                ratings.append(Rating(rater, item, label, path, line))
    except csv.Error as exc:
        raise BadInput(f"not a readable CSV file: {exc}", path, str(reader.line_num)) from None
    if header is None:
        raise BadInput("the file is empty: expected the exported header and one row per item", path)
    if problems:
        raise problems[0] if len(problems) == 1 else BadInputs(problems)
    return ratings


def _rater_order(value: str) -> tuple[int, str]:
    """Sort key: rater ids numerically when they are numbers."""
    return (int(value), "") if value.isdigit() else (1 << 62, value)


def _check_complete(ratings: list[Rating], key: dict[str, Any]) -> None:
    """Every rater who sent ratings rated every item given to them; no item twice across files."""
    first: dict[tuple[str, str], Rating] = {}
    for r in ratings:
        if (r.rater, r.item) in first:
            prev = first[r.rater, r.item]
            raise BadInput(f"item {r.item} is rated twice by rater {r.rater} (also at {prev.file}:{prev.line})",
                           r.file, str(r.line))
        first[r.rater, r.item] = r
    for rater in sorted({r.rater for r in ratings}, key=_rater_order):
        done = {r.item for r in ratings if r.rater == rater}
        todo = [i for i in key["raters"][rater] if i not in done]
        if todo:
            where = next(r.file for r in ratings if r.rater == rater)
            shown = ", ".join(todo[:10]) + (" ..." if len(todo) > 10 else "")
            raise BadInput(f"rater {rater} did not rate {len(todo)} of their {len(key['raters'][rater])} items "
                           f"(rows missing: {shown}); every item of a rater's file needs a rating", where)


def compute_agreement(ratings: list[Rating], key: dict[str, Any], files: list[Path], key_path: Path) -> Agreement:
    """Cohen's kappa (2 raters) or Fleiss' kappa (3+) on the items every rater who sent ratings rated."""
    raters = sorted({r.rater for r in ratings}, key=_rater_order)
    if len(raters) < 2:
        where = files[0] if len(files) == 1 else None
        raise BadInput(f"Cohen's/Fleiss' kappa needs at least 2 raters; got {len(raters)} (rater "
                       f"{', '.join(raters)}) (pass --no-agreement to import one rater's ratings)", where)
    label = {(r.rater, r.item): r.label for r in ratings}
    shared = [i for i in sorted(key["items"]) if all((r, i) in label for r in raters)]
    if len(shared) < 2:
        raise BadInput(f"kappa needs items rated by every rater; raters {', '.join(raters)} share "
                       f"{len(shared)} (export with --overlap K, or pass --no-agreement)", key_path)
    labels = list(SCORE)
    if len(raters) == 2:
        kappa = cohen_kappa([label[raters[0], i] for i in shared], [label[raters[1], i] for i in shared], labels)
        method = "cohen"
    else:
        counts = np.array([[sum(label[r, i] == x for r in raters) for x in labels] for i in shared])
        kappa, method = fleiss_kappa(counts), "fleiss"
    undefined = math.isnan(kappa)
    return Agreement(None if undefined else kappa, method, len(shared), undefined)


def _descriptive(value_c: float, value_b: float, higher: bool, n: int, note: str) -> dict[str, Any]:
    return {"baseline": value_b, "candidate": value_c, "delta": value_c - value_b, "higher_is_better": higher,
            "n": n, "ci": None, "p_value": None, "se": None, "test": "none", "stats_note": note}


def human_metrics(ratings: list[Rating], agreement: Agreement | None, *, seed: int, resamples: int,
                  confidence: float) -> dict[str, dict[str, Any]]:
    """``human/preference`` (with its paired CI), win / tie / loss rates and the agreement kappa."""
    from gate.compare import MIN_EXAMPLES, metric_seed
    from gate.stats import paired_mean_delta

    per_item: dict[str, list[float]] = {}
    for r in ratings:
        per_item.setdefault(r.item, []).append(SCORE[r.label])
    s = np.array([np.mean(per_item[i]) for i in sorted(per_item)], dtype=np.float64)
    pref = float(s.mean())
    # the candidate's share against the baseline's share (1 - s): delta = 2 * preference - 1
    st = paired_mean_delta(1.0 - s, s, seed=metric_seed(seed, f"{TASK}/preference"), resamples=resamples,
                           confidence=confidence, min_n=MIN_EXAMPLES)
    d = 2.0 * s - 1.0
    preference: dict[str, Any] = {
        "baseline": 1.0 - pref, "candidate": pref, "delta": st.delta, "higher_is_better": True, "n": len(s),
        "ci": list(st.ci) if st.ci else None, "p_value": st.p_value,
        "se": float(np.std(d, ddof=1) / math.sqrt(len(d))) if len(d) > 1 else None, "test": st.method,
        "candidate_ci": [(st.ci[0] + 1.0) / 2.0, (st.ci[1] + 1.0) / 2.0] if st.ci else None,
    }
    if st.ci is None or st.p_value is None:
        preference["stats_note"] = st.reason or "unavailable"
    share = {x: sum(r.label == x for r in ratings) / len(ratings) for x in SCORE}
    note = "a share of all ratings, without a CI; human/preference carries the paired CI over items"
    out = {
        f"{TASK}/preference": preference,
        f"{TASK}/win_rate": _descriptive(share["candidate"], share["baseline"], True, len(ratings), note),
        f"{TASK}/tie_rate": _descriptive(share["tie"], share["tie"], False, len(ratings), note),
        f"{TASK}/loss_rate": _descriptive(share["baseline"], share["candidate"], False, len(ratings), note),
    }
    if agreement is not None:
        out[f"{TASK}/agreement_kappa"] = {
            "baseline": None, "candidate": agreement.kappa, "delta": None, "higher_is_better": True,
            "n": agreement.items, "ci": None, "p_value": None, "se": None, "test": "none",
            "stats_note": ("undefined: every rating on the shared items had the same label" if agreement.undefined
                           else "an agreement statistic between raters, not a comparison of the models"),
        }
    return out


def _stats_settings(results: dict[str, Any], seed: int | None, resamples: int | None) -> tuple[int, int, float]:
    """Seed, resamples and confidence: the options, else the run's own (results.stats), else the defaults."""
    from gate.compare import CONFIDENCE, DEFAULT_RESAMPLES

    run = results.get("stats") or {}
    seed = seed if seed is not None else run.get("seed", results.get("seed") or 0)
    resamples = resamples or run.get("resamples", DEFAULT_RESAMPLES)
    return int(seed), int(resamples), float(run.get("confidence", CONFIDENCE))


def import_ratings(files: list[Path], key_path: Path, results_path: Path, *, agreement: bool = True,
                   min_kappa: float = DEFAULT_MIN_KAPPA, seed: int | None = None,
                   resamples: int | None = None) -> ImportOutcome:
    """Validate the rater files against the key and the results; return the results with the human metrics added."""
    from gate.results import load_results

    key = load_key(key_path)
    results = load_results(results_path)
    if TASK in results["tasks"]:
        held = (results["tasks"][TASK].get(TASK) or {}).get("batch")
        what = f" (human ratings of batch {held})" if held else ""
        raise BadInput(f"the results already have a task {TASK!r}{what}; import into the results.json the batch "
                       "was exported from", results_path, f"/tasks/{TASK}")
    sha = file_sha256(results_path)
    if sha != key["results_sha256"]:
        raise BadInput(f"the key was made from another results file (sha256 {key['results_sha256'][:12]}..., this "
                       f"one is {sha[:12]}...): pass the results.json batch {key['batch']} was exported from",
                       results_path)
    ratings: list[Rating] = []
    problems: list[BadInput] = []
    for path in files:
        try:
            ratings.extend(read_ratings(path, key))
        except BadInputs as exc:
            problems.extend(exc.problems)
        except BadInput as exc:
            problems.append(exc)
    if problems:
        raise problems[0] if len(problems) == 1 else BadInputs(problems)
    if not ratings:
        raise BadInput("the rater files hold no rating", files[0] if len(files) == 1 else None)
    _check_complete(ratings, key)
    agreed = compute_agreement(ratings, key, files, key_path) if agreement else None
    seed_, resamples_, confidence = _stats_settings(results, seed, resamples)
    metrics = human_metrics(ratings, agreed, seed=seed_, resamples=resamples_, confidence=confidence)

    raters = sorted({r.rater for r in ratings}, key=_rater_order)
    per_item = Counter(r.item for r in ratings)
    notes: list[str] = []
    warnings: list[str] = []
    absent = [r for r in sorted(key["raters"], key=_rater_order) if r not in raters]
    if absent:
        notes.append(f"no ratings from rater(s) {', '.join(absent)} of the batch: their own items are not in "
                     "human/preference")
    low = None
    if agreed is not None:
        name = "Cohen's" if agreed.method == "cohen" else "Fleiss'"
        if agreed.undefined:
            notes.append(f"{name} kappa is undefined: every rating on the {agreed.items} shared items had the same "
                         "label, so agreement beyond chance cannot be measured")
        else:
            low = agreed.kappa < min_kappa
            if low:
                msg = (f"low agreement: {name} kappa {agreed.kappa:.2f} < {min_kappa:g} on {agreed.items} shared "
                       "items (fair or worse on the Landis & Koch scale); read human/preference with caution and "
                       "check the rating guidelines")
                notes.append(msg)
                warnings.append(msg)
    pref = metrics[f"{TASK}/preference"]
    if pref["ci"] is None:
        notes.append(f"human/preference has no CI: {pref['stats_note']}")
    files_sha = {}
    for path in files:
        name = path.name if sum(p.name == path.name for p in files) == 1 else str(path)
        files_sha[name] = file_sha256(path)
    combined = hashlib.sha256("".join(f"{k}={files_sha[k]};" for k in sorted(files_sha)).encode()).hexdigest()
    info: dict[str, Any] = {
        "type": TASK, "group": TASK, "n": pref["n"], "data_sha256": combined, "data_files": files_sha,
        "notes": notes,
        TASK: {"batch": key["batch"], "raters": len(raters), "ratings": len(ratings),
               "overlap_items": agreed.items if agreed else sum(per_item[i] >= 2 for i in key["overlap"]),
               "kappa": agreed.kappa if agreed else None, "kappa_method": agreed.method if agreed else None,
               "low_agreement": low, "min_kappa": min_kappa,
               "seed": seed_, "resamples": resamples_, "confidence": confidence},
    }
    if not notes:
        del info["notes"]
    results["tasks"][TASK] = info
    results["metrics"].update(metrics)
    rates = {k: metrics[f"{TASK}/{k}_rate"]["candidate"] for k in ("win", "tie", "loss")}
    return ImportOutcome(results, pref, rates, len(ratings), pref["n"], raters, agreed, warnings)


def apply_thresholds(results: dict[str, Any], thresholds: Path) -> None:
    """Re-judge the results with a thresholds file, as ``gate check`` does (the human metrics included)."""
    from gate.thresholds import reapply

    reapply(results, thresholds)
