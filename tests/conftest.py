from __future__ import annotations

import contextlib
import copy
import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from vdata.record import Record

VALID_ROW: dict[str, Any] = Record(
    recipe="longvideo-reason@1",
    data_type="video",
    path="videos/kitchen.mp4",
    video={"sha256": "ab" * 32, "duration_s": 60.0, "fps": 30.0, "width": 640, "height": 360},
    segment={"start_s": 10.0, "end_s": 30.0},
    problem="What does the person do right after opening the fridge?",
    problem_type="multiple choice",
    options=["A. Closes it", "B. Takes out milk", "C. Leaves the room", "D. Turns on the stove"],
    solution="<answer>B</answer>",
    category="temporal",
    process="<think>The fridge opens at 12s and the milk comes out at 14s.</think>",
    evidence=[{"start_s": 12.0, "end_s": 15.0, "text": "opens the fridge and takes milk"}],
    split="rl",
    data_source="tests",
).to_row()


# pytest-xdist workers share the cores: each worker's torch (and every process it starts, which
# inherits the setting) gets its share of them. Two workers each running 2 OpenMP threads on 2
# cores made the learning tests 4-6 times slower than alone. A value the user set is kept.
if os.environ.get("PYTEST_XDIST_WORKER_COUNT"):
    os.environ.setdefault(
        "OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"])))
    )

NEEDS = ("model", "dist", "browser", "install")  # markers that say what a test starts


# The files that take longest (seconds under `-n 3`, from `--durations=0`), which pytest-xdist
# should start first, longest first: with whole files as its units, a long file started last
# keeps one worker busy while the others have nothing left (the README's command, started last,
# added 4 minutes; three files of 40 s each, started last in name order, left one worker idle
# for 20-45 s). Files not named here (under 10 s each) follow in their usual order.
LONGEST_FILES = (  # seconds in a full run with three workers (stop 49's sizes, a slow day)
    "test_hostile.py",  # 212 s
    "test_streaming_cot.py",  # 185 s
    "test_readme_command.py",  # 170 s
    "test_ray_engine.py",  # 142 s
    "test_grpo_correctness.py",  # 131 s
    "test_longvideo_reason_live.py",  # 113 s
    "test_build_cli.py",  # 109 s
    "test_ablation.py",  # 105 s
    "test_mrsp.py",  # 96 s
    "test_video_thinker.py",  # 93 s
    "test_annotators_live.py",  # 82 s
    "test_counterexample.py",  # 79 s
    "test_grpo.py",  # 60 s
    "test_qa_inversion.py",  # 57 s
    "test_plugin.py",  # 52 s
    "test_real_data.py",  # 51 s
    "test_model_filters.py",  # 46 s
    "test_cli.py",  # 38 s
    "test_push.py",  # 32 s
    "test_audit.py",  # 29 s
    "test_view.py",  # 28 s
    "test_resume.py",  # 26 s
    "test_filters.py",  # 25 s
    "test_split.py",  # 20 s
    "test_stages.py",  # 15 s
    "test_synth.py",  # 13 s
)


def pytest_configure(config) -> None:
    # pytest-xdist would order files by their number of tests, undoing LONGEST_FILES
    if hasattr(config.option, "loadscopereorder"):
        config.option.loadscopereorder = False


def pytest_collection_modifyitems(config, items) -> None:
    """A test that starts the model, process groups, a browser or an install is slow too, so
    `-m "not slow"` (the quick tier) leaves it out without each test saying both. The longest
    files go first."""
    for item in items:
        if any(item.get_closest_marker(name) for name in NEEDS) and not item.get_closest_marker("slow"):
            item.add_marker(pytest.mark.slow)
    rank = {name: k for k, name in enumerate(LONGEST_FILES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: same order within


@pytest.fixture(scope="session")
def embedded(tmp_path_factory):
    """The embedded model's server (the real SmolLM2-135M under llama.cpp), started once for
    the whole session (once per worker under xdist) and stopped at its end. Tests that need
    one request answered alike every time put a memo FaultProxy in front of it; tests that
    start their own server say why (the server's own start and stop, a kill, the README's
    exact command, a server on a Ray node)."""
    pytest.importorskip("llama_cpp", reason="the embedded model needs the local extra")
    from vdata.annotators.local_server import LocalServer

    server = LocalServer(log_path=tmp_path_factory.mktemp("embedded") / "server.log").start()
    yield server
    server.stop()


def models_file(path: Path, base_url: str, model: str, roles: list[str]) -> Path:
    """A --models file giving every role one endpoint, which waits as long as a slow machine
    needs (a loaded 2-core machine makes the model slow, not the test red)."""
    import yaml

    endpoint = {"base_url": base_url, "model": model, "timeout_s": 3600, "max_concurrency": 2}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump({"endpoints": {"m": endpoint}, **dict.fromkeys(roles, "m")}))
    return path


def dataset(out: Path) -> dict[str, list[dict]]:
    """A build's dataset, split name to rows, read from its Parquet files; each row's provenance
    without its `created` (when the run began: the one thing two runs of the same data differ in)."""
    import pyarrow.parquet as pq

    def timeless(row: dict) -> dict:
        return {**row, "provenance": {**row["provenance"], "created": ""}} if row.get("provenance") else row

    return {
        p.name: [timeless(row) for row in pq.read_table(p).to_pylist()]
        for p in sorted((out / "dataset" / "data").glob("*.parquet"))
    }


@pytest.fixture
def row() -> dict[str, Any]:
    """A fresh valid record dict that a test may change."""
    return copy.deepcopy(VALID_ROW)


def cached_replies(path: Path) -> int:
    """How many answers a run's request cache holds (read-only, while the run may write)."""
    if not path.exists():
        return 0
    # a plain connection (it never creates the file: checked above): a read-only one cannot
    # read a WAL database whose writer was killed, nor always one that other processes hold
    db = sqlite3.connect(path, timeout=30)
    try:
        return db.execute("SELECT COUNT(*) FROM replies").fetchone()[0]
    except sqlite3.OperationalError:  # the run has not made its table yet
        return 0
    finally:
        db.close()


def wait_for(happened, what: str, process=None, every_s: float = 0.02, cap_s: float = 1800.0) -> None:
    """Polls until `happened()`: a slow machine makes a test slower, not red. The cap only
    keeps a broken run from hanging the suite, and the failure says what never happened."""
    import time

    deadline = time.monotonic() + cap_s
    while not happened():
        if process is not None and process.poll() is not None:
            stderr = process.stderr.read().decode(errors="replace")[-2000:] if process.stderr else ""
            raise AssertionError(f"the process ended before {what}: {stderr}")
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {cap_s:.0f}s")
        time.sleep(every_s)


def descendants(pid: int) -> set[int]:
    """Every process below `pid` now, from /proc (a pool's workers, a Ray driver's local cluster)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def cmdline(pid: int) -> bytes:
    """A process's command line (empty once it is gone)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


@contextlib.contextmanager
def running_view(*args: str) -> Iterator[str]:
    """`vdata view ARGS` as a user starts it: a free port, the URL printed (yielded); stopped by
    SIGTERM, which must end it with status 0."""
    process = subprocess.Popen(
        [sys.executable, "-m", "vdata", "view", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = None
    for line in process.stdout:
        if "serving" in line:
            url = line.split(" at ")[1].split()[0]
            break
    assert url, process.stderr.read()
    try:
        yield url
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
