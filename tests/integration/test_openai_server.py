"""The OpenAI-compatible test server, driven by the real ``openai`` SDK: proof that it speaks the
wire format (paths, status codes, headers, JSON shapes) that the SDK parses into its typed objects,
and that every injected fault reaches the caller as the exception the SDK raises for it."""

from __future__ import annotations

import asyncio
import base64
import http.client
import json
import math
import struct
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx2
import openai
import pytest

try:
    from tests.openai_server import OpenAIServer
except ModuleNotFoundError:  # run as `pytest`, not `python -m pytest`: the repo root is not on sys.path,
    from openai_server import OpenAIServer  # but tests/ is (pytest puts the rootdir conftest's folder there)

KEY = "test-key"
CHAT = "/v1/chat/completions"
EMBED = "/v1/embeddings"
COMPLETIONS = "/v1/completions"


@pytest.fixture
def server() -> Iterator[OpenAIServer]:
    with OpenAIServer() as srv:
        yield srv
    assert srv.errors == []


@pytest.fixture
def client(server: OpenAIServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=server.base_url, api_key=KEY, max_retries=0) as c:
        yield c


def _chat(client: openai.OpenAI, text: str, model: str = "gpt-test", **kwargs):
    return client.chat.completions.create(model=model, messages=[{"role": "user", "content": text}], **kwargs)


def _cos(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b)) / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))


# --- chat completions ---------------------------------------------------------------------------


def test_chat_default_answer_echoes_last_user_message(server, client):
    response = client.chat.completions.create(model="gpt-test", messages=[
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "first question"},
        {"role": "assistant", "content": "first answer"},
        {"role": "user", "content": [{"type": "text", "text": "hello there"}]},
    ], temperature=0, seed=7)

    assert isinstance(response, openai.types.chat.ChatCompletion)
    assert response.id.startswith("chatcmpl-")
    assert response.object == "chat.completion"
    assert response.model == "gpt-test"
    assert response.system_fingerprint == "fp_gate_test"
    choice = response.choices[0]
    assert choice.index == 0
    assert choice.finish_reason == "stop"
    assert choice.message.role == "assistant"
    assert choice.message.content == "[gpt-test] hello there"
    assert choice.message.tool_calls is None
    assert choice.message.refusal is None
    assert response.usage is not None
    assert (response.usage.prompt_tokens, response.usage.completion_tokens) == (9, 3)
    assert response.usage.total_tokens == 12


def test_scripted_answers_first_matching_rule_wins(server, client):
    server.answer("Paris.", match="capital of France")
    server.answer("Model two speaking.", model="model-two")
    server.answer("Fallback.")
    server.answer("Never reached.", match="capital")

    assert _chat(client, "What is the capital of France?").choices[0].message.content == "Paris."
    assert _chat(client, "Hi", model="model-two").choices[0].message.content == "Model two speaking."
    assert _chat(client, "What is the capital of Spain?").choices[0].message.content == "Fallback."


def test_scripted_tool_calls_have_json_string_arguments(server, client):
    server.answer(match="weather", tool_calls=[{"name": "get_weather", "arguments": {"city": "Paris"}},
                                               {"name": "get_time", "arguments": {"tz": "Europe/Paris"}}])
    tools = [{"type": "function", "function": {"name": name, "parameters": {"type": "object", "properties": {}}}}
             for name in ("get_weather", "get_time")]

    response = _chat(client, "What is the weather in Paris?", tools=tools, tool_choice="auto")

    choice = response.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    calls = choice.message.tool_calls
    assert calls is not None and len(calls) == 2
    assert [c.type for c in calls] == ["function", "function"]
    assert all(c.id.startswith("call_") for c in calls) and calls[0].id != calls[1].id
    assert calls[0].function.name == "get_weather"
    assert isinstance(calls[0].function.arguments, str)
    assert json.loads(calls[0].function.arguments) == {"city": "Paris"}
    assert json.loads(calls[1].function.arguments) == {"tz": "Europe/Paris"}
    assert server.requests[-1]["body"]["tools"] == tools


def test_max_tokens_truncates_with_finish_reason_length(server, client):
    server.answer("one two three four five six")

    short = _chat(client, "count", max_tokens=3)
    assert short.choices[0].message.content == "one two three"
    assert short.choices[0].finish_reason == "length"
    assert short.usage is not None and short.usage.completion_tokens == 3

    newer = _chat(client, "count", max_completion_tokens=4)
    assert newer.choices[0].message.content == "one two three four"
    assert newer.choices[0].finish_reason == "length"

    roomy = _chat(client, "count", max_tokens=100)
    assert roomy.choices[0].message.content == "one two three four five six"
    assert roomy.choices[0].finish_reason == "stop"


def test_invalid_chat_requests_get_400_invalid_request_error(server, client):
    with pytest.raises(openai.BadRequestError) as missing_model:
        client.post("/chat/completions", body={"messages": [{"role": "user", "content": "x"}]}, cast_to=object)
    with pytest.raises(openai.BadRequestError) as missing_messages:
        client.post("/chat/completions", body={"model": "gpt-test"}, cast_to=object)
    with pytest.raises(openai.BadRequestError) as two_choices:
        _chat(client, "x", n=2)

    for exc in (missing_model.value, missing_messages.value, two_choices.value):
        assert exc.type == "invalid_request_error"
        assert exc.response.headers["content-type"] == "application/json"
    assert server.count(CHAT, "400") == 3


# --- embeddings ---------------------------------------------------------------------------------


def test_embeddings_float_and_base64_carry_the_same_vectors(server, client):
    texts = ["A man is playing a guitar.", "A man plays the guitar.", "Stock markets fell sharply today."]

    floats = client.embeddings.create(model="text-embedding-3-small", input=texts, encoding_format="float")
    # the SDK asks for base64 unless told otherwise, and decodes it itself
    default = client.embeddings.create(model="text-embedding-3-small", input=texts)

    assert server.requests[-1]["body"]["encoding_format"] == "base64"
    assert floats.object == "list" and floats.model == "text-embedding-3-small"
    assert [d.index for d in floats.data] == [0, 1, 2]
    assert all(d.object == "embedding" and len(d.embedding) == 32 for d in floats.data)
    assert [d.embedding for d in default.data] == [d.embedding for d in floats.data]
    assert all(abs(sum(v * v for v in d.embedding) - 1) < 1e-5 for d in floats.data)
    assert floats.usage.prompt_tokens == floats.usage.total_tokens == 16

    guitar, guitar2, stocks = (d.embedding for d in floats.data)
    assert _cos(guitar, guitar2) > _cos(guitar, stocks) + 0.2
    assert _cos(guitar, guitar2) > _cos(guitar2, stocks) + 0.2


def test_embeddings_raw_base64_is_little_endian_float32(server, client):
    raw = client.embeddings.with_raw_response.create(model="emb", input="hello world", encoding_format="base64")
    payload = json.loads(raw.http_response.text)
    encoded = payload["data"][0]["embedding"]
    assert isinstance(encoded, str)
    decoded = list(struct.unpack("<32f", base64.b64decode(encoded)))
    assert decoded == server.embed("hello world", "emb")


def test_embeddings_are_deterministic_and_model_specific(server, client):
    text = "The quick brown fox jumps over the lazy dog."
    a1 = client.embeddings.create(model="model-a", input=text).data[0].embedding
    a2 = client.embeddings.create(model="model-a", input=[text]).data[0].embedding
    b = client.embeddings.create(model="model-b", input=text).data[0].embedding
    wide = client.embeddings.create(model="model-a", input=text, dimensions=64).data[0].embedding

    assert a1 == a2
    assert a1 != b
    assert 0.3 < _cos(a1, b) < 0.95  # different models: different but correlated
    assert len(wide) == 64
    with OpenAIServer(embedding_dim=16) as small:
        assert len(small.embed(text, "model-a")) == 16


# --- legacy completions: prompt logprobs --------------------------------------------------------


def test_completions_echo_gives_prompt_logprobs(server, client):
    prompt = "The cat sat on the  mat.\n"
    response = client.completions.create(model="davinci-002", prompt=prompt, echo=True, logprobs=1, max_tokens=0)

    assert response.object == "text_completion"
    choice = response.choices[0]
    assert choice.text == prompt
    assert choice.finish_reason == "length"
    lp = choice.logprobs
    assert lp is not None and lp.tokens is not None and lp.token_logprobs is not None
    assert "".join(lp.tokens) == prompt
    assert lp.tokens[:3] == ["The", " cat", " sat"]
    assert lp.token_logprobs[0] is None
    assert all(isinstance(x, float) and -6.0 <= x <= -0.05 for x in lp.token_logprobs[1:])
    assert lp.top_logprobs is not None and lp.top_logprobs[0] is None
    assert lp.top_logprobs[1] == {lp.tokens[1]: lp.token_logprobs[1]}
    assert lp.text_offset == [len("".join(lp.tokens[:i])) for i in range(len(lp.tokens))]
    assert response.usage is not None and response.usage.prompt_tokens == len(lp.tokens)
    assert response.usage.completion_tokens == 0

    again = client.completions.create(model="davinci-002", prompt=prompt, echo=True, logprobs=1, max_tokens=0)
    other = client.completions.create(model="babbage-002", prompt=prompt, echo=True, logprobs=1, max_tokens=0)
    assert again.choices[0].logprobs.token_logprobs == lp.token_logprobs
    assert other.choices[0].logprobs.tokens == lp.tokens
    assert other.choices[0].logprobs.token_logprobs != lp.token_logprobs


def test_completions_generate_after_the_prompt(server, client):
    response = client.completions.create(model="davinci-002", prompt="Once upon a time", echo=True, logprobs=3,
                                         max_tokens=2)
    choice = response.choices[0]
    assert choice.text.startswith("Once upon a time") and len(choice.text.split()) == 6
    assert choice.logprobs is not None and len(choice.logprobs.tokens) == 6
    assert all(len(top) == 3 for top in choice.logprobs.top_logprobs[1:])

    plain = client.completions.create(model="davinci-002", prompt="Once upon a time", max_tokens=2)
    assert plain.choices[0].text == choice.text[len("Once upon a time"):]
    assert plain.choices[0].logprobs is None


def test_no_logprobs_model_returns_null_logprobs(server, client):
    server.no_logprobs_models.add("gpt-3.5-turbo-instruct")
    response = client.completions.create(model="gpt-3.5-turbo-instruct", prompt="a b c", echo=True, logprobs=1,
                                         max_tokens=0)
    assert response.choices[0].text == "a b c"
    assert response.choices[0].logprobs is None


# --- models, auth, unknown models and paths -------------------------------------------------------


def test_models_list_and_unknown_model(server, client):
    server.known_models = {"gpt-test", "text-embedding-3-small"}

    assert [m.id for m in client.models.list()] == ["gpt-test", "text-embedding-3-small"]
    assert client.models.retrieve("gpt-test").owned_by == "gate-test"
    with pytest.raises(openai.NotFoundError) as chat:
        _chat(client, "hi", model="gpt-nope")
    with pytest.raises(openai.NotFoundError) as embed:
        client.embeddings.create(model="emb-nope", input="hi")

    assert chat.value.code == embed.value.code == "model_not_found"
    assert chat.value.type == "invalid_request_error"
    assert "gpt-nope" in chat.value.message
    assert server.count(outcome="404") == 2
    assert _chat(client, "hi").choices[0].message.content == "[gpt-test] hi"


def test_unknown_path_is_404(server, client):
    with pytest.raises(openai.NotFoundError) as exc:
        client.get("/assistants", cast_to=object)
    assert exc.value.body == {"message": "Invalid URL (GET /v1/assistants)", "type": "invalid_request_error",
                              "param": None, "code": None}


def test_wrong_key_is_401_invalid_api_key(server):
    with openai.OpenAI(base_url=server.base_url, api_key="sk-wrong-key-1234", max_retries=0) as bad:
        with pytest.raises(openai.AuthenticationError) as exc:
            _chat(bad, "hi")
    assert exc.value.status_code == 401
    assert exc.value.code == "invalid_api_key"
    assert "sk-wrong-key-1234" not in exc.value.message  # masked, as OpenAI does
    assert server.count(CHAT, "401") == 1


def test_no_api_key_configured_accepts_any_key():
    with OpenAIServer(api_key=None) as srv, \
            openai.OpenAI(base_url=srv.base_url, api_key="anything", max_retries=0) as c:
        assert _chat(c, "hi").choices[0].message.content == "[gpt-test] hi"


# --- faults -------------------------------------------------------------------------------------


def test_fault_429_rate_limit_exceeded_with_retry_after(server, client):
    server.fault("429", retry_after=0.05)
    with pytest.raises(openai.RateLimitError) as exc:
        _chat(client, "hi")
    assert exc.value.status_code == 429
    assert exc.value.code == "rate_limit_exceeded"
    assert exc.value.type == "requests"
    assert exc.value.message.startswith("Error code: 429 - Rate limit reached")
    assert exc.value.response.headers["retry-after"] == "0.05"

    server.fault("429")
    with pytest.raises(openai.RateLimitError) as default:
        _chat(client, "hi")
    assert default.value.response.headers["retry-after"] == "0"


def test_fault_insufficient_quota(server, client):
    server.fault("insufficient_quota")
    with pytest.raises(openai.RateLimitError) as exc:
        client.embeddings.create(model="emb", input="hi")
    assert exc.value.code == "insufficient_quota"
    assert exc.value.type == "insufficient_quota"
    assert "exceeded your current quota" in exc.value.message


@pytest.mark.parametrize("kind,status", [("500", 500), ("503", 503)])
def test_fault_5xx_is_internal_server_error(server, client, kind, status):
    server.fault(kind)
    with pytest.raises(openai.InternalServerError) as exc:
        _chat(client, "hi")
    assert exc.value.status_code == status
    assert exc.value.type == "server_error"


def test_fault_401(server, client):
    server.fault("401")
    with pytest.raises(openai.AuthenticationError) as exc:
        _chat(client, "hi")
    assert exc.value.code == "invalid_api_key"


def test_fault_timeout_fires_the_client_timeout_without_blocking_others(server, client):
    server.fault("timeout", match="slow", retry_after=3)
    started = time.monotonic()
    with pytest.raises(openai.APITimeoutError):
        _chat(client, "slow please", timeout=0.5)
    assert time.monotonic() - started < 2
    # the sleeping handler does not hold up anyone else
    assert _chat(client, "fast").choices[0].message.content == "[gpt-test] fast"
    assert time.monotonic() - started < 2
    assert [r["outcome"] for r in server.requests] == ["timeout", "ok"]


def test_fault_truncated_is_api_connection_error(server, client):
    server.fault("truncated")
    with pytest.raises(openai.APIConnectionError) as exc:
        _chat(client, "hi")
    assert not isinstance(exc.value, openai.APITimeoutError)
    # httpx2 saw the connection close before Content-Length bytes arrived
    assert isinstance(exc.value.__cause__, httpx2.RemoteProtocolError)
    assert _chat(client, "after").choices[0].message.content == "[gpt-test] after"


def test_fault_malformed_raises_json_decode_error(server, client):
    # A 200 whose application/json body is not JSON is not an APIError in the openai SDK: it
    # calls response.json() and the json module's JSONDecodeError (a ValueError) escapes as is.
    server.fault("malformed")
    with pytest.raises(json.JSONDecodeError):
        _chat(client, "hi")
    assert not issubclass(json.JSONDecodeError, openai.OpenAIError)
    assert server.requests[-1]["outcome"] == "malformed"


def test_fault_times_and_filters(server, client):
    server.fault("500", times=2, path=CHAT)
    server.fault("503", path=EMBED, model="emb-b")
    server.fault("429", match="poison")

    assert client.embeddings.create(model="emb-a", input="x").data  # not the faulted model
    for _ in range(2):
        with pytest.raises(openai.InternalServerError):
            _chat(client, "hi")
    assert _chat(client, "hi").choices[0].finish_reason == "stop"  # the two faults are spent
    with pytest.raises(openai.InternalServerError):
        client.embeddings.create(model="emb-b", input="x")
    assert client.embeddings.create(model="emb-b", input="x").data
    with pytest.raises(openai.RateLimitError):
        _chat(client, "this is poison")
    assert _chat(client, "this is poison").choices[0].message.content == "[gpt-test] this is poison"

    assert server.count(CHAT) == 5
    assert server.count(CHAT, "500") == 2
    assert server.count(CHAT, "ok") == 2
    assert server.count(outcome="503") == 1
    assert server.count(EMBED, "ok") == 2


def test_requests_record_everything_and_reset_keeps_answers(server, client):
    server.answer("scripted")
    server.fault("500", times=5)
    with pytest.raises(openai.InternalServerError):
        _chat(client, "hi", temperature=0.5)

    (record,) = server.requests
    assert record["path"] == CHAT and record["method"] == "POST" and record["outcome"] == "500"
    assert record["body"]["messages"] == [{"role": "user", "content": "hi"}]
    assert record["body"]["temperature"] == 0.5
    assert record["headers"]["authorization"] == f"Bearer {KEY}"
    assert record["headers"]["content-type"] == "application/json"
    assert all(k == k.lower() for k in record["headers"])

    server.reset()
    assert server.requests == [] and server.count() == 0
    assert _chat(client, "hi").choices[0].message.content == "scripted"
    assert server.count(CHAT, "ok") == 1


def test_fault_rate_is_seeded_and_random():
    def outcomes(seed: int) -> list[str]:
        with OpenAIServer(seed=seed) as srv, openai.OpenAI(base_url=srv.base_url, api_key=KEY, max_retries=0) as c:
            srv.fault_rate("500", 0.5)
            for _ in range(30):
                try:
                    c.embeddings.create(model="emb", input="x")
                except openai.InternalServerError:
                    pass
            return [r["outcome"] for r in srv.requests]

    first = outcomes(1)
    assert first == outcomes(1)
    assert first != outcomes(2)
    assert 5 <= first.count("500") <= 25
    assert set(first) == {"ok", "500"}


def test_sdk_retries_survive_one_429(server):
    server.fault("429", retry_after=0.01)
    with openai.OpenAI(base_url=server.base_url, api_key=KEY, max_retries=2) as retrying:
        response = _chat(retrying, "hi")
    assert response.choices[0].message.content == "[gpt-test] hi"
    assert server.count(CHAT) == 2
    assert [r["outcome"] for r in server.requests] == ["429", "ok"]


# --- async client and concurrency ---------------------------------------------------------------


def test_async_client_runs_requests_concurrently(server):
    server.latency = 0.2

    async def main() -> tuple[list[str], float]:
        async with openai.AsyncOpenAI(base_url=server.base_url, api_key=KEY, max_retries=0) as aclient:
            started = time.monotonic()
            responses = await asyncio.gather(*(
                aclient.chat.completions.create(model="gpt-test", messages=[{"role": "user", "content": f"q{i}"}])
                for i in range(20)))
            return [r.choices[0].message.content for r in responses], time.monotonic() - started

    contents, elapsed = asyncio.run(main())
    assert contents == [f"[gpt-test] q{i}" for i in range(20)]
    assert elapsed < 2.0, f"20 requests at 0.2 s latency took {elapsed:.2f} s: requests were serialized"
    assert server.count(CHAT, "ok") == 20


def test_async_client_sees_the_same_faults(server):
    server.fault("429", retry_after=0.5)
    server.fault("truncated")
    server.fault("timeout", retry_after=3)

    async def main() -> list[BaseException | object]:
        async with openai.AsyncOpenAI(base_url=server.base_url, api_key=KEY, max_retries=0, timeout=0.5) as aclient:
            results: list[BaseException | object] = []
            for _ in range(4):
                try:
                    results.append(await aclient.embeddings.create(model="emb", input=["a b", "c d"]))
                except openai.APIError as exc:
                    results.append(exc)
            return results

    rate, truncated, timeout, ok = asyncio.run(main())
    assert isinstance(rate, openai.RateLimitError) and rate.response.headers["retry-after"] == "0.5"
    assert isinstance(truncated, openai.APIConnectionError) and not isinstance(truncated, openai.APITimeoutError)
    assert isinstance(timeout, openai.APITimeoutError)
    assert isinstance(ok, openai.types.CreateEmbeddingResponse) and len(ok.data) == 2


# --- the HTTP layer itself ----------------------------------------------------------------------


def test_keep_alive_with_content_length_on_every_answer(server):
    """Ok, error and fault answers all carry Content-Length and leave the connection reusable."""
    server.fault("429", path=EMBED)
    url = urlsplit(server.base_url)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=5)
    try:
        headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
        calls = [("POST", "/v1/embeddings", {"model": "emb", "input": "x"}, 429),
                 ("POST", "/v1/embeddings", {"model": "emb", "input": "x"}, 200),
                 ("GET", "/v1/nothing", None, 404),
                 ("POST", "/v1/chat/completions", {"model": "m"}, 400),
                 ("GET", "/v1/models", None, 200)]
        sockets = set()
        for method, path, body, status in calls:
            conn.request(method, path, body=None if body is None else json.dumps(body), headers=headers)
            response = conn.getresponse()
            payload = response.read()
            assert response.status == status
            assert response.getheader("Content-Length") == str(len(payload))
            assert response.getheader("Content-Type") == "application/json"
            assert not response.will_close
            json.loads(payload)
            sockets.add(id(conn.sock))
        assert len(sockets) == 1  # one connection served them all
    finally:
        conn.close()
