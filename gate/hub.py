"""Models from the Hugging Face Hub: ``ORG/NAME[@REVISION]``, resolved to a commit and downloaded up front.

A model reference of the ``sentence-transformers`` or ``transformers`` provider that is not an existing
path and reads ``ORG/NAME`` (optionally ``@REVISION``: a branch, tag or commit; none means the default
branch) names a model repository of the Hub, or of the server ``HF_ENDPOINT`` names. gate resolves it to
a commit and downloads that commit during the checks that run before any model loads
(:func:`gate.providers.check_model`), because:

- the libraries then load the snapshot like any local folder, offline: gate forces ``HF_HUB_OFFLINE=1``
  for every library load (a folder's config must never make them fetch code), and huggingface_hub reads
  that variable into ``huggingface_hub.constants`` once, when it is imported, so a download at load time
  would be refused;
- a missing repository, revision or token is bad input (exit 2) found in seconds, not after the other
  model has encoded for minutes;
- a branch moves: resolved once, to the commit recorded in results.json, it says which weights were judged.

Only what loading needs is downloaded (:data:`ALLOW_PATTERNS`: safetensors weights, JSON configs, tokenizer
files, in any sub-folder): never pickle weights, never code. The snapshot is then checked exactly like a
folder from a pull request (:func:`gate.providers.fingerprint.check_folder`): a repository anyone can push
to is as untrusted as one.

The download honours the user's own ``HF_HUB_OFFLINE`` (remembered before gate forces it, see
:func:`remember_user_offline`): set, only the cache is used and a model missing from it is an error (exit 3).
The token comes from ``HF_TOKEN`` only, read with :func:`gate.secrets.read_secret` (stripped, and redacted
from every output); a ``huggingface-cli login`` token is not used, so what a run can read does not depend
on who was logged in on the machine. A failure the user cannot fix in the suite (the Hub answers 5xx, the
endpoint is unreachable, offline and not cached) is recorded, and the model fails at load (exit 3) like any
model that will not load; a wrong reference or a missing token is bad input at once.
"""

from __future__ import annotations

import contextlib
import fnmatch
import os
import re
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator

from gate.errors import BadInput, GateError, ModelLoadError
from gate.secrets import read_secret, shown_url

if TYPE_CHECKING:
    from gate.suite import ModelSpec

TOKEN_VAR = "HF_TOKEN"
ENDPOINT_VAR = "HF_ENDPOINT"
DEFAULT_ENDPOINT = "https://huggingface.co"
#: what huggingface_hub calls the default branch when no revision is given (its refs/ file name)
DEFAULT_BRANCH = "main"
#: per provider: what its local folder holds, and its built-in model (for :func:`forms`)
_LOCAL_KINDS = {
    "sentence-transformers": ("sentence-transformers model folder", "'default' (the embedded model)"),
    "transformers": ("transformers causal LM folder with config.json, weights and tokenizer", "'smollm2'"),
}
#: what loading a model needs, in any sub-folder (fnmatch's ``*`` crosses ``/``): weights from safetensors
#: only, JSON configs (modules.json, config.json, tokenizer.json, ...), tokenizer vocabularies (vocab.txt,
#: merges.txt, *.model of sentencepiece, *.tiktoken) and chat templates. Never ``*.bin``/``*.pt`` (pickle),
#: ``*.py`` (code), ONNX/GGUF/Flax/TF variants or the model card.
ALLOW_PATTERNS = ("*.safetensors", "*.json", "*.txt", "*.model", "*.tiktoken", "*.jinja")

COMMIT = re.compile(r"[0-9a-f]{40}")
# A repository id as the Hub allows it: letters, digits, '_', '.', '-' (no '--' or '..'), not starting or
# ending with '.' or '-', at most 96 characters a part. No leading './', '../', '/' or '~' can match.
_PART = r"[A-Za-z0-9_](?:[A-Za-z0-9_.-]{0,94}[A-Za-z0-9_])?"
_REFERENCE = re.compile(rf"(?P<repo>{_PART}/{_PART})(?:@(?P<revision>[A-Za-z0-9_][A-Za-z0-9._/-]{{0,254}}))?")


@dataclass(frozen=True)
class HubRef:
    """A model repository of the Hub and the revision asked for (None: the default branch)."""

    repo_id: str
    revision: str | None = None

    @property
    def pinned(self) -> bool:
        """Whether the revision is a full commit: nothing to resolve, and a cached snapshot of it never changes."""
        return self.revision is not None and COMMIT.fullmatch(self.revision) is not None

    def __str__(self) -> str:
        return self.repo_id + (f"@{self.revision}" if self.revision else "")


def forms(provider: str) -> str:
    """The forms a model reference of ``provider`` may take, for a message about one that is none of them."""
    kind, builtin = _LOCAL_KINDS.get(provider, ("model folder", "a built-in model"))
    return f"a local {kind} (e.g. ./models/ft-v2), {builtin} or a Hugging Face Hub model ORG/NAME[@REVISION]"


def parse_hub_ref(text: str) -> HubRef | None:
    """``ORG/NAME[@REVISION]`` as a :class:`HubRef`; None when ``text`` does not read so (syntax only: whether
    a path of that name exists is :attr:`gate.suite.ModelSpec.hub`'s business)."""
    found = _REFERENCE.fullmatch(text)
    if found is None:
        return None
    repo, revision = found["repo"], found["revision"]
    if "--" in repo or ".." in repo:
        return None
    if revision is not None and (".." in revision or "//" in revision or revision.endswith(("/", ".lock"))):
        return None
    return HubRef(repo, revision)


# -- the user's own settings ---------------------------------------------------------------------------------

_USER_OFFLINE: bool | None = None


def _truthy(value: str | None) -> bool:
    return (value or "").strip().upper() in {"1", "ON", "YES", "TRUE"}


def _env_offline(env: Any) -> bool:
    # huggingface_hub's own reading: either variable makes it offline
    return _truthy(env.get("HF_HUB_OFFLINE")) or _truthy(env.get("TRANSFORMERS_OFFLINE"))


def remember_user_offline() -> None:
    """Keep the user's ``HF_HUB_OFFLINE``/``TRANSFORMERS_OFFLINE`` before gate overwrites them for a library load
    (:func:`gate.providers.sentence_transformers.quiet_libraries` calls this first)."""
    global _USER_OFFLINE
    if _USER_OFFLINE is None:
        _USER_OFFLINE = _env_offline(os.environ)


def user_offline() -> bool:
    """Whether the user asked for offline mode (gate's own forcing of it does not count)."""
    return _USER_OFFLINE if _USER_OFFLINE is not None else _env_offline(os.environ)


def endpoint() -> str | None:
    """``HF_ENDPOINT``, read now (huggingface_hub read it once, at import); None: huggingface.co."""
    value = os.environ.get(ENDPOINT_VAR, "").strip().rstrip("/")
    return value or None


def _shown_endpoint(url: str | None) -> str:
    """The endpoint for a message, without any ``user:password@``."""
    return shown_url(url or DEFAULT_ENDPOINT)


_SETTINGS_LOCK = threading.Lock()


@contextlib.contextmanager
def _library_settings(offline: bool) -> Iterator[None]:
    """huggingface_hub as the user set it up, for the download only: offline only if the user said so (gate
    may have forced it for a library load already), and no telemetry (gate's requests are downloads only;
    the user agent's agent detection would otherwise fetch a registry from huggingface.co)."""
    from huggingface_hub import constants

    with _SETTINGS_LOCK:
        saved = constants.HF_HUB_OFFLINE, constants.HF_HUB_DISABLE_TELEMETRY
        constants.HF_HUB_OFFLINE, constants.HF_HUB_DISABLE_TELEMETRY = offline, True
        try:
            yield
        finally:
            constants.HF_HUB_OFFLINE, constants.HF_HUB_DISABLE_TELEMETRY = saved


def _quiet_hub() -> None:
    """No library warnings; no progress bars in CI logs (only on a terminal)."""
    from huggingface_hub.utils import disable_progress_bars, logging

    logging.set_verbosity_error()
    if not sys.stderr.isatty():
        disable_progress_bars()


# -- snapshots ------------------------------------------------------------------------------------------------


def wanted(relative: str) -> bool:
    """Whether a file of a repository (its ``/`` path) is one gate downloads (:data:`ALLOW_PATTERNS`)."""
    return any(fnmatch.fnmatch(relative, pattern) for pattern in ALLOW_PATTERNS)


@dataclass(frozen=True)
class Snapshot:
    """A downloaded commit of a Hub repository.

    ``path`` is the cache's ``snapshots/<commit>`` folder, whose files are links to ``blobs`` (huggingface_hub
    keeps each file once); the folder checks and the fingerprint follow those links and no others."""

    ref: HubRef
    commit: str
    path: Path
    blobs: Path | None

    def fingerprint(self) -> str:
        """The hash of the files gate took from the repository, as :func:`fingerprint_dir` hashes a folder: the
        same bytes give the same fingerprint as a local folder, whatever else the cache holds for this commit."""
        from gate.providers.fingerprint import fingerprint_dir

        return fingerprint_dir(self.path, blobs=self.blobs, select=wanted)

    def describe(self) -> str:
        """``main → 3f2c1ab4e5d6…`` for a branch or tag, ``default branch → …`` without one, the commit alone
        when the commit was asked for."""
        short = self.commit[:12] + "…"
        if self.ref.pinned:
            return f"commit {short}"
        return f"{self.ref.revision or 'default branch'} → {short}"

    def record(self) -> dict[str, Any]:
        """What results.json records about it, beside spec and fingerprint."""
        return {"revision": self.commit, "requested_revision": self.ref.revision}


#: the latest resolution of each reference in this process (a Snapshot, or why it failed), for the loaders
#: and for results.json; :class:`Resolver` fills it
_RESOLVED: dict[HubRef, "Snapshot | ModelLoadError"] = {}


class Resolver:
    """One run's Hub models: each reference resolved and downloaded once, into ``cache_dir/hub``
    (huggingface_hub's own cache, ``HF_HUB_CACHE``, when there is no cache folder).

    Calling it with a spec returns the snapshot, raises :class:`BadInput` (a reference or token the user
    must fix), or records a :class:`ModelLoadError` and returns None: that model then fails at load (exit 3),
    as a model that will not load does, while the run records everything else."""

    def __init__(self, cache_dir: Path | None = None, log: Callable[[str], None] = lambda msg: None):
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.log = log
        self._done: dict[HubRef, Snapshot | ModelLoadError] = {}

    def __call__(self, spec: "ModelSpec") -> Snapshot | None:
        ref = spec.hub
        if ref is None:
            raise AssertionError(f"{spec.spec} names no Hub model")
        if ref not in self._done:
            try:
                snapshot = fetch(spec, ref, self.cache_dir)
                where = snapshot.path.parent.parent.parent
                self.log(f"model {spec.spec}: {ref.repo_id} {snapshot.describe()} (the commit evaluated; "
                         + (f"from the cache {where}, HF_HUB_OFFLINE is set)" if user_offline() else f"in {where})"))
                self._done[ref] = snapshot
            except ModelLoadError as exc:
                self.log(f"model {spec.spec}: {exc}")
                self._done[ref] = exc
            _RESOLVED[ref] = self._done[ref]
        done = self._done[ref]
        return done if isinstance(done, Snapshot) else None


def check_snapshot(spec: "ModelSpec", resolver: "Resolver | None", where: str,
                   check_contents: Callable[[Path, str, str, Path | None], None]) -> None:
    """A provider's checks of a Hub model: with a ``resolver``, download it (or find it in the cache) and hold
    the snapshot to ``check_contents``, the provider's checks of a local folder; without one (``gate
    validate``, ``--dry-run``) nothing is downloaded and the reference's form is all there is to check."""
    snapshot = resolver(spec) if resolver is not None else None
    if snapshot is not None:
        check_contents(snapshot.path, where, f"{snapshot.ref.repo_id} at commit {snapshot.commit[:12]}",
                       snapshot.blobs)


def snapshot_of(spec: "ModelSpec", cache_dir: Path | None = None) -> Snapshot:
    """The snapshot a loader loads: the one this process resolved (its failure raised again), or, for a
    loader called without the checks before it, resolved now (into ``cache_dir/hub``)."""
    ref = spec.hub
    if ref is None:
        raise AssertionError(f"{spec.spec} names no Hub model")
    done = _RESOLVED.get(ref)
    if done is None:
        Resolver(cache_dir)(spec)
        done = _RESOLVED[ref]
    if isinstance(done, ModelLoadError):
        raise done
    return done


def record(spec: "ModelSpec") -> dict[str, Any]:
    """``revision`` (the commit) and ``requested_revision`` of a Hub model this process resolved; else nothing."""
    ref = spec.hub
    done = _RESOLVED.get(ref) if ref is not None else None
    return done.record() if isinstance(done, Snapshot) else {}


def cached_snapshot(spec: "ModelSpec", cache_dir: Path | None) -> Snapshot | None:
    """The snapshot of a reference pinned to a commit, if it is in the cache already (no request, nothing
    downloaded: for ``--dry-run``). A branch may have moved since, so it is not looked up."""
    ref = spec.hub
    if ref is None or not ref.pinned:
        return None
    from huggingface_hub import constants
    from huggingface_hub.file_download import repo_folder_name

    cache = Path(cache_dir) / "hub" if cache_dir is not None else Path(constants.HF_HUB_CACHE)
    storage = cache / repo_folder_name(repo_id=ref.repo_id, repo_type="model")
    path = storage / "snapshots" / str(ref.revision)
    if not path.is_dir():
        return None
    return Snapshot(ref, str(ref.revision), path, storage / "blobs")


def fetch(spec: "ModelSpec", ref: HubRef, cache_dir: Path | None) -> Snapshot:
    """Resolve ``ref`` to a commit and download what gate needs of it (or, offline, find it in the cache);
    then refuse a repository whose weights are pickle only. Errors as :class:`Resolver` says."""
    from huggingface_hub import snapshot_download

    cache = Path(cache_dir) / "hub" if cache_dir is not None else None
    url = endpoint()
    token = read_secret(TOKEN_VAR) or None
    offline = user_offline()
    _quiet_hub()
    try:
        with _library_settings(offline):
            if offline:
                folder = Path(snapshot_download(ref.repo_id, revision=ref.revision, cache_dir=cache, endpoint=url,
                                                token=token or False, local_files_only=True,
                                                allow_patterns=list(ALLOW_PATTERNS)))
                commit = folder.name
            else:
                commit = str(ref.revision) if ref.pinned else _resolve(ref, url, token)
                if not COMMIT.fullmatch(commit):  # it names a folder of the cache: checked before any use
                    raise ModelLoadError(f"model {spec.spec}: {_shown_endpoint(url)} resolved {ref} to {commit!r}, "
                                         "which is not a commit id; expected 40 hexadecimal digits (is HF_ENDPOINT "
                                         "a Hugging Face Hub?)")
                _check_download_size(spec, ref, commit, snapshot_download(
                    ref.repo_id, revision=commit, cache_dir=cache, endpoint=url, token=token or False,
                    allow_patterns=list(ALLOW_PATTERNS), library_name="gate", library_version=_version(),
                    dry_run=True))
                folder = Path(snapshot_download(ref.repo_id, revision=commit, cache_dir=cache, endpoint=url,
                                                token=token or False, allow_patterns=list(ALLOW_PATTERNS),
                                                library_name="gate", library_version=_version()))
                if not ref.pinned:
                    _remember_ref(folder.parent.parent, ref.revision or DEFAULT_BRANCH, commit)
            listing = _listing(ref, commit, cache, folder)
    except GateError:
        raise
    except Exception as exc:  # whatever the client raises becomes a message, never a traceback
        raise _failure(exc, spec, ref, url, token is not None, offline, cache) from None
    _check_listing(spec, ref, commit, listing)
    blobs = folder.parent.parent / "blobs"
    return Snapshot(ref, commit, folder, blobs if blobs.is_dir() else None)


def _check_download_size(spec: "ModelSpec", ref: HubRef, commit: str, planned: Any) -> None:
    """Refuse, before a byte is fetched, a model whose files would take more than the download limit: a suite
    from a pull request may name any repository the endpoint serves (docs/limits.md)."""
    from gate import limits

    total = sum(int(getattr(f, "file_size", 0) or 0) for f in planned or [] if getattr(f, "will_download", True))
    limit = limits.get("model_download")
    if total > limit:
        raise BadInput(f"model {spec.spec}: {ref.repo_id} at commit {commit[:12]} would download {total:,} bytes, "
                       f"over the limit of {limit:,} {limits.LIMITS['model_download'].unit} (set "
                       f"{limits.LIMITS['model_download'].variable} to raise it)", location=spec.origin)


def _version() -> str:
    import gate

    return gate.__version__


def _resolve(ref: HubRef, url: str | None, token: str | None) -> str:
    """The commit a branch or tag (None: the default branch) points at now, asked of the Hub itself: a ref
    cached by an earlier run may be stale, and a run must judge what the branch holds."""
    from huggingface_hub import HfApi

    api = HfApi(endpoint=url, token=token or False, library_name="gate", library_version=_version())
    info = api.model_info(ref.repo_id, revision=ref.revision, token=token or False)
    return str(info.sha or "")


def _remember_ref(storage: Path, revision: str, commit: str) -> None:
    """Write ``refs/<revision>`` (the commit), as huggingface_hub does when it resolves a branch itself, so a
    later run with ``HF_HUB_OFFLINE=1`` finds the snapshot. Best effort: a read-only cache still works online."""
    ref = storage / "refs" / revision
    try:
        ref.parent.mkdir(parents=True, exist_ok=True)
        if ref.is_file() and ref.read_text() == commit:
            return
        tmp = ref.with_name(f"{ref.name}.{os.getpid()}.tmp")
        tmp.write_text(commit)
        os.replace(tmp, ref)
    except OSError:
        pass


def _listing(ref: HubRef, commit: str, cache: Path | None, folder: Path) -> list[str]:
    """Every file of the repository at ``commit`` (not only those downloaded), from the tree listing
    huggingface_hub caches beside the snapshot; the downloaded files when it has none."""
    from huggingface_hub import get_cached_repo_tree

    try:
        return [f.path for f in get_cached_repo_tree(ref.repo_id, revision=commit, cache_dir=cache)]
    except Exception:  # CachedRepoTreeNotFoundError, or a cache written by another version
        return [p.relative_to(folder).as_posix() for p in folder.rglob("*") if not p.is_dir()]


def _check_listing(spec: "ModelSpec", ref: HubRef, commit: str, listing: Iterable[str]) -> None:
    """Weights come from safetensors only: gate never downloads pickle weights, so a repository (or a module
    sub-folder) that has only those is refused here, as a local folder with only those is."""
    from gate.providers.fingerprint import CONVERT_HINT, SAFETENSORS_WEIGHTS, pickle_without_safetensors

    names = sorted(listing)
    at = f"{ref.repo_id} at commit {commit[:12]}"
    pickle = pickle_without_safetensors(names)
    if pickle is not None:
        raise BadInput(f"model {spec.spec}: {at} holds pickle weights ({pickle}) with no "
                       f"{' or '.join(SAFETENSORS_WEIGHTS)} beside them; gate never downloads or loads pickle "
                       f"weights (loading them can run code); expected safetensors weights: {CONVERT_HINT}, and "
                       "push the result", location=spec.origin)
    if not any(name.endswith(".safetensors") for name in names):
        shown = ", ".join(names[:8]) + (", ..." if len(names) > 8 else "")
        raise BadInput(f"model {spec.spec}: {at} has no *.safetensors weights (it holds: {shown or 'nothing'}); "
                       "expected a model repository with model.safetensors (weights are loaded from safetensors "
                       "only)", location=spec.origin)


# -- errors ---------------------------------------------------------------------------------------------------


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _failure(exc: Exception, spec: "ModelSpec", ref: HubRef, url: str | None, has_token: bool, offline: bool,
             cache: Path | None) -> GateError:
    """What a client error means for the user: bad input (exit 2) they fix in the reference or the token,
    or a model that cannot be had now (exit 3). Every message names the model, the location and what to do."""
    import httpx2
    from huggingface_hub import constants
    from huggingface_hub.errors import (DisabledRepoError, GatedRepoError, HfHubHTTPError, RepositoryNotFoundError,
                                        RevisionNotFoundError)

    hub = _shown_endpoint(url)
    head = f"model {spec.spec}: "
    chain = list(_chain(exc))

    def found(kind: Any) -> Any:
        return next((e for e in chain if isinstance(e, kind)), None)

    def bad(message: str) -> BadInput:
        return BadInput(head + message, location=spec.origin)

    def failed(message: str) -> ModelLoadError:
        return ModelLoadError(head + message + (f" ({spec.origin})" if spec.origin else ""))

    if offline:
        shown_cache = str(cache) if cache is not None else f"{constants.HF_HUB_CACHE} (huggingface_hub's cache)"
        return failed(f"{ref} is not (completely) in the model cache {shown_cache}, and HF_HUB_OFFLINE (or "
                      "TRANSFORMERS_OFFLINE) is set, so nothing is downloaded; expected a cache filled by an earlier "
                      "run with the same --cache, or unset HF_HUB_OFFLINE to download it")
    local = spec.base_dir / spec.model
    if found(RevisionNotFoundError) is not None:
        return bad(f"the repository {ref.repo_id!r} on {hub} has no revision {ref.revision!r}; expected a branch, "
                   "tag or commit of it (ORG/NAME@REVISION; without @REVISION: the default branch)")
    if found(GatedRepoError) is not None:
        return bad(f"{ref.repo_id!r} on {hub} is a gated repository: "
                   + ("the account of the token in HF_TOKEN has not been granted access; accept its conditions on "
                      "the Hub with that account" if has_token else
                      f"set {TOKEN_VAR} to a token of an account that accepted its conditions on the Hub"))
    if found(DisabledRepoError) is not None:
        return bad(f"{ref.repo_id!r} on {hub} is disabled; expected a repository that can be downloaded")
    if found(RepositoryNotFoundError) is not None:
        if has_token:
            return bad(f"{hub} has no repository {ref.repo_id!r} that the token in {TOKEN_VAR} can read (and there "
                       f"is no local folder {str(local)!r}); expected {forms(spec.provider)}")
        return bad(f"{hub} has no public repository {ref.repo_id!r}: it does not exist, or it is private or gated, "
                   f"which needs a token: set {TOKEN_VAR} to a token that can read it (there is no local folder "
                   f"{str(local)!r} either); expected {forms(spec.provider)}")
    http = found(HfHubHTTPError)
    response = getattr(http, "response", None)
    status = getattr(response, "status_code", None)
    if http is not None and status in (401, 403):
        if has_token:
            return bad(f"{hub} refused the token in {TOKEN_VAR} (HTTP {status}: "
                       f"{getattr(http, 'server_message', None) or 'unauthorized'}); expected a valid access token "
                       f"that can read {ref.repo_id!r}")
        return bad(f"{hub} refused the request (HTTP {status}); set {TOKEN_VAR} to a token that can read "
                   f"{ref.repo_id!r}")
    if http is not None and status is not None:
        return failed(f"{hub} answered HTTP {status} for {ref}"
                      + (" (the Hub is failing or overloaded: try again later)" if status >= 500 or status == 429
                         else f" ({getattr(http, 'server_message', None) or 'an error'})"))
    transport = found(httpx2.TransportError)
    if transport is not None:
        return failed(f"cannot reach {hub} ({type(transport).__name__}: {transport}); expected a reachable Hub "
                      f"(check {ENDPOINT_VAR} and the network), or set HF_HUB_OFFLINE=1 to use only the cache")
    if isinstance(exc, OSError):
        return failed(f"cannot download {ref} into {cache or constants.HF_HUB_CACHE}: {type(exc).__name__}: {exc}")
    return failed(f"cannot download {ref} from {hub}: {type(exc).__name__}: {exc}")

