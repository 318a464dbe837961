"""A local emulator of the slice of the GitHub REST API that a sticky pull-request comment needs.

Test infrastructure only: the standard library, ``http.server.ThreadingHTTPServer`` on
127.0.0.1 and an ephemeral port, in a daemon thread. It speaks the wire format that PyGithub
(and any other client) sees from api.github.com: the real paths, status codes, JSON shapes,
RFC 5988 ``Link`` pagination headers (with ``/repositories/{id}/...`` URLs, as GitHub sends
them), ``X-RateLimit-*`` headers and error bodies (``message``, ``documentation_url``,
``status``).

Served routes (everything else answers 404 ``{"message": "Not Found"}``)::

    GET    /rate_limit
    GET    /user                                   403 when user_endpoint_forbidden (a GITHUB_TOKEN)
    GET    /users/{login}
    GET    /repos/{owner}/{repo}                   (also /repositories/{id}/... for every repo route)
    GET    /repos/{owner}/{repo}/issues/{n}
    GET    /repos/{owner}/{repo}/pulls/{n}
    GET    /repos/{owner}/{repo}/issues/{n}/comments      ?per_page (30, max 100) &page &since
    POST   /repos/{owner}/{repo}/issues/{n}/comments      {"body"} -> 201
    GET    /repos/{owner}/{repo}/issues/comments          repository-wide list, same pagination
    GET    /repos/{owner}/{repo}/issues/comments/{id}
    PATCH  /repos/{owner}/{repo}/issues/comments/{id}     {"body"} -> 200
    DELETE /repos/{owner}/{repo}/issues/comments/{id}     -> 204

Faults: ``read_only`` (403 on every write, as a fork's token gets), ``max_body`` (422),
``fail_next`` (injected 5xx/4xx, optionally after the write was applied), ``rate_limit`` /
``rate_remaining`` (403 "API rate limit exceeded" once spent).

The token is never printed, logged or echoed: request logging is switched off, and neither
the ``requests`` record nor any error body carries a header.
"""

from __future__ import annotations

import base64
import hashlib
import json
import struct
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

try:
    from tests.http_stub import QuietHandler, QuietServer, Served
except ModuleNotFoundError:  # run as `pytest`, not `python -m pytest`
    from http_stub import QuietHandler, QuietServer, Served  # type: ignore[no-redef]

__all__ = ["GitHubEmulator"]

DOCS = "https://docs.github.com/rest"
JSON_TYPE = "application/json; charset=utf-8"
WRITE_METHODS = frozenset({"POST", "PATCH", "PUT", "DELETE"})
DEFAULT_PER_PAGE = 30
MAX_PER_PAGE = 100

# the real identity of the Actions bot, as GitHub serves it
_KNOWN_USERS = {"github-actions[bot]": (41898282, "MDM6Qm90NDE4OTgyODI=", "https://github.com/apps/github-actions")}

_DOC = {
    "create_comment": f"{DOCS}/issues/comments#create-an-issue-comment",
    "update_comment": f"{DOCS}/issues/comments#update-an-issue-comment",
    "delete_comment": f"{DOCS}/issues/comments#delete-an-issue-comment",
    "get_comment": f"{DOCS}/issues/comments#get-an-issue-comment",
    "list_comments": f"{DOCS}/issues/comments#list-issue-comments",
    "list_repo_comments": f"{DOCS}/issues/comments#list-issue-comments-for-a-repository",
    "get_issue": f"{DOCS}/issues/issues#get-an-issue",
    "get_pull": f"{DOCS}/pulls/pulls#get-a-pull-request",
    "get_repo": f"{DOCS}/repos/repos#get-a-repository",
    "get_user": f"{DOCS}/users/users#get-the-authenticated-user",
    "get_user_by_login": f"{DOCS}/users/users#get-a-user",
    "rate_limit": f"{DOCS}/overview/rate-limits-for-the-rest-api",
}

_DEFAULT_MESSAGES = {
    400: "Problems parsing JSON",
    401: "Bad credentials",
    403: "Forbidden",
    404: "Not Found",
    409: "Conflict",
    422: "Validation Failed",
    429: "Too Many Requests",
    500: "Server Error",
    502: "Server Error",
    503: "Service Unavailable",
    504: "We couldn't respond to your request in time. Sorry about that. Please try resubmitting your request "
         "and contact us if the problem persists.",
}


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(int(ts), timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_iso(text: str) -> float | None:
    try:
        return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc).timestamp()
    except ValueError:
        try:
            return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return None


def _node_id(prefix: str, *numbers: int) -> str:
    packed = b"".join(struct.pack(">Q", n) for n in numbers)
    return f"{prefix}_kwDO{base64.b64encode(packed).decode().rstrip('=')}"


def _stable_id(text: str, floor: int = 10_000_000) -> int:
    return floor + int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "big") % 90_000_000


def _sha(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()


@dataclass
class _Repo:
    id: int
    full_name: str  # as first spelled by the test
    created: float
    fork: bool = False


@dataclass
class _Pull:
    repo: str  # lower-cased full name
    number: int
    issue_id: int
    pull_id: int
    head_repo: str
    created: float
    updated: float


@dataclass
class _Comment:
    id: int
    repo: str  # lower-cased full name
    number: int
    body: str
    login: str
    user_type: str
    created: float
    updated: float


@dataclass
class _Failure:
    method: str
    status: int
    after_apply: bool
    remaining: int
    headers: dict[str, str]
    message: str
    path: str | None


class _Response:
    __slots__ = ("status", "body", "headers")

    def __init__(self, status: int, body: Any = None, headers: dict[str, str] | None = None):
        self.status = status
        self.body = body
        self.headers = dict(headers or {})


class _Server(QuietServer):
    emulator: "GitHubEmulator"


class _Handler(QuietHandler):
    server: _Server
    server_version = "github.com"

    def owner(self) -> Any:
        return self.server.emulator

    def version_string(self) -> str:
        return "github.com"

    def _serve(self) -> None:
        raw = self._read_body()
        emu = self.server.emulator
        try:
            response = emu._handle(self.command, self.path, self.headers, raw)
        except Exception as exc:  # an emulator bug: answer 500 and keep it for the test to see
            emu.errors.append(f"{type(exc).__name__}: {exc}")
            response = _Response(500, {"message": "Server Error", "documentation_url": DOCS, "status": "500"})
            emu._record(self.command, self.path, 500)
        payload = b"" if response.body is None else json.dumps(response.body).encode("utf-8")
        self.send_response(response.status)
        if response.body is not None:
            self.send_header("Content-Type", JSON_TYPE)
        self.send_header("Content-Length", str(len(payload)))
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD" and payload:
            self.wfile.write(payload)

    do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = do_HEAD = _serve


class GitHubEmulator(Served):
    """An in-process GitHub REST API for tests; see the module docstring for the routes."""

    server_class = _Server
    handler_class = _Handler
    thread_name = "github-emulator"

    def __init__(self, token: str = "ghs_testtoken", login: str = "github-actions[bot]",
                 user_endpoint_forbidden: bool = True):
        self.token = token
        self.login = login
        self.user_endpoint_forbidden = user_endpoint_forbidden
        self.read_only = False
        self.max_body = 65536
        self.rate_limit = 5000            # X-RateLimit-Limit of the token (an Actions GITHUB_TOKEN has 1000)
        self.rate_remaining = 5000        # spent by one per authenticated request; 0 -> 403 rate limit exceeded
        self.requests: list[tuple[str, str, int]] = []
        self.errors: list[str] = []       # emulator bugs (answered 500); a test may assert it stays empty
        self._lock = threading.RLock()
        self._repos: dict[str, _Repo] = {}
        self._pulls: dict[tuple[str, int], _Pull] = {}
        self._comments: dict[int, _Comment] = {}
        self._users: dict[str, str] = {}  # login -> type
        self._failures: list[_Failure] = []
        self._unauth_remaining = 60
        self._reset = int(time.time()) + 3600
        self._next_repo_id = 700_000_001
        self._next_issue_id = 2_100_000_001
        self._next_pull_id = 1_800_000_001
        self._next_comment_id = 2_500_000_001
        self._request_counter = 0
        self._init_served()
        self._url = ""

    # --- lifecycle -------------------------------------------------------------------------

    @property
    def url(self) -> str:
        if not self._url:
            raise RuntimeError("GitHubEmulator is not started")
        return self._url

    def _bound(self, server: QuietServer) -> None:
        server.emulator = self  # type: ignore[attr-defined]
        host, port = server.server_address[:2]
        self._url = f"http://{host}:{port}"

    # --- test-side setup and inspection ----------------------------------------------------

    def add_pull(self, repo: str, number: int, head_repo: str | None = None) -> None:
        """Create ``repo`` (if new) and an open pull request ``number`` in it; ``head_repo`` names a fork."""
        self._check_full_name(repo)
        if head_repo is not None:
            self._check_full_name(head_repo)
        with self._lock:
            key = self._ensure_repo(repo)
            head_key = self._ensure_repo(head_repo, fork=True) if head_repo else key
            now = time.time()
            pull = self._pulls.get((key, number))
            if pull is not None:
                pull.head_repo = head_key
                return
            self._pulls[(key, number)] = _Pull(key, number, self._next_issue_id, self._next_pull_id, head_key, now, now)
            self._next_issue_id += 1
            self._next_pull_id += 1
            self._users.setdefault(repo.split("/")[0], "User")
            if head_repo:
                self._users.setdefault(head_repo.split("/")[0], "User")

    def add_comment(self, repo: str, number: int, body: str, login: str = "someone", user_type: str = "User") -> dict:
        """A comment written by someone else (not through the API); returns it as served."""
        with self._lock:
            key = repo.lower()
            if (key, number) not in self._pulls:
                raise KeyError(f"no pull request {repo}#{number}: call add_pull first")
            comment = self._create_comment(key, number, body, login, user_type)
            return self._comment_json(comment)

    def comments(self, repo: str, number: int) -> list[dict]:
        """The comments of ``repo#number`` as the API serves them, oldest first."""
        with self._lock:
            key = repo.lower()
            return [self._comment_json(c) for c in self._comments_of(key, number)]

    def fail_next(self, method: str, status: int, *, after_apply: bool = False, times: int = 1,
                  headers: dict | None = None, message: str | None = None, path: str | None = None) -> None:
        """Answer the next ``times`` ``method`` requests with ``status`` and a JSON error body.

        ``after_apply``: the request is performed first (a POST does create the comment), only the
        answer is the error. ``headers`` are added to (and override) the error's headers, e.g.
        ``{"Retry-After": "1"}``. ``message`` replaces the default error message (for example
        "API rate limit exceeded for installation ID 1." makes a 403 a primary rate limit).
        ``path``: only requests whose path (without the query) contains this string.
        """
        if times < 1:
            raise ValueError("times must be >= 1")
        with self._lock:
            self._failures.append(_Failure(
                method.upper(), int(status), after_apply, times, {str(k): str(v) for k, v in (headers or {}).items()},
                message or _DEFAULT_MESSAGES.get(int(status)) or HTTPStatus(int(status)).phrase, path))

    # --- state helpers (under the lock) --------------------------------------------------------

    @staticmethod
    def _check_full_name(name: str) -> None:
        parts = name.split("/")
        if len(parts) != 2 or not all(parts):
            raise ValueError(f"repository must be 'owner/name', got {name!r}")

    def _ensure_repo(self, full_name: str, fork: bool = False) -> str:
        key = full_name.lower()
        if key not in self._repos:
            self._repos[key] = _Repo(self._next_repo_id, full_name, time.time(), fork)
            self._next_repo_id += 1
        return key

    def _comments_of(self, key: str, number: int | None) -> list[_Comment]:
        found = [c for c in self._comments.values() if c.repo == key and (number is None or c.number == number)]
        return sorted(found, key=lambda c: c.id)

    def _create_comment(self, key: str, number: int, body: str, login: str, user_type: str) -> _Comment:
        now = time.time()
        comment = _Comment(self._next_comment_id, key, number, body, login, user_type, now, now)
        self._next_comment_id += 1
        self._comments[comment.id] = comment
        self._users.setdefault(login, user_type)
        pull = self._pulls[(key, number)]
        pull.updated = max(now, pull.updated)
        return comment

    def _record(self, method: str, path: str, status: int) -> None:
        with self._lock:
            self.requests.append((method, path, status))

    # --- JSON shapes ---------------------------------------------------------------------------

    def _user_json(self, login: str, user_type: str | None = None) -> dict:
        kind = user_type or self._users.get(login) or ("Bot" if login.endswith("[bot]") else "User")
        if login in _KNOWN_USERS:
            uid, node_id, html_url = _KNOWN_USERS[login]
        else:
            uid = _stable_id(login)
            node_id = _node_id("BOT" if kind == "Bot" else "U", uid)
            html_url = f"https://github.com/apps/{login[:-5]}" if login.endswith("[bot]") else f"https://github.com/{login}"
        api = f"{self._url}/users/{quote(login)}"
        return {
            "login": login, "id": uid, "node_id": node_id,
            "avatar_url": f"https://avatars.githubusercontent.com/u/{uid}?v=4", "gravatar_id": "",
            "url": api, "html_url": html_url,
            "followers_url": f"{api}/followers", "following_url": f"{api}/following{{/other_user}}",
            "gists_url": f"{api}/gists{{/gist_id}}", "starred_url": f"{api}/starred{{/owner}}{{/repo}}",
            "subscriptions_url": f"{api}/subscriptions", "organizations_url": f"{api}/orgs",
            "repos_url": f"{api}/repos", "events_url": f"{api}/events{{/privacy}}",
            "received_events_url": f"{api}/received_events", "type": kind, "user_view_type": "public",
            "site_admin": False,
        }

    def _repo_json(self, key: str) -> dict:
        repo = self._repos[key]
        owner = repo.full_name.split("/")[0]
        name = repo.full_name.split("/")[1]
        api = f"{self._url}/repos/{repo.full_name}"
        data = {
            "id": repo.id, "node_id": _node_id("R", repo.id), "name": name, "full_name": repo.full_name,
            "private": False, "owner": self._user_json(owner), "html_url": f"https://github.com/{repo.full_name}",
            "description": None, "fork": repo.fork, "url": api,
            "forks_url": f"{api}/forks", "keys_url": f"{api}/keys{{/key_id}}",
            "collaborators_url": f"{api}/collaborators{{/collaborator}}", "teams_url": f"{api}/teams",
            "hooks_url": f"{api}/hooks", "issue_events_url": f"{api}/issues/events{{/number}}",
            "events_url": f"{api}/events", "assignees_url": f"{api}/assignees{{/user}}",
            "branches_url": f"{api}/branches{{/branch}}", "tags_url": f"{api}/tags",
            "blobs_url": f"{api}/git/blobs{{/sha}}", "git_tags_url": f"{api}/git/tags{{/sha}}",
            "git_refs_url": f"{api}/git/refs{{/sha}}", "trees_url": f"{api}/git/trees{{/sha}}",
            "statuses_url": f"{api}/statuses/{{sha}}", "languages_url": f"{api}/languages",
            "stargazers_url": f"{api}/stargazers", "contributors_url": f"{api}/contributors",
            "subscribers_url": f"{api}/subscribers", "subscription_url": f"{api}/subscription",
            "commits_url": f"{api}/commits{{/sha}}", "git_commits_url": f"{api}/git/commits{{/sha}}",
            "comments_url": f"{api}/comments{{/number}}", "issue_comment_url": f"{api}/issues/comments{{/number}}",
            "contents_url": f"{api}/contents/{{+path}}", "compare_url": f"{api}/compare/{{base}}...{{head}}",
            "merges_url": f"{api}/merges", "archive_url": f"{api}/{{archive_format}}{{/ref}}",
            "downloads_url": f"{api}/downloads", "issues_url": f"{api}/issues{{/number}}",
            "pulls_url": f"{api}/pulls{{/number}}", "milestones_url": f"{api}/milestones{{/number}}",
            "notifications_url": f"{api}/notifications{{?since,all,participating}}",
            "labels_url": f"{api}/labels{{/name}}", "releases_url": f"{api}/releases{{/id}}",
            "deployments_url": f"{api}/deployments",
            "created_at": _iso(repo.created), "updated_at": _iso(repo.created), "pushed_at": _iso(repo.created),
            "git_url": f"git://github.com/{repo.full_name}.git", "ssh_url": f"git@github.com:{repo.full_name}.git",
            "clone_url": f"https://github.com/{repo.full_name}.git", "svn_url": f"https://github.com/{repo.full_name}",
            "homepage": None, "size": 0, "stargazers_count": 0, "watchers_count": 0, "language": "Python",
            "has_issues": True, "has_projects": True, "has_downloads": True, "has_wiki": True, "has_pages": False,
            "has_discussions": False, "forks_count": 0, "mirror_url": None, "archived": False, "disabled": False,
            "open_issues_count": sum(1 for (k, _) in self._pulls if k == key), "license": None,
            "allow_forking": True, "is_template": False, "web_commit_signoff_required": False, "topics": [],
            "visibility": "public", "forks": 0, "open_issues": sum(1 for (k, _) in self._pulls if k == key),
            "watchers": 0, "default_branch": "main",
            "permissions": {"admin": False, "maintain": False, "push": not self.read_only,
                            "triage": not self.read_only, "pull": True},
            "network_count": 0, "subscribers_count": 0,
        }
        return data

    def _issue_json(self, pull: _Pull) -> dict:
        repo = self._repos[pull.repo]
        api = f"{self._url}/repos/{repo.full_name}"
        url = f"{api}/issues/{pull.number}"
        html = f"https://github.com/{repo.full_name}/pull/{pull.number}"
        author = self._repos[pull.head_repo].full_name.split("/")[0]
        return {
            "url": url, "repository_url": api, "labels_url": f"{url}/labels{{/name}}",
            "comments_url": f"{url}/comments", "events_url": f"{url}/events", "html_url": html,
            "id": pull.issue_id, "node_id": _node_id("PR", repo.id, pull.pull_id), "number": pull.number,
            "title": f"Pull request #{pull.number}", "user": self._user_json(author), "labels": [],
            "state": "open", "locked": False, "assignee": None, "assignees": [], "milestone": None,
            "comments": len(self._comments_of(pull.repo, pull.number)),
            "created_at": _iso(pull.created), "updated_at": _iso(pull.updated), "closed_at": None,
            "author_association": self._association(author, pull.repo), "type": None, "active_lock_reason": None,
            "draft": False,
            "pull_request": {"url": f"{api}/pulls/{pull.number}", "html_url": html, "diff_url": f"{html}.diff",
                             "patch_url": f"{html}.patch", "merged_at": None},
            "body": None, "closed_by": None,
            "reactions": self._reactions(url), "timeline_url": f"{url}/timeline",
            "performed_via_github_app": None, "state_reason": None,
        }

    def _pull_json(self, pull: _Pull) -> dict:
        repo = self._repos[pull.repo]
        head = self._repos[pull.head_repo]
        api = f"{self._url}/repos/{repo.full_name}"
        url = f"{api}/pulls/{pull.number}"
        html = f"https://github.com/{repo.full_name}/pull/{pull.number}"
        author = head.full_name.split("/")[0]
        head_ref = f"feature-{pull.number}"
        head_sha = _sha(f"{head.full_name}:{head_ref}")
        base_sha = _sha(f"{repo.full_name}:main")
        return {
            "url": url, "id": pull.pull_id, "node_id": _node_id("PR", repo.id, pull.pull_id), "html_url": html,
            "diff_url": f"{html}.diff", "patch_url": f"{html}.patch", "issue_url": f"{api}/issues/{pull.number}",
            "number": pull.number, "state": "open", "locked": False, "title": f"Pull request #{pull.number}",
            "user": self._user_json(author), "body": None,
            "created_at": _iso(pull.created), "updated_at": _iso(pull.updated), "closed_at": None,
            "merged_at": None, "merge_commit_sha": None, "assignee": None, "assignees": [],
            "requested_reviewers": [], "requested_teams": [], "labels": [], "milestone": None, "draft": False,
            "commits_url": f"{url}/commits", "review_comments_url": f"{url}/comments",
            "review_comment_url": f"{api}/pulls/comments{{/number}}",
            "comments_url": f"{api}/issues/{pull.number}/comments", "statuses_url": f"{api}/statuses/{head_sha}",
            "head": {"label": f"{author}:{head_ref}", "ref": head_ref, "sha": head_sha,
                     "user": self._user_json(author), "repo": self._repo_json(pull.head_repo)},
            "base": {"label": f"{repo.full_name.split('/')[0]}:main", "ref": "main", "sha": base_sha,
                     "user": self._user_json(repo.full_name.split("/")[0]), "repo": self._repo_json(pull.repo)},
            "_links": {"self": {"href": url}, "html": {"href": html},
                       "issue": {"href": f"{api}/issues/{pull.number}"},
                       "comments": {"href": f"{api}/issues/{pull.number}/comments"},
                       "review_comments": {"href": f"{url}/comments"},
                       "review_comment": {"href": f"{api}/pulls/comments{{/number}}"},
                       "commits": {"href": f"{url}/commits"}, "statuses": {"href": f"{api}/statuses/{head_sha}"}},
            "author_association": self._association(author, pull.repo), "auto_merge": None,
            "active_lock_reason": None, "merged": False, "mergeable": True, "rebaseable": True,
            "mergeable_state": "clean", "merged_by": None,
            "comments": len(self._comments_of(pull.repo, pull.number)), "review_comments": 0,
            "maintainer_can_modify": pull.head_repo != pull.repo, "commits": 1, "additions": 1, "deletions": 0,
            "changed_files": 1,
        }

    @staticmethod
    def _reactions(url: str) -> dict:
        return {"url": f"{url}/reactions", "total_count": 0, "+1": 0, "-1": 0, "laugh": 0, "hooray": 0,
                "confused": 0, "heart": 0, "rocket": 0, "eyes": 0}

    def _association(self, login: str, key: str) -> str:
        return "OWNER" if login.lower() == key.split("/")[0] else "NONE"

    def _comment_json(self, c: _Comment) -> dict:
        repo = self._repos[c.repo].full_name
        api = f"{self._url}/repos/{repo}"
        url = f"{api}/issues/comments/{c.id}"
        return {
            "url": url, "html_url": f"https://github.com/{repo}/pull/{c.number}#issuecomment-{c.id}",
            "issue_url": f"{api}/issues/{c.number}", "id": c.id,
            "node_id": _node_id("IC", self._repos[c.repo].id, c.id),
            "user": self._user_json(c.login, c.user_type),
            "created_at": _iso(c.created), "updated_at": _iso(c.updated), "author_association":
            self._association(c.login, c.repo), "body": c.body, "reactions": self._reactions(url),
            "performed_via_github_app": None,
        }

    @staticmethod
    def _error(status: int, message: str, doc: str = DOCS, **extra: Any) -> _Response:
        body: dict[str, Any] = {"message": message}
        body.update(extra)
        body["documentation_url"] = doc
        body["status"] = str(status)
        return _Response(status, body)

    # --- request handling ----------------------------------------------------------------------

    def _handle(self, method: str, target: str, headers: Any, raw: bytes) -> _Response:
        split = urlsplit(target)
        path = split.path.rstrip("/") or "/"
        query = parse_qsl(split.query, keep_blank_values=True)
        with self._lock:
            self._request_counter += 1
            request_id = (f"{self._request_counter:04X}:{_stable_id(self._url) % 0xFFFFF:05X}:"
                          f"{self._request_counter * 7919 % 0xFFFFFF:06X}:{int(time.time()):08X}")
            response = self._dispatch_with_faults(method, path, query, headers, raw)
            response.headers.setdefault("X-GitHub-Request-Id", request_id)
            self.requests.append((method, target, response.status))
            return response

    def _authenticated(self, headers: Any) -> bool | None:
        """True: the right token; False: a wrong one; None: no Authorization header at all."""
        value = headers.get("Authorization")
        if not value:
            return None
        scheme, _, credential = value.strip().partition(" ")
        return scheme.lower() in ("token", "bearer") and credential.strip() == self.token

    def _rate_headers(self, authenticated: bool) -> dict[str, str]:
        limit = self.rate_limit if authenticated else 60
        remaining = self.rate_remaining if authenticated else self._unauth_remaining
        return {"X-RateLimit-Limit": str(limit), "X-RateLimit-Remaining": str(max(remaining, 0)),
                "X-RateLimit-Reset": str(self._reset), "X-RateLimit-Used": str(max(limit - remaining, 0)),
                "X-RateLimit-Resource": "core"}

    def _dispatch_with_faults(self, method: str, path: str, query: list[tuple[str, str]], headers: Any,
                              raw: bytes) -> _Response:
        auth = self._authenticated(headers)
        if not auth:
            self._unauth_remaining = max(self._unauth_remaining - 1, 0)
            response = self._error(401, "Requires authentication" if auth is None else "Bad credentials")
            response.headers.update(self._rate_headers(False))
            return response

        counts = path != "/rate_limit"  # GET /rate_limit is free on GitHub too
        if counts and self.rate_remaining <= 0:
            response = self._error(403, f"API rate limit exceeded for installation ID {_stable_id(self.token)}. "
                                        "If you reach out to GitHub Support for help, please include the request ID.",
                                   _DOC["rate_limit"])
            response.headers.update(self._rate_headers(True))
            return response
        if counts:
            self.rate_remaining -= 1

        failure = self._take_failure(method, path)
        if failure is not None and not failure.after_apply:
            response = self._injected(failure)
        else:
            if self.read_only and method in WRITE_METHODS:
                response = self._error(403, "Resource not accessible by integration", self._doc_for(method, path))
                response.headers["X-Accepted-GitHub-Permissions"] = "issues=write; pull_requests=write"
            else:
                response = self._route(method, path, query, raw)
            if failure is not None:
                response = self._injected(failure)
        headers_out = self._rate_headers(True)
        headers_out.update(response.headers)
        response.headers = headers_out
        if response.status < 400 and response.body is not None:
            response.headers.setdefault("X-GitHub-Media-Type", "github.v3; format=json")
        response.headers.setdefault("X-GitHub-Api-Version-Selected", "2022-11-28")
        return response

    def _take_failure(self, method: str, path: str) -> _Failure | None:
        for failure in self._failures:
            if failure.method == method and (failure.path is None or failure.path in path):
                failure.remaining -= 1
                if failure.remaining <= 0:
                    self._failures.remove(failure)
                return failure
        return None

    def _injected(self, failure: _Failure) -> _Response:
        response = self._error(failure.status, failure.message)
        response.headers.update(failure.headers)
        return response

    @staticmethod
    def _doc_for(method: str, path: str) -> str:
        if "/issues/comments/" in path:
            return _DOC["update_comment" if method == "PATCH" else "delete_comment"]
        if path.endswith("/comments") and method == "POST":
            return _DOC["create_comment"]
        return DOCS

    def _resolve_repo(self, segments: list[str]) -> tuple[str | None, list[str]]:
        """``/repos/{o}/{r}/...`` or ``/repositories/{id}/...`` -> (repo key or None, rest)."""
        if segments[0] == "repos" and len(segments) >= 3:
            key = f"{segments[1]}/{segments[2]}".lower()
            return (key if key in self._repos else None), segments[3:]
        if segments[0] == "repositories" and len(segments) >= 2 and segments[1].isdigit():
            for key, repo in self._repos.items():
                if repo.id == int(segments[1]):
                    return key, segments[2:]
            return None, segments[2:]
        return None, []

    def _route(self, method: str, path: str, query: list[tuple[str, str]], raw: bytes) -> _Response:
        segments = [unquote(s) for s in path.strip("/").split("/")] if path != "/" else [""]
        read = method in ("GET", "HEAD")

        if segments == ["rate_limit"] and read:
            return self._rate_limit_response()
        if segments == ["user"] and read:
            if self.user_endpoint_forbidden:
                return self._error(403, "Resource not accessible by integration", _DOC["get_user"])
            return _Response(200, self._authenticated_user_json())
        if len(segments) == 2 and segments[0] == "users" and read:
            login = segments[1]
            known = {u.lower(): u for u in [*self._users, self.login]}
            if login.lower() not in known:
                return self._error(404, "Not Found", _DOC["get_user_by_login"])
            return _Response(200, self._user_json(known[login.lower()]))

        if segments[0] not in ("repos", "repositories"):
            return self._error(404, "Not Found")
        key, rest = self._resolve_repo(segments)
        if key is None:
            return self._error(404, "Not Found", _DOC["get_repo"] if len(segments) <= 3 else DOCS)

        if not rest:
            return _Response(200, self._repo_json(key)) if read else self._error(404, "Not Found")
        if rest[0] == "pulls" and len(rest) == 2 and rest[1].isdigit() and read:
            pull = self._pulls.get((key, int(rest[1])))
            return _Response(200, self._pull_json(pull)) if pull else self._error(404, "Not Found", _DOC["get_pull"])
        if rest[0] != "issues":
            return self._error(404, "Not Found")

        # /issues/comments and /issues/comments/{id}
        if len(rest) >= 2 and rest[1] == "comments":
            if len(rest) == 2 and read:
                return self._list_comments(key, None, path, query)
            if len(rest) == 3 and rest[2].isdigit():
                return self._one_comment(method, key, int(rest[2]), raw)
            return self._error(404, "Not Found")

        # /issues/{n} and /issues/{n}/comments
        if len(rest) >= 2 and rest[1].isdigit():
            pull = self._pulls.get((key, int(rest[1])))
            if len(rest) == 2 and read:
                return _Response(200, self._issue_json(pull)) if pull else self._error(404, "Not Found",
                                                                                        _DOC["get_issue"])
            if len(rest) == 3 and rest[2] == "comments":
                if method == "POST":
                    if pull is None:
                        return self._error(404, "Not Found", _DOC["create_comment"])
                    return self._post_comment(pull, raw)
                if read:
                    if pull is None:
                        return self._error(404, "Not Found", _DOC["list_comments"])
                    return self._list_comments(key, pull.number, path, query)
        return self._error(404, "Not Found")

    def _authenticated_user_json(self) -> dict:
        data = self._user_json(self.login)
        now = _iso(self._reset - 3600)
        data.update({"name": None, "company": None, "blog": "", "location": None, "email": None, "hireable": None,
                     "bio": None, "twitter_username": None, "public_repos": 0, "public_gists": 0, "followers": 0,
                     "following": 0, "created_at": now, "updated_at": now})
        return data

    def _rate_limit_response(self) -> _Response:
        used = max(self.rate_limit - self.rate_remaining, 0)
        core = {"limit": self.rate_limit, "used": used, "remaining": max(self.rate_remaining, 0),
                "reset": self._reset, "resource": "core"}

        def other(name: str, limit: int) -> dict:
            return {"limit": limit, "used": 0, "remaining": limit, "reset": self._reset, "resource": name}

        resources = {
            "core": core, "search": other("search", 30), "graphql": other("graphql", self.rate_limit),
            "integration_manifest": other("integration_manifest", 5000),
            "source_import": other("source_import", 100), "code_scanning_upload": other("code_scanning_upload", 1000),
            "code_scanning_autofix": other("code_scanning_autofix", 10),
            "actions_runner_registration": other("actions_runner_registration", 10000),
            "scim": other("scim", 15000), "dependency_snapshots": other("dependency_snapshots", 100),
            "dependency_sbom": other("dependency_sbom", 100), "audit_log": other("audit_log", 1750),
            "audit_log_streaming": other("audit_log_streaming", 15), "code_search": other("code_search", 10),
        }
        return _Response(200, {"resources": resources, "rate": dict(core)})

    def _parse_body(self, raw: bytes, doc: str) -> tuple[str | None, _Response | None]:
        try:
            data = json.loads(raw.decode("utf-8")) if raw else None
        except (UnicodeDecodeError, ValueError):
            return None, self._error(400, "Problems parsing JSON", doc)
        if not isinstance(data, dict):
            if data is None:
                return None, self._error(422, "Invalid request.\n\n\"body\" wasn't supplied.", doc)
            return None, self._error(400, "Problems parsing JSON", doc)
        if "body" not in data:
            return None, self._error(422, "Invalid request.\n\n\"body\" wasn't supplied.", doc)
        body = data["body"]
        if not isinstance(body, str):
            kind = "nil" if body is None else type(body).__name__
            return None, self._error(422, f"Invalid request.\n\nFor 'properties/body', {kind} is not a string.", doc)
        if body.strip() == "":
            return None, self._error(422, "Validation Failed", doc, errors=[
                {"resource": "IssueComment", "code": "missing_field", "field": "body"}])
        if len(body) > self.max_body:
            return None, self._error(422, "Validation Failed", doc, errors=[
                {"resource": "IssueComment", "code": "unprocessable", "field": "data",
                 "message": f"Body is too long (maximum is {self.max_body} characters)"}])
        return body, None

    def _post_comment(self, pull: _Pull, raw: bytes) -> _Response:
        body, error = self._parse_body(raw, _DOC["create_comment"])
        if error is not None:
            return error
        comment = self._create_comment(pull.repo, pull.number, body or "", self.login,
                                       "Bot" if self.login.endswith("[bot]") else "User")
        data = self._comment_json(comment)
        return _Response(201, data, {"Location": data["url"]})

    def _one_comment(self, method: str, key: str, comment_id: int, raw: bytes) -> _Response:
        comment = self._comments.get(comment_id)
        doc = {"GET": _DOC["get_comment"], "HEAD": _DOC["get_comment"], "PATCH": _DOC["update_comment"],
               "DELETE": _DOC["delete_comment"]}.get(method, DOCS)
        if comment is None or comment.repo != key or method not in ("GET", "HEAD", "PATCH", "DELETE"):
            return self._error(404, "Not Found", doc)
        if method == "DELETE":
            del self._comments[comment_id]
            return _Response(204)
        if method == "PATCH":
            body, error = self._parse_body(raw, doc)
            if error is not None:
                return error
            comment.body = body or ""
            # GitHub's timestamps have one-second resolution; an edit is always visibly later
            comment.updated = max(time.time(), comment.updated + 1)
        return _Response(200, self._comment_json(comment))

    def _list_comments(self, key: str, number: int | None, path: str, query: list[tuple[str, str]]) -> _Response:
        params = dict(query)
        per_page = _int_param(params.get("per_page"), DEFAULT_PER_PAGE)
        per_page = DEFAULT_PER_PAGE if per_page < 1 else min(per_page, MAX_PER_PAGE)
        page = max(_int_param(params.get("page"), 1), 1)
        comments = self._comments_of(key, number)
        since = params.get("since")
        if since:
            threshold = _parse_iso(since)
            if threshold is None:
                return self._error(422, "Validation Failed", _DOC["list_comments"], errors=[
                    {"resource": "IssueComment", "code": "invalid", "field": "since"}])
            comments = [c for c in comments if int(c.updated) >= int(threshold)]
        last = max((len(comments) + per_page - 1) // per_page, 1)
        chunk = comments[(page - 1) * per_page: page * per_page]
        headers = {}
        links = self._links(key, number, query, page, last)
        if links:
            headers["Link"] = links
        return _Response(200, [self._comment_json(c) for c in chunk], headers)

    def _links(self, key: str, number: int | None, query: list[tuple[str, str]], page: int, last: int) -> str:
        """The ``Link`` header as GitHub writes it: prev, next, last, first; ``/repositories/{id}`` URLs."""
        if last <= 1 and page <= 1:
            return ""
        repo_id = self._repos[key].id
        base = f"{self._url}/repositories/{repo_id}/issues" + (f"/{number}/comments" if number else "/comments")
        kept = [(k, v) for k, v in query if k != "page"]

        def link(p: int, rel: str) -> str:
            return f'<{base}?{urlencode([*kept, ("page", str(p))])}>; rel="{rel}"'

        parts = []
        if page > 1:
            parts.append(link(min(page - 1, last), "prev"))
        if page < last:
            parts.append(link(page + 1, "next"))
            parts.append(link(last, "last"))
        if page > 1:
            parts.append(link(1, "first"))
        return ", ".join(parts)


def _int_param(value: str | None, default: int) -> int:
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        return default
