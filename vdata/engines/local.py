"""The local engine: a run's stages on this machine, in this process or, for a per-row stage with
workers, through a process pool whose workers end with this process."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from vdata.runstore import RunStore
from vdata.stages import (
    STAGE_ERROR,
    MapStage,
    Stage,
    StageContext,
    StageOutput,
    _no_progress,
    call_row,
    reject_rows,
)


class LocalEngine:
    """Applies stages on this machine: in this process, or a MapStage's rows through a
    process pool whose workers end with this process."""

    def apply(self, stage: Stage, rows: list[dict[str, Any]], ctx: StageContext) -> StageOutput:
        workers = min(getattr(stage, "workers", 1), len(rows))
        if not isinstance(stage, MapStage) or workers <= 1:
            return stage.apply(rows, ctx)
        from vdata.orphans import worker_pool

        with worker_pool(workers) as pool:
            futures = [pool.submit(call_row, stage.fn, row, portable(ctx)) for row in rows]
            results = []
            for future in futures:
                results.append(future.result())
                ctx.advance(1)
        return stage.collect(rows, results, ctx)

    def run_shards(
        self,
        stage: Stage,
        stage_dir: Path,
        pending: list[tuple[int, Path]],
        context: Callable[[int], StageContext],
        done: Callable[[int, dict[str, Any]], None],
    ) -> None:
        """Each pending (index, input shard) through the stage, its output written, then
        `done(index, manifest entry)`, one shard after another."""
        for index, shard_path in pending:
            done(index, process_shard(self, stage, stage_dir, index, shard_path, context(index)))

    def close(self) -> None:
        """Nothing to release."""


def process_shard(
    engine: Any, stage: Stage, stage_dir: Path, index: int, shard_path: Path, ctx: StageContext
) -> dict[str, Any]:
    """One shard: its rows read, the stage applied, rejects and rows written atomically
    (rejects first: a shard file means the shard is whole); returns its manifest entry. Every
    engine's unit of work, on whatever machine runs it."""
    store = RunStore(ctx.run_dir)
    rows = store.read_rows(shard_path)
    out = engine.apply(stage, rows, ctx)
    store.write_rejects(stage_dir, index, reject_rows(out.rejects, stage.name))
    store.write_shard(stage_dir, index, out.rows, stage.schema)
    return shard_entry(len(rows), out)


def portable(ctx: StageContext) -> StageContext:
    """The context a stage gets in another process (a pool worker, a Ray task): progress that
    reports nowhere (the caller advances the bar) and no resources (they do not travel)."""
    return replace(ctx, advance=_no_progress, status=_no_progress, resources={})


def shard_entry(rows_in: int, out: StageOutput) -> dict[str, Any]:
    errors = sum(1 for r in out.rejects if r.reason == STAGE_ERROR or r.failure)
    return {"rows_in": rows_in, "rows_out": len(out.rows), "rejected": len(out.rejects), "errors": errors}
