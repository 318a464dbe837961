"""Reading a retrieval task: the corpus is read row by row, and every bad row is still named by file and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from gate.errors import BadInput
from gate.tasks.retrieval import RetrievalTask
from tests.conftest import task_spec, write_jsonl

QUERIES = [{"id": "q1", "text": "heat"}, {"id": "q2", "text": "wing"}]
CORPUS = [{"id": "d1", "text": "heat flow", "title": "Heat"}, {"id": "d2", "text": "wing shock"},
          {"id": 3, "text": "noise"}]
QRELS = [{"query_id": "q1", "doc_id": "d1", "relevance": 2}, {"query_id": "q2", "doc_id": "3", "relevance": 1}]


def load(tmp_path, corpus=CORPUS, qrels=QRELS):
    write_jsonl(tmp_path / "q.jsonl", QUERIES)
    write_jsonl(tmp_path / "c.jsonl", corpus)
    write_jsonl(tmp_path / "r.jsonl", qrels)
    return RetrievalTask.load(task_spec(tmp_path, "retrieval", "ir", queries="q.jsonl", corpus="c.jsonl",
                                        qrels="r.jsonl", k=[1, 2]))


def test_the_corpus_keeps_ids_and_texts_in_file_order(tmp_path):
    task = load(tmp_path)
    assert task.doc_ids == ["d1", "d2", "3"]
    assert task.docs == ["Heat heat flow", "wing shock", "noise"]  # a title is prepended
    assert task.d_idx.tolist() == [0, 2] and task.rel.tolist() == [2, 1]
    assert len(task.data.data_sha256["corpus"]) == 64
    assert task.data.notes == []


def error(tmp_path, **files) -> BadInput:
    with pytest.raises(BadInput) as caught:
        load(tmp_path, **files)
    return caught.value


def test_a_duplicate_document_id_names_its_line(tmp_path):
    err = error(tmp_path, corpus=CORPUS + [{"id": "d2", "text": "again"}])
    assert (Path(err.where).name, err.location) == ("c.jsonl", "4")
    assert "duplicate document id 'd2'" in str(err)


def test_a_bad_corpus_row_names_its_line(tmp_path):
    err = error(tmp_path, corpus=CORPUS[:1] + [{"id": "d2", "text": ""}])
    assert (Path(err.where).name, err.location) == ("c.jsonl", "2")
    assert "field 'text'" in str(err) and "non-empty" in str(err)


def test_an_empty_corpus_is_bad_input(tmp_path):
    err = error(tmp_path, corpus=[])
    assert Path(err.where).name == "c.jsonl" and "corpus file has no rows" in str(err)


def test_a_judgement_of_an_unknown_document_names_the_corpus(tmp_path):
    err = error(tmp_path, qrels=QRELS + [{"query_id": "q1", "doc_id": "d9", "relevance": 1}])
    assert (Path(err.where).name, err.location) == ("r.jsonl", "3")
    assert "doc_id 'd9' is not an id in c.jsonl" in str(err)
