"""``gate run --dry-run``: what a run would send, and roughly cost, without calling any model.

Counts are exact (requests per model, repeats and judge calls included); token
figures are estimates (prompt: characters / 4; completion: the ``max_tokens``
ceiling), so the cost shown is an upper-bound guess at the declared prices. With
``--cache``, requests whose responses are already cached are counted as such:
they would not be sent, and cost nothing. A judge's requests depend on the answers,
so whether they are cached cannot be told in advance ("-").

The same estimate is what the run budget is checked against (:mod:`gate.budget`): ``gate run``
computes it with :func:`plan_tasks` from the tasks it has read, before it sends anything.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from gate.cache import ResponseCache
from gate.suite import ModelSpec, Suite
from gate.llm import estimated_tokens
from gate.tasks.generative import Planned


@dataclass
class ModelPlan:
    spec: str
    provider: str
    requests: int = 0
    cached: int | None = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float | None = 0.0
    tasks: list[str] = field(default_factory=list)
    roles: set[str] = field(default_factory=set)


def _pricing(spec: ModelSpec):
    from gate.llm import Pricing

    return Pricing.declared(spec)


def plan_suite(suite: Suite, overrides: dict[str, ModelSpec] | None, seed: int | None,
               cache_dir: Path | None = None) -> list[ModelPlan]:
    """Per model, what the run would send. Reads every data file (bad input surfaces here too)."""
    from gate.runner import prepare

    task_models, tasks = prepare(suite, overrides)
    responses = None
    if cache_dir is not None and (cache_dir / ResponseCache.FILE).exists():
        responses = ResponseCache(cache_dir)
    try:
        return plan_tasks(task_models, tasks, seed, responses, cache_dir)
    finally:
        if responses:
            responses.close()


def plan_tasks(task_models: dict[str, dict[str, ModelSpec]], tasks: list, seed: int | None,
               responses: ResponseCache | None, cache_dir: Path | None = None) -> list[ModelPlan]:
    """Per model, what ``tasks`` (already read) would send; ``responses`` tells which answers are cached."""
    from gate.runner import _kind

    plans: dict[tuple, ModelPlan] = {}
    identities: dict[tuple, str | None] = {}
    for task in tasks:
        name = task.data.spec.name
        pair = task_models[name]
        if _kind(task) == "generative":
            items: list[Planned] = task.plan(pair, seed)
        else:
            texts = list(dict.fromkeys(task.texts()))
            tokens = sum(estimated_tokens(len(t)) for t in texts)
            items = [Planned(pair[role], role, _embedding_requests(pair[role], len(texts)), tokens, 0)
                     for role in pair]
        for item in items:
            spec = item.spec
            plan = plans.setdefault(spec.key, ModelPlan(spec.spec, spec.provider))
            plan.requests += item.requests
            plan.prompt_tokens += item.prompt_tokens
            plan.completion_tokens += item.completion_tokens
            plan.tasks.append(f"{name} ({item.role})")
            plan.roles.add(item.role)
            if spec.key not in identities:
                identities[spec.key] = _identity(spec, cache_dir) if responses else None
            if item.chat_requests is None and item.logprob_texts is None and item.role != "judge":
                hits: int | None = 0 if responses is None else None  # embeddings: not response-cached
            else:
                hits = _cached(item, identities[spec.key], responses)
            plan.cached = None if hits is None or plan.cached is None else plan.cached + hits
            cost = _cost(item, hits)
            plan.cost_usd = None if cost is None or plan.cost_usd is None else plan.cost_usd + cost
    return list(plans.values())


def total_cost(plans: list[ModelPlan]) -> float | None:
    """The estimated cost of everything the plans send; None when a model's price is unknown."""
    costs = [p.cost_usd for p in plans]
    return None if any(c is None for c in costs) else float(sum(costs))  # type: ignore[arg-type]


def unpriced(plans: list[ModelPlan]) -> list[str]:
    """The models whose requests have no known price (no ``pricing`` declared)."""
    return [p.spec for p in plans if p.cost_usd is None]


def _identity(spec: ModelSpec, cache_dir: Path | None) -> str | None:
    """The response-cache identity of a model, known without loading it (None: not knowable)."""
    if spec.provider == "openai":
        from gate.providers.openai_compat import identity

        return identity(spec)
    if spec.provider == "transformers":
        from gate.providers.transformers_lm import static_identity

        return static_identity(spec, cache_dir)
    return None


def _cached(item: Planned, identity: str | None, responses: ResponseCache | None) -> int | None:
    """How many of the item's requests the response cache already answers (None: cannot tell)."""
    if responses is None:
        return 0  # no response cache: nothing is cached
    if identity is None:
        return None
    if item.chat_requests is not None:
        return sum(1 for r in item.chat_requests if responses.get(r.key(identity)) is not None)
    if item.logprob_texts is not None:
        return sum(1 for t in item.logprob_texts
                   if responses.get(ResponseCache.key("prompt_logprobs", identity, t)) is not None)
    return None


def _cost(item: Planned, cached: int | None) -> float | None:
    """Estimated dollars for what would actually be sent (cached requests cost nothing)."""
    if item.spec.provider == "sentence-transformers":
        return 0.0
    price = _pricing(item.spec)
    if price is None:
        return 0.0 if item.spec.provider == "transformers" else None  # a local model has no per-token price
    share = 1.0 if not cached or not item.requests else (item.requests - cached) / item.requests
    return price.cost(item.prompt_tokens, item.completion_tokens) * share


def _embedding_requests(spec: ModelSpec, texts: int) -> int:
    if spec.provider != "openai":
        return texts  # local encoding: texts, not requests
    from gate.providers.openai_compat import DEFAULT_EMBED_BATCH

    batch = int(spec.option("batch_size", DEFAULT_EMBED_BATCH))
    return -(-texts // batch)


def format_plan(plans: list[ModelPlan], budget: tuple[float, str] | None = None) -> str:
    lines = ["dry run: nothing was sent to any model", ""]
    header = f"{'model':<48} {'requests':>9} {'cached':>7} {'~prompt tok':>12} {'≤compl. tok':>12} {'~cost USD':>10}"
    lines += [header, "-" * len(header)]
    total = total_cost(plans)
    names = [p.spec for p in plans]
    for p in plans:
        if names.count(p.spec) > 1:  # same model id, other options (e.g. a system prompt): say which role
            p = replace(p, spec=f"{p.spec} ({'/'.join(sorted(p.roles))})")
        cost = "unknown" if p.cost_usd is None else f"{p.cost_usd:.4f}"
        cached = "-" if p.cached is None else str(p.cached)
        spec = p.spec if len(p.spec) <= 48 else p.spec[:45] + "..."
        lines.append(f"{spec:<48} {p.requests:>9,} {cached:>7} {p.prompt_tokens:>12,} {p.completion_tokens:>12,} "
                     f"{cost:>10}")
    lines.append("")
    lines.append("estimated total cost: " + ("unknown (a model has no 'pricing' in the suite)" if total is None
                                             else f"${total:.4f} (upper bound at the declared prices)"))
    if budget is not None:
        limit, source = budget
        fits = total is not None and total <= limit
        lines.append(f"run budget: ${limit:.4f} ({source}): " + (
            "the estimate fits" if fits else "`gate run` would stop with exit 2 before sending anything"))
    lines.append("local models count texts/requests and cost 0 unless the suite declares their pricing.")
    return "\n".join(lines)
