"""Prompt log-probabilities from an endpoint are checked before they become a perplexity."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

from gate.llm import RequestError, Unsupported
from gate.providers.openai_compat import OpenAIGenerator
from gate.suite import ModelSpec

TEXT = "Paris is the capital of France."


class _Completions:
    def __init__(self, tokens, values):
        self.logprobs = SimpleNamespace(tokens=tokens, token_logprobs=values)

    async def create(self, **_):
        return SimpleNamespace(choices=[SimpleNamespace(logprobs=self.logprobs)])


def logprobs(tokens, values):
    gen = OpenAIGenerator.__new__(OpenAIGenerator)
    gen._spec = ModelSpec("openai", "m")
    gen.spec = "openai:m"
    gen._client = SimpleNamespace(completions=_Completions(tokens, values))
    return asyncio.run(gen.prompt_logprobs(TEXT))


ECHOED = ["Paris", " is", " the", " capital", " of", " France", "."]


def test_echoed_prompt_logprobs_are_taken():
    out = logprobs(ECHOED, [None, -1.0, -0.5, -2.0, -0.1, -0.3, -0.2])
    assert out.logprobs == (-1.0, -0.5, -2.0, -0.1, -0.3, -0.2)


def test_a_leading_bos_token_is_accepted():
    """vLLM echoes the BOS token of tokenizers that add one; the first word then has a prediction."""
    out = logprobs(["<s>", *ECHOED], [None, -3.0, -1.0, -0.5, -2.0, -0.1, -0.3, -0.2])
    assert out.logprobs == (-3.0, -1.0, -0.5, -2.0, -0.1, -0.3, -0.2)


@pytest.mark.parametrize("tokens, values", [
    (ECHOED, [-0.4, -1.0, -0.5, -2.0, -0.1, -0.3, -0.2]),    # no leading None: generated, not echoed
    ([" The", " answer"], [None, -0.2]),                      # tokens that do not spell the prompt
    (ECHOED, None),                                           # no log-probabilities at all
    (ECHOED, [None, -1.0, None, -2.0, -0.1, -0.3, -0.2]),     # a hole
])
def test_anything_but_the_prompts_logprobs_is_unsupported(tokens, values):
    with pytest.raises(Unsupported):
        logprobs(tokens, values)


def test_non_finite_logprobs_are_a_request_error():
    with pytest.raises(RequestError):
        logprobs(ECHOED, [None, -1.0, float("-inf"), -2.0, -0.1, -0.3, -0.2])


def test_credentials_in_the_base_url_never_reach_the_identity():
    """The identity is written to results.json and the PR comment."""
    from gate.providers.openai_compat import identity

    spec = ModelSpec("openai", "m", (("base_url", "https://user:secret@proxy.example.com:8443/v1"),))
    assert identity(spec) == "openai|https://proxy.example.com:8443/v1|m"
    assert "secret" not in identity(spec)
    pinned = ModelSpec("openai", "m", (("base_url", "http://127.0.0.1:8000/v1"), ("revision", "git:abc")))
    assert identity(pinned) == "openai|http://127.0.0.1:8000/v1|m|git:abc"
