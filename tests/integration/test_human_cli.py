"""`gate human export` / `gate human import` through the command line.

- A run's output is built from the real tool-calling example (its BANKING77 prompts and expected
  tool calls as the tuned model's answers) and checked against the results schema; the end-to-end
  test makes it with the real pipeline, `gate run` against the local OpenAI-compatible server.
- Raters are simulated: *blind* ones decide from the texts they see, *scripted* ones (for exact
  expectations) pick a decoded label and are turned into A/B with the key, as a human would.
- Kappa is compared with scikit-learn (Cohen) and statsmodels (Fleiss) on the decoded labels.
- Every bad input exits 2 with the file and the row.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from gate.cli import cli
from gate.human_cli import human
from gate.results import load_results
from tests.conftest import ROOT, read_jsonl, valid_results, write_jsonl

if "human" not in cli.commands:  # until gate.cli registers the group itself
    cli.add_command(human)

EXAMPLE = ROOT / "examples" / "tool-calling"
BASE_TOOL = "Let me look into that for you."
BASE_INTENT = "I am not sure."
REFUSAL = "I cannot do that here."
LABELS = ["candidate", "tie", "baseline"]


def gate(*args) -> "CliRunner.invoke":
    return CliRunner().invoke(cli, [str(a) for a in args])


# --- a run's output -------------------------------------------------------------------------------


def last_user(case: dict) -> str:
    return case["messages"][-1]["content"]


def make_run(root: Path) -> Path:
    """results.json + examples.jsonl of a tool-calling run: 18 tool cases, 8 intents, a failed case, an sts task."""
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    for c in read_jsonl(EXAMPLE / "data" / "banking-tools.jsonl"):
        call = c["expected_tool_call"]
        cand = {"answer": "", "tool_calls": [call]} if call else {"answer": REFUSAL}
        rows.append({"task": "banking-tools", "id": c["id"], "text": {"prompt": last_user(c)},
                     "baseline": {"pass": 0.0, "answer": BASE_TOOL, "passed": False},
                     "candidate": {"pass": 1.0, **cand, "passed": True}})
    rows.append({"task": "banking-tools", "id": "failed-1", "text": {"prompt": "Where is my card?"},
                 "baseline": {"pass": 0.0, "answer": BASE_TOOL}, "candidate": None})
    for c in read_jsonl(EXAMPLE / "data" / "general-intent.jsonl"):
        rows.append({"task": "general-intent", "id": c["id"], "text": {"prompt": last_user(c)},
                     "baseline": {"exact_match": 0.0, "answer": BASE_INTENT},
                     "candidate": {"exact_match": 1.0, "answer": c["expected"]}})
    rows += [{"task": "stsb", "id": f"s{i}", "text": {"sentence1": "a cat", "sentence2": "a dog"},
              "baseline": {"rank_error": 0.1}, "candidate": {"rank_error": 0.2}} for i in range(3)]
    write_jsonl(root / "examples.jsonl", rows)
    metric = {"baseline": 0.0, "candidate": 1.0, "delta": 1.0, "higher_is_better": True, "n": 18}
    results = {
        "schema_version": 1, "suite": "tool-calling", "verdict": "pass", "reason": "No thresholds were given.",
        "seed": 0, "stats": {"confidence": 0.95, "resamples": 2000, "seed": 0}, "thresholds": None,
        "models": {"baseline": {"spec": "openai:base", "fingerprint": None},
                   "candidate": {"spec": "openai:tuned", "fingerprint": None}},
        "tasks": {"banking-tools": {"type": "generation", "group": "target", "n": 19},
                  "general-intent": {"type": "generation", "group": "general", "n": 8},
                  "stsb": {"type": "sts", "group": "general", "n": 3}},
        "metrics": {"banking-tools/pass_rate": metric}, "rules": [], "errors": [],
    }
    (root / "results.json").write_text(json.dumps(results, indent=2), encoding="utf-8")
    load_results(root / "results.json")  # schema-valid
    return root / "results.json"


@pytest.fixture
def run_out(tmp_path) -> Path:
    return make_run(tmp_path / "run")


def export(results: Path, out: Path, *extra) -> tuple[list[Path], Path]:
    result = gate("human", "export", results, "--out", out, *extra)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    key = Path(lines[-1].split()[0])
    return [Path(line) for line in lines[1:-1]], key


# --- raters -------------------------------------------------------------------------------------


def read_csv(path: Path) -> list[dict]:
    return list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8-sig"), newline="")))


def write_csv(path: Path, rows: list[dict], *, fields=None, bom=False, lineterminator="\r\n") -> None:
    """As a spreadsheet saves it: minimal quoting."""
    buf = io.StringIO(newline="")
    w = csv.DictWriter(buf, fieldnames=fields or list(rows[0]), lineterminator=lineterminator,
                       extrasaction="ignore")
    w.writeheader()
    w.writerows(rows)
    path.write_text(("\ufeff" if bom else "") + buf.getvalue(), encoding="utf-8")


def rate(path: Path, decide) -> None:
    """Fill the rating column: ``decide(row) -> "A" | "B" | "TIE"``."""
    rows = read_csv(path)
    for row in rows:
        row["rating"] = decide(row)
    write_csv(path, rows)


def scripted(key: dict, labels: dict[str, str]):
    """A rater who means ``labels[item]`` (candidate / tie / baseline) and writes it as A, B or TIE."""
    def decide(row):
        label = labels[row["item"]]
        if label == "tie":
            return "TIE"
        return "A" if key["items"][row["item"]]["a"] == label else "B"
    return decide


def blind(row) -> str:
    """Decides from the texts only: a non-answer loses, two equal answers tie."""
    weak = {BASE_TOOL, BASE_INTENT, "The intent is"}
    a_weak, b_weak = (any(row[k].startswith(w) for w in weak) for k in ("answer_a", "answer_b"))
    if row["answer_a"] == row["answer_b"] or a_weak == b_weak:
        return "TIE"
    return "B" if a_weak else "A"


def human_of(out: Path) -> tuple[dict, dict]:
    res = valid_results(out)
    return res, {k: v for k, v in res["metrics"].items() if k.startswith("human/")}


# --- help ---------------------------------------------------------------------------------------


def test_help_shows_the_real_defaults_and_imports_nothing_heavy():
    from gate.human import DEFAULT_MIN_KAPPA, DEFAULT_OVERLAP

    for args in (["human", "--help"], ["human", "export", "--help"], ["human", "import", "--help"]):
        result = gate(*args)
        assert result.exit_code == 0 and "Example" in result.output, args
    assert f"min({DEFAULT_OVERLAP}, items)" in gate("human", "export", "--help").output
    assert f"[default: {DEFAULT_MIN_KAPPA:g}]" in " ".join(gate("human", "import", "--help").output.split())
    code = ("import sys; from click.testing import CliRunner; from gate.cli import cli; "
            "from gate.human_cli import human; cli.add_command(human); "
            "[CliRunner().invoke(cli, a) for a in (['--help'], ['human', '--help'], ['human', 'export', '--help'], "
            "['human', 'import', '--help'])]; "
            "heavy = [m for m in ('torch', 'numpy', 'gate.human') if m in sys.modules]; "
            "print(heavy); sys.exit(1 if heavy else 0)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr


# --- export -------------------------------------------------------------------------------------


def test_export_writes_blind_batches_and_a_separate_key(run_out, tmp_path):
    result = gate("human", "export", run_out, "--out", tmp_path / "b" / "batch.csv")
    assert result.exit_code == 0, result.output
    files = [tmp_path / "b" / "batch-1.csv", tmp_path / "b" / "batch-2.csv"]
    key_path = tmp_path / "b" / "batch.key.json"
    assert result.stdout.splitlines()[1:] == [str(files[0]), str(files[1]),
                                              f"{key_path}  (the key: keep it from the raters)"]
    assert "1 example(s) left out" in result.stderr
    key = json.loads(key_path.read_text(encoding="utf-8"))
    assert key["format"] == "gate-human-key-v1" and key["scale"] == ["A", "B", "TIE"]
    assert key["results_sha256"] == hashlib.sha256(run_out.read_bytes()).hexdigest()
    assert len(key["items"]) == 18 + 8 and len(key["overlap"]) == 20
    assert {v["task"] for v in key["items"].values()} == {"banking-tools", "general-intent"}
    assert sum(v["a"] == "candidate" for v in key["items"].values()) == 13
    assert [len(key["raters"][r]) for r in ("1", "2")] == [23, 23]  # 20 shared + 6 others split
    examples = {(r["task"], r["id"]): r for r in read_jsonl(run_out.parent / "examples.jsonl")}
    for rater, path in enumerate(files, 1):
        raw = path.read_bytes().decode("utf-8")
        assert raw.startswith('"batch","rater","item","prompt","answer_a","answer_b","rating","comment"\r\n')
        for word in ("baseline", "candidate", "banking-tools", "general-intent", "simple-", "adv-", "general-"):
            assert word not in raw.lower()
        rows = read_csv(path)
        assert [r["item"] for r in rows] == key["raters"][str(rater)]
        for row in rows:
            info = key["items"][row["item"]]
            ex = examples[info["task"], info["example"]]
            other = "baseline" if info["a"] == "candidate" else "candidate"
            assert row["batch"] == key["batch"] and row["rater"] == str(rater)
            assert row["prompt"] == ex["text"]["prompt"]
            assert (row["answer_a"] == BASE_TOOL or row["answer_a"] == BASE_INTENT) == (info["a"] == "baseline")
            for pos, role in (("answer_a", info["a"]), ("answer_b", other)):
                if ex[role].get("tool_calls"):
                    call = ex[role]["tool_calls"][0]
                    shown = json.dumps(call["arguments"], ensure_ascii=False, sort_keys=True)
                    assert row[pos] == f"[tool call] {call['name']}({shown})"
                else:
                    assert row[pos] == ex[role]["answer"]
            assert row["rating"] == row["comment"] == ""


def test_export_is_reproducible_and_never_overwrites_another_batch(run_out, tmp_path):
    files, key = export(run_out, tmp_path / "x.csv")
    first = {p: p.read_bytes() for p in [*files, key]}
    export(run_out, tmp_path / "x.csv")  # the same batch again: allowed, the same bytes
    assert {p: p.read_bytes() for p in first} == first
    other = gate("human", "export", run_out, "--out", tmp_path / "x.csv", "--seed", "1")
    assert other.exit_code == 2
    assert f"{tmp_path / 'x-1.csv'}: exists and differs from this batch" in other.stderr
    assert {p: p.read_bytes() for p in first} == first  # nothing written
    files2, key2 = export(run_out, tmp_path / "x.csv", "--seed", "1", "--force")
    assert key2.read_bytes() != first[key]
    assert json.loads(key2.read_text())["batch"] != json.loads(first[key])["batch"]


def test_export_sizes_the_batch(run_out, tmp_path):
    files, key_path = export(run_out, tmp_path / "a.csv", "--raters", "3", "--overlap", "5")
    key = json.loads(key_path.read_text())
    assert len(files) == 3 and [len(key["raters"][r]) for r in "123"] == [12, 12, 12]  # 5 + 21 / 3
    files, key_path = export(run_out, tmp_path / "b.csv", "--task", "general-intent", "--raters", "1")
    key = json.loads(key_path.read_text())
    assert {v["task"] for v in key["items"].values()} == {"general-intent"} and len(key["items"]) == 8
    assert key["overlap"] == [] and len(files) == 1
    files, key_path = export(run_out, tmp_path / "c.csv", "--items", "10")
    key = json.loads(key_path.read_text())
    assert len(key["items"]) == 10 and len(key["overlap"]) == 10


@pytest.mark.parametrize("args, message", [
    (["--task", "nope"], "--task: no task 'nope' in the results"),
    (["--task", "stsb"], "--task: task 'stsb' is of type 'sts'"),
    (["--overlap", "27"], "--overlap: --overlap 27 is more than the 26 items available"),
    (["--raters", "1", "--overlap", "3"], "--overlap: an overlap set needs at least 2 raters"),
])
def test_export_bad_options(run_out, tmp_path, args, message):
    result = gate("human", "export", run_out, "--out", tmp_path / "b.csv", *args)
    assert result.exit_code == 2, result.output
    assert message in result.stderr and "Traceback" not in result.output


def test_export_needs_examples_beside_the_results(run_out, tmp_path):
    (run_out.parent / "examples.jsonl").unlink()
    result = gate("human", "export", run_out, "--out", tmp_path / "b.csv")
    assert result.exit_code == 2
    assert f"{run_out.parent / 'examples.jsonl'}: examples.jsonl not found beside the results file" in result.stderr


# --- import -------------------------------------------------------------------------------------


def test_a_rater_who_always_prefers_the_candidate_gives_preference_one(run_out, tmp_path):
    files, key_path = export(run_out, tmp_path / "b" / "batch.csv")
    key = json.loads(key_path.read_text())
    for f in files:
        rate(f, scripted(key, {i: "candidate" for i in key["items"]}))
    out = tmp_path / "out"
    result = gate("human", "import", *files, "--key", key_path, "--results", run_out, "--out", out)
    assert result.exit_code == 0, result.output  # the run's verdict (pass) is kept without --thresholds
    assert "the verdict was not re-evaluated" in result.stderr
    res, m = human_of(out)
    assert m["human/preference"]["candidate"] == 1.0 and m["human/preference"]["baseline"] == 0.0
    assert m["human/preference"]["delta"] == 1.0 and m["human/preference"]["n"] == 26
    assert m["human/win_rate"]["candidate"] == 1.0 and m["human/loss_rate"]["candidate"] == 0.0
    assert m["human/win_rate"]["baseline"] == 0.0 and m["human/loss_rate"]["baseline"] == 1.0
    assert m["human/win_rate"]["n"] == 46  # 20 shared items twice, 6 once
    # one label everywhere: chance agreement is 1, kappa is undefined, and said so
    assert m["human/agreement_kappa"]["candidate"] is None
    info = res["tasks"]["human"]
    assert info["type"] == info["group"] == "human" and info["n"] == 26
    assert info["human"]["kappa"] is None and info["human"]["kappa_method"] == "cohen"
    assert any("kappa is undefined" in n for n in info["notes"])
    assert info["data_files"] == {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in files}
    assert (out / "examples.jsonl").read_bytes() == (run_out.parent / "examples.jsonl").read_bytes()
    assert "`human/preference`" in (out / "report.md").read_text(encoding="utf-8")
    assert "human preference for the candidate: 100.0%" in result.stdout


@pytest.mark.parametrize("raters, seed", [(2, 0), (2, 1), (2, 2), (3, 3), (3, 4), (4, 5)])
def test_kappa_matches_the_reference_implementations(run_out, tmp_path, raters, seed):
    from sklearn.metrics import cohen_kappa_score

    inter_rater = pytest.importorskip("statsmodels.stats.inter_rater")
    files, key_path = export(run_out, tmp_path / "b.csv", "--raters", raters, "--overlap", 16)
    key = json.loads(key_path.read_text())
    rng = np.random.default_rng(seed)
    truth = {i: LABELS[rng.choice(3, p=[0.5, 0.2, 0.3])] for i in key["items"]}
    meant = {}
    for r, f in enumerate(files, 1):  # each rater agrees with the truth some of the time
        noise = rng.uniform(0.1, 0.6)
        meant[r] = {i: (LABELS[rng.integers(3)] if rng.random() < noise else truth[i]) for i in key["items"]}
        rate(f, scripted(key, meant[r]))
    out = tmp_path / "out"
    result = gate("human", "import", *files, "--key", key_path, "--results", run_out, "--out", out,
                  "--min-kappa", "-1")
    assert result.exit_code == 0, result.output
    res, m = human_of(out)
    shared = sorted(key["overlap"])
    if raters == 2:
        expected = cohen_kappa_score([meant[1][i] for i in shared], [meant[2][i] for i in shared])
    else:
        table, _ = inter_rater.aggregate_raters(
            np.array([[LABELS.index(meant[r][i]) for r in meant] for i in shared]), n_cat=3)
        expected = inter_rater.fleiss_kappa(table, method="fleiss")
    assert m["human/agreement_kappa"]["candidate"] == pytest.approx(expected, abs=1e-12)
    assert m["human/agreement_kappa"]["n"] == 16
    assert res["tasks"]["human"]["human"]["kappa_method"] == ("cohen" if raters == 2 else "fleiss")
    # the preference: per item the mean of its raters' scores, then the mean over items
    score = {"candidate": 1.0, "tie": 0.5, "baseline": 0.0}
    per_item = [np.mean([score[meant[r][i]] for r in meant if i in key["raters"][str(r)]]) for i in key["items"]]
    assert m["human/preference"]["candidate"] == pytest.approx(np.mean(per_item))
    assert f"kappa {expected:.3f} on 16 shared item(s)" in result.stdout


@pytest.mark.parametrize("prefer, code, status", [("candidate", 0, "pass"), ("baseline", 1, "fail")])
def test_the_sixty_percent_rule_applies(run_out, tmp_path, prefer, code, status):
    files, key_path = export(run_out, tmp_path / "b.csv")
    key = json.loads(key_path.read_text())
    items = sorted(key["items"])
    # 2/3 of the items for the preferred side, the rest ties: 0.833 either way
    labels = {i: (prefer if n % 3 else "tie") for n, i in enumerate(items)}
    for f in files:
        rate(f, scripted(key, labels))
    thresholds = tmp_path / "th.json"
    thresholds.write_text(json.dumps({"version": 1, "rules": [
        {"name": "human preference at least 60%", "metric": "human/preference", "min": 0.6},
        {"metric": "banking-tools/pass_rate", "min": 0.9}]}), encoding="utf-8")
    out = tmp_path / "out"
    result = gate("human", "import", *files, "--key", key_path, "--results", run_out, "--out", out,
                  "--thresholds", thresholds)
    assert result.exit_code == code, result.output
    res, m = human_of(out)
    assert res["verdict"] == status
    rule = next(r for r in res["rules"] if r["metric"] == "human/preference")
    assert rule["status"] == status
    assert res["thresholds"] == hashlib.sha256(thresholds.read_bytes()).hexdigest()
    pref = m["human/preference"]
    won = 17 if prefer == "candidate" else 0  # 17 items for the preferred side, 9 ties
    assert pref["candidate"] == pytest.approx((won + 0.5 * 9) / 26)
    lo, hi = pref["candidate_ci"]
    assert lo <= pref["candidate"] <= hi and pref["p_value"] < 0.001


def test_one_rater_needs_no_agreement(run_out, tmp_path):
    files, key_path = export(run_out, tmp_path / "b.csv", "--raters", "1")
    rate(files[0], blind)
    result = gate("human", "import", files[0], "--key", key_path, "--results", run_out, "--out", tmp_path / "o")
    assert result.exit_code == 2
    assert (f"{files[0]}: Cohen's/Fleiss' kappa needs at least 2 raters; got 1 (rater 1) "
            "(pass --no-agreement to import one rater's ratings)") in result.stderr
    result = gate("human", "import", files[0], "--key", key_path, "--results", run_out, "--out", tmp_path / "o",
                  "--no-agreement")
    assert result.exit_code == 0, result.output
    res, m = human_of(tmp_path / "o")
    assert "human/agreement_kappa" not in m and res["tasks"]["human"]["human"]["kappa"] is None
    # the blind rater prefers every real answer: 18 tool cases and 8 intents, never a tie
    assert m["human/preference"]["candidate"] == 1.0
    assert m["human/preference"]["test"] == "mcnemar-exact"


def test_low_agreement_is_flagged_but_does_not_decide(run_out, tmp_path):
    files, key_path = export(run_out, tmp_path / "b.csv")
    rng = np.random.default_rng(11)
    for f in files:
        rate(f, lambda row: str(rng.choice(["A", "B", "TIE"])))
    out = tmp_path / "out"
    result = gate("human", "import", *files, "--key", key_path, "--results", run_out, "--out", out)
    assert result.exit_code == 0, result.output
    res, m = human_of(out)
    kappa = m["human/agreement_kappa"]["candidate"]
    assert kappa < 0.4
    assert res["tasks"]["human"]["human"]["low_agreement"] is True
    assert f"gate: warning: low agreement: Cohen's kappa {kappa:.2f} < 0.4 on 20 shared items" in result.stderr
    assert any(n.startswith("low agreement") for n in res["tasks"]["human"]["notes"])
    assert res["verdict"] == "pass"


def test_too_few_items_report_the_ci_as_unavailable(run_out, tmp_path):
    files, key_path = export(run_out, tmp_path / "b.csv", "--items", "6")
    for f in files:
        rate(f, blind)
    out = tmp_path / "out"
    result = gate("human", "import", *files, "--key", key_path, "--results", run_out, "--out", out)
    assert result.exit_code == 0, result.output
    res, m = human_of(out)
    pref = m["human/preference"]
    assert pref["ci"] is None and pref["candidate_ci"] is None
    assert 0 < pref["p_value"] <= 1 and pref["test"] in ("mcnemar-exact", "sign-flip-exact")  # exact at any n
    assert pref["stats_note"] == "6 examples; at least 10 are needed to bootstrap a CI"
    assert "CI unavailable: 6 examples; at least 10 are needed to bootstrap a CI" in result.stdout
    assert "human/preference has no CI: 6 examples; at least 10 are needed to bootstrap a CI" in \
        res["tasks"]["human"]["notes"]


def test_what_spreadsheets_do_to_a_file_is_accepted(run_out, tmp_path):
    """Lower case and padded labels, a BOM, LF or CRLF, minimal quoting, renamed case, reordered, dropped and
    extra columns, multi-line comments, trailing empty rows."""
    files, key_path = export(run_out, tmp_path / "b.csv")
    key = json.loads(key_path.read_text())
    prefer = scripted(key, {i: "candidate" for i in key["items"]})
    for n, f in enumerate(files):
        rows = [{"Rating": {"A": " a ", "B": "b", "TIE": " tie"}[prefer(r)], "item": r["item"], "Batch": r["batch"],
                 "rater": r["rater"], "comment": 'long, with a "quote"\nand a line', "extra": "x",
                 "prompt": r["prompt"]} for r in read_csv(f)]
        rows += [dict.fromkeys(rows[0], "")] * 2
        fields = ["Rating", "item", "Batch", "rater", "comment", "extra"] if n else list(rows[0])
        write_csv(f, rows, fields=fields, bom=True, lineterminator="\n" if n else "\r\n")
    result = gate("human", "import", *files, "--key", key_path, "--results", run_out, "--out", tmp_path / "o")
    assert result.exit_code == 0, result.output
    _, m = human_of(tmp_path / "o")
    assert m["human/preference"]["candidate"] == 1.0


# --- bad input ----------------------------------------------------------------------------------


@pytest.fixture
def rated(run_out, tmp_path):
    """Two raters' files, filled in by the blind rater, and the key."""
    files, key_path = export(run_out, tmp_path / "b.csv")
    for f in files:
        rate(f, blind)
    return files, key_path, json.loads(key_path.read_text())


def line_of(path: Path, row: int) -> int:
    """The file line where spreadsheet row ``row`` starts (a prompt may span lines)."""
    reader = csv.reader(io.StringIO(path.read_text(encoding="utf-8"), newline=""))
    for _ in range(row - 1):
        next(reader)
    return reader.line_num + 1


def edit(path: Path, change) -> None:
    rows = read_csv(path)
    change(rows)
    write_csv(path, rows)


def import_rated(run_out, files, key_path, tmp_path, *extra):
    return gate("human", "import", *files, "--key", key_path, "--results", run_out, "--out", tmp_path / "o", *extra)


@pytest.mark.parametrize("change, row, message", [
    (lambda rows, key: rows[2].update(item="h9999"), 4, "unknown item id 'h9999': it is not in batch"),
    (lambda rows, key: rows[1].update(rating=""), 3, "missing rating: expected one of A, B, TIE"),
    (lambda rows, key: rows[0].update(rating="C"), 2, "rating 'C' is outside the scale: expected one of A, B, TIE"),
    (lambda rows, key: rows[3].update(rating="candidate"), 5, "rating 'candidate' is outside the scale"),
    (lambda rows, key: rows[4].update(rater="7"), 6, "unknown rater '7': the batch has raters 1, 2"),
    (lambda rows, key: rows[5].update(batch="0123456789ab"), 7,
     "batch '0123456789ab' is not the key's batch"),
    (lambda rows, key: rows[6].update(item=next(i for i in key["raters"]["2"] if i not in key["overlap"])), 8,
     "is not in rater 1's batch (it was given to rater 2)"),
    (lambda rows, key: rows.__setitem__(7, dict(rows[0])), 9, "is rated twice by rater 1 (first on line"),
])
def test_bad_rows_name_the_file_and_the_row(run_out, tmp_path, rated, change, row, message):
    files, key_path, key = rated
    edit(files[0], lambda rows: change(rows, key))
    result = import_rated(run_out, files, key_path, tmp_path)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert f"gate: {files[0]}:{line_of(files[0], row)}: row {row}" in result.stderr
    assert message in result.stderr


def test_every_problem_of_a_file_is_listed(run_out, tmp_path, rated):
    files, key_path, _ = rated
    edit(files[1], lambda rows: [rows[0].update(rating="maybe"), rows[3].update(rating="")])
    result = import_rated(run_out, files, key_path, tmp_path)
    assert result.exit_code == 2
    assert f"{files[1]}:2: row 2" in result.stderr
    assert f"{files[1]}:{line_of(files[1], 5)}: row 5" in result.stderr
    assert "gate: 2 problems found" in result.stderr


def test_a_row_in_a_multi_line_file_is_found_by_line_and_row(run_out, tmp_path, rated):
    files, key_path, _ = rated
    def change(rows):
        for r in rows:
            r["prompt"] = "first line\nsecond line"
        rows[2]["rating"] = "?"
    edit(files[0], change)
    result = import_rated(run_out, files, key_path, tmp_path)
    assert result.exit_code == 2
    assert f"{files[0]}:6: row 4" in result.stderr  # header 1 line, then 2 lines per row


def test_a_missing_row_names_the_file(run_out, tmp_path, rated):
    files, key_path, key = rated
    gone = read_csv(files[1])[4]["item"]
    edit(files[1], lambda rows: rows.pop(4))
    result = import_rated(run_out, files, key_path, tmp_path)
    assert result.exit_code == 2
    assert f"{files[1]}: rater 2 did not rate 1 of their 23 items (rows missing: {gone})" in result.stderr


def test_a_header_without_the_rating_column(run_out, tmp_path, rated):
    files, key_path, _ = rated
    rows = read_csv(files[0])
    write_csv(files[0], rows, fields=["batch", "rater", "item", "prompt", "answer_a", "answer_b", "comment"])
    result = import_rated(run_out, files, key_path, tmp_path)
    assert result.exit_code == 2
    assert f"{files[0]}:1: the header lacks the column(s) rating" in result.stderr


def test_a_key_of_another_export_is_a_mismatched_key(run_out, tmp_path, rated):
    files, _, _ = rated
    _, other_key = export(run_out, tmp_path / "other.csv", "--seed", "5")
    result = import_rated(run_out, files, other_key, tmp_path)
    assert result.exit_code == 2
    assert f"{files[0]}:2: row 2" in result.stderr and "(mismatched key)" in result.stderr


def test_a_key_edited_by_hand_is_refused(run_out, tmp_path, rated):
    files, key_path, key = rated
    edited = json.loads(key_path.read_text())
    first = sorted(edited["items"])[0]
    edited["items"][first]["a"] = "baseline" if edited["items"][first]["a"] == "candidate" else "candidate"
    tampered = tmp_path / "tampered.key.json"
    tampered.write_text(json.dumps(edited), encoding="utf-8")
    result = import_rated(run_out, files, tampered, tmp_path)
    assert result.exit_code == 2
    assert f"{tampered}" in result.stderr and "does not match its batch id" in result.stderr


def test_the_key_must_come_from_these_results(run_out, tmp_path, rated):
    files, key_path, key = rated
    data = json.loads(run_out.read_text())
    data["reason"] = "edited"
    run_out.write_text(json.dumps(data), encoding="utf-8")
    result = import_rated(run_out, files, key_path, tmp_path)
    assert result.exit_code == 2
    assert f"{run_out}: the key was made from another results file" in result.stderr


def test_results_that_already_hold_ratings_are_refused(run_out, tmp_path, rated):
    files, key_path, key = rated
    assert import_rated(run_out, files, key_path, tmp_path).exit_code == 0
    result = gate("human", "import", *files, "--key", key_path, "--results", tmp_path / "o" / "results.json",
                  "--out", tmp_path / "o2")
    assert result.exit_code == 2
    assert f"already have a task 'human' (human ratings of batch {key['batch']})" in result.stderr


@pytest.mark.parametrize("name, what", [("suite.yaml", "a suite file"), ("thresholds.json", "a thresholds file"),
                                        ("report.md", "a report (report.md)")])
def test_a_gate_file_that_is_not_results_is_named_for_what_it_is(run_out, tmp_path, rated, name, what):
    files, key_path, _ = rated
    wrong = tmp_path / name
    wrong.write_text({"suite.yaml": "version: 1\nname: s\ntasks: []\n",
                      "thresholds.json": '{"version": 1, "rules": []}',
                      "report.md": '<!-- gate-report suite="s" -->\n## x: y\n'}[name], encoding="utf-8")
    message = f"gate: {wrong}: this is {what}, expected a results.json (written by `gate run`, e.g. " \
              "gate-out/results.json)"
    exported = gate("human", "export", wrong, "--out", tmp_path / "b2.csv")
    assert exported.exit_code == 2 and exported.stderr.splitlines() == [message]
    imported = gate("human", "import", *files, "--key", key_path, "--results", wrong, "--out", tmp_path / "o")
    assert imported.exit_code == 2 and imported.stderr.splitlines() == [message]


def test_agreement_needs_shared_items(run_out, tmp_path):
    files, key_path = export(run_out, tmp_path / "b.csv", "--overlap", "0")
    for f in files:
        rate(f, blind)
    result = import_rated(run_out, files, key_path, tmp_path)
    assert result.exit_code == 2
    assert f"{key_path}: kappa needs items rated by every rater; raters 1, 2 share 0" in result.stderr
    assert import_rated(run_out, files, key_path, tmp_path, "--no-agreement").exit_code == 0


def test_not_a_key_and_not_utf8(run_out, tmp_path, rated):
    files, key_path, _ = rated
    bogus = tmp_path / "bogus.json"
    bogus.write_text('{"format": "something"}', encoding="utf-8")
    result = import_rated(run_out, files, bogus, tmp_path)
    assert result.exit_code == 2 and f"{bogus}:1:2 (/format): not a gate human-evaluation key" in result.stderr
    files[0].write_bytes(files[0].read_text(encoding="utf-8").encode("cp1252", errors="replace") + b"\xff")
    result = import_rated(run_out, files, key_path, tmp_path)
    assert result.exit_code == 2 and f"{files[0]}: not UTF-8 text" in result.stderr


# --- end to end: a real run, exported, rated blind, imported --------------------------------------


@pytest.fixture(scope="module")
def real_run(tmp_path_factory):
    """`gate run` of examples/tool-calling against the local OpenAI-compatible server: a tuned model
    that answers as the cases expect, a base model that mostly does not."""
    try:
        from tests.openai_server import OpenAIServer
    except ImportError:  # run as `pytest`, not `python -m pytest`
        from openai_server import OpenAIServer

    out = tmp_path_factory.mktemp("human-e2e") / "run"
    rules = []
    for c in read_jsonl(EXAMPLE / "data" / "banking-tools.jsonl"):
        call = c["expected_tool_call"]
        rules += [(last_user(c), "tuned", {"tool_calls": [call]} if call else {"text": REFUSAL}),
                  (last_user(c), "base", {"text": BASE_TOOL})]
    for i, c in enumerate(read_jsonl(EXAMPLE / "data" / "intent-json.jsonl")):
        right = {"text": json.dumps({"intent": c["label"]})}
        rules += [(last_user(c), "tuned", right),
                  (last_user(c), "base", right if i % 2 == 0 else {"text": f"The intent is {c['label']}."})]
    for i, c in enumerate(read_jsonl(EXAMPLE / "data" / "general-intent.jsonl")):
        rules += [(last_user(c), "tuned", {"text": c["expected"]}),
                  (last_user(c), "base", {"text": c["expected"]} if i < 6 else {"text": BASE_INTENT})]
    with OpenAIServer(api_key="k") as srv, pytest.MonkeyPatch.context() as mp:
        mp.setenv("OPENAI_API_KEY", "k")
        mp.setenv("OPENAI_BASE_URL", srv.base_url)
        for match, model, answer in sorted(rules, key=lambda r: -len(r[0])):
            srv.answer(answer.get("text"), match=match, model=model, tool_calls=answer.get("tool_calls"))
        result = gate("run", EXAMPLE / "suite.openai.yaml", "--baseline", "openai:base", "--candidate",
                      "openai:tuned", "--out", out, "-q")
    assert result.exit_code == 0, result.output
    return out


def test_end_to_end_on_a_real_run(real_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(real_run, run)
    files, key_path = export(run / "results.json", tmp_path / "ratings" / "batch.csv", "--raters", "3",
                             "--overlap", "12")
    for f in files:
        rate(f, blind)
    # the go/no-go checklist, less its latency rule: a local server's latency ratio is scheduling noise
    checklist = json.loads((ROOT / "thresholds.example.json").read_text(encoding="utf-8"))
    checklist["rules"] = [r for r in checklist["rules"] if "latency" not in r["metric"]]
    thresholds = tmp_path / "checklist.json"
    thresholds.write_text(json.dumps(checklist), encoding="utf-8")
    out = tmp_path / "out"
    result = gate("human", "import", *files, "--key", key_path, "--results", run / "results.json", "--out", out,
                  "--thresholds", thresholds)
    assert result.exit_code == 0, result.output
    res, m = human_of(out)
    # what the blind raters should find, from the examples alone: a different answer wins, an equal one ties
    rows = [r for r in read_jsonl(run / "examples.jsonl")]
    expected = np.mean([0.5 if r["baseline"]["answer"] == r["candidate"]["answer"]
                        and not r["candidate"].get("tool_calls") else 1.0 for r in rows])
    assert len(rows) == 34 and m["human/preference"]["n"] == 34
    assert m["human/preference"]["candidate"] == pytest.approx(expected)
    assert expected == pytest.approx((24 + 0.5 * 10) / 34)
    assert m["human/agreement_kappa"]["candidate"] == 1.0  # identical blind raters
    assert res["tasks"]["human"]["human"]["kappa_method"] == "fleiss"
    rule = next(r for r in res["rules"] if r["metric"] == "human/preference")
    assert rule["status"] == "pass" and res["verdict"] == "pass"
    assert m["human/preference"]["candidate_ci"][0] > 0.6


def test_a_rater_who_never_returned_is_noted_and_the_rest_still_count(run_out, tmp_path):
    files, key_path = export(run_out, tmp_path / "b.csv", "--raters", "3", "--overlap", "8")
    for f in files[:2]:
        rate(f, blind)
    result = import_rated(run_out, files[:2], key_path, tmp_path)
    assert result.exit_code == 0, result.output
    res, m = human_of(tmp_path / "o")
    key = json.loads(key_path.read_text())
    assert m["human/preference"]["n"] == len(set(key["raters"]["1"]) | set(key["raters"]["2"])) == 8 + 2 * 6
    assert res["tasks"]["human"]["human"]["kappa_method"] == "cohen"  # the two raters who answered
    assert "no ratings from rater(s) 3 of the batch" in " ".join(res["tasks"]["human"]["notes"])


def test_the_same_ratings_twice_are_refused(run_out, tmp_path, rated):
    files, key_path, _ = rated
    copy = tmp_path / "copy.csv"
    shutil.copyfile(files[0], copy)
    result = import_rated(run_out, [*files, copy], key_path, tmp_path)
    assert result.exit_code == 2
    assert f"{copy}:2: item" in result.stderr and f"is rated twice by rater 1 (also at {files[0]}:2)" in result.stderr


def test_by_default_the_run_is_kept_and_a_corrected_file_can_be_imported_again(run_out, tmp_path):
    files, key_path = export(run_out, tmp_path / "b.csv")
    key = json.loads(key_path.read_text())
    before = run_out.read_bytes()
    for f in files:
        rate(f, scripted(key, {i: "tie" for i in key["items"]}))
    assert gate("human", "import", *files, "--key", key_path, "--results", run_out).exit_code == 0
    assert run_out.read_bytes() == before
    _, m = human_of(run_out.parent / "human")
    assert m["human/preference"]["candidate"] == 0.5 and m["human/tie_rate"]["candidate"] == 1.0
    rate(files[1], scripted(key, {i: "candidate" for i in key["items"]}))  # rater 2 corrects the file
    assert gate("human", "import", *files, "--key", key_path, "--results", run_out).exit_code == 0
    _, m = human_of(run_out.parent / "human")
    assert 0.5 < m["human/preference"]["candidate"] < 1.0
