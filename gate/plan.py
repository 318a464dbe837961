"""``gate run --dry-run``: what a run would send, and roughly cost, without calling any model.

Counts are exact (requests per model, repeats and judge calls included); token
figures are estimates (prompt: characters / 4; completion: the ``max_tokens``
ceiling), so the cost shown is an upper-bound guess at the declared prices. With
``--cache``, requests whose responses are already cached are counted as such:
they would not be sent.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from gate.suite import ModelSpec, Suite
from gate.tasks.generative import CHARS_PER_TOKEN, Planned


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


def _pricing(spec: ModelSpec):
    from gate.providers.openai_compat import pricing

    return pricing(spec)


def plan_suite(suite: Suite, overrides: dict[str, ModelSpec] | None, seed: int | None,
               cache_dir: Path | None = None) -> list[ModelPlan]:
    """Per model, what the run would send. Reads every data file (bad input surfaces here too)."""
    from gate.runner import _kind, prepare

    task_models, tasks = prepare(suite, overrides)
    responses = None
    if cache_dir is not None and (cache_dir / "responses.sqlite3").exists():
        from gate.cache import ResponseCache

        responses = ResponseCache(cache_dir)
    plans: dict[tuple, ModelPlan] = {}
    try:
        for task in tasks:
            name = task.data.spec.name
            pair = task_models[name]
            if _kind(task) == "generative":
                items: list[Planned] = task.plan(pair, seed)
                cached_of = _cached_counter(task, pair, seed, responses)
            else:
                texts = list(dict.fromkeys(task.texts()))
                tokens = sum(-(-len(t) // CHARS_PER_TOKEN) for t in texts)
                items = [Planned(pair[role], role, _embedding_requests(pair[role], len(texts)), tokens, 0)
                         for role in pair]
                cached_of = None
            for item in items:
                plan = plans.setdefault(item.spec.key, ModelPlan(item.spec.spec, item.spec.provider))
                plan.requests += item.requests
                plan.prompt_tokens += item.prompt_tokens
                plan.completion_tokens += item.completion_tokens
                plan.tasks.append(f"{name} ({item.role})")
                hits = cached_of(item) if cached_of else None
                plan.cached = None if hits is None or plan.cached is None else plan.cached + hits
                price = _pricing(item.spec) if item.spec.provider == "openai" else None
                if item.spec.provider != "openai":
                    price_cost = 0.0
                elif price is None:
                    price_cost = None
                else:
                    price_cost = price.cost(item.prompt_tokens, item.completion_tokens)
                plan.cost_usd = None if price_cost is None or plan.cost_usd is None else plan.cost_usd + price_cost
    finally:
        if responses:
            responses.close()
    return list(plans.values())


def _embedding_requests(spec: ModelSpec, texts: int) -> int:
    if spec.provider != "openai":
        return texts  # local encoding: texts, not requests
    from gate.providers.openai_compat import DEFAULT_EMBED_BATCH

    batch = int(spec.option("batch_size", DEFAULT_EMBED_BATCH))
    return -(-texts // batch)


def _cached_counter(task, pair, seed, responses):
    """How many of a planned item's chat requests are already cached (endpoints only: their identity
    is known without loading anything)."""
    if responses is None or not hasattr(task, "requests"):
        return None
    from gate.providers.openai_compat import identity

    def count(item: Planned) -> int | None:
        if item.spec.provider != "openai" or item.role not in pair:
            return None
        ident = identity(item.spec)
        reqs = task.requests(task._seed(seed))
        return sum(1 for r in reqs if responses.get(r.key(ident)) is not None)

    return count


def format_plan(plans: list[ModelPlan]) -> str:
    lines = ["dry run: nothing was sent to any model", ""]
    header = f"{'model':<48} {'requests':>9} {'cached':>7} {'~prompt tok':>12} {'≤compl. tok':>12} {'~cost USD':>10}"
    lines += [header, "-" * len(header)]
    total: float | None = 0.0
    for p in plans:
        cost = "unknown" if p.cost_usd is None else f"{p.cost_usd:.4f}"
        cached = "-" if p.cached is None else str(p.cached)
        spec = p.spec if len(p.spec) <= 48 else p.spec[:45] + "..."
        lines.append(f"{spec:<48} {p.requests:>9,} {cached:>7} {p.prompt_tokens:>12,} {p.completion_tokens:>12,} "
                     f"{cost:>10}")
        total = None if total is None or p.cost_usd is None else total + p.cost_usd
    lines.append("")
    lines.append("estimated total cost: " + ("unknown (a model has no 'pricing' in the suite)" if total is None
                                             else f"${total:.4f} (upper bound at the declared prices)"))
    lines.append("local models (sentence-transformers, transformers) count texts/requests but cost nothing.")
    return "\n".join(lines)
