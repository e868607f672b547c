"""Stages: a run is a plain list of small stages (the runner is vdata.runner).

A stage turns rows into rows and rejects. `MapStage` calls a function per row,
`ShardStage` per shard of rows (for concurrent model calls), `DatasetStage`
once with every row (balance, split). A stage knows nothing of the engine that
runs it: the local engine may send a MapStage's rows through a process pool.
"""

from __future__ import annotations

import functools
import hashlib
import json
import random
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pyarrow as pa

from vdata.codehash import code_hashes
from vdata.record import row_ref

STAGE_ERROR = "stage_error"


def _no_progress(n: int) -> None:
    """The progress callback of a context that reports nowhere (picklable, unlike a lambda)."""


@dataclass(frozen=True)
class Reject:
    """A row or input that a stage did not keep, and why. `payload` keeps it whole."""

    reason: str
    detail: str
    input_ref: str = ""
    payload: Any = None
    failure: bool = False  # not a verdict on the row: the setup failed (a dead endpoint, a bug)

    @classmethod
    def of_row(cls, row: Mapping[str, Any], reason: str, detail: str, *, failure: bool = False) -> Reject:
        """A reject that keeps the whole row, for stages that see many rows at once."""
        return cls(reason, detail, row_ref(row, ""), row, failure)


@dataclass
class StageOutput:
    rows: list[dict[str, Any]] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)


@dataclass
class StageContext:
    """What a stage may know about where it runs; nothing about the engine."""

    stage: str
    shard: int
    seed: int
    run_dir: Path
    advance: Callable[[int], None] = _no_progress
    status: Callable[[str], None] = _no_progress  # a short live line next to the progress bar
    resources: Mapping[str, Any] = field(default_factory=dict)  # e.g. {"models": ModelPool}
    invocation: int = 0  # which invocation of the run this is (1 for the first)

    def rng(self, *key: Any) -> random.Random:
        """A random generator fixed by the run seed, the stage and `key`."""
        text = json.dumps([self.seed, self.stage, *key], default=str)
        return random.Random(int(hashlib.sha256(text.encode()).hexdigest()[:16], 16))


class RunError(Exception):
    """The run cannot start as asked; the message says what to do."""


class StageFailed(RuntimeError):
    """A stage could not do its work for any row: a bug or a broken setup, not bad data."""


@dataclass
class Stage:
    """Base of all stages. `config` is what changes the output; it decides reruns."""

    name: str
    fn: Callable[..., Any]
    config: Mapping[str, Any] = field(default_factory=dict)
    schema: pa.Schema | None = None
    version: str = "1"
    seeded: bool = False
    whole_dataset = False

    def apply(self, rows: list[dict[str, Any]], ctx: StageContext) -> StageOutput:
        raise NotImplementedError

    def identity(self, resources: Mapping[str, Any]) -> dict[str, Any]:
        """What the stage's output depends on that only the run's resources know (the model a
        role resolves to); it joins the fingerprint."""
        return {}

    @functools.cached_property
    def code(self) -> dict[str, str]:
        """What the stage's function depends on, hashed (vdata.codehash): editing any of it
        (the function, what it calls, a constant it reads) reruns the stage."""
        return code_hashes(self.fn)


@dataclass
class MapStage(Stage):
    """fn(row, ctx) returns a row, a list of rows, or a Reject. Exceptions become rejects.

    `workers` > 1 lets the engine send the rows through a process pool; fn must then be
    picklable (a module-level function, or functools.partial of one).
    """

    workers: int = 1

    def apply(self, rows: list[dict[str, Any]], ctx: StageContext) -> StageOutput:
        results = []
        for row in rows:
            results.append(call_row(self.fn, row, ctx))
            ctx.advance(1)
        return self.collect(rows, results, ctx)

    def collect(self, rows: list[dict[str, Any]], results: list[list[Any]], ctx: StageContext) -> StageOutput:
        """The rows and rejects of a shard from what fn returned for each row."""
        out = StageOutput()
        for index, (row, result) in enumerate(zip(rows, results, strict=True)):
            for item in result:
                if isinstance(item, Reject):
                    ref = item.input_ref or row_ref(row, f"shard{ctx.shard}:row{index}")
                    payload = row if item.payload is None else item.payload
                    out.rejects.append(Reject(item.reason, item.detail, ref, payload, item.failure))
                elif item is not None:
                    out.rows.append(item)
        return out


def call_row(fn: Callable[..., Any], row: dict[str, Any], ctx: StageContext) -> list[Any]:
    """fn(row, ctx) as a list of rows and Rejects; an exception becomes a stage_error Reject."""
    try:
        result = fn(row, ctx)
    except Exception as exc:  # one bad row must not end the run
        last = traceback.extract_tb(exc.__traceback__)[-1]
        where = f"{Path(last.filename).name}:{last.lineno}"
        return [Reject(STAGE_ERROR, f"{type(exc).__name__}: {exc} (at {where})")]
    return result if isinstance(result, list) else [result]


@dataclass
class ShardStage(Stage):
    """fn(rows, ctx) -> StageOutput for one shard; for stages that batch or run concurrently."""

    def apply(self, rows: list[dict[str, Any]], ctx: StageContext) -> StageOutput:
        advanced = [0]  # a shard function may report progress row by row; the rest comes at its end

        def advance(n: int) -> None:
            advanced[0] += n
            ctx.advance(n)

        out = self.fn(rows, replace(ctx, advance=advance))
        if len(rows) > advanced[0]:
            ctx.advance(len(rows) - advanced[0])
        return out


@dataclass
class DatasetStage(ShardStage):
    """fn(rows, ctx) -> StageOutput with every row of the previous stage at once."""

    whole_dataset = True


def reject_rows(rejects: list[Reject], stage: str) -> list[dict[str, Any]]:
    return [
        {
            "input_ref": r.input_ref,
            "stage": stage,
            "reason": r.reason,
            "detail": r.detail,
            "payload_json": json.dumps(r.payload, ensure_ascii=False, default=str),
        }
        for r in rejects
    ]
