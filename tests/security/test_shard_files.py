"""Edited shard files: ``gate merge`` must not trust what a pull request can put in a shard folder.

In CI the folders of ``gate run --shard I/N`` travel between jobs as artifacts, and the pull request's
own workflow writes them. A real shard run (the embedded model on a few STS-B dev rows, as an STS and a
retrieval task; the candidate reads only 8 tokens, so examples change and their extras are shown) is
edited here the way an attacker would:

- a value its schema does not allow (text where a number belongs, a key the writer never writes, text
  in a name) is bad input: exit 2 naming the file, line:column and JSON pointer, nothing written;
- text in a field the schemas leave free (errors, notes, model specs, answers, document ids) reaches
  the report inert: no HTML element, no heading, no mention, no extra ``</details>``;
- the renderer itself neutralizes what it prints without a filter (a task's n, a model's role, a
  rule's status, the verdict, the resample count): ``gate merge`` renders results built from shard
  files without the results schema's check.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner

from gate.cli import cli
from gate.documents import pointer_of
from gate.report import render
from tests.conftest import ROOT, read_jsonl, write_jsonl
from tests.integration.test_report_render import (assert_details_well_formed, assert_tables_well_formed, parse,
                                                  prose)
from tests.unit.test_report import HOSTILE, WJ, make_results

ONE_LINE = " ".join(HOSTILE.split())  # for fields whose schema wants one line (a model spec, a fingerprint)
KEY = ONE_LINE.replace("/", "")  # a hostile key ("/" would be escaped in the JSON pointer that names it)
TEMPLATE_HEADINGS = ("Errors", "Rules", "Metrics", "Biggest changes")


def gate(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def shards(tmp_path_factory, embedding_cache_dir) -> Path:
    """``s1`` and ``s2``: the two shards of a tiny suite, and ``clean``: their merge, unedited."""
    root = tmp_path_factory.mktemp("shard-files")
    rows = read_jsonl(ROOT / "tests" / "data" / "stsb-dev-400.jsonl")[:24]
    write_jsonl(root / "sts.jsonl", rows)
    write_jsonl(root / "q.jsonl", [{"id": i, "text": r["sentence1"]} for i, r in enumerate(rows)])
    write_jsonl(root / "c.jsonl", [{"id": f"doc-{i}", "text": r["sentence2"]} for i, r in enumerate(rows)])
    write_jsonl(root / "r.jsonl", [{"query_id": i, "doc_id": f"doc-{i}", "relevance": 1} for i in range(len(rows))])
    default = {"provider": "sentence-transformers", "model": "default"}
    (root / "suite.json").write_text(json.dumps({
        "version": 1, "name": "tiny", "models": {"baseline": default, "candidate": {**default, "max_seq_length": 8}},
        "tasks": [{"name": "sts", "type": "sts", "group": "general", "data": "sts.jsonl"},
                  {"name": "para", "type": "retrieval", "group": "target", "queries": "q.jsonl",
                   "corpus": "c.jsonl", "qrels": "r.jsonl", "k": [3]}]}), encoding="utf-8")
    for i in (1, 2):
        result = gate("run", root / "suite.json", "--out", root / f"s{i}", "--shard", f"{i}/2",
                      "--cache", embedding_cache_dir, "-q")
        assert result.exit_code == 0, result.output
    merged = gate("merge", root / "s1", root / "s2", "--out", root / "clean", "-q", "--suite", root / "suite.json")
    assert merged.exit_code == 0, merged.output
    return root


def set_at(doc, path: tuple, value) -> None:
    """Put ``value`` at ``path`` (keys and indices) of a parsed JSON document."""
    for key in path[:-1]:
        doc = doc[key]
    doc[path[-1]] = value


def copies(shards: Path, tmp_path: Path) -> Path:
    """Copies of the two shards (``s1``, ``s2``) in ``tmp_path``, to edit."""
    for i in (1, 2):
        shutil.copytree(shards / f"s{i}", tmp_path / f"s{i}")
    return tmp_path


def edit(file: Path, path: tuple, value) -> None:
    """``value`` at ``path`` of ``file`` (shard.json or extras.json), written as the shard writer writes it."""
    doc = json.loads(file.read_text(encoding="utf-8"))
    set_at(doc, path, copy.deepcopy(value))
    text = json.dumps(doc, indent=2, ensure_ascii=False) + "\n" if file.name == "shard.json" else \
        json.dumps(doc, ensure_ascii=False)
    file.write_text(text, encoding="utf-8")


def edited(shards: Path, tmp_path: Path, name: str, path: tuple, value) -> Path:
    """Copies of the two shards with ``value`` at ``path`` of the first one's ``name``."""
    folder = copies(shards, tmp_path)
    edit(folder / "s1" / name, path, value)
    return folder


def merge(folder: Path):
    """``gate merge`` of the (edited) copies, with the suite file given as a trusted workflow gives it."""
    suite = json.loads((folder / "s2" / "shard.json").read_text(encoding="utf-8"))["suite_file"]  # s2 is unedited
    return gate("merge", folder / "s1", folder / "s2", "--out", folder / "out", "-q", "--suite", suite)


def assert_located(output: str, file: Path, pointer: str, shown: str) -> None:
    """The output names ``file``:line:column (pointer), and that line:column is where ``shown`` (the edited key
    or value, as the file spells it) starts."""
    match = re.search(re.escape(str(file)) + r":(\d+):(\d+) \((.*?)\): ", output)
    assert match, output
    line, column = int(match.group(1)), int(match.group(2))
    assert match.group(3) == pointer, output
    assert file.read_text(encoding="utf-8").splitlines()[line - 1][column - 1:].startswith(shown), output


# --------------------------------------------------------------------------- what the schemas refuse

REFUSED = [
    # the reported one: a task's info overrode the n that results.json and the report's task table show
    ("shard.json", ("tasks", "sts", "info", "n"), HOSTILE, None),
    ("shard.json", ("tasks", "sts", "info", "group"), HOSTILE, None),
    ("shard.json", ("tasks", "sts", "info", "notes"), [HOSTILE], None),
    ("shard.json", ("models", KEY), {"spec": "sentence-transformers:default", "fingerprint": None}, None),
    ("shard.json", ("tasks", "sts", "n"), "24", None),
    ("shard.json", ("tasks", "sts", "rows", 0), HOSTILE, None),
    ("shard.json", ("resamples",), "2000", None),
    ("shard.json", ("seed",), HOSTILE, None),
    ("shard.json", ("shard", 0), "1", None),
    ("shard.json", ("tasks", "sts", "roles", "baseline"), "true", None),
    ("shard.json", ("tasks", "sts", "notes"), [{"text": HOSTILE}], ("tasks", "sts", "notes", 0)),
    ("shard.json", ("errors",), [3], ("errors", 0)),
    ("shard.json", ("models", "baseline", "spec"), HOSTILE, None),
    ("shard.json", ("models", "candidate", "fingerprint"), HOSTILE, None),
    ("shard.json", ("tasks", "sts", "data_sha256", "data"), HOSTILE, None),
    ("shard.json", ("suite_sha256",), HOSTILE, None),
    ("shard.json", ("gate_version",), HOSTILE, None),
    ("shard.json", ("tasks", "sts", "setup", "baseline", "variant"), HOSTILE, None),
    ("shard.json", ("tasks", "sts", "setup", "candidate", "loaded"), "yes", None),
    ("shard.json", ("tasks", "sts", "info", "usage"), {"baseline": {"requests": HOSTILE}},
     ("tasks", "sts", "info", "usage", "baseline", "requests")),
    ("shard.json", ("tasks", "sts", "info", "generation"), {"scorers": [HOSTILE]},
     ("tasks", "sts", "info", "generation", "scorers", 0)),
    ("shard.json", ("tasks", "sts", "report"), HOSTILE, None),
    ("shard.json", ("format",), HOSTILE, None),
    ("extras.json", ("para", "baseline", 0, "top", 0), 7, None),
    ("extras.json", ("para", "baseline", 0, "ndcg@3"), HOSTILE, None),  # would replace the example's score
    ("extras.json", ("para", "candidate", 1, "passed"), "true", None),
    ("extras.json", ("para", "candidate", 1, "outcome"), HOSTILE, None),
    ("extras.json", ("para", "candidate", 1, "perplexity"), "12.5", None),
    ("extras.json", ("para", KEY), [], None),
    ("extras.json", ("sts", "baseline"), HOSTILE, None),
    ("extras.json", ("para",), [HOSTILE], None),
]


def _shown(path: tuple, value) -> str:
    """How the file spells the start of what the error must point at: the key, or the value in a list."""
    if not isinstance(path[-1], int):
        return json.dumps(path[-1], ensure_ascii=False)
    return json.dumps(value, ensure_ascii=False)[:1 if isinstance(value, (dict, list)) else 10]


def _value_at(value, path: tuple, where: tuple):
    """The part of ``value`` (written at ``path``) that lies at ``where``."""
    for key in where[len(path):]:
        value = value[key]
    return value


@pytest.mark.model
@pytest.mark.parametrize("name, path, value, where", REFUSED,
                         ids=[f"{n}:{'/'.join(str(p)[:12] for p in path)}" for n, path, _, _ in REFUSED])
def test_a_value_the_schema_refuses_is_bad_input_at_its_line_and_column(shards, tmp_path, name, path, value, where):
    folder = edited(shards, tmp_path, name, path, value)
    result = merge(folder)
    assert result.exit_code == 2, result.output
    where = where or path
    assert_located(result.output, folder / "s1" / name, pointer_of(where), _shown(where, _value_at(value, path, where)))
    assert "Traceback" not in result.output and not (folder / "out").exists()


@pytest.mark.model
def test_a_repeated_key_in_extras_is_bad_input_at_its_line(shards, tmp_path):
    """JSON parsers keep the last of two equal keys: a forged second "para" would replace the real one."""
    extras = copies(shards, tmp_path) / "s1" / "extras.json"
    extras.write_text(extras.read_text(encoding="utf-8")[:-1] + ', "para": {}}', encoding="utf-8")
    result = merge(tmp_path)
    assert result.exit_code == 2 and re.search(re.escape(str(extras)) + r":1:\d+: invalid JSON: duplicate key 'para'",
                                               result.output), result.output


@pytest.mark.model
def test_extras_that_do_not_match_the_shards_rows_are_bad_input(shards, tmp_path):
    """One entry too few would show each example with its neighbour's documents, then fail writing the last."""
    original = json.loads((shards / "s1" / "extras.json").read_text(encoding="utf-8"))
    folder = edited(shards, tmp_path, "extras.json", ("para", "candidate"), original["para"]["candidate"][:-1])
    result = merge(folder)
    assert result.exit_code == 2, result.output
    assert_located(result.output, folder / "s1" / "extras.json", "/para/candidate", '"candidate"')
    assert "11 examples' extras, but shard.json says this shard scored the task's rows 0-12 (12 examples)" \
        in result.output and not (folder / "out").exists()


# --------------------------------------------------------------------------- what reaches the report inert


def assert_inert(report: str, clean: str) -> None:
    """``report`` (a merge of edited shards) renders with no element, heading, mention or section break that
    the template did not write: compared with ``clean``, the merge of the same shards unedited."""
    tree, reference = parse(report), parse(clean)
    assert_tables_well_formed(tree)
    assert len(assert_details_well_formed(tree)) == len(assert_details_well_formed(reference))
    assert not {"img", "script", "h1", "h4", "h5", "h6"} & set(tree.tags)
    assert Counter(tree.tags)["!--"] == 1  # the sticky comment's marker only
    headings = [h.text() for tag in ("h2", "h3") for h in tree.root.elements(tag)]
    assert [h for h in headings if h not in TEMPLATE_HEADINGS and "gate: " not in h] == [], headings
    text = prose(tree.root)
    assert "@octocat" not in text and "#12" not in text and f"@{WJ}octocat" in text
    outside_code = re.sub(r"(`+)(?!`).*?(?<!`)\1(?!`)", "CODE", report)  # what is left is Markdown text
    assert "<img" not in outside_code and "<script" not in outside_code
    assert outside_code.count("</details>") == clean.count("</details>")
    assert not [line for line in outside_code.splitlines() if line.startswith("#")
                and line.lstrip("# ") not in TEMPLATE_HEADINGS and " gate: " not in line]


FREE_TEXT = [  # (path, value): a place of shard.json the schema leaves free text
    (("errors",), [HOSTILE]),
    (("tasks", "sts", "notes"), [HOSTILE]),
    (("tasks", "para", "notes"), [HOSTILE, HOSTILE + "!"]),
    (("models", "baseline", "spec"), "sentence-transformers:" + ONE_LINE),
    (("models", "candidate", "fingerprint"), ONE_LINE),
]


EXTRAS = {"answer": HOSTILE, "predicted": HOSTILE, "top": [ONE_LINE, HOSTILE],  # every free text of extras.json
          "tool_calls": [{"name": HOSTILE, "arguments": {"q": HOSTILE}}]}


@pytest.mark.model
def test_text_the_schemas_leave_free_reaches_the_report_inert(shards, tmp_path):
    """Every free-text field of both files at once; the shards stay consistent, so the merge goes through."""
    folder = copies(shards, tmp_path)
    for i in (1, 2):
        for path, value in FREE_TEXT:
            edit(folder / f"s{i}" / "shard.json", path, value)
        rows = len(json.loads((folder / f"s{i}" / "extras.json").read_text(encoding="utf-8"))["para"]["baseline"])
        for role in ("baseline", "candidate"):
            edit(folder / f"s{i}" / "extras.json", ("para", role), [EXTRAS] * rows)
    result = merge(folder)
    assert result.exit_code == 3, result.output  # a shard's error makes the verdict an error
    report = (folder / "out" / "report.md").read_text(encoding="utf-8")
    assert "answer: &lt;/details&gt;" in report and "top: `" in report  # the edited text did reach the report
    assert_inert(report, (shards / "clean" / "report.md").read_text(encoding="utf-8"))


def test_what_the_renderer_prints_unfiltered_is_neutralized_when_it_is_not_what_the_schema_says():
    """``gate merge`` renders the results it builds without the results schema's check: a task's n, a model's
    role, a rule's status, the verdict and the resample count must not pass raw even if a shard field ever
    brings text there again."""
    clean = make_results()
    forged = make_results(verdict=HOSTILE, stats={"confidence": 0.95, "resamples": HOSTILE, "seed": 0})
    forged["tasks"]["stsb"]["n"] = HOSTILE
    forged["models"][ONE_LINE] = {"spec": "st:x", "fingerprint": None}
    forged["rules"][0]["status"] = HOSTILE
    assert_inert(render(forged), render(clean))
