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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, TextIO

from gate.errors import EXIT_BAD_INPUT, EXIT_ERROR, BadInput, BadInputs, GateError
from gate.workflow_log import Console, OutputGuard

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


BASE_CONFIGS = ("thresholds", "suite", "off")


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
    base_config: str = "thresholds"
    shard: tuple[int, int] | None = None
    merge: tuple[str, ...] = ()
    max_cost: float | None = None
    run_url: str | None = None
    token: str = field(default="", repr=False)

    @classmethod
    def from_environ(cls, env: Mapping[str, str]) -> "ActionSettings":
        suite = _input(env, "suite")
        if not suite:
            raise BadInput("the input 'suite' is required: the path of the suite file", location="input suite")
        comment = _input(env, "comment", "always").lower()
        if comment not in COMMENT_MODES:
            raise BadInput(f"expected one of {', '.join(COMMENT_MODES)}, got {comment!r}", location="input comment")

        base_config = _input(env, "base-config", "thresholds").lower()
        if base_config not in BASE_CONFIGS:
            raise BadInput(f"expected one of {', '.join(BASE_CONFIGS)}, got {base_config!r}", location="input base-config")

        def path(value: str | None) -> Path | None:
            return Path(value) if value else None

        shard = None
        if _input(env, "shard"):
            from gate.shards import parse_shard

            try:
                shard = parse_shard(_input(env, "shard"))
            except BadInput as exc:
                raise BadInput(exc.detail, location="input shard") from None
        merge = tuple(_input(env, "merge").split())
        if shard and merge:
            raise BadInput("shard and merge exclude each other: a matrix job writes a shard, a later job merges "
                           "them", location="input merge")
        max_cost = None
        if _input(env, "max-cost"):
            try:
                max_cost = float(_input(env, "max-cost"))
            except ValueError:
                max_cost = -1.0
            if not max_cost >= 0:  # also NaN
                raise BadInput(f"expected a number of US dollars (0 or more), got {_input(env, 'max-cost')!r}",
                               location="input max-cost")
        run_url = None
        if env.get("GITHUB_RUN_ID") and env.get("GITHUB_REPOSITORY"):
            server = (env.get("GITHUB_SERVER_URL") or "https://github.com").rstrip("/")
            run_url = f"{server}/{env['GITHUB_REPOSITORY']}/actions/runs/{env['GITHUB_RUN_ID']}"

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
            cache_dir=path(env.get("GATE_CACHE_DIR")), base_config=base_config, shard=shard, merge=merge,
            run_url=run_url, max_cost=max_cost,
            token=_input(env, "github-token") or env.get("GITHUB_TOKEN", "").strip(),
        )


def read_event(event_path: Path | None) -> dict[str, Any]:
    """The event payload GitHub wrote (trusted: the runner's file, not the pull request's), or {}."""
    if not event_path or not event_path.is_file():
        return {}
    try:
        event = json.loads(event_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return event if isinstance(event, dict) else {}


def pull_request_number(event_name: str, event_path: Path | None) -> int | None:
    """The PR of a pull_request / pull_request_target / issue_comment-on-a-PR event, else None."""
    event = read_event(event_path)
    if not event:
        return None
    if event_name.startswith("pull_request") and isinstance(event.get("pull_request"), dict):
        return int(event["pull_request"]["number"])
    issue = event.get("issue")
    if event_name == "issue_comment" and isinstance(issue, dict) and issue.get("pull_request"):
        return int(issue["number"])
    return None


ClientFactory = Callable[[str, str], Any]


def _default_client(token: str, api_url: str) -> Any:
    from gate.github import make_client

    return make_client(token, api_url)


def act(settings: ActionSettings, *, client_factory: ClientFactory = _default_client, console: Console) -> int:
    import tempfile

    from gate.github import CommentError, StickyComment, annotations, comment_author, find_marker, write_summary
    from gate.pipeline import evaluate_to_dir
    from gate.suite import parse_model_spec
    from gate.trust import load_for_run, pull_request_base, repository_root

    overrides = {}
    if settings.baseline:
        overrides["baseline"] = parse_model_spec(settings.baseline, "input baseline")
    if settings.candidate:
        overrides["candidate"] = parse_model_spec(settings.candidate, "input candidate")
    base = None
    if settings.base_config != "off" and (settings.event_name.startswith("pull_request")
                                          or settings.event_name == "merge_group"):
        root = repository_root(settings.suite.parent)
        if root is None:
            raise BadInput("the workspace is not a git checkout, so the base branch's thresholds cannot be read; "
                           "check out the repository with actions/checkout (fetch-depth: 2), or set the input "
                           "base-config to off", settings.suite, "base-config")
        base = pull_request_base(root, read_event(settings.event_path))
    _refuse_links(settings.output_dir, Path(os.environ.get("GITHUB_WORKSPACE") or "."), "output-dir")
    log = lambda m: console.untrusted(f"gate: {m}")  # noqa: E731
    with tempfile.TemporaryDirectory(prefix="gate-base-") as workdir:
        suite, thresholds, trust, overrides = load_for_run(settings.suite, settings.thresholds, base=base,
                                                           scope=settings.base_config, workdir=Path(workdir),
                                                           overrides=overrides)
        if trust:
            _log_trust(console, trust)
        if settings.shard is not None:
            return _run_shard(settings, suite, overrides, console)
        if settings.merge:
            outcome = _merge(settings, suite, thresholds, trust, log)
        else:
            outcome = evaluate_to_dir(suite, overrides=overrides, thresholds=thresholds, out=settings.output_dir,
                                      cache=settings.cache_dir, log=log, trust=trust, warn=console.warning,
                                      run_url=settings.run_url, max_cost=settings.max_cost)
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
            sticky = StickyComment(client_factory(settings.token, settings.api_url), settings.repository, number,
                                   author=comment_author(settings.token))
            if sticky.wanted(settings.comment, verdict, find_marker(outcome.report)):
                result = sticky.post(outcome.report)
                comment_url = result.url or ""
                console.command(f"gate: comment {result.action}: {comment_url}")
        except CommentError as exc:
            console.warning(f"could not post the PR comment: {exc}")
        except Exception as exc:  # a network failure must not change the verdict's exit code
            console.warning(f"could not post the PR comment: {type(exc).__name__}: {exc}")

    _outputs(settings.output_file, verdict, outcome.paths["results"], outcome.paths["report"], comment_url)
    code = VERDICT_EXIT[verdict]
    if verdict == "fail" and not settings.fail_on_regression:
        console.warning("the gate failed, but fail-on-regression is false: exiting 0")
        code = 0
    return code


def _run_shard(settings: ActionSettings, suite: Any, overrides: dict, console: Console) -> int:
    """The ``shard`` input: raw scores of one slice into output-dir, for a later job's ``merge``. No verdict,
    no comment; exit 3 when a model failed, else 0."""
    from gate.github import annotation
    from gate.pipeline import evaluate_to_dir

    outcome = evaluate_to_dir(suite, overrides=overrides, thresholds=None, out=settings.output_dir,
                              cache=settings.cache_dir, log=lambda m: console.untrusted(f"gate: {m}"),
                              warn=console.warning, shard=settings.shard, max_cost=settings.max_cost)
    errors = outcome.results["errors"]
    for line in errors[:10]:
        console.command(annotation("error", line))
    console.untrusted(f"gate: shard {settings.shard[0]}/{settings.shard[1]} written to {settings.output_dir}")
    _outputs(settings.output_file, "error" if errors else "", outcome.paths.get("shard", ""), "")
    return EXIT_ERROR if errors else 0


def _merge(settings: ActionSettings, suite: Any, thresholds: Path | None, trust: dict | None, log: Any) -> Any:
    """The ``merge`` input: the shard folders of a matrix, joined into the results of one run."""
    from gate.pipeline import merge_to_dir

    folders = sorted({path for pattern in settings.merge for path in Path(".").glob(pattern) if path.is_dir()})
    if not folders:
        raise BadInput(f"no shard folder matches {' '.join(settings.merge)!r}", location="input merge")
    return merge_to_dir(folders, thresholds=thresholds, out=settings.output_dir, log=log, suite=suite, trust=trust,
                        run_url=settings.run_url)


def _log_trust(console: Console, trust: dict[str, Any]) -> None:
    """Say in the log what the run is judged with; a change to the bar is a warning on the run."""
    base = trust["base_commit"][:12]
    console.untrusted(f"gate: judged with the configuration of the base commit {base}: "
                      f"{', '.join(trust['from_base']) or 'nothing (new files)'}")
    if trust["changed"]:
        console.warning(f"this pull request changes {', '.join(trust['changed'])}; the base branch's version "
                        f"(commit {base}) was used")


def _outputs(output_file: Path | str | None, verdict: str, results: Path | str = "", report: Path | str = "",
             comment_url: str = "") -> None:
    """The step's outputs, written on every path out of the action (``error`` when it could not run)."""
    if not output_file:
        return
    from gate.github import write_outputs

    try:
        write_outputs(output_file, {"verdict": verdict, "results-path": str(results), "report-path": str(report),
                                    "comment-url": comment_url})
    except OSError:
        pass  # the runner's file is gone: nothing else can carry the outputs


def _fail_early(settings_env: Mapping[str, str], console: Console, message: str, code: int) -> int:
    from gate.github import annotation, write_summary
    from gate.secrets import redact

    message = redact(message)  # before any cut: half a secret is still a secret

    console.command(annotation("error", message))
    summary = settings_env.get("GITHUB_STEP_SUMMARY")
    if summary:
        from gate.report.markdown import text

        write_summary(summary, f"## ⚠️ gate could not run\n\n{text(message, 4000)}\n")
    _outputs(settings_env.get("GITHUB_OUTPUT"), "error")
    return code


def _apply_key_inputs(env: Mapping[str, str]) -> None:
    """The key-vars and key-hosts inputs (the workflow owner's) become the policy of :mod:`gate.secrets`."""
    from gate.secrets import KEY_HOSTS_ENV, KEY_VARS_ENV

    for name, variable in (("key-vars", KEY_VARS_ENV), ("key-hosts", KEY_HOSTS_ENV)):
        value = _input(env, name)
        if value:
            os.environ[variable] = value


def main(env: Mapping[str, str] | None = None, *, client_factory: ClientFactory = _default_client,
         out: TextIO | None = None) -> int:
    """Run the Action. In a real runner (``env`` None and GITHUB_ACTIONS set) every line the process and
    its libraries print goes through :class:`~gate.workflow_log.OutputGuard`."""
    if env is None and os.environ.get("GITHUB_ACTIONS") == "true" and out is None:
        with OutputGuard() as guard:
            return _main(os.environ, client_factory, Console(sys.stdout, guard))
    return _main(os.environ if env is None else env, client_factory, Console(out or sys.stdout))


def _main(env: Mapping[str, str], client_factory: ClientFactory, console: Console) -> int:
    from gate.secrets import REDACTOR

    # Secrets are redacted from every output; no ::add-mask:: either, which would echo them.
    REDACTOR.register_environment(env)
    REDACTOR.register(env.get("INPUT_GITHUB-TOKEN"))
    try:
        _apply_key_inputs(env)
        settings = ActionSettings.from_environ(env)
        return act(settings, client_factory=client_factory, console=console)
    except BadInputs as exc:
        return _fail_early(env, console, "bad input: " + "; ".join(str(p) for p in exc.problems), EXIT_BAD_INPUT)
    except GateError as exc:
        return _fail_early(env, console, str(exc), exc.exit_code)
    except Exception as exc:  # a bug: still never a pass
        return _fail_early(env, console, f"internal error: {type(exc).__name__}: {exc}", EXIT_ERROR)
    finally:
        workspace = Path(env.get("GITHUB_WORKSPACE") or ".")
        hand_back([workspace / _input(env, "output-dir", "gate-out"), *(
            [Path(env["GATE_CACHE_DIR"])] if env.get("GATE_CACHE_DIR") else [])], workspace)


def _refuse_links(path: Path, workspace: Path, name: str) -> None:
    """Bad input when ``path`` (or a folder on the way to it) inside the workspace is a symlink: a pull request
    can commit `gate-out -> /github/home` and have the action, as root, write or chown where it points."""
    top = workspace.absolute()
    current = path if path.is_absolute() else Path.cwd() / path
    while True:
        if current.is_symlink():
            raise BadInput(f"{current} is a symbolic link (from the checkout?); the action does not write through "
                           "links: choose another folder", location=f"input {name}")
        if current == top or current.parent == current or not current.is_relative_to(top):
            return
        current = current.parent


def hand_back(paths: list[Path], workspace: Path) -> None:
    """Give what the action wrote back to the owner of the workspace.

    A Docker action runs as root, the runner's later steps as its own user (uid 1001 on hosted runners):
    root-owned output would make ``git clean -ffdx`` fail, and actions/cache could not restore over a
    root-owned cache. Each path is chowned with everything under it, and so is each parent the action
    created inside the workspace. Nothing happens when not root or when the workspace is root's."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return
    try:
        owner = workspace.stat()
    except OSError:
        return
    if owner.st_uid == 0:
        return
    top = workspace.resolve()

    def give(path: Path) -> None:
        try:
            os.chown(path, owner.st_uid, owner.st_gid, follow_symlinks=False)
        except OSError:
            pass

    for path in paths:
        if path.is_symlink() or not path.exists():
            continue  # a link (a pull request can commit `gate-out -> /`): never followed, as root
        for current, folders, files in os.walk(path):
            give(Path(current))
            for name in folders + files:
                give(Path(current) / name)
        parent = path.resolve().parent
        while parent != top and parent.is_relative_to(top) and parent.stat().st_uid == 0:
            give(parent)
            parent = parent.parent
