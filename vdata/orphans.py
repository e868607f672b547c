"""Child processes that end with the process that started them.

A `kill -9` of a vdata command gives it no chance to stop its children: the
embedded model server would keep a core busy on an abandoned request, and the
workers of a process pool would wait for work forever. Each such child watches
the process it works for and exits when that process is gone.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from typing import Any


def alive(pid: int) -> bool:
    """Whether process `pid` runs (a zombie, killed but not yet reaped, does not)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            state = handle.read().rsplit(")", 1)[1].split()[0]
        return state not in ("Z", "X")
    except FileNotFoundError:
        return False
    except (OSError, IndexError):  # no /proc (macOS): ask the kernel
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True


def exit_when_gone(pid: int, every_s: float = 0.5) -> None:
    """Ends this process, from a daemon thread, as soon as process `pid` is gone."""

    def watch() -> None:
        while alive(pid):
            time.sleep(every_s)
        os._exit(0)  # nobody is left to hand results to; skip cleanup that could block

    threading.Thread(target=watch, name=f"exit-with-{pid}", daemon=True).start()


def _init_worker(owner: int, initializer: Callable[..., Any] | None, initargs: tuple) -> None:
    exit_when_gone(owner)
    if initializer is not None:
        initializer(*initargs)


def worker_pool(
    workers: int,
    start_method: str | None = "forkserver",
    initializer: Callable[..., Any] | None = None,
    initargs: tuple = (),
) -> ProcessPoolExecutor:
    """A process pool whose workers exit when this process dies, however it dies."""
    method = start_method if start_method in multiprocessing.get_all_start_methods() else None
    return ProcessPoolExecutor(
        workers,
        mp_context=multiprocessing.get_context(method),
        initializer=_init_worker,
        initargs=(os.getpid(), initializer, initargs),
    )
