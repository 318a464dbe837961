"""Suite files: strict loading into typed, immutable declarations.

The suite is validated against ``schemas/suite.schema.json`` first (every problem
reported with its location), then checked for what a schema cannot express
(duplicate task names). Data files are *not* read here: ``gate.tasks`` reads them,
so ``gate validate`` and ``gate run`` share one reader.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gate.documents import Document, load_document, validate
from gate.errors import BadInput, BadInputs

ROLES = ("baseline", "candidate")
PROVIDERS = ("sentence-transformers",)


def resolve(base: Path, value: str) -> Path:
    """``value`` as a path: ``~`` expanded, relative paths taken from ``base``."""
    path = Path(value).expanduser()
    return path if path.is_absolute() else base / path


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

    @property
    def spec(self) -> str:
        return f"{self.provider}:{self.model}"

    def option(self, name: str, default: Any = None) -> Any:
        return dict(self.options).get(name, default)

    def resolve_path(self) -> Path:
        return resolve(self.base_dir, self.model)

    @property
    def key(self) -> tuple:
        """Identity of the loaded model: two specs with the same key share one encode."""
        ref = self.model if self.model == "default" else str(self.resolve_path().resolve())
        return (self.provider, ref, self.options)


def parse_model_spec(text: str, option: str = "--baseline/--candidate") -> ModelSpec:
    """Parse ``PROVIDER:MODEL`` from the command line (paths relative to the cwd)."""
    provider, sep, model = text.partition(":")
    if not sep or not model:
        raise BadInput(f"expected PROVIDER:MODEL (e.g. sentence-transformers:./models/ft-v2), got {text!r}",
                       location=option)
    if provider not in PROVIDERS:
        raise BadInput(f"unknown provider {provider!r}; expected one of: {', '.join(PROVIDERS)}", location=option)
    return ModelSpec(provider=provider, model=model, base_dir=Path.cwd())


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

    def path(self, key: str) -> Path:
        return resolve(self.suite_dir, self.fields[key])


@dataclass(frozen=True)
class Suite:
    path: Path
    name: str
    description: str
    models: dict[str, ModelSpec]
    tasks: list[TaskSpec]
    document: Document

    def resolved_models(self, task: TaskSpec, overrides: dict[str, ModelSpec] | None = None) -> dict[str, ModelSpec]:
        """The (baseline, candidate) of ``task``: task override > command line > suite default."""
        out = {}
        for role in ROLES:
            spec = task.models.get(role) or (overrides or {}).get(role) or self.models.get(role)
            if spec is None:
                raise BadInput(
                    f"task {task.name!r} has no {role} model; set models.{role} in the suite "
                    f"or pass --{role} PROVIDER:MODEL",
                    self.path,
                )
            out[role] = spec
        return out


def _model(raw: dict, base: Path) -> ModelSpec:
    opts = tuple(sorted((k, v) for k, v in raw.items() if k not in ("provider", "model")))
    return ModelSpec(provider=raw["provider"], model=raw["model"], options=opts, base_dir=base)


def _pair(raw: dict | None, base: Path) -> dict[str, ModelSpec]:
    return {role: _model(m, base) for role, m in (raw or {}).items()}


def parse_suite(doc: Document) -> Suite:
    validate(doc, "suite")
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
                              models=_pair(raw.get("models"), base), pointer=f"/tasks/{i}", suite_dir=base))
    if problems:
        raise BadInputs(problems)
    return Suite(path=doc.path, name=data["name"], description=data.get("description", ""),
                 models=_pair(data.get("models"), base), tasks=tasks, document=doc)


def load_suite(path: str | Path) -> Suite:
    """Load and validate a suite file (YAML or JSON)."""
    return parse_suite(load_document(path, "suite file"))
