"""One async client per endpoint: concurrency, rate limits, retries, structured output, cache.

Builders never see any of this: a stage gives messages, a pydantic response
model and sampling settings, and gets back a `Reply` that is either a validated
value or a failure with a reason code, which becomes a reject row.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import openai
from pydantic import BaseModel, ValidationError

from vdata.annotators.cache import RequestCache, request_key
from vdata.annotators.endpoints import Endpoint
from vdata.annotators.limits import TokenBucket, backoff_seconds, parse_retry_after
from vdata.annotators.messages import expand_video, has_video
from vdata.usage import Usage

RETRYABLE_STATUS = {408, 409, 425, 429}
SETUP_STATUS = {401, 403, 404}
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
    texts: list[str] = dataclasses.field(default_factory=list)  # all choices of an n > 1 request
    value: Any = None  # the validated response model, when one was given
    reason: str = ""  # failure code: rate_limited, server_error, timeout, connection, bad_request,
    #                   endpoint_refused, bad_response, invalid_json, schema_mismatch, media_error
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
    texts: list[str] = dataclasses.field(default_factory=list)  # every choice, when n > 1 was asked

    @classmethod
    def read(cls, body: str) -> _Completion:
        data = json.loads(body)
        choices = data.get("choices") if isinstance(data, dict) else None
        if not choices:
            raise _Failure("bad_response", "the server replied without choices")
        usage = data.get("usage") or {}
        texts = [(c.get("message") or {}).get("content") or "" for c in choices]
        return cls(texts[0], usage.get("prompt_tokens") or 0, usage.get("completion_tokens") or 0, texts)


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
        on_wait: Callable[[str], None] | None = None,
    ):
        self.endpoint = endpoint
        self.base_url = base_url
        self.model = model
        self.usage = usage
        self.cache = cache
        self.refresh = refresh
        self.modes = modes if modes is not None else {}
        self.on_wait = on_wait  # told about each wait before a retry, for the progress line
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
        """One answer to `messages`: each turn from the cache or from the server (with retries),
        with repair turns until the reply validates against `response_model`. Video segments
        in the messages become what the endpoint takes (frames or a video_url) first."""
        try:
            if has_video(messages):  # decoding is slow: off the event loop
                messages = await asyncio.to_thread(expand_video, messages, self.endpoint)
        except Exception as exc:  # a clip that cannot be read: this row's problem, not the run's
            self.usage.add(self.model, failures=1)
            return Reply(ok=False, reason="media_error", error=f"{type(exc).__name__}: {exc}")
        schema = response_model.model_json_schema() if response_model else None
        sampling = {"temperature": temperature, "max_tokens": max_tokens, "seed": seed, **params}
        sampling = {k: v for k, v in sampling.items() if v is not None}
        try:
            reply = await self._converse(messages, response_model, schema, sampling)
        except _Failure as failure:
            self.usage.add(self.model, failures=1)
            return Reply(ok=False, reason=failure.reason, error=failure.detail)
        self.usage.add(self.model, successes=1)
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
        cached = True
        for turn in range(self.endpoint.max_repairs + 1):
            if turn:
                self.usage.add(self.model, repairs=1)
            completion, from_cache = await self._complete(
                conversation, _response_format(mode, schema), sampling, schema
            )
            cached = cached and from_cache
            text = completion.text
            tokens[0] += completion.prompt_tokens
            tokens[1] += completion.completion_tokens
            if response_model is None:
                return Reply(
                    ok=True,
                    text=text,
                    texts=completion.texts or [text],
                    cached=cached,
                    prompt_tokens=tokens[0],
                    completion_tokens=tokens[1],
                )
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
                ok=True,
                text=text,
                value=value,
                cached=cached,
                prompt_tokens=tokens[0],
                completion_tokens=tokens[1],
            )
        reason = "invalid_json" if problem.startswith("not JSON") else "schema_mismatch"
        raise _Failure(reason, f"no valid reply after {self.endpoint.max_repairs} repair(s): {problem}")

    async def _complete(
        self,
        conversation: list[dict[str, Any]],
        response_format: dict[str, Any] | None,
        sampling: dict[str, Any],
        schema: dict[str, Any] | None,
    ) -> tuple[_Completion, bool]:
        """One turn: the cached answer to exactly this conversation, or the server's, which is
        cached at once (a repair conversation cut off by a kill resumes from its last turn)."""
        key = ""
        if self.cache is not None:
            key = request_key(self.model, conversation, sampling, schema)
            hit = None if self.refresh else self.cache.get(key)
            if hit is not None:
                self.usage.add(self.model, cache_hits=1)
                return _Completion(
                    hit["text"],
                    hit.get("prompt_tokens", 0),
                    hit.get("completion_tokens", 0),
                    hit.get("texts") or [hit["text"]],
                ), True
        async with self._slots:
            completion = await self._send(conversation, response_format, sampling)
        if self.cache is not None:
            self.cache.put(key, self.model, dataclasses.asdict(completion))
        return completion, False

    async def _structured_mode(self) -> str:
        """The endpoint's way to constrain JSON, found once: a server that ignores a
        response_format it accepts is caught by a probe whose only valid answer is known.
        What was found is kept in the cache, so a rerun does not probe again."""
        if self.endpoint.structured != "auto":
            return self.endpoint.structured
        memo = f"structured-mode|{self.endpoint.base_url}|{self.model}"  # "local": not its port
        async with self._detecting:
            if memo in self.modes:
                return self.modes[memo]
            known = self.cache.note(memo) if self.cache is not None and not self.refresh else None
            if known in STRUCTURED_MODES:
                self.modes[memo] = known
                return known
            found, unreachable = "prompt", False
            for mode in STRUCTURED_MODES[:-1]:
                probe = [{"role": "user", "content": "Say hello."}]
                try:
                    # Some servers answer a response_format they do not know with a 500: one retry.
                    async with self._slots:
                        completion = await self._send(
                            probe,
                            _response_format(mode, _PROBE_SCHEMA),
                            {"max_tokens": 16, "temperature": 0},
                            1,
                        )
                    if json.loads(extract_json(completion.text)).get("answer") == "yes":
                        found = mode
                        break
                except _Failure as failure:
                    unreachable |= failure.reason in ("connection", "timeout", "endpoint_refused")
                except (ValueError, AttributeError, IndexError):
                    continue
            if unreachable and found == "prompt":
                return found  # nothing learnt from a server that did not answer: ask again later
            self.modes[memo] = found
            if self.cache is not None:
                self.cache.set_note(memo, found)
            return found

    # ------------------------------------------------------------ transport

    async def _send(
        self,
        messages: list[dict[str, Any]],
        response_format: dict[str, Any] | None,
        sampling: dict[str, Any],
        max_retries: int | None = None,
    ) -> _Completion:
        max_retries = self.endpoint.max_retries if max_retries is None else max_retries
        extra = dict(self.endpoint.extra_body)
        request: dict[str, Any] = {"model": self.model, "messages": messages, **sampling}
        if response_format is not None:
            request["response_format"] = response_format
        reason, detail = "unexpected", ""
        for attempt in range(max_retries + 1):
            if self._rpm is not None:
                await self._rpm.take(1)
            if self._tpm is not None:
                await self._tpm.take(_estimate_tokens(messages) + sampling.get("max_tokens", 0))
            self.usage.add(self.model, requests=1, retries=int(attempt > 0))
            started = time.monotonic()
            retry_after = None
            try:
                raw = await self._openai.chat.completions.with_raw_response.create(
                    **request, extra_body=extra or None
                )
                completion = _Completion.read(raw.text)  # plain JSON: no response objects to build
                self.usage.add(
                    self.model,
                    latency_s=time.monotonic() - started,
                    prompt_tokens=completion.prompt_tokens,
                    completion_tokens=completion.completion_tokens,
                )
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
                if status in SETUP_STATUS:  # a wrong key, model or URL: no request of the run can pass
                    raise _Failure("endpoint_refused", detail) from exc
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
                delay = backoff_seconds(attempt, retry_after, max_retry_after=self.endpoint.max_retry_after_s)
                if self.on_wait is not None:
                    asked = f"; the server asked for {retry_after:.0f}s" if retry_after else ""
                    self.on_wait(f"{reason}: waiting {delay:.1f}s before retry {attempt + 1}{asked}")
                await asyncio.sleep(delay)
        raise _Failure(reason, f"{detail} (after {max_retries + 1} attempts)")


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
