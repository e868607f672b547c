"""A vdata process killed with SIGKILL leaves nothing running: not its model server, not the
workers of its process pools."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from vdata.orphans import alive

from conftest import cmdline, descendants, wait_for

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def gone_within(pids: set[int], seconds: float) -> set[int]:
    """The pids still running after waiting up to `seconds` for them to end."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        left = {pid for pid in pids if alive(pid)}
        if not left:
            return set()
        time.sleep(0.1)
    return {pid for pid in pids if alive(pid)}


POOL_SCRIPT = """
import os, sys, time
from vdata.orphans import worker_pool
with worker_pool(2) as pool:
    futures = [pool.submit(time.sleep, 600) for _ in range(2)]
    time.sleep(1.0)
    print("ready", flush=True)
    time.sleep(600)
"""


def test_pool_workers_end_when_their_owner_is_killed():
    owner = subprocess.Popen([sys.executable, "-c", POOL_SCRIPT], stdout=subprocess.PIPE, text=True)
    try:
        assert owner.stdout.readline().strip() == "ready"
        workers = descendants(owner.pid)
        assert len(workers) >= 2  # the forkserver and its workers
        owner.send_signal(signal.SIGKILL)
        owner.wait()
        assert gone_within(workers, 15) == set()
    finally:
        owner.kill()


def test_alive_tells_running_from_gone():
    assert alive(os.getpid())
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert not alive(child.pid)


@pytest.mark.model
def test_a_build_killed_with_sigkill_leaves_no_model_server(tmp_path):
    out = tmp_path / "run"
    build = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "vdata",
            "build",
            "longvideo-reason",
            "--videos",
            str(EXAMPLES / "videos"),
            "--captions",
            str(EXAMPLES / "captions.jsonl"),
            "--out",
            str(out),
            "--quiet",
        ],
        stderr=subprocess.DEVNULL,
    )
    try:
        # the server answers requests: mid-generation
        wait_for(lambda: (out / "usage.jsonl").exists(), "the build's first model request", build, 0.1)
        children = descendants(build.pid)
        commands = [cmdline(pid) for pid in children]
        assert any(b"llama_cpp.server" in c or b"local_server" in c for c in commands), commands
        build.send_signal(signal.SIGKILL)
        build.wait()
        assert gone_within(children, 15) == set()
    finally:
        build.kill()
