"""The Ray engine: a run's shards as Ray tasks on a cluster, the run directory the data plane.

Ray schedules; vdata's run store stays where the data lives. Each
pending input shard of a per-row or per-shard stage becomes one Ray task that reads the
shard, applies the stage and writes its rows and rejects atomically (`process_shard`,
the local engine's unit of work too); the driver alone writes the manifest, in shard
order whatever order the tasks finish in, so the files are the same bytes as the local
engine's. Whole-dataset stages run on the driver. A task that dies is retried (its writes
are atomic and deterministic); a driver that dies resumes like a local run, finished
shards skipped.

The workers must see the run directory at the same path (one machine, or a shared
filesystem) and import vdata (installed on every node; the driver's sys.path is passed).
A stage's resources travel as their `portable()` description (the model pool: endpoints,
the run's request cache, refresh): each task opens its own pool and closes it after the
shard. On a cluster of several nodes each node writes its answers to a cache file of its
own, which the driver gathers into the run's cache between stages. The embedded model
server runs once per node, in an actor the driver places there, started on the first
request; it stops with the run (or with the driver, if that dies).
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from vdata.engines.local import LocalEngine, portable, process_shard
from vdata.stages import RunError, Stage, StageContext


def cluster_address(address: str) -> tuple[str, int] | None:
    """The (host, port) of a --ray-address ('HOST:PORT' or 'ray://HOST:PORT'; None for 'auto'),
    checked as text before anything resolves or connects; RunError naming it otherwise."""
    from vdata.settings import is_host

    text = address.strip()
    if text == "auto":
        return None
    host, sep, port = text.removeprefix("ray://").rpartition(":")
    host = host.strip("[]")
    if not sep or not is_host(host) or not port.isdigit() or not 0 < int(port) < 65536:
        raise RunError(
            f"--ray-address {address!r} is not a cluster address; give HOST:PORT as `ray start --head` "
            "prints it (e.g. 10.0.0.5:6379), ray://HOST:PORT, or auto"
        )
    return host, int(port)


def check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """RunError at once when nothing answers at the address (Ray itself would retry for minutes)."""
    import socket

    found = cluster_address(address)
    if found is None:
        return
    try:
        socket.create_connection(found, timeout=timeout_s).close()
    except OSError as exc:
        raise RunError(
            f"--ray-address {address}: nothing answers there ({exc.strerror or exc}); start the cluster "
            "(ray start --head prints its address), or leave --ray-address out to start one here"
        ) from None


class RayEngine:
    """Runs each pending shard of a stage as a Ray task. `address`: a running cluster
    (`ray start --head` prints it), or None to start a local one sized to this machine,
    stopped again by `close`."""

    def __init__(
        self,
        address: str | None = None,
        *,
        num_cpus: int | None = None,
        retries: int = 3,
        cache_per_node: bool | None = None,
    ):
        if address:
            check_reachable(address)
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
            try:
                ray.init(**settings)
            except ConnectionError as exc:  # `auto` with no cluster running here
                raise RunError(f"--ray-address {address}: {str(exc).splitlines()[0]}") from None
            self.started = True
        self._local = LocalEngine()
        self._task = ray.remote(max_retries=retries, retry_exceptions=False)(_shard_task)
        self._servers: list[Any] = []  # the embedded server actors, one per node
        # a request cache file per node (no SQLite file locked by two machines over a network
        # filesystem), gathered into the run's by the driver between stages; by default when
        # the cluster has more than one node
        alive = [node for node in ray.nodes() if node.get("Alive")]
        self.cache_per_node = len(alive) > 1 if cache_per_node is None else cache_per_node

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
        resources = context(pending[0][0]).resources
        specs = self._portable(stage, resources)
        self._gather(resources)  # what the nodes kept in a run killed before it could gather
        try:
            self._dispatch(stage, stage_dir, pending, context, done, specs)
        finally:
            self._gather(resources)

    def _gather(self, resources: Mapping[str, Any]) -> None:
        if self.cache_per_node:
            for resource in resources.values():
                if hasattr(resource, "gather_node_caches"):
                    resource.gather_node_caches()

    def _dispatch(
        self, stage: Stage, stage_dir: Path, pending: Any, context: Any, done: Any, specs: Any
    ) -> None:
        """One Ray task per pending shard; each finished one reported to `done` (run_shards)."""
        ray = self._ray
        worker_stage = replace(stage, workers=1) if hasattr(stage, "workers") else stage
        waiting = {}
        for index, shard_path in pending:
            # absolute paths: a worker on another node runs in another working directory
            ctx = portable(context(index))
            ctx = replace(ctx, run_dir=Path(ctx.run_dir).resolve())
            ref = self._task.remote(
                worker_stage, str(stage_dir.resolve()), index, str(shard_path.resolve()), ctx, specs
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

    def _portable(self, stage: Stage, resources: Mapping[str, Any]) -> dict[str, Any]:
        """The stage's resources as they travel; for one that runs a server per node (the
        model pool's embedded model), that server's actor placed on every node. A resource
        that cannot travel stops the run, naming it."""
        specs = {}
        for name, resource in resources.items():
            if not hasattr(resource, "portable"):
                raise RunError(
                    f"stage {stage.name} uses the resource {name!r} ({type(resource).__name__}), which "
                    "cannot be sent to Ray workers; run it with --engine local"
                )
            specs[name] = resource.portable()
            if self.cache_per_node and hasattr(specs[name], "per_node"):
                specs[name] = specs[name].per_node()
        served = [spec for spec in specs.values() if hasattr(spec, "node_server")]
        if served and not self._servers:  # a role may use the embedded model: it starts when asked
            self._servers = _place_servers(self._ray, served[0].node_server)
        return specs

    def close(self) -> None:
        """Stops the embedded servers, and the local cluster this engine started (one it
        joined keeps running)."""
        ray = self._ray
        if self._servers and ray.is_initialized():
            for server in self._servers:  # a server's actor that already died has nothing to stop
                with contextlib.suppress(ray.exceptions.RayError):
                    ray.get(server.stop.remote())
                ray.kill(server)
        self._servers = []
        if self.started and ray.is_initialized():
            ray.shutdown()
            self.started = False


SERVER_ACTOR = "vdata-embedded-server-{node}"


class NodeServer:
    """A resource's server on one node (the embedded model), shared by every task there; it
    starts on the first request for it (`start(node)` gives an object with base_url, model
    and stop) and ends with this actor (the server watches its parent)."""

    def __init__(self, start: Callable[[str], Any], node: str):
        self.start, self.node = start, node
        self.server = None

    def address(self) -> tuple[str, str]:
        if self.server is None:
            self.server = self.start(self.node)
        return self.server.base_url, self.server.model

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None


def _place_servers(ray: Any, start: Callable[[str], Any]) -> list[Any]:
    """One NodeServer actor on each alive node, owned by the driver (so it lives as long as
    the run does), taking no CPU slot from the shard tasks."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    actor = ray.remote(num_cpus=0)(NodeServer)
    servers = []
    for node in ray.nodes():
        if not node.get("Alive"):
            continue
        node_id = node["NodeID"]
        servers.append(
            actor.options(
                name=SERVER_ACTOR.format(node=node_id),
                scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False),
            ).remote(start, node_id)
        )
    return servers


class _SharedServer:
    """What a pool needs of a server (base_url, model) that another process runs."""

    def __init__(self, base_url: str, model: str):
        self.base_url, self.model = base_url, model


def _node_server() -> _SharedServer:
    """This node's embedded server, started by its actor on first use."""
    import ray

    node = ray.get_runtime_context().get_node_id()
    server = ray.get_actor(SERVER_ACTOR.format(node=node))
    return _SharedServer(*ray.get(server.address.remote()))


def _shard_task(
    stage: Stage,
    stage_dir: str,
    index: int,
    shard_path: str,
    ctx: StageContext,
    specs: Mapping[str, Any],
) -> dict[str, Any]:
    import ray

    node = ray.get_runtime_context().get_node_id()
    resources = {name: spec.open(local_server=_node_server, node=node) for name, spec in specs.items()}
    try:
        ctx = replace(ctx, resources=resources)
        return process_shard(LocalEngine(), stage, Path(stage_dir), index, Path(shard_path), ctx)
    finally:
        for resource in resources.values():
            resource.close()
