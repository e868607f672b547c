"""A model call as a stage: a prompt function, a response model, a parse function.

    generate = annotate_stage(
        "generate", role="reasoner", prompt=question_prompt, response=Question,
        parse=question_row, sampling={"temperature": 0.6, "max_tokens": 1024},
    )

The rows of a shard are sent concurrently (bounded by the endpoint); a request
that fails for good, a reply that never validates, or a parse function that
refuses becomes a reject row with the reason, and the shard goes on.

`response` is a pydantic model, or a function of the row that builds one, so
that the schema the server is held to fits the row (`question_schema` in a
recipe: part numbers that exist in this video, a question that ends with "?").
llama.cpp and OpenAI-compatible servers compile the schema into constrained
decoding, so an invalid reply cannot be produced at all.
"""

from __future__ import annotations

import asyncio
import functools
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from vdata.record import row_ref
from vdata.runstore import RunStore
from vdata.stages import Reject, ShardStage, StageContext, StageOutput
from vdata.usage import Usage, UsageLedger

Messages = list[dict[str, Any]]


Response = type[BaseModel] | Callable[[dict[str, Any]], type[BaseModel]]
# Reasons of a reject that says nothing about the row: the request never got an answer.
TRANSPORT_FAILURES = frozenset(
    {"rate_limited", "server_error", "timeout", "connection", "bad_response", "endpoint_refused"}
)


@dataclass(frozen=True)
class AnnotationSpec:
    role: str
    # None: the row passes without a call; a Reject: the row cannot be asked about (it says why)
    prompt: Callable[[dict[str, Any]], Messages | Reject | None]
    parse: Callable[[dict[str, Any], Any], Any]  # (row, value or text) -> row, rows or Reject
    response: Response | None = None
    sampling: dict[str, Any] = field(default_factory=dict)

    def response_for(self, row: dict[str, Any]) -> type[BaseModel] | None:
        if self.response is None or _is_model(self.response):
            return self.response  # type: ignore[return-value]
        return self.response(row)


def _is_model(value: Any) -> bool:
    return isinstance(value, type) and issubclass(value, BaseModel)


def annotate_stage(
    name: str,
    *,
    role: str,
    prompt: Callable[[dict[str, Any]], Messages | None],
    parse: Callable[[dict[str, Any], Any], Any] | None = None,
    response: Response | None = None,
    sampling: dict[str, Any] | None = None,
    config: dict[str, Any] | None = None,
    version: str = "1",
) -> AnnotationStage:
    """A stage that calls the `role` model once per row. `config`, the sampling, the model the
    role resolves to, the response schema, and the code of the prompt and parse functions
    (with what they read, as for every stage) decide when it reruns."""
    spec = AnnotationSpec(role, prompt, parse or _keep_text, response, dict(sampling or {}))
    fixed_schema = response is not None and _is_model(response)
    fingerprint = {
        "role": role,
        "sampling": spec.sampling,
        "schema": response.model_json_schema() if fixed_schema else ("per row" if response else None),
        **(config or {}),
    }
    return AnnotationStage(
        name, functools.partial(run_annotation, spec), config=fingerprint, version=version, role=role
    )


@dataclass
class AnnotationStage(ShardStage):
    """A shard stage that calls a role's model: which model that is joins its identity."""

    role: str = ""

    def identity(self, resources: Mapping[str, Any]) -> dict[str, Any]:
        pool = resources.get("models")
        return {"role": self.role, "model": pool.model_name(self.role)} if pool is not None else {}


def _keep_text(row: dict[str, Any], text: Any) -> dict[str, Any]:
    return {**row, "reply": text}


def run_annotation(spec: AnnotationSpec, rows: list[dict[str, Any]], ctx: StageContext) -> StageOutput:
    pool = ctx.resources.get("models")
    if pool is None:
        raise RuntimeError(
            f"stage {ctx.stage} calls models but the run has no 'models' resource (a ModelPool)"
        )
    usage = Usage(UsageLedger(RunStore(ctx.run_dir).usage_log, invocation=ctx.invocation, stage=ctx.stage))
    return stage_output(rows, asyncio.run(_annotate_all(spec, rows, ctx, pool, usage)))


def stage_output(rows: list[dict[str, Any]], results: list[Any]) -> StageOutput:
    """What each row gave (a row, rows, a Reject, or None for nothing) as the shard's output;
    a reject keeps its row whole and names it."""
    out = StageOutput()
    for row, result in zip(rows, results, strict=True):
        for item in result if isinstance(result, list) else [result]:
            if isinstance(item, Reject):
                out.rejects.append(
                    Reject(item.reason, item.detail, item.input_ref or row_ref(row, ""), row, item.failure)
                )
            elif item is not None:
                out.rows.append(item)
    return out


async def _annotate_all(
    spec: AnnotationSpec, rows: list[dict[str, Any]], ctx: StageContext, pool: Any, usage: Usage
) -> list[Any]:
    return await for_each_row(
        pool, spec.role, rows, ctx, usage, lambda row, client: _annotate_one(spec, row, client)
    )


async def for_each_row(
    pool: Any,
    role: str,
    rows: list[dict[str, Any]],
    ctx: StageContext,
    usage: Usage,
    work: Callable[[dict[str, Any], Any], Any],
) -> list[Any]:
    """`work(row, client)` for every row at once, with one client of `role` (its endpoint bounds
    how many are in flight), the progress bar advanced and the usage line shown as rows finish."""
    client = pool.client(role, usage, on_wait=lambda wait: ctx.status(f"{usage.line()}; {wait}"))
    try:

        async def one(row: dict[str, Any]) -> Any:
            try:
                return await work(row, client)
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
    if isinstance(messages, Reject):
        return messages
    try:
        response = spec.response_for(row)
    except Exception as exc:  # a schema that cannot be built for this row
        return Reject("schema_error", _describe(exc))
    reply = await client.chat(messages, response_model=response, **spec.sampling)
    if not reply.ok:
        return Reject(reply.reason, reply.error, failure=reply.reason in TRANSPORT_FAILURES)
    try:
        return spec.parse(row, reply.value if response else reply.text)
    except Exception as exc:  # the parse function refused the reply
        return Reject("parse_error", f"{_describe(exc)}; reply: {reply.text[:300]}")


def _describe(exc: Exception) -> str:
    last = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
    where = f" (at {last.name}:{last.lineno})" if last else ""
    return f"{type(exc).__name__}: {exc}{where}"
