"""A local emulator of the slice of the Hugging Face Hub that ``huggingface_hub.snapshot_download`` uses.

Test infrastructure only: the standard library, ``http.server.ThreadingHTTPServer`` on 127.0.0.1 and
ephemeral ports, in daemon threads (see tests/http_stub.py). It speaks what huggingface_hub 2.4 expects
from huggingface.co (read from its ``hf_api.py``, ``file_download.py``, ``_snapshot_download.py`` and
``utils/_http.py``), so the real client runs against it unchanged, with ``HF_ENDPOINT`` pointing here::

    GET  /api/models/{org}/{name}                       model info at the default branch ("sha", "siblings", ...)
    GET  /api/models/{org}/{name}/revision/{rev}        model info at a branch, tag or commit (rev URL-quoted)
    GET  /api/models/{org}/{name}/tree/{rev}[/{path}]   ?recursive=&expand=&cursor= : files and folders, JSON list;
                                                        more than ``page_size`` entries: a Link rel="next" header
    HEAD /{org}/{name}/resolve/{rev}/{path}             file metadata: X-Repo-Commit, ETag (git blob oid),
                                                        Content-Length; an LFS file (*.safetensors, *.bin, ...):
                                                        302 to the CDN with X-Linked-Etag (sha256), X-Linked-Size
    GET  /{org}/{name}/resolve/{rev}/{path}             the bytes (an LFS file: the same 302)
    GET  /cdn/{sha256}?Expires=&Signature=              the CDN, served on a second port: another origin, so
                                                        the client drops the Authorization header for it

Errors as the Hub answers them: the ``X-Error-Code`` / ``X-Error-Message`` headers that
``hf_raise_for_status`` maps to exceptions, and a ``{"error": ...}`` body:

- a missing repository, or a private one asked without a valid token: 401 ``RepoNotFound`` "Invalid
  username or password." (the Hub does not tell the two apart); with a valid token: 404 ``RepoNotFound``;
- a gated repository without a token: 401 ``GatedRepo``;
- a token the Hub does not know: 401, ``X-Error-Message: Invalid credentials in Authorization header``;
- a missing revision: 404 ``RevisionNotFound`` "Invalid rev id: ..."; a missing file: 404 ``EntryNotFound``.

Faults: :meth:`HubEmulator.fail` answers a status (500: "Internal Error") to requests whose path starts
with a prefix. ``requests`` records ``(method, path, authorized)`` of every request: whether it carried an
Authorization header, never its value; nothing is printed or logged.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

try:
    from tests.http_stub import QuietHandler, QuietServer, Served
except ModuleNotFoundError:  # run as `pytest`, not `python -m pytest`
    from http_stub import QuietHandler, QuietServer, Served  # type: ignore[no-redef]

__all__ = ["HubEmulator"]

JSON_TYPE = "application/json; charset=utf-8"
#: what the Hub keeps in LFS (its default .gitattributes): served through the CDN redirect
LFS_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".h5", ".msgpack", ".onnx", ".gguf", ".model",
                ".pkl", ".joblib")
CHUNK = 1 << 20


def _blob_oid(data: bytes) -> str:
    """The git blob id of ``data`` (what the Hub sends as a regular file's ETag and tree ``oid``)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _lfs_pointer(sha256: str, size: int) -> bytes:
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


@dataclass(frozen=True)
class _File:
    data: bytes
    oid: str           # git blob id (of the LFS pointer for an LFS file, as git stores it)
    sha256: str | None  # LFS files only
    pointer_size: int | None

    @classmethod
    def of(cls, path: str, data: bytes) -> "_File":
        if path.endswith(LFS_SUFFIXES):
            sha256 = hashlib.sha256(data).hexdigest()
            pointer = _lfs_pointer(sha256, len(data))
            return cls(data, _blob_oid(pointer), sha256, len(pointer))
        return cls(data, _blob_oid(data), None, None)


@dataclass
class _Repo:
    id: str
    private: bool
    gated: bool
    created: float
    commits: dict[str, dict[str, _File]] = field(default_factory=dict)
    refs: dict[str, str] = field(default_factory=dict)  # branch or tag -> commit
    default_branch: str = "main"


class _Response:
    __slots__ = ("status", "body", "headers", "stream")

    def __init__(self, status: int, body: Any = None, headers: dict[str, str] | None = None,
                 stream: bytes | None = None):
        self.status = status
        self.body = body
        self.headers = dict(headers or {})
        self.stream = stream  # raw bytes (a file) instead of a JSON body


def _error(status: int, message: str, code: str | None = None) -> _Response:
    headers = {"X-Error-Message": message}
    if code:
        headers["X-Error-Code"] = code
    return _Response(status, {"error": message}, headers)


class _Server(QuietServer):
    emulator: "HubEmulator"


class _Handler(QuietHandler):
    server: _Server
    server_version = "huggingface.co"

    def owner(self) -> Any:
        return self.server.emulator

    def version_string(self) -> str:
        return "huggingface.co"

    def _serve(self) -> None:
        self._read_body()
        emu = self.server.emulator
        cdn = getattr(self.server, "is_cdn", False)
        try:
            response = emu._handle(self.command, self.path, self.headers, cdn)
        except Exception as exc:  # an emulator bug: answer 500 and keep it for the test to see
            emu.errors.append(f"{type(exc).__name__}: {exc}")
            response = _error(500, "Internal Error")
        payload = response.stream if response.stream is not None else (
            b"" if response.body is None else json.dumps(response.body).encode("utf-8"))
        self.send_response(response.status)
        if response.body is not None:
            self.send_header("Content-Type", JSON_TYPE)
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("X-Request-Id", f"Root=1-{int(time.time()):08x}-emulator")
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            for start in range(0, len(payload), CHUNK):
                self.wfile.write(payload[start:start + CHUNK])

    do_GET = do_HEAD = do_POST = _serve


class _Cdn(Served):
    """The CDN the Hub redirects LFS downloads to: the same emulator on a second port (another origin)."""

    server_class = _Server
    handler_class = _Handler
    thread_name = "hub-emulator-cdn"

    def __init__(self, emulator: "HubEmulator"):
        self._emulator = emulator
        self._lock = threading.RLock()
        self._init_served()
        self.url = ""

    def _bound(self, server: QuietServer) -> None:
        server.emulator = self._emulator  # type: ignore[attr-defined]
        server.is_cdn = True  # type: ignore[attr-defined]
        host, port = server.server_address[:2]
        self.url = f"http://{host}:{port}"


class HubEmulator(Served):
    """An in-process Hugging Face Hub for tests; see the module docstring for the routes."""

    server_class = _Server
    handler_class = _Handler
    thread_name = "hub-emulator"

    def __init__(self, tokens: tuple[str, ...] = (), page_size: int = 1000):
        self.tokens = set(tokens)      # valid access tokens: each reads every repository
        self.page_size = page_size     # tree entries per page (the Hub: 1000)
        self.requests: list[tuple[str, str, bool]] = []
        self.cdn_requests: list[tuple[str, str, bool]] = []
        self.errors: list[str] = []    # emulator bugs (answered 500); a test may assert it stays empty
        self._lock = threading.RLock()
        self._repos: dict[str, _Repo] = {}
        self._failures: list[tuple[str, int]] = []
        self._cdn = _Cdn(self)
        self._init_served()
        self._url = ""

    # --- lifecycle -------------------------------------------------------------------------

    @property
    def url(self) -> str:
        if not self._url:
            raise RuntimeError("HubEmulator is not started")
        return self._url

    def _bound(self, server: QuietServer) -> None:
        server.emulator = self  # type: ignore[attr-defined]
        host, port = server.server_address[:2]
        self._url = f"http://{host}:{port}"

    def start(self) -> "HubEmulator":
        self._cdn.start()
        return super().start()

    def _stopping_now(self) -> None:
        self._cdn.stop()

    # --- test-side setup and inspection ----------------------------------------------------

    def create_repo(self, repo_id: str, *, private: bool = False, gated: bool = False) -> None:
        with self._lock:
            self._repos[repo_id] = _Repo(repo_id, private, gated, time.time())

    def commit(self, repo_id: str, files: dict[str, bytes] | Path, *, branch: str = "main",
               message: str = "update") -> str:
        """A new commit on ``branch`` whose tree is ``files`` (a folder is read whole); its 40-hex id."""
        tree = _read_folder(files) if isinstance(files, Path) else dict(files)
        with self._lock:
            repo = self._repos.setdefault(repo_id, _Repo(repo_id, False, False, time.time()))
            parent = repo.refs.get(branch, "")
            entries = {path: _File.of(path, data) for path, data in sorted(tree.items())}
            digest = hashlib.sha1(f"{parent}\n{message}\n{time.time_ns()}\n".encode())
            for path, f in entries.items():
                digest.update(f"{path}\0{f.oid}\n".encode())
            oid = digest.hexdigest()
            repo.commits[oid] = entries
            repo.refs[branch] = oid
            return oid

    def tag(self, repo_id: str, name: str, commit: str) -> None:
        with self._lock:
            self._repos[repo_id].refs[name] = commit

    def fail(self, status: int, prefix: str = "/") -> None:
        """Answer ``status`` to every request whose path starts with ``prefix`` (until :meth:`heal`)."""
        with self._lock:
            self._failures.append((prefix, status))

    def heal(self) -> None:
        with self._lock:
            self._failures.clear()

    def downloaded(self) -> list[str]:
        """The files whose bytes were served (resolve GETs of regular files and CDN GETs), as repo paths."""
        out = []
        for method, path, _ in self.requests:
            parts = urlsplit(path).path.split("/")
            if method == "GET" and len(parts) > 5 and parts[3] == "resolve":
                out.append(unquote("/".join(parts[5:])))
        return out

    # --- request handling ------------------------------------------------------------------

    def _handle(self, method: str, raw_path: str, headers: Any, cdn: bool) -> _Response:
        auth = headers.get("Authorization") or ""
        with self._lock:
            (self.cdn_requests if cdn else self.requests).append((method, raw_path, bool(auth)))
            if cdn:
                return self._cdn_file(raw_path)
            for prefix, status in self._failures:
                if raw_path.startswith(prefix):
                    return _error(status, "Internal Error" if status >= 500 else "Error")
            token = auth[7:].strip() if auth.startswith("Bearer ") else None
            if token is not None and token not in self.tokens:
                return _error(401, "Invalid credentials in Authorization header")
            url = urlsplit(raw_path)
            parts = url.path.split("/")[1:]
            query = dict(parse_qsl(url.query))
            if len(parts) >= 4 and parts[0] == "api" and parts[1] == "models" and method == "GET":
                return self._api(f"{parts[2]}/{parts[3]}", parts[4:], query, token is not None)
            if len(parts) >= 5 and parts[2] == "resolve" and method in ("GET", "HEAD"):
                return self._resolve(f"{parts[0]}/{parts[1]}", unquote(parts[3]), unquote("/".join(parts[4:])),
                                     token is not None)
            return _error(404, "Not Found")

    def _repo(self, repo_id: str, authorized: bool) -> _Repo | _Response:
        repo = self._repos.get(repo_id)
        if repo is None or (repo.private and not authorized):
            if authorized:
                return _error(404, "Repository not found", "RepoNotFound")
            return _error(401, "Invalid username or password.", "RepoNotFound")
        if repo.gated and not authorized:
            return _error(401, f"Access to model {repo_id} is restricted. You must have access to it and be "
                               "authenticated to access it. Please log in.", "GatedRepo")
        return repo

    def _commit_of(self, repo: _Repo, revision: str) -> str | None:
        if revision in repo.refs:
            return repo.refs[revision]
        return revision if revision in repo.commits else None

    def _api(self, repo_id: str, rest: list[str], query: dict[str, str], authorized: bool) -> _Response:
        repo = self._repo(repo_id, authorized)
        if isinstance(repo, _Response):
            return repo
        if not rest or rest[0] == "revision":
            revision = unquote(rest[1]) if len(rest) > 1 else repo.default_branch
            commit = self._commit_of(repo, revision)
            if commit is None:
                return _error(404, f"Invalid rev id: {revision}", "RevisionNotFound")
            return _Response(200, self._info(repo, commit))
        if rest[0] == "tree" and len(rest) >= 2:
            revision = unquote(rest[1])
            commit = self._commit_of(repo, revision)
            if commit is None:
                return _error(404, f"Invalid rev id: {revision}", "RevisionNotFound")
            below = unquote("/".join(rest[2:]))
            return self._tree(repo, commit, revision, below, query)
        return _error(404, "Not Found")

    def _info(self, repo: _Repo, commit: str) -> dict[str, Any]:
        files = repo.commits[commit]
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(repo.created))
        return {"_id": hashlib.md5(repo.id.encode()).hexdigest()[:24], "id": repo.id, "modelId": repo.id,
                "author": repo.id.split("/")[0], "sha": commit, "lastModified": stamp, "createdAt": stamp,
                "private": repo.private, "gated": "auto" if repo.gated else False, "disabled": False,
                "downloads": 0, "likes": 0, "tags": ["sentence-transformers", "safetensors"],
                "pipeline_tag": "sentence-similarity", "library_name": "sentence-transformers",
                "siblings": [{"rfilename": path} for path in files],
                "usedStorage": sum(len(f.data) for f in files.values())}

    def _tree(self, repo: _Repo, commit: str, revision: str, below: str, query: dict[str, str]) -> _Response:
        recursive = query.get("recursive", "false").lower() == "true"
        prefix = f"{below.rstrip('/')}/" if below else ""
        entries: list[dict[str, Any]] = []
        folders: set[str] = set()
        for path, f in repo.commits[commit].items():
            if not path.startswith(prefix):
                continue
            rest = path[len(prefix):]
            if "/" in rest and not recursive:
                folders.add(prefix + rest.split("/")[0])
                continue
            for i in range(rest.count("/")):
                folders.add(prefix + "/".join(rest.split("/")[:i + 1]))
            entry: dict[str, Any] = {"type": "file", "oid": f.oid, "size": len(f.data), "path": path}
            if f.sha256 is not None:
                entry["lfs"] = {"oid": f.sha256, "size": len(f.data), "pointerSize": f.pointer_size}
            entries.append(entry)
        for folder in folders:
            entries.append({"type": "directory", "oid": hashlib.sha1(folder.encode()).hexdigest(), "size": 0,
                            "path": folder})
        entries.sort(key=lambda e: e["path"])
        start = int(query.get("cursor") or 0)
        page = entries[start:start + self.page_size]
        headers = {}
        if start + self.page_size < len(entries):
            args = {"recursive": str(recursive), "expand": query.get("expand", "False"),
                    "cursor": str(start + self.page_size)}
            path = f"/api/models/{repo.id}/tree/{quote(revision, safe='')}" + (f"/{quote(below)}" if below else "")
            headers["Link"] = f'<{self.url}{path}?{urlencode(args)}>; rel="next"'
        return _Response(200, page, headers)

    def _resolve(self, repo_id: str, revision: str, path: str, authorized: bool) -> _Response:
        repo = self._repo(repo_id, authorized)
        if isinstance(repo, _Response):
            return repo
        commit = self._commit_of(repo, revision)
        if commit is None:
            return _error(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        f = repo.commits[commit].get(path)
        if f is None:
            response = _error(404, "Entry not found", "EntryNotFound")
            response.headers["X-Repo-Commit"] = commit
            return response
        headers = {"X-Repo-Commit": commit, "Accept-Ranges": "bytes"}
        if f.sha256 is not None:  # LFS: the Hub redirects to a signed CDN URL, the metadata on the redirect
            expires = int(time.time()) + 3600
            signature = hashlib.sha256(f"{f.sha256}{expires}".encode()).hexdigest()
            headers.update({
                "Location": f"{self._cdn.url}/cdn/{f.sha256}?Expires={expires}&Signature={signature}",
                "X-Linked-Etag": f'"{f.sha256}"', "X-Linked-Size": str(len(f.data)), "ETag": f'"{f.oid}"'})
            return _Response(302, None, headers, stream=b"")
        headers.update({"ETag": f'"{f.oid}"', "Content-Type": "text/plain; charset=utf-8",
                        "Content-Disposition": f'inline; filename="{path.rsplit("/", 1)[-1]}"'})
        return _Response(200, None, headers, stream=f.data)

    def _cdn_file(self, raw_path: str) -> _Response:
        url = urlsplit(raw_path)
        query = dict(parse_qsl(url.query))
        sha256 = url.path.rsplit("/", 1)[-1]
        expected = hashlib.sha256(f"{sha256}{query.get('Expires', '')}".encode()).hexdigest()
        if query.get("Signature") != expected:
            return _Response(403, None, {"Content-Type": "application/xml"}, stream=b"<Error>AccessDenied</Error>")
        for repo in self._repos.values():
            for files in repo.commits.values():
                for f in files.values():
                    if f.sha256 == sha256:
                        return _Response(200, None, {"ETag": f'"{sha256}"', "Content-Type": "application/octet-stream",
                                                     "Accept-Ranges": "bytes"}, stream=f.data)
        return _Response(404, None, {}, stream=b"")


def _read_folder(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(_files(folder))}


def _files(folder: Path) -> Iterator[Path]:
    for p in folder.rglob("*"):
        if p.is_file():
            yield p
