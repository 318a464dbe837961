"""GitHub plumbing: the sticky PR comment (PyGithub), job summary, step outputs and annotations.

Sticky comment rules (after sticky-pull-request-comment and python-coverage-comment-action):
the comment is found by the hidden marker of its suite AND its author being the token's
own identity, then edited in place; otherwise one is created. PyGithub retries reads and
edits itself, but never a create: a POST answered 5xx may still have created the comment,
so before each new attempt the comments are listed again and an existing one is edited.
"""

from __future__ import annotations

import re
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from gate.secrets import redact

COMMENT_LIMIT = 65_536          # GitHub's maximum issue-comment body, in characters
SUMMARY_LIMIT = 1024 * 1024     # GitHub's maximum job summary per step, in bytes
DEFAULT_BOT = "github-actions[bot]"
_MARKER_RE = re.compile(r'<!-- gate-report suite="([^"]*)" -->')


class CommentError(Exception):
    """The comment could not be posted (message is safe to print: it never holds the token)."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


@dataclass
class CommentResult:
    action: str  # created | updated | skipped
    url: str | None = None
    reason: str = ""


def find_marker(report: str) -> str:
    """The marker that opens ``report`` (gate's renderer always puts it first)."""
    match = _MARKER_RE.match(report)
    if not match:
        raise ValueError("the report has no gate marker (<!-- gate-report suite=\"...\" -->) on its first line")
    return match.group(0)


def marker_suite(marker: str) -> str:
    """The suite name a marker carries (as :func:`gate.report.marker` wrote it: letters, digits, " ._-")."""
    match = _MARKER_RE.match(marker)
    return match.group(1) if match else ""


def _close_open_blocks(text: str) -> str:
    if text.count("```") % 2:
        text += "\n```"
    opened = len(re.findall(r"<details>", text)) - len(re.findall(r"</details>", text))
    return text + "\n</details>" * max(opened, 0)


def truncate(body: str, limit: int, note: str, *, encoding: str | None = None) -> str:
    """Cut ``body`` at a line boundary so that it plus ``note`` fits ``limit`` (characters, or bytes of
    ``encoding``), closing any open code fence or <details> so the rest still renders."""
    size = (lambda s: len(s.encode(encoding))) if encoding else len
    if size(body) <= limit:
        return body
    budget = limit - size(note) - 64
    cut = body
    while size(cut) > budget:
        over = size(cut) - budget
        cut = cut[: max(len(cut) - max(over, 1), 0)]
    cut = cut[: cut.rfind("\n")] if "\n" in cut else cut
    return _close_open_blocks(cut) + "\n\n" + note + "\n"


def fit_comment(body: str, limit: int = COMMENT_LIMIT) -> str:
    return truncate(body, limit, "> [!NOTE]\n> This report was truncated to fit a GitHub comment "
                                 f"({limit:,} characters). The full report is in the job summary and in report.md.")


def make_client(token: str, api_url: str, *, retries: int | None = None, backoff: float | None = None,
                timeout: int = 30):
    """A PyGithub client that retries reads and edits (5xx, rate limits) but never a create.

    ``GATE_GITHUB_RETRIES`` (default 5) and ``GATE_GITHUB_BACKOFF`` (seconds, default 1: waits of
    1, 2, 4, 8 s) tune the retries.
    """
    import os

    from github import Auth, Github
    from github.GithubRetry import GithubRetry
    from urllib3.util.retry import Retry

    retries = int(os.environ.get("GATE_GITHUB_RETRIES", 5)) if retries is None else retries
    backoff = float(os.environ.get("GATE_GITHUB_BACKOFF", 1.0)) if backoff is None else backoff
    retry = GithubRetry(total=retries, backoff_factor=backoff, secondary_rate_wait=60, max_rate_limit_wait=300,
                        allowed_methods=Retry.DEFAULT_ALLOWED_METHODS | {"GET", "PATCH"})
    return Github(auth=Auth.Token(token), base_url=api_url.rstrip("/"), per_page=100, retry=retry, timeout=timeout,
                  seconds_between_requests=None, seconds_between_writes=None)


def comment_author(token: str) -> str | None:
    """The login a token comments as, when it is known without asking GitHub: ``GATE_COMMENT_AUTHOR`` if set
    (a GitHub App's ``<app>[bot]``), else ``github-actions[bot]`` for an installation token (``ghs_``: the
    Actions token, which cannot read /user at all). None: ask /user (a personal token)."""
    import os

    if os.environ.get("GATE_COMMENT_AUTHOR"):
        return os.environ["GATE_COMMENT_AUTHOR"]
    return DEFAULT_BOT if token.startswith("ghs_") else None


def own_login(client: Any) -> str:
    """The token's login from /user, else ``github-actions[bot]`` when GitHub refuses (a token that may not
    read /user). PyGithub logs a refused request; that line would read as an error in the job log, so its
    logger is quiet for this one call."""
    import logging
    import os

    from github import GithubException

    if os.environ.get("GATE_COMMENT_AUTHOR"):
        return os.environ["GATE_COMMENT_AUTHOR"]
    logger = logging.getLogger("github")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        return client.get_user().login
    except GithubException as exc:
        if exc.status in (401, 403):
            return DEFAULT_BOT
        raise
    finally:
        logger.setLevel(level)


@dataclass
class StickyComment:
    """Creates or updates the one comment of a suite on a pull request."""

    client: Any
    repo: str
    number: int
    author: str | None = None
    attempts: int = 4
    backoff: float = 2.0
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)

    def _issue(self):
        return self.client.get_repo(self.repo).get_issue(self.number)

    def find(self, issue: Any, marker: str, author: str) -> Any | None:
        # The marker must open the body: a marker quoted inside another suite's report does not count.
        mine = [c for c in issue.get_comments()
                if c.user is not None and c.user.login == author and (c.body or "").startswith(marker)]
        return mine[-1] if mine else None

    def exists(self, marker: str) -> bool:
        from github import GithubException
        from requests.exceptions import RequestException

        try:
            return self.find(self._issue(), marker, self.author or own_login(self.client)) is not None
        except GithubException as exc:
            raise CommentError(_describe(exc, self.repo, self.number), exc.status) from None
        except RequestException as exc:  # retries exhausted (RetryError), connection refused, timeouts
            raise CommentError(f"GitHub could not be reached for {self.repo}#{self.number}: "
                               f"{type(exc).__name__}") from None

    def wanted(self, mode: str, verdict: str, marker: str) -> bool:
        """``always``: yes. ``on-failure``: on a failing or erroring gate, or to turn an earlier comment of
        this suite into the passing report instead of leaving a stale failure."""
        return mode == "always" or verdict != "pass" or self.exists(marker)

    def post(self, body: str) -> CommentResult:
        """Edit this suite's comment in place, or create it; a 5xx on create re-lists before retrying."""
        from github import GithubException
        from requests.exceptions import RequestException

        body = redact(body)
        marker = find_marker(body)
        body = fit_comment(body)
        try:
            author = self.author or own_login(self.client)
            issue = self._issue()
            for attempt in range(self.attempts):
                existing = self.find(issue, marker, author)
                try:
                    if existing is not None:
                        existing.edit(body)
                        return CommentResult("updated", existing.html_url)
                    created = issue.create_comment(body)
                    return CommentResult("created", created.html_url)
                except GithubException as exc:
                    if exc.status is not None and exc.status >= 500 and attempt + 1 < self.attempts:
                        self.sleep(self.backoff * 2 ** attempt)
                        continue
                    raise
        except GithubException as exc:
            raise CommentError(_describe(exc, self.repo, self.number), exc.status) from None
        except RequestException as exc:  # retries of reads/edits exhausted (RetryError), connection errors
            raise CommentError(f"GitHub could not be reached for {self.repo}#{self.number}: "
                               f"{type(exc).__name__}") from None
        raise AssertionError("unreachable")  # pragma: no cover


def _describe(exc: Any, repo: str, number: int) -> str:
    message = exc.data.get("message") if isinstance(exc.data, dict) else None
    hint = ""
    if exc.status == 403:
        hint = (" — the token cannot write comments here (a pull request from a fork gets a read-only token; "
                "see the README's two-workflow pattern) or the workflow lacks `permissions: pull-requests: write`")
    elif exc.status == 404:
        hint = " — no such repository or pull request, or the token cannot see it"
    return f"GitHub answered {exc.status} for {repo}#{number}: {message or 'no message'}{hint}"


# --- workflow commands -----------------------------------------------------------------------

def escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


def annotation(level: str, message: str, title: str = "gate") -> str:
    return f"::{level} title={escape_property(title)}::{escape_data(message)}"


def annotations(rules: list[dict[str, Any]], errors: list[str], limit: int = 10) -> list[str]:
    """One ``::error::`` per failed blocking rule or error and one ``::warning::`` per warn rule; GitHub
    shows at most 10 of each per step, so the rest are summarized in the last one."""
    out: list[str] = []
    failed = [f"{r['name']}: {r['message']}" for r in rules if r["status"] in ("fail", "error")] + list(errors)
    warned = [f"{r['name']}: {r['message']}" for r in rules if r["status"] == "warn"]
    for level, items in (("error", failed), ("warning", warned)):
        shown = items if len(items) <= limit else items[: limit - 1]
        out += [annotation(level, m) for m in shown]
        if len(items) > limit:
            out.append(annotation(level, f"… and {len(items) - len(shown)} more; see the job summary"))
    return out


def write_outputs(path: str | Path, values: dict[str, str]) -> None:
    """Append step outputs to $GITHUB_OUTPUT with a random heredoc delimiter per value."""
    with open(path, "a", encoding="utf-8") as fh:
        for name, value in values.items():
            delimiter = f"ghadelimiter_{uuid.uuid4()}"
            while delimiter in value:  # pragma: no cover - astronomically unlikely
                delimiter = f"ghadelimiter_{uuid.uuid4()}"
            fh.write(f"{name}<<{delimiter}\n{redact(value)}\n{delimiter}\n")


def write_summary(path: str | Path, report: str) -> None:
    note = "> [!NOTE]\n> This report was truncated to fit the job summary (1 MiB). The full report is report.md."
    existing = Path(path).stat().st_size if Path(path).exists() else 0
    text = truncate(redact(report), max(SUMMARY_LIMIT - existing - 1, 4096), note, encoding="utf-8")
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(text if text.endswith("\n") else text + "\n")
