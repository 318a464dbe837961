"""The GitHub Action: read the inputs and the GitHub environment, run the gate, report everywhere.

``main()`` builds the real PyGithub client and hands it to :func:`act`, so tests pass their
own factory (a client for the local GitHub emulator). Outcomes:

- the report always goes to the job summary, and the outputs ``verdict``, ``results-path``,
  ``report-path``, ``comment-url`` are always written;
- one ``::error::`` per failed blocking rule, one ``::warning::`` per warn rule (10 of each at most);
- the sticky comment per the ``comment`` input; no pull request (push, schedule) or no permission
  (a fork's read-only token) is a ``::warning::``, never a change of the exit code;
- exit 0 pass, 1 fail (0 with a warning when ``fail-on-regression`` is false), 2 bad input, 3 error.
"""

from __future__ import annotations

import json
import os
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, TextIO

from gate.errors import EXIT_BAD_INPUT, EXIT_ERROR, BadInput, BadInputs, GateError

COMMENT_MODES = ("always", "on-failure", "never")
VERDICT_EXIT = {"pass": 0, "fail": 1, "error": EXIT_ERROR}


def _input(env: Mapping[str, str], name: str, default: str = "") -> str:
    # The runner passes input `fail-on-regression` as INPUT_FAIL-ON-REGRESSION: upper case, hyphen kept.
    return env.get(f"INPUT_{name.upper()}", default).strip() or default


def _bool(value: str, name: str) -> bool:
    lowered = value.lower()
    if lowered in ("true", "yes", "1", "on"):
        return True
    if lowered in ("false", "no", "0", "off"):
        return False
    raise BadInput(f"expected true or false, got {value!r}", location=f"input {name}")


@dataclass(frozen=True)
class ActionSettings:
    suite: Path
    thresholds: Path | None
    baseline: str | None
    candidate: str | None
    comment: str
    fail_on_regression: bool
    output_dir: Path
    repository: str | None
    api_url: str
    event_name: str
    event_path: Path | None
    step_summary: Path | None
    output_file: Path | None
    cache_dir: Path | None
    token: str = field(default="", repr=False)

    @classmethod
    def from_environ(cls, env: Mapping[str, str]) -> "ActionSettings":
        suite = _input(env, "suite")
        if not suite:
            raise BadInput("the input 'suite' is required: the path of the suite file", location="input suite")
        comment = _input(env, "comment", "always").lower()
        if comment not in COMMENT_MODES:
            raise BadInput(f"expected one of {', '.join(COMMENT_MODES)}, got {comment!r}", location="input comment")

        def path(value: str | None) -> Path | None:
            return Path(value) if value else None

        return cls(
            suite=Path(suite), thresholds=path(_input(env, "thresholds")),
            baseline=_input(env, "baseline") or None, candidate=_input(env, "candidate") or None,
            comment=comment,
            fail_on_regression=_bool(_input(env, "fail-on-regression", "true"), "fail-on-regression"),
            output_dir=Path(_input(env, "output-dir", "gate-out")),
            repository=env.get("GITHUB_REPOSITORY") or None,
            api_url=env.get("GITHUB_API_URL") or "https://api.github.com",
            event_name=env.get("GITHUB_EVENT_NAME", ""), event_path=path(env.get("GITHUB_EVENT_PATH")),
            step_summary=path(env.get("GITHUB_STEP_SUMMARY")), output_file=path(env.get("GITHUB_OUTPUT")),
            cache_dir=path(env.get("GATE_CACHE_DIR")),
            token=_input(env, "github-token") or env.get("GITHUB_TOKEN", ""),
        )


def pull_request_number(event_name: str, event_path: Path | None) -> int | None:
    """The PR of a pull_request / pull_request_target / issue_comment-on-a-PR event, else None."""
    if not event_path or not event_path.is_file():
        return None
    try:
        event = json.loads(event_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if event_name.startswith("pull_request") and isinstance(event.get("pull_request"), dict):
        return int(event["pull_request"]["number"])
    issue = event.get("issue")
    if event_name == "issue_comment" and isinstance(issue, dict) and issue.get("pull_request"):
        return int(issue["number"])
    return None


class Console:
    """Log lines for the runner; text that came from suites or models cannot start a workflow command."""

    def __init__(self, out: TextIO):
        self.out = out

    def command(self, line: str) -> None:
        print(line, file=self.out, flush=True)

    def untrusted(self, text: str) -> None:
        token = uuid.uuid4().hex
        print(f"::stop-commands::{token}", file=self.out)
        print(text, file=self.out)
        print(f"::{token}::", file=self.out, flush=True)

    def warning(self, message: str) -> None:
        from gate.github import annotation

        self.command(annotation("warning", message))


ClientFactory = Callable[[str, str], Any]


def _default_client(token: str, api_url: str) -> Any:
    from gate.github import make_client

    return make_client(token, api_url)


def act(settings: ActionSettings, *, client_factory: ClientFactory = _default_client, console: Console) -> int:
    from gate.github import CommentError, StickyComment, annotations, find_marker, write_outputs, write_summary
    from gate.pipeline import evaluate_to_dir
    from gate.suite import load_suite, parse_model_spec

    overrides = {}
    if settings.baseline:
        overrides["baseline"] = parse_model_spec(settings.baseline, "input baseline")
    if settings.candidate:
        overrides["candidate"] = parse_model_spec(settings.candidate, "input candidate")
    suite = load_suite(settings.suite)
    outcome = evaluate_to_dir(suite, overrides=overrides, thresholds=settings.thresholds, out=settings.output_dir,
                              cache=settings.cache_dir, log=lambda m: console.untrusted(f"gate: {m}"))
    results, verdict = outcome.results, outcome.results["verdict"]
    console.untrusted(f"gate: {verdict.upper()} · {results['suite']}\n{results.get('reason', '')}")
    if settings.step_summary:
        write_summary(settings.step_summary, outcome.report)
    for line in annotations(results["rules"], results["errors"]):
        console.command(line)

    comment_url = ""
    number = pull_request_number(settings.event_name, settings.event_path)
    if settings.comment == "never":
        pass
    elif number is None:
        console.warning(f"not a pull request ({settings.event_name or 'unknown event'}): no PR comment; "
                        "the report is in the job summary")
    elif not settings.repository or not settings.token:
        console.warning("GITHUB_REPOSITORY or the github-token input is missing: no PR comment")
    else:
        try:
            sticky = StickyComment(client_factory(settings.token, settings.api_url), settings.repository, number)
            if sticky.wanted(settings.comment, verdict, find_marker(outcome.report)):
                result = sticky.post(outcome.report)
                comment_url = result.url or ""
                console.command(f"gate: comment {result.action}: {comment_url}")
        except CommentError as exc:
            console.warning(f"could not post the PR comment: {exc}")
        except Exception as exc:  # a network failure must not change the verdict's exit code
            console.warning(f"could not post the PR comment: {type(exc).__name__}: {exc}")

    if settings.output_file:
        write_outputs(settings.output_file, {
            "verdict": verdict, "results-path": str(outcome.paths["results"]),
            "report-path": str(outcome.paths["report"]), "comment-url": comment_url,
        })
    code = VERDICT_EXIT[verdict]
    if verdict == "fail" and not settings.fail_on_regression:
        console.warning("the gate failed, but fail-on-regression is false: exiting 0")
        code = 0
    return code


def _fail_early(settings_env: Mapping[str, str], console: Console, message: str, code: int) -> int:
    from gate.github import annotation, write_summary

    console.command(annotation("error", message))
    summary = settings_env.get("GITHUB_STEP_SUMMARY")
    if summary:
        from gate.report.markdown import text

        write_summary(summary, f"## ⚠️ gate could not run\n\n{text(message, 4000)}\n")
    return code


def main(env: Mapping[str, str] | None = None, *, client_factory: ClientFactory = _default_client,
         out: TextIO | None = None) -> int:
    env = os.environ if env is None else env
    console = Console(out or sys.stdout)
    # The token is never printed; no ::add-mask:: either, which would echo it: the runner already
    # masks github.token and every secret.
    try:
        settings = ActionSettings.from_environ(env)
        return act(settings, client_factory=client_factory, console=console)
    except BadInputs as exc:
        return _fail_early(env, console, "bad input: " + "; ".join(str(p) for p in exc.problems), EXIT_BAD_INPUT)
    except GateError as exc:
        return _fail_early(env, console, str(exc), exc.exit_code)
    except Exception as exc:  # a bug: still never a pass
        return _fail_early(env, console, f"internal error: {type(exc).__name__}: {exc}", EXIT_ERROR)
