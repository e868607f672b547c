"""Engines: where a run's stages execute. The command line (or the caller of `run_pipeline` and
`vdata.builders.build`) chooses one and passes it; nothing is global.

An engine applies a stage to rows (`apply`, for whole-dataset stages and in-process work) and runs
a stage's pending shards (`run_shards`, each through `local.process_shard`, the unit of work every
engine shares: read the shard, apply the stage, write rows and rejects atomically), then `close`.
`local.LocalEngine` runs on this machine; `ray.RayEngine` runs each shard as a Ray task.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from vdata.stages import Stage, StageContext, StageOutput


class Engine(Protocol):
    def apply(self, stage: Stage, rows: list[dict[str, Any]], ctx: StageContext) -> StageOutput: ...

    def run_shards(
        self,
        stage: Stage,
        stage_dir: Path,
        pending: list[tuple[int, Path]],
        context: Callable[[int], StageContext],
        done: Callable[[int, dict[str, Any]], None],
    ) -> None: ...

    def close(self) -> None: ...


def engine_for(name: str, address: str | None = None) -> Engine:
    """The engine a command's --engine names: local, or ray (a local cluster sized to this
    machine, or the cluster at `address`)."""
    from vdata.engines.local import LocalEngine
    from vdata.stages import RunError

    if name == "local":
        if address:
            raise RunError("--ray-address goes with --engine ray")
        return LocalEngine()
    if name == "ray":
        from vdata.engines.ray import RayEngine

        return RayEngine(address)
    raise RunError(f"--engine {name!r}: local or ray")
