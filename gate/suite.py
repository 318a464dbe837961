"""Suite files: strict loading into typed, immutable declarations.

The suite is validated against ``schemas/suite.schema.json`` first (every problem
reported with its location), then checked for what a schema cannot express
(duplicate task names). Data files are *not* read here: ``gate.tasks`` reads them,
so ``gate validate`` and ``gate run`` share one reader.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from gate.documents import Document, load_document, validate
from gate.errors import BadInput, BadInputs
from gate.hub import HubRef, parse_hub_ref

ROLES = ("baseline", "candidate")
PROVIDERS = ("sentence-transformers", "openai", "transformers")
#: model names that are not paths: embedded or converted-on-demand models
BUILTIN_MODELS = {"sentence-transformers": ("default",), "transformers": ("smollm2",)}
#: providers whose model may also be a Hugging Face Hub repository, ``ORG/NAME[@REVISION]`` (see gate.hub)
HUB_PROVIDERS = ("sentence-transformers", "transformers")


def resolve(base: Path, value: str) -> Path:
    """``value`` as a path: ``~`` expanded, relative paths taken from ``base``."""
    path = Path(value).expanduser()
    return path if path.is_absolute() else base / path


def confined(base: Path, value: str, root: Path | None) -> Path:
    """``value`` resolved from ``base``; with a ``root``, a path that leads outside it (absolute, ``..``,
    ``~`` or a symlink, resolved) raises :class:`ValueError` saying where it leads.

    A suite comes with a pull request: a data path that could name any file of the runner would put that
    file's rows into examples.jsonl and the report."""
    path = resolve(base, value)
    if root is None:
        return path
    try:
        real = path.resolve()
    except (RuntimeError, OSError):  # a symlink loop
        raise ValueError(f"{value!r} cannot be resolved (a loop of symbolic links?)") from None
    if ".git" in real.parts:
        raise ValueError(f"{value!r} names a file inside .git; a suite may only name files of the repository")
    try:
        real.relative_to(root.resolve())
    except ValueError:
        raise ValueError(f"{value!r} leads outside the repository root {str(root)!r} (to {str(real)!r}); a suite "
                         "may only name files inside its repository (gate run/validate --allow-outside-root "
                         "lifts this for trusted suites)") from None
    return path


def suite_root(suite_file: Path) -> Path:
    """The folder a suite's paths must stay inside: its git repository's root, else the suite's folder."""
    from gate.trust import repository_root

    return repository_root(suite_file.parent) or suite_file.parent.resolve()


#: model options that change how outputs are fetched, never the outputs: left out of the embedding cache's key,
#: of a shard's setup and of the "candidate is the baseline" comparison
FETCH_OPTIONS = frozenset({"batch_size", "device", "timeout", "max_retries", "concurrency", "pricing", "api_key_env",
                           "connect_timeout"})


@dataclass(frozen=True)
class ModelSpec:
    """A model to evaluate: provider, model reference and provider options.

    ``base_dir`` anchors a relative model path: the suite's folder for models
    named in a suite, the working directory for ``--baseline/--candidate``.
    """

    provider: str
    model: str
    options: tuple[tuple[str, Any], ...] = ()
    base_dir: Path = field(default=Path("."), compare=False)
    #: where it was declared ("suite.yaml:7:5" or "--candidate"), for messages
    origin: str | None = field(default=None, compare=False)
    #: a local model path must resolve inside this folder (a suite's repository); None: anywhere
    root: Path | None = field(default=None, compare=False)

    @property
    def spec(self) -> str:
        return f"{self.provider}:{self.model}"

    def option(self, name: str, default: Any = None) -> Any:
        return dict(self.options).get(name, default)

    @property
    def output_options(self) -> dict[str, Any]:
        """The options that change what the model returns (all but :data:`FETCH_OPTIONS`)."""
        return {k: v for k, v in self.options if k not in FETCH_OPTIONS}

    def resolve_path(self) -> Path:
        try:
            return confined(self.base_dir, self.model, self.root)
        except ValueError as exc:
            raise BadInput(f"model {exc}", location=self.origin or f"model {self.spec}") from None

    @property
    def hub(self) -> HubRef | None:
        """The Hugging Face Hub model this spec names, or None (a local path, a built-in model, another provider).

        A local path wins: ``ORG/NAME`` is a Hub repository only when nothing of that name exists where a
        path would be looked up (beside the suite, or in the working directory for ``--candidate``); a path
        that starts with ``./``, ``../``, ``/`` or ``~`` never reads as one."""
        if self.provider not in HUB_PROVIDERS or self.model in BUILTIN_MODELS.get(self.provider, ()):
            return None
        ref = parse_hub_ref(self.model)
        if ref is None or os.path.lexists(resolve(self.base_dir, self.model)):
            return None
        return ref

    @property
    def key(self) -> tuple:
        """Identity of the loaded model: two specs with the same key share one encode."""
        hub = self.hub
        if self.provider == "openai" or self.model in BUILTIN_MODELS.get(self.provider, ()):
            ref = self.model
        elif hub is not None:
            ref = f"hub:{hub}"
        else:
            ref = str(self.resolve_path().resolve())
        return (self.provider, ref, _hashable(self.options))


def _hashable(value: Any) -> Any:
    if isinstance(value, dict):
        return tuple(sorted((k, _hashable(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return tuple(_hashable(v) for v in value)
    return value


def parse_model_spec(text: str, option: str = "--baseline/--candidate") -> ModelSpec:
    """Parse ``PROVIDER:MODEL`` from the command line (paths relative to the cwd; ``ORG/NAME[@REVISION]``
    that is no path there names a Hugging Face Hub model, see :attr:`ModelSpec.hub`)."""
    provider, sep, model = text.partition(":")
    if not sep or not model:
        raise BadInput(f"expected PROVIDER:MODEL (e.g. sentence-transformers:./models/ft-v2), got {text!r}",
                       location=option)
    if provider not in PROVIDERS:
        raise BadInput(f"unknown provider {provider!r}; expected one of: {', '.join(PROVIDERS)}", location=option)
    return ModelSpec(provider=provider, model=model, base_dir=Path.cwd(), origin=option)


@dataclass(frozen=True)
class TaskSpec:
    """One task as declared: its fields, with data paths resolved against the suite."""

    name: str
    type: str
    group: str
    fields: dict[str, Any]
    models: dict[str, ModelSpec]
    pointer: str
    suite_dir: Path
    document: Document | None = field(default=None, compare=False, repr=False)
    #: data paths must resolve inside this folder (the suite's repository); None: anywhere
    root: Path | None = field(default=None, compare=False)

    def path(self, key: str) -> Path:
        try:
            return confined(self.suite_dir, self.fields[key], self.root)
        except ValueError as exc:
            raise self.error(key, str(exc)) from None

    def error(self, key: str, message: str) -> BadInput:
        """Bad input about field ``key`` of this task, located in the suite file."""
        pointer = f"{self.pointer}/{key}"
        if self.document is None:
            return BadInput(message, location=pointer)
        return self.document.error(pointer, message)

    def model(self, key: str) -> ModelSpec | None:
        """A model declared in a task field (a pairwise task's judge or reference)."""
        raw = self.fields.get(key)
        if raw is None:
            return None
        if self.document is None:
            return ModelSpec(provider=raw["provider"], model=raw["model"], base_dir=self.suite_dir, root=self.root)
        return model_from(raw, self.document, f"{self.pointer}/{key}", self.root)


@dataclass(frozen=True)
class Suite:
    path: Path
    name: str
    description: str
    models: dict[str, ModelSpec]
    tasks: list[TaskSpec]
    document: Document

    def override(self, role: str, overrides: dict[str, ModelSpec] | None) -> ModelSpec | None:
        """The command line's model for ``role``, else the suite's. A command-line model of the same
        provider keeps the suite model's options (base_url, api_key_env, pricing...): only the model changes."""
        given, declared = (overrides or {}).get(role), self.models.get(role)
        if given is None:
            return declared
        if declared is not None and declared.provider == given.provider and not given.options:
            return replace(given, options=declared.options)
        return given

    def resolved_models(self, task: TaskSpec, overrides: dict[str, ModelSpec] | None = None) -> dict[str, ModelSpec]:
        """The (baseline, candidate) of ``task``: task override > command line > suite default."""
        out = {}
        for role in ROLES:
            spec = task.models.get(role) or self.override(role, overrides)
            if spec is None:
                raise BadInput(
                    f"task {task.name!r} has no {role} model; set models.{role} in the suite "
                    f"or pass --{role} PROVIDER:MODEL",
                    self.path,
                )
            out[role] = spec
        return out


def model_from(raw: dict, doc: Document, pointer: str, root: Path | None = None) -> ModelSpec:
    """A model as declared at ``pointer`` of a suite document (local paths confined to ``root``)."""
    opts = tuple(sorted((k, v) for k, v in raw.items() if k not in ("provider", "model")))
    loc = doc.where(pointer)
    origin = f"{doc.path}:{loc}" + (f" ({pointer})" if loc != pointer else "")
    return ModelSpec(provider=raw["provider"], model=raw["model"], options=opts, base_dir=doc.path.parent,
                     origin=origin, root=root)


def _pair(raw: dict | None, doc: Document, pointer: str, root: Path | None) -> dict[str, ModelSpec]:
    return {role: model_from(m, doc, f"{pointer}/{role}", root) for role, m in (raw or {}).items()}


def parse_suite(doc: Document, *, confine: bool = True, root: Path | None = None) -> Suite:
    """The typed suite of ``doc``. With ``confine``, the paths it names must resolve inside ``root``
    (default: the suite's repository root, see :func:`suite_root`); without, anywhere."""
    validate(doc, "suite")
    root = (root or suite_root(doc.path)) if confine else None
    data = doc.data
    base = doc.path.parent
    problems: list[BadInput] = []
    seen: dict[str, int] = {}
    tasks = []
    for i, raw in enumerate(data["tasks"]):
        name = raw["name"]
        if name in seen:
            problems.append(doc.error(f"/tasks/{i}/name", f"duplicate task name {name!r} (first used by task {seen[name]})"))
            continue
        seen[name] = i
        fields = {k: v for k, v in raw.items() if k not in ("name", "type", "group", "models", "description")}
        tasks.append(TaskSpec(name=name, type=raw["type"], group=raw.get("group", "default"), fields=fields,
                              models=_pair(raw.get("models"), doc, f"/tasks/{i}/models", root),
                              pointer=f"/tasks/{i}", suite_dir=base, document=doc, root=root))
    if problems:
        raise BadInputs(problems)
    return Suite(path=doc.path, name=data["name"], description=data.get("description", ""),
                 models=_pair(data.get("models"), doc, "/models", root), tasks=tasks, document=doc)


def load_suite(path: str | Path, *, confine: bool = True, root: Path | None = None) -> Suite:
    """Load and validate a suite file (YAML or JSON); ``confine`` and ``root`` as for :func:`parse_suite`."""
    return parse_suite(load_document(path, "suite file"), confine=confine, root=root)
