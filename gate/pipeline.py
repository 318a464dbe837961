"""The whole ``gate run`` job as one function, shared by the CLI, the demo and the GitHub Action."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from gate.suite import ModelSpec, Suite


@dataclass
class Outcome:
    results: dict[str, Any]
    report: str
    paths: dict[str, Path]


def evaluate_to_dir(suite: Suite, *, overrides: dict[str, ModelSpec], thresholds: Path | None, out: Path,
                    cache: Path | None = None, seed: int = 0, log: Callable[[str], None] = lambda m: None,
                    show_progress: bool = False, resamples: int | None = None,
                    shard: tuple[int, int] | None = None, trust: dict[str, Any] | None = None,
                    warn: Callable[[str], None] | None = None, run_url: str | None = None,
                    max_cost: float | None = None) -> Outcome:
    """Run the suite, apply the thresholds, write results.json / report.md / examples.jsonl into ``out``.

    The thresholds are read first, so a bad file, or a rule that selects no metric the suite declares
    (:mod:`gate.catalogue`), is bad input before any model loads. A cache folder
    that came with the checked-out files is not used (:func:`gate.trust.cache_refusal`); ``warn`` says
    so (default: ``log``). ``trust`` is what the run was judged with (:mod:`gate.trust`), for the report."""
    from gate.cache import EmbeddingCache, ResponseCache
    from gate.compare import DEFAULT_RESAMPLES
    from gate.documents import file_sha256
    from gate.report import render
    from gate.results import write_outputs
    from gate.runner import run_suite
    from gate.thresholds import load_thresholds

    rules = load_thresholds(thresholds) if thresholds else None
    if rules is None:
        log("no thresholds given: metrics are reported but no rule is checked")
    elif shard is None:
        from gate.catalogue import check_rules_on_suite

        check_rules_on_suite(rules, suite)  # a rule that can select nothing is bad input before any model loads
    if cache is not None:
        from gate.trust import cache_refusal

        refusal = cache_refusal(Path(cache))
        if refusal:
            (warn or log)(f"not using the cache: {refusal}")
            cache = None
    store = EmbeddingCache(cache, log=log) if cache else None
    responses = ResponseCache(cache, log=log) if cache else None
    try:
        output = run_suite(suite, overrides=overrides, rules=rules, seed=seed, cache=store, responses=responses,
                           model_cache_dir=cache, log=log, show_progress=show_progress,
                           thresholds_sha256=file_sha256(thresholds) if thresholds else None,
                           resamples=resamples or DEFAULT_RESAMPLES, shard=shard,
                           maps_dir=Path(out) / "maps" if shard is None else None, max_cost=max_cost)
    finally:
        for opened in (store, responses):
            if opened:
                opened.close()
    if shard is not None:
        from gate.shards import write_shard

        return Outcome(output.results, "", write_shard(out, suite.path, output, shard))
    for key, value in (("trust", trust), ("run_url", run_url)):
        if value:
            output.results[key] = value
    from gate.results import mark_same_model

    pairs = [suite.resolved_models(task, overrides) for task in suite.tasks]
    mark_same_model(output.results, [(pair["baseline"], pair["candidate"]) for pair in pairs])
    report = render(output.results, examples=output.examples)
    paths = write_outputs(out, output.results, report, output.examples)
    return Outcome(output.results, report, paths)


def merge_to_dir(folders: list[Path], *, thresholds: Path | None, out: Path, log: Callable[[str], None],
                 suite: Suite | None = None, suite_file: Path | None = None, trust: dict[str, Any] | None = None,
                 run_url: str | None = None) -> Outcome:
    """Join the shard ``folders`` into the results of one run (:mod:`gate.shards`), apply the thresholds and
    write results.json / report.md / examples.jsonl into ``out``, as :func:`evaluate_to_dir` does for a run."""
    from gate.documents import file_sha256
    from gate.report import render
    from gate.results import write_outputs
    from gate.shards import merge_shards
    from gate.thresholds import load_thresholds

    rules = load_thresholds(thresholds) if thresholds else None
    results, examples = merge_shards(folders, rules, file_sha256(thresholds) if thresholds else None, log,
                                     maps_dir=out / "maps", suite_file=suite_file, suite=suite)
    for key, value in (("trust", trust), ("run_url", run_url)):
        if value:
            results[key] = value
    report = render(results, examples=examples)
    return Outcome(results, report, write_outputs(out, results, report, examples))
