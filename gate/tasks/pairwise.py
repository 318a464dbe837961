"""``pairwise``: a pinned judge model compares the baseline's and the candidate's answers.

Suite fields: ``cases`` (as for ``generation``), ``judge`` (a model, required),
``reference`` (an optional third model, e.g. a frontier model, both are compared
against), ``concurrency``, ``max_tokens``, ``temperature``, ``seed``, ``system``,
``tools``, ``judge_max_tokens``.

Position bias: every pair is judged twice, once in each order. An order's verdict
counts +1 (candidate better), -1 (baseline better) or 0 (tie); the pair's outcome
is the sign of the sum, so a judge that flips with the order yields a tie.
``judge_consistency`` is the share of pairs whose two verdicts agree. A verdict
that is not exactly ``A``, ``B`` or ``TIE`` counts as a tie and is reported in
``judge_invalid_rate``, so an unusable judge cannot manufacture a win.

The judge's spec, prompt version and settings are recorded in ``tasks.<name>.judge`` and shown in the
report; a judge whose name can stand for other weights later (an endpoint alias such as ``gpt-4o``, a Hub
branch) is recorded as not ``pinned``, with a ``warning`` the report shows (:func:`unpinned`).

Metric columns: ``win_rate``'s baseline value is the baseline's win rate against
the candidate, its candidate value the candidate's against the baseline (so
``loss_rate`` mirrors it). With a reference model, ``win_rate_vs_reference`` is
each model's win rate against the reference.
"""

from __future__ import annotations

import json
import re
from typing import Any

import numpy as np

from gate.cases import Case, check_tools, read_cases
from gate.llm import ChatRequest, ChatResponse
from gate.metrics import MetricDef, mean_of
from gate.suite import ROLES, ModelSpec, TaskSpec
from gate.tasks import Scores, TaskData, selected
from gate.tasks.generative import (DEFAULT_CONCURRENCY, DEFAULT_MAX_TOKENS, GenContext, Outcome, Planned, answer_json,
                                   task_seed)

PROMPT_VERSION = "gate-pairwise-v1"
JUDGE_SYSTEM = (
    "You are an impartial judge. You compare two answers, A and B, to the same request and decide which "
    "one fulfils the request better: correctness first, then following the instructions, then helpfulness. "
    "Do not let the order of the answers or their length influence you. "
    "Reply with exactly one word: A, B, or TIE."
)
DEFAULT_JUDGE_MAX_TOKENS = 8
_VERDICT = re.compile(r"^[\s\"'*\[\](){}.:]*(?:answer\s+)?(a|b|tie)[\s\"'*\[\](){}.!:]*$", re.IGNORECASE)


_SNAPSHOT = re.compile(r"-(\d{4}-\d{2}-\d{2}|\d{8}|\d{4})$")  # gpt-4o-2024-08-06, claude-...-20241022, gpt-4-0613


def unpinned(spec: ModelSpec) -> str | None:
    """Why a judge's name may stand for other weights on another day (None: it is pinned). An endpoint's
    model id is pinned by a dated snapshot suffix, a fine-tune id (``ft:``) or the model's ``revision``;
    a Hub model by a full commit; a local folder is its files (its fingerprint is recorded)."""
    if spec.provider == "openai":
        if spec.option("revision") or spec.model.startswith("ft:") or _SNAPSHOT.search(spec.model):
            return None
        return (f"the judge {spec.model!r} is an alias that its provider can point at a new model version, which "
                "changes the verdicts; pin a dated snapshot (e.g. gpt-4o-2024-08-06) or set the judge's 'revision'")
    ref = spec.hub
    if ref is not None and not ref.pinned:
        return (f"the judge {ref} follows a branch or tag of the Hugging Face Hub, which can move; pin a commit "
                f"({ref.repo_id}@<40-hex commit>)")
    return None


def parse_verdict(text: str) -> str | None:
    """``"A"``, ``"B"``, ``"TIE"``, or None when the judge said anything else."""
    match = _VERDICT.match(text or "")
    return match.group(1).upper() if match else None


def render_answer(response: ChatResponse) -> str:
    parts = [response.text.strip()] if response.text.strip() else []
    parts += [f"[tool call] {json.dumps(c.to_json(), ensure_ascii=False)}" for c in response.tool_calls]
    return "\n".join(parts) or "(empty answer)"


def render_request(case: Case) -> str:
    lines = []
    for m in case.messages:
        content = m.get("content")
        if not isinstance(content, str):
            content = json.dumps(content, ensure_ascii=False)
        lines.append(f"{m.get('role', 'user')}: {content}")
    return "\n".join(lines)


METRICS = [
    MetricDef("win_rate", True, mean_of("win"), "share of pairs this model won (both orders combined)"),
    MetricDef("tie_rate", False, mean_of("tie"), "share of pairs judged a tie (both orders combined)"),
    MetricDef("loss_rate", False, mean_of("loss"), "share of pairs this model lost (both orders combined)"),
    MetricDef("judge_consistency", True, mean_of("consistent"),
              "share of pairs where the judge gave the same verdict in both orders"),
    MetricDef("judge_invalid_rate", False, mean_of("invalid"), "share of judge replies that were not A, B or TIE"),
]
REFERENCE_METRICS = [
    MetricDef("win_rate_vs_reference", True, mean_of("ref_win"), "share of pairs won against the reference model"),
    MetricDef("tie_rate_vs_reference", False, mean_of("ref_tie"), "share of ties against the reference model"),
    MetricDef("loss_rate_vs_reference", False, mean_of("ref_loss"), "share of pairs lost against the reference"),
]


class PairwiseTask:
    kind = "generative"

    def __init__(self, data: TaskData, cases: list[Case], fields: dict[str, Any], judge: ModelSpec,
                 reference: ModelSpec | None):
        self.data, self.cases, self.judge, self.reference = data, cases, judge, reference
        self.concurrency = int(fields.get("concurrency", DEFAULT_CONCURRENCY))
        self.max_tokens = int(fields.get("max_tokens", DEFAULT_MAX_TOKENS))
        self.temperature = float(fields.get("temperature", 0.0))
        self.seed = fields.get("seed")
        self.judge_max_tokens = int(fields.get("judge_max_tokens", DEFAULT_JUDGE_MAX_TOKENS))
        self.metrics = METRICS + (REFERENCE_METRICS if reference else [])
        self.example_score = ("win", True)

    @classmethod
    def metric_names(cls, spec: TaskSpec) -> tuple[list[str], list[str]]:
        """The metrics this task reports, known from the suite alone (see :mod:`gate.catalogue`)."""
        return [m.name for m in METRICS + (REFERENCE_METRICS if spec.fields.get("reference") else [])], []

    @classmethod
    def load(cls, spec: TaskSpec) -> "PairwiseTask":
        fields = spec.fields
        if "tools" in fields:
            where = str(spec.document.path) if spec.document else None
            loc = spec.document.where(f"{spec.pointer}/tools") if spec.document else "tools"
            check_tools(fields["tools"], where, loc)
        case_set = read_cases(spec.path("cases"), [], tools=fields.get("tools"), system=fields.get("system"))
        data = TaskData(spec=spec, n=len(case_set.cases), data_sha256={"cases": case_set.sha256},
                        example_ids=[c.id for c in case_set.cases],
                        example_text=[{"request": render_request(c)} for c in case_set.cases])
        return cls(data, case_set.cases, fields, spec.model("judge"), spec.model("reference"))

    def select(self, indices) -> "PairwiseTask":
        return selected(self, indices, cases=self.cases)

    def extra_models(self) -> list[ModelSpec]:
        """Models besides baseline and candidate that this task loads (checked before anything runs)."""
        return [m for m in (self.judge, self.reference) if m is not None]

    def _seed(self, ctx_seed: int | None) -> int:
        return task_seed(self.seed, ctx_seed)

    def answer_requests(self, seed: int) -> list[ChatRequest]:
        return [ChatRequest(messages=c.messages, max_tokens=self.max_tokens, temperature=self.temperature,
                            seed=seed, tools=c.tools) for c in self.cases]

    def judge_requests(self, first: list[ChatResponse], second: list[ChatResponse], seed: int
                       ) -> list[ChatRequest]:
        """For each case: (first as A, second as B), then (second as A, first as B)."""
        out = []
        for case, a, b in zip(self.cases, first, second):
            for x, y in ((a, b), (b, a)):
                prompt = (f"[Request]\n{render_request(case)}\n\n[Answer A]\n{render_answer(x)}\n\n"
                          f"[Answer B]\n{render_answer(y)}\n\nWhich answer is better? Reply A, B or TIE.")
                out.append(ChatRequest(messages=({"role": "system", "content": JUDGE_SYSTEM},
                                                 {"role": "user", "content": prompt}),
                                       max_tokens=self.judge_max_tokens, temperature=0.0, seed=seed))
        return out

    def plan(self, pair: dict[str, ModelSpec], seed: int | None) -> list[Planned]:
        reqs = self.answer_requests(self._seed(seed))
        plans = [Planned.chats(pair[role], role, reqs) for role in ROLES]
        if self.reference:
            plans.append(Planned.chats(self.reference, "reference", reqs))
        per_pair = 2 * (1 + (2 if self.reference else 0))
        chars = sum(r.prompt_chars() for r in reqs) * per_pair + len(JUDGE_SYSTEM) * per_pair * len(reqs)
        tokens = -(-chars // 4) + per_pair * 2 * self.max_tokens * len(reqs)
        plans.append(Planned(self.judge, "judge", per_pair * len(reqs), tokens,
                             per_pair * len(reqs) * self.judge_max_tokens))
        return plans

    async def _judge(self, ctx: GenContext, first: list[ChatResponse], second: list[ChatResponse], seed: int,
                     label: str) -> dict[str, np.ndarray]:
        """Outcomes from ``second``'s point of view: win/tie/loss, consistency and invalid replies per pair."""
        replies = await ctx.chat(self.judge, self.judge_requests(first, second, seed), concurrency=self.concurrency,
                                 label=label, usage_key="judge")
        score = {"A": -1, "B": 1, "TIE": 0}  # order 1: second is B
        n = len(self.cases)
        combined, consistent, invalid = np.zeros(n), np.zeros(n), np.zeros(n)
        for i in range(n):
            v1, v2 = parse_verdict(replies[2 * i].text), parse_verdict(replies[2 * i + 1].text)
            s1 = score[v1] if v1 else 0
            s2 = -score[v2] if v2 else 0  # order 2: second is A
            combined[i] = np.sign(s1 + s2)
            consistent[i] = float(v1 is not None and v2 is not None and s1 == s2)
            invalid[i] = ((v1 is None) + (v2 is None)) / 2
        return {"win": (combined > 0).astype(float), "tie": (combined == 0).astype(float),
                "loss": (combined < 0).astype(float), "consistent": consistent, "invalid": invalid}

    async def run(self, ctx: GenContext, pair: dict[str, ModelSpec]) -> Outcome:
        seed = self._seed(ctx.seed)
        name = self.data.spec.name
        loose = unpinned(self.judge)
        out = Outcome(scores={role: None for role in ROLES}, info={
            "judge": {"spec": self.judge.spec, "prompt_version": PROMPT_VERSION, "temperature": 0.0,
                      "max_tokens": self.judge_max_tokens, "seed": seed, "pinned": loose is None,
                      **({"warning": loose} if loose else {})},
            "generation": {"temperature": self.temperature, "max_tokens": self.max_tokens, "seed": seed}})
        if self.reference:
            out.info["reference"] = {"spec": self.reference.spec}
        reqs = self.answer_requests(seed)
        got = await ctx.chat_pair(pair, reqs, concurrency=self.concurrency, label=name)
        failed = [str(v) for v in got.values() if isinstance(v, Exception)]
        if failed:
            out.errors.extend(failed)
            return out
        answers: dict[str, list[ChatResponse]] = {role: got[role] for role in ROLES}  # type: ignore[misc]
        try:
            versus = await self._judge(ctx, answers["baseline"], answers["candidate"], seed, f"{name} judge")
            vs_ref = {}
            if self.reference:
                ref = await ctx.chat(self.reference, reqs, concurrency=self.concurrency,
                                     label=f"{name} reference", usage_key="reference")
                for role in ROLES:
                    vs_ref[role] = await self._judge(ctx, ref, answers[role], seed, f"{name} judge vs reference")
        except Exception as exc:
            out.errors.append(str(exc))
            return out
        out.info["judge"]["identity"] = ctx.identity(self.judge)
        mirrored = {"win": versus["loss"], "tie": versus["tie"], "loss": versus["win"],
                    "consistent": versus["consistent"], "invalid": versus["invalid"]}
        for role, arrays in (("candidate", dict(versus)), ("baseline", mirrored)):
            if self.reference:
                arrays.update({f"ref_{k}": vs_ref[role][k] for k in ("win", "tie", "loss")})
            extras = [{**answer_json(answers[role][i]), "outcome": ("win" if arrays["win"][i] else
                                                                   "loss" if arrays["loss"][i] else "tie")}
                      for i in range(len(self.cases))]
            out.scores[role] = Scores(arrays, extras)
        return out
