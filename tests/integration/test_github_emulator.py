"""The GitHub REST emulator, driven by the real PyGithub client: proof that it speaks the wire format
(paths, status codes, JSON shapes, Link pagination, rate-limit headers) that PyGithub expects."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest
import requests
from github import Auth, BadCredentialsException, Github, GithubException, UnknownObjectException
from github.GithubException import RateLimitExceededException
from github.GithubRetry import GithubRetry

from tests.github_emulator import GitHubEmulator

REPO = "octo-org/service"


@pytest.fixture
def emu():
    with GitHubEmulator() as emulator:
        emulator.add_pull(REPO, 7)
        yield emulator
    assert emulator.errors == []


@pytest.fixture
def clients():
    made: list[Github] = []
    yield made
    for client in made:
        client.close()


@pytest.fixture
def connect(emu, clients):
    def make(token: str | None = None, *, on: GitHubEmulator | None = None, retry=None) -> Github:
        target = on or emu
        client = Github(auth=Auth.Token(token or target.token), base_url=target.url, per_page=100, retry=retry,
                        seconds_between_requests=0, seconds_between_writes=0)
        clients.append(client)
        return client
    return make


@pytest.fixture
def issue(connect):
    return connect().get_repo(REPO).get_issue(7)


def raw_get(emu: GitHubEmulator, path: str, token: str | None = None):
    req = urllib.request.Request(emu.url + path, headers={"Authorization": f"token {token or emu.token}"})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.headers, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        with err:
            return err.code, err.headers, json.loads(err.read())


# --- reading ---------------------------------------------------------------------------------


def test_get_comments_follows_the_link_header_across_pages_in_order(emu, issue):
    for i in range(130):
        emu.add_comment(REPO, 7, f"comment {i}", login="reviewer")
    assert [c.body for c in issue.get_comments()] == [f"comment {i}" for i in range(130)]
    pages = [path for method, path, status in emu.requests if method == "GET" and "/comments" in path]
    assert len(pages) == 2 and "per_page=100" in pages[0] and "page=2" in pages[1]


def test_total_count_and_reversed_use_the_last_and_prev_links(emu, issue):
    for i in range(130):
        emu.add_comment(REPO, 7, f"comment {i}")
    comments = issue.get_comments()
    assert comments.totalCount == 130  # PyGithub asks for per_page=1 and reads page= of rel="last"
    assert [c.body for c in comments.reversed][:2] == ["comment 129", "comment 128"]


def test_link_header_has_githubs_rels_and_absolute_urls(emu):
    for i in range(5):
        emu.add_comment(REPO, 7, f"c{i}")
    status, headers, body = raw_get(emu, f"/repos/{REPO}/issues/7/comments?per_page=2&page=2")
    assert status == 200 and [c["body"] for c in body] == ["c2", "c3"]
    links = dict(reversed(part.split("; ")) for part in headers["Link"].split(", "))
    base = f"{emu.url}/repositories/{raw_get(emu, '/repos/' + REPO)[2]['id']}"  # GitHub links by repo id
    assert links == {f'rel="{rel}"': f"<{base}/issues/7/comments?per_page=2&page={page}>"
                     for rel, page in [("prev", 1), ("next", 3), ("last", 3), ("first", 1)]}
    assert "Link" not in raw_get(emu, f"/repos/{REPO}/issues/7/comments")[1]  # one page: no Link


def test_comment_json_has_githubs_shape(emu, issue):
    served = emu.add_comment(REPO, 7, "hello", login="octocat")
    (comment,) = issue.get_comments()
    assert comment.id == served["id"] and comment.user.login == "octocat" and comment.user.type == "User"
    assert comment.html_url == f"https://github.com/{REPO}/pull/7#issuecomment-{comment.id}"
    assert comment.url == f"{emu.url}/repos/{REPO}/issues/comments/{comment.id}"
    assert comment.issue_url.endswith(f"/repos/{REPO}/issues/7")
    assert served["created_at"].endswith("Z") and comment.created_at.tzinfo is not None


def test_repo_issue_and_pull_objects(emu, connect):
    emu.add_pull(REPO, 8, head_repo="someone/service")
    repo = connect().get_repo(REPO)
    assert (repo.full_name, repo.owner.login, repo.private) == (REPO, "octo-org", False)
    assert repo.get_issue(8).pull_request.html_url == f"https://github.com/{REPO}/pull/8"
    pull = repo.get_pull(8)
    assert pull.number == 8 and pull.head.repo.full_name == "someone/service" and pull.base.repo.id == repo.id


def test_unknown_repo_pull_and_route_are_404(emu, connect):
    client = connect()
    with pytest.raises(UnknownObjectException) as exc:
        client.get_repo("octo-org/nope")
    assert exc.value.status == 404 and exc.value.data["message"] == "Not Found"
    with pytest.raises(UnknownObjectException):
        client.get_repo(REPO).get_issue(99)
    status, headers, body = raw_get(emu, "/no/such/route")
    assert status == 404 and body["message"] == "Not Found"
    assert headers["Content-Type"] == "application/json; charset=utf-8"


# --- writing ---------------------------------------------------------------------------------


def test_create_then_edit_round_trip(emu, issue, connect):
    created = issue.create_comment("first")
    assert created.user.login == "github-actions[bot]" and created.user.type == "Bot"
    created.edit("second")
    (served,) = emu.comments(REPO, 7)
    assert served["body"] == "second" and served["updated_at"] > served["created_at"]
    assert created.updated_at > created.created_at
    assert connect().get_repo(REPO).get_issue(7).get_comment(created.id).body == "second"


def test_delete_removes_the_comment(emu, issue):
    issue.create_comment("bye").delete()
    assert emu.comments(REPO, 7) == [] and emu.requests[-1][::2] == ("DELETE", 204)


def test_oversized_body_is_422_with_the_validation_error_shape(emu, issue):
    with pytest.raises(GithubException) as exc:
        issue.create_comment("x" * (emu.max_body + 1))
    assert exc.value.status == 422 and exc.value.data["message"] == "Validation Failed"
    assert exc.value.data["errors"][0]["field"] and "too long" in exc.value.data["errors"][0]["message"]
    issue.create_comment("x" * emu.max_body)  # the limit itself is fine
    assert len(emu.comments(REPO, 7)) == 1


def test_read_only_token_gets_403_on_writes_but_can_read(emu, issue):
    emu.read_only = True
    with pytest.raises(GithubException) as exc:
        issue.create_comment("nope")
    assert exc.value.status == 403 and exc.value.data["message"] == "Resource not accessible by integration"
    assert emu.comments(REPO, 7) == [] and list(issue.get_comments()) == []


# --- authentication and identity -----------------------------------------------------------------


def test_bad_token_is_401_and_never_printed(emu, connect, capfd):
    with pytest.raises(BadCredentialsException) as exc:
        connect("ghs_wrong").get_repo(REPO)
    assert exc.value.status == 401 and exc.value.data["message"] == "Bad credentials"
    connect().get_repo(REPO)
    out, err = capfd.readouterr()
    assert emu.token not in out + err and "ghs_wrong" not in out + err
    assert all(emu.token not in path for _, path, _ in emu.requests)


def test_get_user_is_403_for_an_actions_token(emu, connect):
    with pytest.raises(GithubException) as exc:
        connect().get_user().login  # lazy: the request happens on first attribute access
    assert exc.value.status == 403


def test_get_user_answers_the_login_when_allowed(connect):
    with GitHubEmulator(login="octocat", user_endpoint_forbidden=False) as other:
        assert connect(on=other).get_user().login == "octocat"


# --- rate limits ---------------------------------------------------------------------------------


def test_rate_limit_endpoint_and_headers(emu, connect):
    client = connect()
    client.get_repo(REPO)
    first = client.get_rate_limit()
    client.get_repo(REPO)
    second = client.get_rate_limit()
    assert first.resources.core.limit == 5000 and second.rate.remaining == first.rate.remaining - 1
    assert client.rate_limiting == (second.rate.remaining, 5000)
    _, headers, _ = raw_get(emu, f"/repos/{REPO}")
    assert {h for h in headers if h.startswith("X-")} >= {
        "X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset", "X-RateLimit-Used",
        "X-RateLimit-Resource", "X-GitHub-Request-Id"}
    assert headers["X-RateLimit-Resource"] == "core"


def test_spent_rate_limit_is_403_rate_limit_exceeded(emu, connect):
    emu.rate_remaining = 0
    with pytest.raises(RateLimitExceededException) as exc:
        connect().get_repo(REPO)
    assert exc.value.status == 403 and exc.value.headers["x-ratelimit-remaining"] == "0"


# --- injected faults -----------------------------------------------------------------------------


def test_fail_next_answers_502_once_then_works(emu, issue):
    emu.fail_next("POST", 502)
    with pytest.raises(GithubException) as exc:
        issue.create_comment("try")
    assert exc.value.status == 502 and emu.comments(REPO, 7) == []
    issue.create_comment("again")
    assert [c["body"] for c in emu.comments(REPO, 7)] == ["again"]
    assert [s for m, _, s in emu.requests if m == "POST"] == [502, 201]


def test_fail_next_after_apply_creates_the_comment_the_client_saw_fail(emu, issue):
    emu.fail_next("POST", 502, after_apply=True)
    with pytest.raises(GithubException) as exc:
        issue.create_comment("ghost")
    assert exc.value.status == 502
    assert [c["body"] for c in emu.comments(REPO, 7)] == ["ghost"]


def test_pygithubs_default_retry_reposts_a_post_and_duplicates(emu, connect):
    """GithubRetry's default allowed_methods include POST (not PATCH): a 502 after the write duplicates."""
    issue = connect(retry=GithubRetry(total=3, backoff_factor=0)).get_repo(REPO).get_issue(7)
    emu.fail_next("POST", 502, after_apply=True)
    issue.create_comment("twice")
    assert [c["body"] for c in emu.comments(REPO, 7)] == ["twice", "twice"]
    emu.fail_next("PATCH", 502)
    with pytest.raises(GithubException) as exc:
        issue.get_comments()[0].edit("edited")
    assert exc.value.status == 502  # PATCH is not retried by default


def test_exhausted_retries_raise_requests_retry_error_not_github_exception(emu, connect):
    client = connect(retry=GithubRetry(total=2, backoff_factor=0))
    emu.fail_next("GET", 502, times=3)
    with pytest.raises(requests.exceptions.RetryError):
        client.get_repo(REPO)
    assert [s for _, _, s in emu.requests] == [502, 502, 502]


def test_retry_after_header_is_honoured_on_a_secondary_rate_limit(emu, connect):
    client = connect(retry=GithubRetry(total=2, backoff_factor=0))
    emu.fail_next("GET", 403, headers={"Retry-After": "0"},
                  message="You have exceeded a secondary rate limit. Please wait a few minutes before you try again.")
    assert client.get_repo(REPO).full_name == REPO
    assert [s for _, _, s in emu.requests] == [403, 200]


def test_read_only_403_is_not_retried_by_github_retry(emu, connect):
    issue = connect(retry=GithubRetry(total=3, backoff_factor=0)).get_repo(REPO).get_issue(7)
    emu.read_only = True
    with pytest.raises(GithubException) as exc:
        issue.create_comment("nope")
    assert exc.value.status == 403 and [m for m, _, _ in emu.requests].count("POST") == 1
