"""A model call as a stage: a prompt function, a response model, a parse function.

    generate = annotate_stage(
        "generate", role="reasoner", prompt=question_prompt, response=Question,
        parse=question_row, sampling={"temperature": 0.6, "max_tokens": 1024},
    )

The rows of a shard are sent concurrently (bounded by the endpoint); a request
that fails for good, a reply that never validates, or a parse function that
refuses becomes a reject row with the reason, and the shard goes on.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import inspect
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from vdata.annotators.usage import Usage
from vdata.stages import Reject, ShardStage, StageContext, StageOutput

Messages = list[dict[str, Any]]


@dataclass(frozen=True)
class AnnotationSpec:
    role: str
    prompt: Callable[[dict[str, Any]], Messages | None]  # None: the row passes without a call
    parse: Callable[[dict[str, Any], Any], Any]  # (row, value or text) -> row, rows or Reject
    response: type[BaseModel] | None = None
    sampling: dict[str, Any] = field(default_factory=dict)


def annotate_stage(
    name: str,
    *,
    role: str,
    prompt: Callable[[dict[str, Any]], Messages | None],
    parse: Callable[[dict[str, Any], Any], Any] | None = None,
    response: type[BaseModel] | None = None,
    sampling: dict[str, Any] | None = None,
    model: str = "",
    config: dict[str, Any] | None = None,
    version: str = "1",
) -> ShardStage:
    """A stage that calls the `role` model once per row. `config` (and the prompt and parse
    code, the response schema, the sampling and the model) decide when it reruns."""
    spec = AnnotationSpec(role, prompt, parse or _keep_text, response, dict(sampling or {}))
    fingerprint = {
        "role": role,
        "model": model,
        "sampling": spec.sampling,
        "schema": response.model_json_schema() if response else None,
        "code": _code_hash(prompt, spec.parse),
        **(config or {}),
    }
    return ShardStage(name, functools.partial(run_annotation, spec), config=fingerprint, version=version)


def _keep_text(row: dict[str, Any], text: Any) -> dict[str, Any]:
    return {**row, "reply": text}


def _code_hash(*functions: Callable[..., Any]) -> str:
    sources = []
    for function in functions:
        try:
            sources.append(inspect.getsource(function))
        except (OSError, TypeError):
            sources.append(getattr(function, "__qualname__", repr(function)))
    return hashlib.sha256("\n".join(sources).encode()).hexdigest()[:16]


def run_annotation(spec: AnnotationSpec, rows: list[dict[str, Any]], ctx: StageContext) -> StageOutput:
    pool = ctx.resources.get("models")
    if pool is None:
        raise RuntimeError(
            f"stage {ctx.stage} calls models but the run has no 'models' resource (a ModelPool)"
        )
    usage = Usage()
    results = asyncio.run(_annotate_all(spec, rows, ctx, pool, usage))
    out = StageOutput(usage=usage.summary())
    for row, result in zip(rows, results, strict=True):
        for item in result if isinstance(result, list) else [result]:
            if isinstance(item, Reject):
                out.rejects.append(Reject(item.reason, item.detail, item.input_ref or _ref(row), row))
            elif item is not None:
                out.rows.append(item)
    return out


async def _annotate_all(
    spec: AnnotationSpec, rows: list[dict[str, Any]], ctx: StageContext, pool: Any, usage: Usage
) -> list[Any]:
    client = pool.client(spec.role, usage)
    try:

        async def one(row: dict[str, Any]) -> Any:
            try:
                return await _annotate_one(spec, row, client)
            finally:
                ctx.advance(1)
                ctx.status(usage.line())

        return await asyncio.gather(*(one(row) for row in rows))
    finally:
        await client.close()


async def _annotate_one(spec: AnnotationSpec, row: dict[str, Any], client: Any) -> Any:
    try:
        messages = spec.prompt(row)
    except Exception as exc:  # a prompt that cannot be built for this row
        return Reject("prompt_error", _describe(exc))
    if messages is None:
        return row
    reply = await client.chat(messages, response_model=spec.response, **spec.sampling)
    if not reply.ok:
        return Reject(reply.reason, reply.error)
    try:
        return spec.parse(row, reply.value if spec.response else reply.text)
    except Exception as exc:  # the parse function refused the reply
        return Reject("parse_error", f"{_describe(exc)}; reply: {reply.text[:300]}")


def _describe(exc: Exception) -> str:
    last = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
    where = f" (at {last.name}:{last.lineno})" if last else ""
    return f"{type(exc).__name__}: {exc}{where}"


def _ref(row: dict[str, Any]) -> str:
    for key in ("id", "video", "path"):
        if isinstance(row.get(key), str):
            return row[key]
    return ""
