"""Unit tests for gate.data.read_table (JSON Lines, CSV, TSV)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from gate.data import Column, read_table
from gate.errors import BadInput

STS = [Column("sentence1", "text"), Column("sentence2", "text"), Column("score", "number")]
CORPUS = [Column("id", "id"), Column("text", "text"), Column("title", "optional_text")]
QRELS = [Column("query_id", "id"), Column("doc_id", "id"), Column("relevance", "integer")]


def write_bytes(tmp_path: Path, name: str, data: bytes) -> Path:
    p = tmp_path / name
    p.write_bytes(data)
    return p


def write_text(tmp_path: Path, name: str, text: str) -> Path:
    return write_bytes(tmp_path, name, text.encode("utf-8"))


def jsonl(*rows) -> str:
    """One line per item: dicts are dumped, strings are written verbatim."""
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows)


def bad(path: Path, columns, what: str = "data file") -> str:
    """The BadInput message, with the tmp dir shown as <dir>."""
    with pytest.raises(BadInput) as info:
        read_table(path, columns, what)
    assert info.value.exit_code == 2
    return str(info.value).replace(str(path.parent), "<dir>")


GOOD_STS = {"sentence1": "a cat", "sentence2": "a dog", "score": 3.5}


# =========================================================================== JSON Lines


def test_jsonl_rows_lines_and_types(tmp_path):
    p = write_text(tmp_path, "sts.jsonl", jsonl(GOOD_STS, {"sentence1": "x", "sentence2": "y", "score": 1}))
    t = read_table(p, STS)
    assert len(t) == 2
    assert t.rows == [GOOD_STS, {"sentence1": "x", "sentence2": "y", "score": 1.0}]
    assert isinstance(t.rows[1]["score"], float)
    assert t.lines == [1, 2]
    assert t.path == p


def test_jsonl_extra_fields_ignored(tmp_path):
    p = write_text(tmp_path, "sts.jsonl", jsonl({**GOOD_STS, "source": "mine", "n": 3}))
    assert read_table(p, STS).rows == [GOOD_STS]


def test_jsonl_malformed_line_names_file_and_line(tmp_path):
    p = write_text(tmp_path, "sts.jsonl", jsonl(GOOD_STS, GOOD_STS, '{"sentence1": "a", oops}'))
    msg = bad(p, STS)
    assert msg.startswith("<dir>/sts.jsonl:3: invalid JSON")


def test_jsonl_blank_lines_count_as_physical_lines(tmp_path):
    # line 1 good, 2 empty, 3 spaces only, 4 good, 5 empty, 6 malformed
    text = jsonl(GOOD_STS, "", "   ", GOOD_STS, "", "{not json")
    p = write_text(tmp_path, "sts.jsonl", text)
    assert bad(p, STS).startswith("<dir>/sts.jsonl:6: ")


def test_jsonl_blank_lines_and_row_lines(tmp_path):
    # rows on physical lines 2 and 4
    p = write_text(tmp_path, "sts.jsonl", jsonl("", GOOD_STS, "", GOOD_STS))
    assert read_table(p, STS).lines == [2, 4]


def test_jsonl_crlf_line_endings(tmp_path):
    # line 1 good, line 2 blank, line 3 missing score
    text = json.dumps(GOOD_STS) + "\r\n\r\n" + json.dumps({"sentence1": "a", "sentence2": "b"}) + "\r\n"
    p = write_text(tmp_path, "sts.jsonl", text)
    assert bad(p, STS).startswith("<dir>/sts.jsonl:3: missing 'score'")


def test_jsonl_without_trailing_newline(tmp_path):
    p = write_text(tmp_path, "sts.jsonl", json.dumps(GOOD_STS))
    assert read_table(p, STS).rows == [GOOD_STS]


def test_jsonl_line_separator_inside_string_is_not_a_line_break(tmp_path):
    # json.dumps(..., ensure_ascii=False) writes U+2028 / U+2029 / U+0085 unescaped; they are
    # legal inside a JSON string and are not line breaks in a JSON Lines file ("\n"-separated).
    row = {"sentence1": "first\u2028second", "sentence2": "para\u2029graph", "score": 1.0}
    text = json.dumps(row, ensure_ascii=False) + "\n" + "{broken\n"
    p = write_text(tmp_path, "sts.jsonl", text)
    # The only bad line is physical line 2.
    assert bad(p, STS).startswith("<dir>/sts.jsonl:2: invalid JSON")
    p.write_text(json.dumps(row, ensure_ascii=False) + "\n", encoding="utf-8")
    assert read_table(p, STS).rows == [row]


def test_jsonl_missing_field(tmp_path):
    p = write_text(tmp_path, "sts.jsonl", jsonl(GOOD_STS, {"sentence1": "a", "score": 1}))
    msg = bad(p, STS)
    assert msg == "<dir>/sts.jsonl:2: missing 'sentence2' (expected a non-empty string); the row has: sentence1, score"


def test_jsonl_null_required_field_is_named_null(tmp_path):
    p = write_text(tmp_path, "sts.jsonl", jsonl({**GOOD_STS, "score": None}))
    assert bad(p, STS) == "<dir>/sts.jsonl:1: field 'score': expected a number, got null"


@pytest.mark.parametrize(
    "score, expected",
    [
        ("0.5", "expected a number, got str"),  # a string in JSON is not a number
        (True, "expected a number, got bool"),  # bool is an int subclass in Python
        (False, "expected a number, got bool"),
        ([1], "expected a number, got list"),
    ],
)
def test_jsonl_wrong_type_score(tmp_path, score, expected):
    p = write_text(tmp_path, "sts.jsonl", jsonl(GOOD_STS, {**GOOD_STS, "score": score}))
    assert bad(p, STS) == f"<dir>/sts.jsonl:2: field 'score': {expected}"


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_jsonl_non_finite_number(tmp_path, literal):
    # Python's json accepts these non-standard literals; the reader must reject them.
    line = '{"sentence1": "a", "sentence2": "b", "score": %s}' % literal
    p = write_text(tmp_path, "sts.jsonl", jsonl(line))
    msg = bad(p, STS)
    assert msg.startswith("<dir>/sts.jsonl:1: field 'score': expected a finite number")


def test_jsonl_huge_number_overflowing_to_inf(tmp_path):
    p = write_text(tmp_path, "sts.jsonl", jsonl('{"sentence1": "a", "sentence2": "b", "score": 1e999}'))
    assert "finite" in bad(p, STS)


@pytest.mark.parametrize("text", ["", "\n\n   \n", "\r\n"])
def test_jsonl_empty_file(tmp_path, text):
    p = write_text(tmp_path, "sts.jsonl", text)
    msg = bad(p, STS, what="STS data")
    assert msg == "<dir>/sts.jsonl: STS data has no rows; expected rows with sentence1, sentence2, score"


@pytest.mark.parametrize(
    "line, kind",
    [("[1, 2]", "list"), ('"just a string"', "str"), ("3", "int"), ("null", "NoneType")],
)
def test_jsonl_non_object_line(tmp_path, line, kind):
    p = write_text(tmp_path, "sts.jsonl", jsonl(GOOD_STS, line))
    assert bad(p, STS) == f"<dir>/sts.jsonl:2: expected a JSON object, got {kind}"


def test_jsonl_integer_ids_become_strings(tmp_path):
    p = write_text(tmp_path, "qrels.jsonl", jsonl({"query_id": 1, "doc_id": "d7", "relevance": 2},
                                                  {"query_id": "q2", "doc_id": 70, "relevance": 0}))
    rows = read_table(p, QRELS).rows
    assert rows == [{"query_id": "1", "doc_id": "d7", "relevance": 2},
                    {"query_id": "q2", "doc_id": "70", "relevance": 0}]
    assert all(isinstance(r["relevance"], int) for r in rows)


@pytest.mark.parametrize("bad_id, kind", [(True, "bool"), (1.5, "float"), ({"a": 1}, "dict")])
def test_jsonl_bad_id_type(tmp_path, bad_id, kind):
    p = write_text(tmp_path, "qrels.jsonl", jsonl({"query_id": bad_id, "doc_id": "d", "relevance": 1}))
    assert bad(p, QRELS) == f"<dir>/qrels.jsonl:1: field 'query_id': expected a string or integer id, got {kind}"


def test_jsonl_empty_id(tmp_path):
    p = write_text(tmp_path, "qrels.jsonl", jsonl({"query_id": "", "doc_id": "d", "relevance": 1}))
    assert "non-empty id" in bad(p, QRELS)


def test_jsonl_integer_column(tmp_path):
    # 2.0 is an integer value and is accepted as 2; 1.5 is not
    p = write_text(tmp_path, "qrels.jsonl", jsonl({"query_id": "q", "doc_id": "d", "relevance": 2.0}))
    assert read_table(p, QRELS).rows[0]["relevance"] == 2
    p = write_text(tmp_path, "qrels.jsonl", jsonl({"query_id": "q", "doc_id": "d", "relevance": 1.5}))
    assert bad(p, QRELS) == "<dir>/qrels.jsonl:1: field 'relevance': expected an integer, got 1.5"


def test_jsonl_integer_column_rejects_nan(tmp_path):
    p = write_text(tmp_path, "qrels.jsonl", jsonl('{"query_id": "q", "doc_id": "d", "relevance": NaN}'))
    assert "field 'relevance'" in bad(p, QRELS)


def test_optional_title_missing_or_null_is_empty_string(tmp_path):
    p = write_text(tmp_path, "corpus.jsonl", jsonl({"id": "d1", "text": "body"},
                                                   {"id": "d2", "text": "body", "title": None},
                                                   {"id": "d3", "text": "body", "title": "T"}))
    assert [r["title"] for r in read_table(p, CORPUS).rows] == ["", "", "T"]


def test_optional_title_wrong_type(tmp_path):
    p = write_text(tmp_path, "corpus.jsonl", jsonl({"id": "d1", "text": "body", "title": 5}))
    assert bad(p, CORPUS) == "<dir>/corpus.jsonl:1: field 'title': expected a string, got int"


@pytest.mark.parametrize("value", ["", "   ", "\t\n"])
def test_required_text_must_not_be_blank(tmp_path, value):
    p = write_text(tmp_path, "sts.jsonl", jsonl({**GOOD_STS, "sentence2": value}))
    assert bad(p, STS) == "<dir>/sts.jsonl:1: field 'sentence2': expected a non-empty string"


def test_first_bad_row_is_reported(tmp_path):
    # rows 2 and 3 are both bad; the first one (line 2) is the one reported
    p = write_text(tmp_path, "sts.jsonl", jsonl(GOOD_STS, {**GOOD_STS, "score": "x"}, "{bad"))
    assert bad(p, STS).startswith("<dir>/sts.jsonl:2: ")


def test_missing_file(tmp_path):
    msg = bad(tmp_path / "nope.jsonl", STS, what="queries file")
    assert msg == "<dir>/nope.jsonl: queries file not found"


def test_directory(tmp_path):
    d = tmp_path / "d.jsonl"
    d.mkdir()
    assert "directory" in bad(d, STS)


def test_not_utf8(tmp_path):
    p = write_bytes(tmp_path, "sts.jsonl", b'{"sentence1": "\xff", "sentence2": "b", "score": 1}\n')
    assert "UTF-8" in bad(p, STS)


def test_utf8_bom_is_ignored(tmp_path):
    p = write_bytes(tmp_path, "sts.jsonl", b"\xef\xbb\xbf" + json.dumps(GOOD_STS).encode() + b"\n")
    assert read_table(p, STS).rows == [GOOD_STS]


# =========================================================================== sha256


@pytest.mark.parametrize("name, content", [
    ("sts.jsonl", jsonl(GOOD_STS, "", GOOD_STS).encode()),
    ("sts.csv", b"\xef\xbb\xbfsentence1,sentence2,score\r\na,b,1\r\n"),
])
def test_sha256_is_of_the_file_bytes(tmp_path, name, content):
    p = write_bytes(tmp_path, name, content)
    assert read_table(p, STS).sha256 == hashlib.sha256(content).hexdigest()


def test_sha256_changes_with_content(tmp_path):
    a = read_table(write_text(tmp_path, "a.jsonl", jsonl(GOOD_STS)), STS).sha256
    b = read_table(write_text(tmp_path, "b.jsonl", jsonl(GOOD_STS) + "\n"), STS).sha256
    assert a != b  # same rows, different bytes


# =========================================================================== CSV / TSV


def test_csv_with_header(tmp_path):
    p = write_text(tmp_path, "sts.csv", 'sentence1,sentence2,score\na cat,a dog,3.5\n"x, y",z,1\n')
    t = read_table(p, STS)
    assert t.rows == [GOOD_STS, {"sentence1": "x, y", "sentence2": "z", "score": 1.0}]
    assert t.lines == [2, 3]  # the header is line 1


def test_csv_bad_row_line_counts_header(tmp_path):
    # header = line 1, good row = 2, bad score on line 3
    p = write_text(tmp_path, "sts.csv", "sentence1,sentence2,score\na,b,1\nc,d,high\n")
    assert bad(p, STS) == "<dir>/sts.csv:3: field 'score': expected a number, got 'high'"


def test_csv_blank_line_still_counted(tmp_path):
    # 1 header, 2 row, 3 blank, 4 bad row
    p = write_text(tmp_path, "sts.csv", "sentence1,sentence2,score\na,b,1\n\nc,d,x\n")
    assert bad(p, STS).startswith("<dir>/sts.csv:4: ")


def test_csv_too_many_columns(tmp_path):
    # 1 header (3 columns), 2 good, 3 has four values
    p = write_text(tmp_path, "sts.csv", "sentence1,sentence2,score\na,b,1\nc,d,2,extra\n")
    assert bad(p, STS) == "<dir>/sts.csv:3: more columns than the header's 3"


def test_csv_too_few_columns_is_missing_field(tmp_path):
    p = write_text(tmp_path, "sts.csv", "sentence1,sentence2,score\na,b\n")
    assert bad(p, STS) == "<dir>/sts.csv:2: missing 'score' (expected a number): the row has 2 of the header's 3 columns"


def test_csv_missing_header_column(tmp_path):
    p = write_text(tmp_path, "sts.csv", "sentence1,score\na,1\n")
    assert bad(p, STS).startswith("<dir>/sts.csv:2: missing 'sentence2'")


@pytest.mark.parametrize("value", ["nan", "inf", "-Infinity"])
def test_csv_non_finite(tmp_path, value):
    p = write_text(tmp_path, "sts.csv", f"sentence1,sentence2,score\na,b,{value}\n")
    assert "expected a finite number" in bad(p, STS)


def test_csv_ids_stay_strings(tmp_path):
    p = write_text(tmp_path, "qrels.csv", "query_id,doc_id,relevance\n007,12,1\n")
    assert read_table(p, QRELS).rows == [{"query_id": "007", "doc_id": "12", "relevance": 1}]


def test_csv_integer_column_rejects_fraction(tmp_path):
    p = write_text(tmp_path, "qrels.csv", "query_id,doc_id,relevance\nq,d,1.5\n")
    assert bad(p, QRELS) == "<dir>/qrels.csv:2: field 'relevance': expected an integer, got '1.5'"


def test_csv_empty_optional_title(tmp_path):
    p = write_text(tmp_path, "corpus.csv", "id,text,title\nd1,body,\nd2,body,T\n")
    assert [r["title"] for r in read_table(p, CORPUS).rows] == ["", "T"]


def test_csv_optional_column_absent(tmp_path):
    p = write_text(tmp_path, "corpus.csv", "id,text\nd1,body\n")
    assert read_table(p, CORPUS).rows == [{"id": "d1", "text": "body", "title": ""}]


@pytest.mark.parametrize("text", ["", "sentence1,sentence2,score\n", "sentence1,sentence2,score\n\n\n"])
def test_csv_without_rows(tmp_path, text):
    p = write_text(tmp_path, "sts.csv", text)
    assert "has no rows" in bad(p, STS)


def test_csv_bom_does_not_pollute_first_header(tmp_path):
    p = write_bytes(tmp_path, "sts.csv", b"\xef\xbb\xbfsentence1,sentence2,score\na cat,a dog,3.5\n")
    assert read_table(p, STS).rows == [GOOD_STS]


def test_csv_crlf(tmp_path):
    p = write_text(tmp_path, "sts.csv", "sentence1,sentence2,score\r\na cat,a dog,3.5\r\nc,d,bad\r\n")
    assert bad(p, STS).startswith("<dir>/sts.csv:3: ")


def test_tsv_with_header(tmp_path):
    p = write_text(tmp_path, "sts.tsv", "sentence1\tsentence2\tscore\na cat\ta dog\t3.5\nx, y\tz\t1\n")
    t = read_table(p, STS)
    # commas are plain characters in TSV
    assert t.rows == [GOOD_STS, {"sentence1": "x, y", "sentence2": "z", "score": 1.0}]
    assert t.lines == [2, 3]


def test_tsv_bad_row_line(tmp_path):
    # 1 header, 2 good, 3 blank, 4 bad
    p = write_text(tmp_path, "sts.tsv", "sentence1\tsentence2\tscore\na\tb\t1\n\nc\td\t\n")
    assert bad(p, STS).startswith("<dir>/sts.tsv:4: ")


def test_tsv_too_many_columns(tmp_path):
    p = write_text(tmp_path, "sts.tsv", "sentence1\tsentence2\tscore\na\tb\t1\tz\n")
    assert bad(p, STS) == "<dir>/sts.tsv:2: more columns than the header's 3"


def test_suffix_is_case_insensitive(tmp_path):
    p = write_text(tmp_path, "STS.CSV", "sentence1,sentence2,score\na cat,a dog,3.5\n")
    assert read_table(p, STS).rows == [GOOD_STS]
