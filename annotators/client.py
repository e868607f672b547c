"""One async client per endpoint: concurrency, rate limits, retries, structured output, cache.

Builders never see any of this: a stage gives messages, a pydantic response
model and sampling settings, and gets back a `Reply` that is either a validated
value or a failure with a reason code, which becomes a reject row.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from dataclasses import dataclass
from typing import Any

import openai
from pydantic import BaseModel, ValidationError

from vdata.annotators.cache import RequestCache, request_key
from vdata.annotators.endpoints import Endpoint
from vdata.annotators.limits import TokenBucket, backoff_seconds, parse_retry_after
from vdata.annotators.usage import Usage

RETRYABLE_STATUS = {408, 409, 425, 429}
STRUCTURED_MODES = ("json_schema", "json_object", "prompt")
_PROBE_SCHEMA = {
    "type": "object",
    "properties": {"answer": {"type": "string", "enum": ["yes"]}},
    "required": ["answer"],
}


@dataclass
class Reply:
    ok: bool
    text: str = ""
    value: Any = None  # the validated response model, when one was given
    reason: str = ""  # failure code: rate_limited, server_error, timeout, connection, bad_request,
    #                   bad_response, invalid_json, schema_mismatch, unexpected
    error: str = ""
    cached: bool = False
    attempts: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0


@dataclass
class _Completion:
    text: str
    prompt_tokens: int
    completion_tokens: int

    @classmethod
    def read(cls, body: str) -> _Completion:
        data = json.loads(body)
        choices = data.get("choices") if isinstance(data, dict) else None
        if not choices:
            raise _Failure("bad_response", "the server replied without choices")
        usage = data.get("usage") or {}
        return cls(
            choices[0]["message"].get("content") or "",
            usage.get("prompt_tokens") or 0,
            usage.get("completion_tokens") or 0,
        )


class _Failure(Exception):
    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


class ModelClient:
    """Requests to one endpoint on behalf of one stage. Create and use it inside one event loop."""

    def __init__(
        self,
        endpoint: Endpoint,
        *,
        base_url: str,
        model: str,
        usage: Usage,
        cache: RequestCache | None = None,
        refresh: bool = False,
        modes: dict[str, str] | None = None,
    ):
        self.endpoint = endpoint
        self.base_url = base_url
        self.model = model
        self.usage = usage
        self.cache = cache
        self.refresh = refresh
        self.modes = modes if modes is not None else {}
        self._openai = openai.AsyncOpenAI(
            base_url=base_url, api_key=endpoint.api_key(), max_retries=0, timeout=endpoint.timeout_s
        )
        self._slots = asyncio.Semaphore(endpoint.max_concurrency)
        self._rpm = TokenBucket(endpoint.rpm) if endpoint.rpm else None
        self._tpm = TokenBucket(endpoint.tpm) if endpoint.tpm else None
        self._detecting = asyncio.Lock()
        usage.set_price(model, endpoint.price_in_per_mtok, endpoint.price_out_per_mtok)

    async def close(self) -> None:
        await self._openai.close()

    async def chat(
        self,
        messages: list[dict[str, Any]],
        *,
        response_model: type[BaseModel] | None = None,
        temperature: float = 0.0,
        max_tokens: int = 1024,
        seed: int | None = None,
        **params: Any,
    ) -> Reply:
        """One answer to `messages`: from the cache, or from the server with retries."""
        schema = response_model.model_json_schema() if response_model else None
        sampling = {"temperature": temperature, "max_tokens": max_tokens, "seed": seed, **params}
        sampling = {k: v for k, v in sampling.items() if v is not None}
        key = request_key(self.model, messages, sampling, schema) if self.cache is not None else ""
        counters = self.usage.of(self.model)
        if self.cache is not None and not self.refresh:
            hit = self.cache.get(key)
            if hit is not None:
                counters.cache_hits += 1
                return self._reply(hit["text"], response_model, cached=True, usage=hit)
        async with self._slots:
            try:
                reply = await self._converse(messages, response_model, schema, sampling)
            except _Failure as failure:
                counters.failures += 1
                return Reply(ok=False, reason=failure.reason, error=failure.detail)
        counters.successes += 1
        if self.cache is not None:
            stored = {"text": reply.text, "prompt_tokens": reply.prompt_tokens}
            self.cache.put(key, self.model, {**stored, "completion_tokens": reply.completion_tokens})
        return reply

    # ------------------------------------------------------------ structured output

    async def _converse(
        self,
        messages: list[dict[str, Any]],
        response_model: type[BaseModel] | None,
        schema: dict[str, Any] | None,
        sampling: dict[str, Any],
    ) -> Reply:
        mode = await self._structured_mode() if schema else None
        conversation = _with_schema_instruction(messages, schema) if mode == "prompt" else list(messages)
        tokens = [0, 0]
        problem = ""
        for turn in range(self.endpoint.max_repairs + 1):
            if turn:
                self.usage.of(self.model).repairs += 1
            completion = await self._send(conversation, _response_format(mode, schema), sampling)
            text = completion.text
            tokens[0] += completion.prompt_tokens
            tokens[1] += completion.completion_tokens
            counters = self.usage.of(self.model)
            counters.prompt_tokens += completion.prompt_tokens
            counters.completion_tokens += completion.completion_tokens
            if response_model is None:
                return Reply(ok=True, text=text, prompt_tokens=tokens[0], completion_tokens=tokens[1])
            try:
                value = parse_reply(text, response_model)
            except (ValidationError, ValueError) as exc:
                problem = _short_error(exc)
                conversation = [
                    *conversation,
                    {"role": "assistant", "content": text},
                    {
                        "role": "user",
                        "content": f"That reply is not valid ({problem}). Reply again with only a JSON "
                        f"object that matches this JSON schema:\n{json.dumps(schema)}",
                    },
                ]
                continue
            return Reply(
                ok=True, text=text, value=value, prompt_tokens=tokens[0], completion_tokens=tokens[1]
            )
        reason = "invalid_json" if problem.startswith("not JSON") else "schema_mismatch"
        raise _Failure(reason, f"no valid reply after {self.endpoint.max_repairs} repair(s): {problem}")

    async def _structured_mode(self) -> str:
        """The endpoint's way to constrain JSON, found once: a server that ignores a
        response_format it accepts is caught by a probe whose only valid answer is known."""
        if self.endpoint.structured != "auto":
            return self.endpoint.structured
        memo = f"{self.base_url}|{self.model}"
        async with self._detecting:
            if memo in self.modes:
                return self.modes[memo]
            for mode in STRUCTURED_MODES[:-1]:
                probe = [{"role": "user", "content": "Say hello."}]
                try:
                    # Some servers answer a response_format they do not know with a 500: one retry.
                    completion = await self._send(
                        probe, _response_format(mode, _PROBE_SCHEMA), {"max_tokens": 16, "temperature": 0}, 1
                    )
                    if json.loads(extract_json(completion.text)).get("answer") == "yes":
                        self.modes[memo] = mode
                        return mode
                except (_Failure, ValueError, AttributeError, IndexError):
                    continue
            self.modes[memo] = "prompt"
            return "prompt"

    # ------------------------------------------------------------ transport

    async def _send(
        self,
        messages: list[dict[str, Any]],
        response_format: dict[str, Any] | None,
        sampling: dict[str, Any],
        max_retries: int | None = None,
    ) -> Any:
        counters = self.usage.of(self.model)
        max_retries = self.endpoint.max_retries if max_retries is None else max_retries
        extra = dict(self.endpoint.extra_body)
        request: dict[str, Any] = {"model": self.model, "messages": messages, **sampling}
        if response_format is not None:
            request["response_format"] = response_format
        reason, detail = "unexpected", ""
        for attempt in range(max_retries + 1):
            if attempt:
                counters.retries += 1
            if self._rpm is not None:
                await self._rpm.take(1)
            if self._tpm is not None:
                await self._tpm.take(_estimate_tokens(messages) + sampling.get("max_tokens", 0))
            counters.requests += 1
            started = time.monotonic()
            retry_after = None
            try:
                raw = await self._openai.chat.completions.with_raw_response.create(
                    **request, extra_body=extra or None
                )
                completion = _Completion.read(raw.text)  # plain JSON: no response objects to build
                counters.latencies_s.append(time.monotonic() - started)
                return completion
            except openai.APITimeoutError:
                reason, detail = "timeout", f"no reply within {self.endpoint.timeout_s:.0f}s"
            except openai.APIConnectionError as exc:
                reason, detail = "connection", f"{exc.__class__.__name__}: {exc.__cause__ or exc}"
            except openai.APIStatusError as exc:
                retry_after = parse_retry_after(exc.response.headers)
                status = exc.status_code
                reason = (
                    "rate_limited" if status == 429 else "server_error" if status >= 500 else "bad_request"
                )
                detail = f"HTTP {status}: {_body_message(exc)}"
                if reason == "bad_request" and status not in RETRYABLE_STATUS:
                    raise _Failure(reason, detail) from exc
            except (
                openai.APIResponseValidationError,
                json.JSONDecodeError,
                _Failure,
                KeyError,
                TypeError,
            ) as exc:
                reason, detail = "bad_response", f"unreadable reply: {exc}"
            if attempt < max_retries:
                await asyncio.sleep(backoff_seconds(attempt, retry_after))
        raise _Failure(reason, f"{detail} (after {max_retries + 1} attempts)")

    def _reply(
        self, text: str, response_model: type[BaseModel] | None, *, cached: bool, usage: dict
    ) -> Reply:
        value = parse_reply(text, response_model) if response_model else None
        return Reply(
            ok=True,
            text=text,
            value=value,
            cached=cached,
            prompt_tokens=usage.get("prompt_tokens", 0),
            completion_tokens=usage.get("completion_tokens", 0),
        )


def _response_format(mode: str | None, schema: dict[str, Any] | None) -> dict[str, Any] | None:
    if schema is None or mode in (None, "prompt"):
        return None
    if mode == "json_schema":
        return {"type": "json_schema", "json_schema": {"name": "reply", "schema": schema, "strict": True}}
    return {"type": "json_object", "schema": schema}  # llama.cpp's form


def _with_schema_instruction(
    messages: list[dict[str, Any]], schema: dict[str, Any] | None
) -> list[dict[str, Any]]:
    instruction = f"Reply with only a JSON object that matches this JSON schema:\n{json.dumps(schema)}"
    return [{"role": "system", "content": instruction}, *messages]


def parse_reply(text: str, response_model: type[BaseModel]) -> BaseModel:
    """The reply validated against the model. Raw control characters inside strings (a
    newline a small model wrote into a string) are accepted; anything else must be JSON."""
    try:
        data = json.loads(extract_json(text), strict=False)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON: {exc}") from exc
    return response_model.model_validate(data)


_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.S)


def extract_json(text: str) -> str:
    """The JSON object in a reply: the whole text, a fenced block, or the first balanced {...}."""
    stripped = text.strip()
    if stripped.startswith("{"):
        return stripped
    fenced = _FENCE.search(stripped)
    if fenced:
        return fenced.group(1).strip()
    start = stripped.find("{")
    if start < 0:
        raise ValueError("not JSON: the reply holds no JSON object")
    depth, in_string, escaped = 0, False, False
    for index, char in enumerate(stripped[start:], start):
        if in_string:
            escaped = char == "\\" and not escaped
            if char == '"' and not escaped:
                in_string = False
            continue
        if char == '"':
            in_string = True
        elif char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return stripped[start : index + 1]
    raise ValueError("not JSON: the JSON object is cut off")


def _short_error(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        first = exc.errors()[0]
        if first["type"] == "json_invalid":
            return f"not JSON: {first['msg']}"
        where = ".".join(str(p) for p in first["loc"]) or "the object"
        return f"{where}: {first['msg']}"
    return str(exc)


def _body_message(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict):
            return str(inner.get("message", inner))[:300]
    return str(exc.message)[:300]


def _estimate_tokens(messages: list[dict[str, Any]]) -> int:
    total = 0
    for message in messages:
        content = message.get("content")
        if isinstance(content, str):
            total += len(content) // 4
        elif isinstance(content, list):
            for part in content:
                total += len(part.get("text", "")) // 4 if part.get("type") == "text" else 256
    return total + 8
