"""``gate human export`` / ``gate human import``: the command-line face of :mod:`gate.human`.

A click group registered on the main ``gate`` group, so gate's one error boundary
(:class:`gate.cli.GateGroup`) turns bad input into exit 2 with the file and row. ``gate.cli``
is imported inside the commands only: it imports this module to register the group. So is
:mod:`gate.human` (it needs numpy), which keeps ``gate --help`` fast; the defaults shown in the
help are checked against its constants by the tests.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import click


@click.group(name="human", context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
def human() -> None:
    """Blinded human preference ratings: export batches for raters, import their ratings.

    \b
    Example:
      gate human export gate-out/results.json --out ratings/batch.csv --raters 3
      # each rater fills the `rating` column of their batch-<r>.csv with A, B or TIE
      gate human import ratings/batch-*.csv --key ratings/batch.key.json \\
          --results gate-out/results.json --thresholds thresholds.json
    """


@human.command("export")
@click.argument("results_file", metavar="RESULTS", type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), default=Path("batch.csv"), show_default=True,
              help="Names the files: OUT's folder gets <stem>-<r>.csv for each rater r and the key <stem>.key.json.")
@click.option("--raters", type=click.IntRange(min=1), default=2, show_default=True, help="Number of raters.")
@click.option("--overlap", type=click.IntRange(min=0), default=None,
              help="Items every rater rates, for the agreement (kappa) [default: min(20, items); "
                   "0 with one rater].")
@click.option("--items", "max_items", type=click.IntRange(min=1), default=None,
              help="Rate a seeded random sample of at most this many items [default: every eligible example].")
@click.option("--task", "tasks", multiple=True, metavar="NAME",
              help="Only this generation or pairwise task (repeatable) [default: all of them].")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
              help="Seed of the sample, item ids, A/B positions and orders: the same seed gives the same files.")
@click.option("--force", is_flag=True, help="Overwrite batch files or a key that differ from this batch.")
def export(results_file: Path, out: Path, raters: int, overlap: int | None, max_items: int | None,
           tasks: tuple[str, ...], seed: int, force: bool) -> None:
    """Write a blinded batch of baseline/candidate answer pairs for human raters.

    Reads RESULTS (a results.json) and the examples.jsonl beside it. Every example of a
    generation or pairwise task where both models answered becomes an item: the prompt
    and the two answers as A and B, the candidate at A on half the items (at random). Each
    rater gets a CSV with their items in their own random order; the overlap items go to
    every rater, the others are split between them. The key (which model is A) goes to a
    separate file: keep it away from the raters.

    \b
    Example:
      gate human export gate-out/results.json --out ratings/batch.csv --raters 3 --overlap 30
    """
    from gate.human import export_batch

    outcome = export_batch(results_file, out, raters=raters, overlap=overlap, max_items=max_items, seed=seed,
                           tasks=tasks, force=force)
    loads = ", ".join(f"rater {r}: {n}" for r, n in outcome.per_rater.items())
    click.echo(f"gate: batch {outcome.batch}: {outcome.items} item(s), {outcome.overlap} rated by every rater; "
               f"{loads}")
    if outcome.skipped:
        click.echo(f"gate: {outcome.skipped} example(s) left out: a model has no answer for them", err=True)
    if raters > 1 and outcome.overlap < 2:
        click.echo("gate: warning: fewer than 2 overlap items, so agreement cannot be measured; import with "
                   "--no-agreement", err=True)
    for path in outcome.files:
        click.echo(str(path))
    click.echo(f"{outcome.key}  (the key: keep it from the raters)")


@human.command("import")
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--key", "key_file", type=click.Path(path_type=Path), required=True,
              help="The batch's key file (<stem>.key.json, written by export).")
@click.option("--results", "results_file", type=click.Path(path_type=Path), default=Path("gate-out/results.json"),
              show_default=True, help="The results.json the batch was exported from (checked against the key).")
@click.option("--thresholds", type=click.Path(path_type=Path),
              help="Thresholds file to re-apply with the human metrics (without it the verdict is kept as is).")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Folder for the updated results.json and report.md (examples.jsonl is copied along) "
                   "[default: the folder `human` beside --results, so the exported-from results stay as they "
                   "were and a corrected rater file can be imported again].")
@click.option("--no-agreement", is_flag=True, help="Do not compute kappa (needed to import a single rater).")
@click.option("--min-kappa", type=float, default=None,
              help="Kappa below this is flagged as low agreement (a note and a warning; the verdict is unchanged) "
                   "[default: 0.4].")
@click.option("--seed", type=click.IntRange(min=0), default=None,
              help="Seed of the bootstrap CI and the permutation test [default: the run's seed].")
@click.option("--resamples", type=click.IntRange(min=100), default=None,
              help="Bootstrap resamples and random permutations [default: the run's, else 2000].")
def import_(files: tuple[Path, ...], key_file: Path, results_file: Path, thresholds: Path | None, out: Path,
            no_agreement: bool, min_kappa: float, seed: int | None, resamples: int | None) -> None:
    """Import rater files (FILES) and add the human metrics to the results.

    Decodes A/B with the key, then adds human/preference (the candidate's share: 1 per
    rating for the candidate, 0.5 per tie, averaged per item, then over items) with its
    paired bootstrap CI, human/win_rate, human/tie_rate, human/loss_rate and, with 2 or
    more raters, human/agreement_kappa (Cohen's for 2 raters, Fleiss' for more) on the
    overlap items. Exits with the verdict's code (0 pass, 1 fail, 3 error); 2 for bad input.

    \b
    Example:
      gate human import ratings/batch-*.csv --key ratings/batch.key.json \\
          --results gate-out/results.json --thresholds thresholds.json   # writes gate-out/human/
    """
    from gate.cli import VERDICT_EXIT, _summary
    from gate.human import DEFAULT_MIN_KAPPA, apply_thresholds, import_ratings
    from gate.report import render
    from gate.results import write_outputs

    outcome = import_ratings(list(files), key_file, results_file, agreement=not no_agreement,
                             min_kappa=DEFAULT_MIN_KAPPA if min_kappa is None else min_kappa,
                             seed=seed, resamples=resamples)
    results = outcome.results
    if thresholds:
        apply_thresholds(results, thresholds)
    out = out if out is not None else results_file.parent / "human"
    paths = write_outputs(out, results, render(results))
    examples = results_file.parent / "examples.jsonl"
    if examples.is_file() and examples.resolve() != (out / "examples.jsonl").resolve():
        shutil.copyfile(examples, out / "examples.jsonl")

    p = outcome.preference
    conf = results["tasks"]["human"]["human"]["confidence"]
    if p["candidate_ci"]:
        lo, hi = p["candidate_ci"]
        pv = "n/a" if p["p_value"] is None else f"{p['p_value']:.3g}"
        ci = f"{conf:.0%} CI {lo:.1%} to {hi:.1%}, p = {pv} ({p['test']})"
    else:
        ci = f"CI unavailable: {p['stats_note']}"
    click.echo(f"human preference for the candidate: {p['candidate']:.1%} ({ci}) over {outcome.items} item(s), "
               f"{len(outcome.raters)} rater(s)")
    r = outcome.rates
    click.echo(f"wins / ties / losses: {r['win']:.1%} / {r['tie']:.1%} / {r['loss']:.1%} "
               f"of {outcome.ratings} rating(s)")
    a = outcome.agreement
    if a is not None:
        name = "Cohen's" if a.method == "cohen" else "Fleiss'"
        shown = "undefined (one label throughout)" if a.kappa is None else f"{a.kappa:.3f}"
        click.echo(f"agreement: {name} kappa {shown} on {a.items} shared item(s)")
    for warning in outcome.warnings:
        click.echo(f"gate: warning: {warning}", err=True)
    if not thresholds:
        click.echo("gate: the verdict was not re-evaluated: pass --thresholds to apply rules to the human metrics",
                   err=True)
    _summary(results, paths)
    click.get_current_context().exit(VERDICT_EXIT[results["verdict"]])
