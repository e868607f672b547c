"""The Ray engine: a run's shards as Ray tasks on a cluster, the run directory the data plane.

Ray schedules; vdata's run store stays where the data lives (../shared/RAY.md). Each
pending input shard of a per-row or per-shard stage becomes one Ray task that reads the
shard, applies the stage and writes its rows and rejects atomically (`process_shard`,
the local engine's unit of work too); the driver alone writes the manifest, in shard
order whatever order the tasks finish in, so the files are the same bytes as the local
engine's. Whole-dataset stages run on the driver. A task that dies is retried (its writes
are atomic and deterministic); a driver that dies resumes like a local run, finished
shards skipped.

The workers must see the run directory at the same path (one machine, or a shared
filesystem) and import vdata (installed on every node; the driver's sys.path is passed).
Stages that need model pools (`ctx.resources`) do not travel yet: such a run is refused
with a message, not run differently.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from vdata.runner import LocalEngine, RunError, portable, process_shard
from vdata.stages import Stage, StageContext


class RayEngine:
    """Runs each pending shard of a stage as a Ray task. `address`: a running cluster
    (`ray start --head` prints it), or None to start a local one sized to this machine,
    stopped again by `close`."""

    def __init__(self, address: str | None = None, *, num_cpus: int | None = None, retries: int = 3):
        try:
            import ray
        except ImportError as exc:
            raise RunError(f"--engine ray needs Ray: pip install 'vdata[ray]' ({exc})") from exc
        self._ray = ray
        self.retries = retries
        self.started = False
        if not ray.is_initialized():
            paths = os.pathsep.join(p for p in sys.path if p)
            settings: dict[str, Any] = {
                "runtime_env": {"env_vars": {"PYTHONPATH": paths}},
                "include_dashboard": False,
                "log_to_driver": False,
            }
            if address:
                settings["address"] = address
            else:
                settings["num_cpus"] = num_cpus or os.cpu_count() or 1
            ray.init(**settings)
            self.started = True
        self._local = LocalEngine()
        self._task = ray.remote(max_retries=retries, retry_exceptions=False)(_shard_task)

    def apply(self, stage: Stage, rows: list[dict[str, Any]], ctx: StageContext) -> Any:
        """A whole-dataset stage, on the driver (the local engine's way)."""
        return self._local.apply(stage, rows, ctx)

    def run_shards(
        self,
        stage: Stage,
        stage_dir: Path,
        pending: list[tuple[int, Path]],
        context: Callable[[int], StageContext],
        done: Callable[[int, dict[str, Any]], None],
    ) -> None:
        if not pending:
            return
        probe = context(pending[0][0])
        if probe.resources:
            raise RunError(
                f"stage {stage.name} uses {', '.join(sorted(probe.resources))}, which the Ray engine does "
                "not carry to its workers yet; run it with --engine local"
            )
        ray = self._ray
        worker_stage = replace(stage, workers=1) if hasattr(stage, "workers") else stage
        waiting = {}
        for index, shard_path in pending:
            ref = self._task.remote(
                worker_stage, str(stage_dir), index, str(shard_path), portable(context(index))
            )
            waiting[ref] = index
        while waiting:
            ready, _ = ray.wait(list(waiting), num_returns=1)
            for ref in ready:
                index = waiting.pop(ref)
                try:
                    entry = ray.get(ref)
                except ray.exceptions.RayError as exc:  # retries spent, or Ray itself failed
                    for other in waiting:
                        ray.cancel(other)
                    raise RunError(
                        f"stage {stage.name}, shard {index}: the Ray task failed after {self.retries} "
                        f"retries ({type(exc).__name__}: {str(exc).splitlines()[0]}); rerun the command "
                        "to resume (finished shards are kept), or use --engine local"
                    ) from exc
                done(index, entry)
                context(index).advance(entry["rows_in"])

    def close(self) -> None:
        """Stops the local cluster this engine started (one it joined keeps running)."""
        if self.started and self._ray.is_initialized():
            self._ray.shutdown()
            self.started = False


def _shard_task(
    stage: Stage, stage_dir: str, index: int, shard_path: str, ctx: StageContext
) -> dict[str, Any]:
    return process_shard(LocalEngine(), stage, Path(stage_dir), index, Path(shard_path), ctx)
