"""The models of a run: endpoints per role, the shared local server, the cache."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from vdata.annotators.cache import NodeCache, RequestCache
from vdata.annotators.client import ModelClient
from vdata.annotators.endpoints import Endpoint, EndpointError, Endpoints
from vdata.usage import Usage


class ModelPool:
    """Hands out clients per role. The embedded server starts on first use, is shared by
    every role that uses it, and stops with the pool.

    with ModelPool(endpoints, cache_path=run_dir / "cache.sqlite") as pool:
        ...  # pass as run_pipeline(resources={"models": pool})
    """

    def __init__(
        self,
        endpoints: Endpoints | None = None,
        *,
        cache_path: str | Path | None = None,
        refresh: bool = False,
        log_dir: str | Path | None = None,
        local_server: Callable[[], Any] | None = None,
        cache: RequestCache | NodeCache | None = None,
    ):
        self.endpoints = endpoints or Endpoints()
        self.cache = cache if cache is not None else RequestCache(cache_path) if cache_path else None
        self.refresh = refresh
        self.log_dir = Path(log_dir) if log_dir else None
        self.modes: dict[str, str] = {}  # structured-output mode found per endpoint
        self._local = None
        self._shared_local = local_server  # the embedded server someone else runs (a node's)
        self._lock = threading.Lock()

    def endpoint(self, role: str) -> Endpoint:
        return self.endpoints.for_role(role)

    def client(self, role: str, usage: Usage, on_wait: Callable[[str], None] | None = None) -> ModelClient:
        """A client for `role`; call inside the event loop that will use it. `on_wait` hears
        of every wait before a retry (for the progress line)."""
        endpoint = self.endpoint(role)
        base_url, model = endpoint.base_url, endpoint.model
        if endpoint.in_process:
            from vdata.annotators.in_process import InProcessClient

            return InProcessClient(endpoint, usage=usage, cache=self.cache, refresh=self.refresh)  # type: ignore[return-value]
        if endpoint.is_local:
            server = self._local_server()
            base_url, model = server.base_url, model or server.model
            # llama.cpp answers one request at a time: more in flight only wait in its queue,
            # where they would time out and be sent again
            endpoint = endpoint.model_copy(
                update={
                    "max_concurrency": min(endpoint.max_concurrency, 2),
                    "timeout_s": max(endpoint.timeout_s, 3600),  # a slow CPU is slow, not broken
                }
            )
        return ModelClient(
            endpoint,
            base_url=base_url,
            model=model,
            usage=usage,
            cache=self.cache,
            refresh=self.refresh,
            modes=self.modes,
            on_wait=on_wait,
        )

    def model_name(self, role: str) -> str:
        """The model a role will use, without starting anything."""
        from vdata.annotators.local_server import LOCAL_MODEL_NAME

        endpoint = self.endpoint(role)
        return endpoint.model or (LOCAL_MODEL_NAME if endpoint.is_local else "(server default)")

    def _local_server(self):
        from vdata.annotators.local_server import LocalServer

        with self._lock:
            if self._local is None:
                if self._shared_local is not None:
                    self._local = self._shared_local()
                else:
                    log = self.log_dir / "local-server.log" if self.log_dir else None
                    self._local = LocalServer(log_path=log).start()
            return self._local

    def portable(self) -> PoolSpec:
        """What another process needs to open this pool again (a Ray task on any node)."""
        # absolute: a worker on another node has another working directory. `is not None`: an
        # empty cache has len 0, and a spec without a cache would pay every request again
        cache = str(self.cache.path.resolve()) if self.cache is not None else None
        log_dir = str(self.log_dir.resolve()) if self.log_dir is not None else None
        return PoolSpec(self.endpoints, cache, self.refresh, log_dir)

    def gather_node_caches(self) -> int:
        """Copies the answers the cluster's nodes kept in their own cache files
        (RUN/node-caches/, `PoolSpec.per_node`) into the run's cache, and checkpoints it for
        the nodes' immutable readers; the Ray engine's driver calls this before and after each
        stage's tasks. Returns how many answers were new."""
        if not isinstance(self.cache, RequestCache):
            return 0
        new = sum(self.cache.absorb(path) for path in node_cache_files(self.cache.path))
        self.cache.checkpoint()
        return new

    def close(self) -> None:
        with self._lock:
            if self._local is not None and self._shared_local is None:
                self._local.stop()
            self._local = None
        if self.cache is not None:
            self.cache.close()

    def __enter__(self) -> ModelPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass(frozen=True)
class PoolSpec:
    """A run's model pool as it travels to a worker process: endpoints, the request cache's
    path (the run directory's: one per node unless that directory is shared), refresh, and
    where server logs go. `open` gives the worker its own pool; `local_server`, when given,
    hands it the embedded server that another process runs (one per node) instead of
    starting one."""

    endpoints: Endpoints
    cache_path: str | None
    refresh: bool
    log_dir: str | None
    per_node_cache: bool = False  # write answers to the node's own file, read the run's too

    def per_node(self) -> PoolSpec:
        """This spec with a cache file per node (for a cluster of several machines)."""
        return replace(self, per_node_cache=True)

    def node_server(self, node: str) -> Any:
        """Starts the embedded server of one node (the Ray engine's per-node actor calls this),
        its log in the run directory under the node's name."""
        from vdata.annotators.local_server import LocalServer

        log = Path(self.log_dir) / f"local-server-{node[:12]}.log" if self.log_dir else None
        return LocalServer(log_path=log).start()

    def open(self, local_server: Callable[[], Any] | None = None, node: str = "") -> ModelPool:
        """The pool in a worker process on `node` (its cluster node id, for a per-node cache)."""
        cache = None
        if self.cache_path and self.per_node_cache:
            if not node:
                raise ValueError("a per-node cache needs the worker's node id")
            cache = NodeCache(node_cache_dir(self.cache_path) / f"{node[:12]}.sqlite", self.cache_path)
        return ModelPool(
            self.endpoints,
            cache_path=self.cache_path,
            refresh=self.refresh,
            log_dir=self.log_dir,
            local_server=local_server,
            cache=cache,
        )


def node_cache_dir(run_cache: str | Path) -> Path:
    """Where the nodes of a cluster keep their own cache files, beside the run's cache."""
    return Path(run_cache).parent / "node-caches"


def node_cache_files(run_cache: str | Path) -> list[Path]:
    return sorted(node_cache_dir(run_cache).glob("*.sqlite"))


class RunModels:
    """The models a recipe's run uses, set up by the annotators so that a recipe only names its
    roles: checked before any stage runs, a pool with the run's cache, and what run.json says
    of them.

    with RunModels(endpoints, out, roles=["reasoner"], no_cache=False) as models:
        run_pipeline(..., config={..., "models": models.described}, resources=models.resources)
    """

    def __init__(
        self,
        endpoints: Endpoints | None,
        run_dir: str | Path,
        *,
        roles: list[str],
        vision_roles: tuple[str, ...] = (),
        no_cache: bool = False,
        refresh: bool = False,
    ):
        from vdata.annotators.local_server import check_local_model
        from vdata.runstore import RunStore

        self.endpoints = endpoints or Endpoints()
        for role in vision_roles:
            if role in roles and self.endpoints.for_role(role).is_local:
                raise EndpointError(
                    f"the embedded local model reads text only and cannot be the {role}: give --{role} "
                    "URL@MODEL of a vision-language model"
                )
        if any(self.endpoints.for_role(role).is_local for role in roles):
            check_local_model()  # before any stage runs: a missing extra is one line, not a traceback
        store = RunStore(run_dir)
        self.described = self.endpoints.describe_roles(roles)
        self.pool = ModelPool(
            self.endpoints,
            cache_path=None if no_cache else store.cache_path,
            refresh=refresh,
            log_dir=store.root,
        )
        self.resources = {"models": self.pool}

    def __enter__(self) -> RunModels:
        return self

    def __exit__(self, *exc: object) -> None:
        self.pool.close()
