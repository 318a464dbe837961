"""Build the data of the classification example from BANKING77.

Documentation of how ``data/*.jsonl`` were made; the built files are committed, so nothing
runs this at run time. It is deterministic: the same input gives the same bytes (the tests
check that the committed files reproduce).

    python examples/classification/build_data.py [--source DIR] [--out DIR]

``DIR`` holds BANKING77's ``train.jsonl``, ``test.jsonl`` and ``labels.json`` (default: the
verbatim copy committed in examples/tool-calling/source/banking77, byte for byte the same as
the project's shared copy). Rows are copied unchanged, ``{"text", "label"}``, in file order.

* ``intent-train.jsonl``: for each of the 77 labels, its first 20 rows of train.jsonl
  (1540 rows): the probe's training split.
* ``intent-test.jsonl``: for each of the 77 labels, its first 10 rows of test.jsonl
  (770 rows): the examples the classification task scores.
* ``clusters.jsonl``: for each of the first 10 labels of labels.json, its first 20 rows of
  test.jsonl (200 rows): the clustering task. These 10 intents include near neighbours
  (card_arrival / card_delivery_estimate, exchange_rate / card_payment_wrong_exchange_rate),
  so the clusters are not trivially separable.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_SOURCE = HERE.parent / "tool-calling" / "source" / "banking77"
TRAIN_PER_LABEL = 20
TEST_PER_LABEL = 10
CLUSTER_LABELS = 10
CLUSTER_PER_LABEL = 20


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def first_per_label(rows: list[dict], per_label: int, labels: list[str] | None = None) -> list[dict]:
    """The first ``per_label`` rows of each label (of ``labels``, when given), in file order."""
    keep = set(labels) if labels is not None else None
    taken: dict[str, int] = {}
    out = []
    for row in rows:
        label = row["label"]
        if keep is not None and label not in keep:
            continue
        if taken.get(label, 0) < per_label:
            taken[label] = taken.get(label, 0) + 1
            out.append({"text": row["text"], "label": label})
    return out


def build(source: Path) -> dict[str, list[dict]]:
    labels = json.loads((source / "labels.json").read_text(encoding="utf-8"))
    train, test = read_jsonl(source / "train.jsonl"), read_jsonl(source / "test.jsonl")
    files = {
        "intent-train.jsonl": first_per_label(train, TRAIN_PER_LABEL),
        "intent-test.jsonl": first_per_label(test, TEST_PER_LABEL),
        "clusters.jsonl": first_per_label(test, CLUSTER_PER_LABEL, labels[:CLUSTER_LABELS]),
    }
    expected = {"intent-train.jsonl": (len(labels), TRAIN_PER_LABEL),
                "intent-test.jsonl": (len(labels), TEST_PER_LABEL),
                "clusters.jsonl": (CLUSTER_LABELS, CLUSTER_PER_LABEL)}
    for name, (n_labels, per_label) in expected.items():
        if len(files[name]) != n_labels * per_label:
            raise SystemExit(f"{name}: {len(files[name])} rows, expected {n_labels} labels x {per_label}")
    return files


def dumps(rows: list[dict]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE)
    parser.add_argument("--out", type=Path, default=HERE / "data")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for name, rows in build(args.source).items():
        (args.out / name).write_text(dumps(rows), encoding="utf-8")
        print(f"{args.out / name}: {len(rows)} rows")


if __name__ == "__main__":
    main()
