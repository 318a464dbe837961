"""Build the probe files of the ``probes`` example from BANKING77 and the STS Benchmark.

Documentation of how ``data/*.jsonl`` were made; the built files are committed, so nothing
runs this at demo time. It is deterministic: the same input gives the same bytes (a test
checks that the committed files reproduce). No row is written by hand: every text is a real
row of the source, copied unchanged, and every row names the line it came from.

    python examples/probes/build_data.py [--source ../shared/data] [--out examples/probes/data]

``--source`` is a folder holding ``banking77/{test.jsonl,labels.json}`` and
``stsb/{dev.jsonl,test.jsonl}`` as converted in the project's shared data (see their SOURCE.md;
every one of them is also in this repository, byte for byte: ``banking77/{test.jsonl,labels.json}`` in
``examples/tool-calling/source/banking77/``, ``stsb/test.jsonl`` in ``examples/demo/data/stsb/`` and
``stsb/dev.jsonl`` in ``examples/probes/source/stsb/``; the tests rebuild from those). Rules, with "in file order"
meaning the order of the source file and ``spaced(rows, k)`` the k rows at positions
``floor(i * len(rows) / k)``, i = 0..k-1 (an even spread over a file that is sorted by genre):

* ``banking77-triplets.jsonl``: for each of the 77 intents, in ``labels.json`` order, 3 triplets
  j = 0, 1, 2: anchor = the intent's test row 2j, positive = its row 2j + 1 (rows counted in file
  order within the intent), negative = row j of the NEXT intent of the same topic group (cyclic, in
  ``labels.json`` order): a near miss, not a random sentence. The group, also the row's ``category``,
  is the first of ``GROUPS`` whose keywords occur in the intent name, else ``other``.
* ``stsb-pairs.jsonl``: STS-B test pairs with score >= 4 are ``similar``, with score <= 1
  ``dissimilar`` (the scale's "mostly equivalent" and "not equivalent, at most on the same topic");
  ``spaced`` 150 of each, written in file order. No category (the converted STS-B keeps no genre).
* ``stsb-positive-pairs.jsonl`` (geometry): every STS-B test pair with score >= 4.5.
* ``stsb-texts.jsonl`` (geometry): ``sentence1`` of ``spaced(test, 500)``, duplicates dropped.
* ``stsb-holdout-train.jsonl``: ``spaced(dev, 200)``; ``stsb-holdout-test.jsonl``: ``spaced(test, 200)``.
  The dev split stands in for data a candidate was tuned on (see ../suite.yaml).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_SOURCE = HERE.parents[1].parent / "shared" / "data"

#: topic groups of BANKING77 intents: (group, keywords); an intent joins the first group with a keyword
#: in its name, else "other"
GROUPS = (
    ("top_up", ("top_up", "topping_up")),
    ("transfer", ("transfer",)),
    ("cash", ("cash", "atm")),
    ("exchange", ("exchange", "currency", "currencies")),
    ("identity", ("verify", "identity", "passcode", "pin", "personal_details")),
    ("card", ("card",)),
)
TRIPLETS_PER_INTENT = 3
SIMILAR_MIN, DISSIMILAR_MAX, POSITIVE_MIN = 4.0, 1.0, 4.5
PAIRS_PER_LABEL = 150
TEXTS = 500
HOLDOUT_ROWS = 200


def read_jsonl(path: Path) -> list[tuple[int, dict]]:
    """(line number, row) for every non-blank line."""
    lines = path.read_text(encoding="utf-8").split("\n")
    return [(i, json.loads(line)) for i, line in enumerate(lines, start=1) if line.strip()]


def spaced(rows: list, k: int) -> list:
    if len(rows) < k:
        raise SystemExit(f"need {k} rows, have {len(rows)}")
    return [rows[i * len(rows) // k] for i in range(k)]


def group_of(intent: str) -> str:
    name = intent.lower()
    return next((group for group, keys in GROUPS if any(k in name for k in keys)), "other")


def banking_triplets(source: Path) -> list[dict]:
    labels = json.loads((source / "banking77" / "labels.json").read_text(encoding="utf-8"))
    by_intent: dict[str, list[tuple[int, str]]] = {label: [] for label in labels}
    for line, row in read_jsonl(source / "banking77" / "test.jsonl"):
        by_intent[row["label"]].append((line, row["text"]))
    members: dict[str, list[str]] = {}
    for label in labels:
        members.setdefault(group_of(label), []).append(label)
    out = []
    for label in labels:
        group = members[group_of(label)]
        other = group[(group.index(label) + 1) % len(group)]
        if other == label:
            raise SystemExit(f"intent {label!r} is alone in its group; no near-miss negative")
        rows, negatives = by_intent[label], by_intent[other]
        for j in range(TRIPLETS_PER_INTENT):
            (la, anchor), (lp, positive), (ln, negative) = rows[2 * j], rows[2 * j + 1], negatives[j]
            out.append({"anchor": anchor, "positive": positive, "negative": negative, "category": group_of(label),
                        "intent": label, "negative_intent": other,
                        "source": f"banking77/test.jsonl:{la},{lp},{ln}"})
    return out


def stsb_pairs(test: list[tuple[int, dict]]) -> list[dict]:
    similar = spaced([(i, r) for i, r in test if r["score"] >= SIMILAR_MIN], PAIRS_PER_LABEL)
    dissimilar = spaced([(i, r) for i, r in test if r["score"] <= DISSIMILAR_MAX], PAIRS_PER_LABEL)
    chosen = sorted([(i, r, "similar") for i, r in similar] + [(i, r, "dissimilar") for i, r in dissimilar],
                    key=lambda x: x[0])
    return [{"text_a": r["sentence1"], "text_b": r["sentence2"], "label": label, "score": r["score"],
             "source": f"stsb/test.jsonl:{i}"} for i, r, label in chosen]


def positive_pairs(test: list[tuple[int, dict]]) -> list[dict]:
    return [{"text_a": r["sentence1"], "text_b": r["sentence2"], "score": r["score"], "source": f"stsb/test.jsonl:{i}"}
            for i, r in test if r["score"] >= POSITIVE_MIN]


def texts(test: list[tuple[int, dict]]) -> list[dict]:
    seen: dict[str, int] = {}
    for i, r in spaced(test, TEXTS):
        seen.setdefault(r["sentence1"], i)
    return [{"text": t, "source": f"stsb/test.jsonl:{i}"} for t, i in seen.items()]


def sts_rows(rows: list[tuple[int, dict]], name: str) -> list[dict]:
    return [{**r, "source": f"stsb/{name}:{i}"} for i, r in spaced(rows, HOLDOUT_ROWS)]


def build(source: Path) -> dict[str, list[dict]]:
    test = read_jsonl(source / "stsb" / "test.jsonl")
    dev = read_jsonl(source / "stsb" / "dev.jsonl")
    return {
        "banking77-triplets.jsonl": banking_triplets(source),
        "stsb-pairs.jsonl": stsb_pairs(test),
        "stsb-positive-pairs.jsonl": positive_pairs(test),
        "stsb-texts.jsonl": texts(test),
        "stsb-holdout-train.jsonl": sts_rows(dev, "dev.jsonl"),
        "stsb-holdout-test.jsonl": sts_rows(test, "test.jsonl"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE)
    parser.add_argument("--out", type=Path, default=HERE / "data")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for name, rows in build(args.source).items():
        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
        (args.out / name).write_text(text, encoding="utf-8")
        print(f"{name}: {len(rows)} rows")


if __name__ == "__main__":
    main()
