"""``generation``: answer each case, score the answers with the task's scorers.

Suite fields: ``cases`` (JSONL, see :mod:`gate.cases`), ``scorers`` (names from
:mod:`gate.scorers`), ``concurrency``, ``max_tokens``, ``temperature``, ``seed``,
``repeats`` / ``min_pass`` (a case passes when at least ``min_pass`` of its
``repeats`` samples pass), ``system`` (a system prompt for every case), ``schema``
and ``tools`` (defaults for cases that carry none).

Metrics: each scorer's (``exact_match``, ``rouge_l``, ``bleu``, ``schema_compliance``,
``tool_call``, ``args_accuracy`` ...), ``pass_rate`` (a sample passes when every
pass/fail scorer passes it), latency p50/p99, tokens and cost; and, when cases carry
a ``category``, every scorer metric and ``pass_rate`` per category:
``pass_rate[adversarial]``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from gate import scorers as scorer_registry
from gate.cases import Case, check_schema, check_tools, read_cases
from gate.llm import ChatRequest, ChatResponse
from gate.metrics import MetricDef, mean_of
from gate.suite import ROLES, ModelSpec, TaskSpec
from gate.tasks import Scores, TaskData, selected
from gate.tasks.generative import (DEFAULT_CONCURRENCY, DEFAULT_MAX_TOKENS, GenContext, Outcome, Planned, answer_json,
                                   sliced, task_seed, usage_arrays, usage_metrics)



#: share of cases that pass (NaN without cases)
pass_rate = mean_of("pass")


class GenerationTask:
    kind = "generative"

    def __init__(self, data: TaskData, cases: list[Case], scorers: list[scorer_registry.Scorer],
                 fields: dict[str, Any], categories: list[str]):
        self.data, self.cases, self.scorers, self.categories = data, cases, scorers, categories
        self.concurrency = int(fields.get("concurrency", DEFAULT_CONCURRENCY))
        self.max_tokens = int(fields.get("max_tokens", DEFAULT_MAX_TOKENS))
        self.temperature = float(fields.get("temperature", 0.0))
        self.seed = fields.get("seed")
        self.repeats = int(fields.get("repeats", 1))
        self.min_pass = int(fields.get("min_pass", self.repeats))
        self.binary = [s for s in scorers if s.binary]
        base: list[MetricDef] = [m for s in scorers for m in s.metrics]
        if self.binary:
            base.append(MetricDef("pass_rate", True, pass_rate,
                                  f"share of cases passing ({self.min_pass} of {self.repeats} samples passing "
                                  f"{', '.join(s.name for s in self.binary)})"))
        self.metrics = base + usage_metrics()
        per_example = [s.primary for s in scorers if s.metrics[0].mean is not None]  # corpus BLEU has none
        self.example_score = ("pass", True) if self.binary else ((per_example[0], True) if per_example else None)
        for code, label in enumerate(categories):
            self.metrics += [sliced(m, code, label) for m in base]

    @classmethod
    def metric_names(cls, spec: TaskSpec) -> tuple[list[str], list[str]]:
        """The metrics this task reports, known from the suite alone (its scorers), and those also reported
        per category (``name[category]``, for the categories its cases hold; see :mod:`gate.catalogue`).
        An unknown scorer is left out: :meth:`load` reports it."""
        scorers = [scorer_registry.SCORERS[n] for n in spec.fields.get("scorers", []) if n in scorer_registry.SCORERS]
        base = [m.name for s in scorers for m in s.metrics] + (["pass_rate"] if any(s.binary for s in scorers) else [])
        return base + [m.name for m in usage_metrics()], base

    @classmethod
    def load(cls, spec: TaskSpec) -> "GenerationTask":
        fields = spec.fields
        names = list(fields["scorers"])
        unknown = [n for n in names if n not in scorer_registry.SCORERS]
        if unknown:
            raise spec.error("scorers", f"unknown scorer {unknown[0]!r}; expected one of: "
                                        f"{', '.join(sorted(scorer_registry.SCORERS))}")
        repeats, min_pass = int(fields.get("repeats", 1)), fields.get("min_pass")
        if min_pass is not None and min_pass > repeats:
            raise spec.error("min_pass", f"min_pass {min_pass} is more than repeats {repeats}; "
                                         "expected at most the number of samples")
        where = str(spec.document.path) if spec.document else None
        loc = (lambda key: spec.document.where(f"{spec.pointer}/{key}")) if spec.document else (lambda key: key)
        if "schema" in fields:
            check_schema(fields["schema"], where, loc("schema"))
        if "tools" in fields:
            check_tools(fields["tools"], where, loc("tools"))
        case_set = read_cases(spec.path("cases"), names, schema=fields.get("schema"), tools=fields.get("tools"),
                              system=fields.get("system"))
        categories = sorted({c.category for c in case_set.cases if c.category})
        data = TaskData(
            spec=spec, n=len(case_set.cases), data_sha256={"cases": case_set.sha256},
            example_ids=[c.id for c in case_set.cases],
            example_text=[{"prompt": _last_user(c)} for c in case_set.cases],
        )
        return cls(data, case_set.cases, [scorer_registry.get(n) for n in names], fields, categories)

    def select(self, indices) -> "GenerationTask":
        """The cases at ``indices``; the category list stays the full task's, so codes match across shards."""
        return selected(self, indices, cases=self.cases)

    def _seed(self, ctx_seed: int | None) -> int:
        return task_seed(self.seed, ctx_seed)

    def requests(self, seed: int) -> list[ChatRequest]:
        """Every sample of every case; sample ``s`` uses seed ``seed + s`` so repeats differ but reproduce."""
        return [ChatRequest(messages=c.messages, max_tokens=self.max_tokens, temperature=self.temperature,
                            seed=seed + s, tools=c.tools, sample=s)
                for c in self.cases for s in range(self.repeats)]

    def plan(self, pair: dict[str, ModelSpec], seed: int | None) -> list[Planned]:
        reqs = self.requests(self._seed(seed))
        return [Planned.chats(pair[role], role, reqs) for role in ROLES]

    async def run(self, ctx: GenContext, pair: dict[str, ModelSpec]) -> Outcome:
        seed = self._seed(ctx.seed)
        reqs = self.requests(seed)
        out = Outcome(scores={}, info={"generation": {
            "temperature": self.temperature, "max_tokens": self.max_tokens, "repeats": self.repeats,
            "min_pass": self.min_pass, "seed": seed, "scorers": [s.name for s in self.scorers]}})
        # both models on one schedule: each case's two requests go out together (fair latency)
        answers = await ctx.chat_pair(pair, reqs, concurrency=self.concurrency, label=self.data.spec.name)
        for role in ROLES:
            responses = answers[role]
            if isinstance(responses, Exception):  # EvaluationError; anything else is a bug we still must not pass
                out.errors.append(str(responses))
                out.scores[role] = None
                continue
            out.scores[role] = self.score(responses, ctx.pricing(pair[role]))
        return out

    def score(self, responses: list[ChatResponse], pricing: Any) -> Scores:
        """Per-case, per-sample values of every scorer, the pass decision, latency, tokens and cost."""
        per_case = [responses[i * self.repeats:(i + 1) * self.repeats] for i in range(len(self.cases))]
        samples = []
        for case, answers in zip(self.cases, per_case):
            rows = []
            for answer in answers:
                values: dict[str, Any] = {}
                for scorer in self.scorers:
                    values.update(scorer.score(case, answer))
                if self.binary:
                    values["sample_pass"] = float(all(values[s.primary] == 1.0 for s in self.binary))
                rows.append(values)
            samples.append(rows)
        arrays = scorer_registry.stack(samples)
        if self.binary:
            arrays["pass"] = (arrays.pop("sample_pass").sum(axis=1) >= self.min_pass).astype(np.float64)
        arrays.update(usage_arrays(per_case, pricing))
        arrays["category"] = np.array([self.categories.index(c.category) if c.category else -1
                                       for c in self.cases], dtype=np.int64)
        extras = []
        for i, answers in enumerate(per_case):
            row = answer_json(answers[0])
            if self.binary:
                row["passed"] = bool(arrays["pass"][i])
            if self.repeats > 1:
                row["samples_passing"] = int(sum(1 for s in samples[i] if s.get("sample_pass") == 1.0))
            extras.append(row)
        return Scores(arrays, extras)


def _last_user(case: Case) -> str:
    for message in reversed(case.messages):
        if message.get("role") == "user" and isinstance(message.get("content"), str):
            return message["content"]
    return ""
