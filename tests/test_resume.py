"""Kill a real run with SIGKILL in the middle of a stage, resume it, compare."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from conftest import wait_for

RECIPE = Path(__file__).with_name("toy_recipe.py")


def _start(out: Path, log: Path, delay: float) -> subprocess.Popen:
    env = {**os.environ, "TOY_CALL_LOG": str(log), "TOY_SPLIT_DELAY": str(delay * 20)}
    return subprocess.Popen(
        [sys.executable, str(RECIPE), "--out", str(out), "--delay", str(delay)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _finish(out: Path, log: Path, delay: float) -> None:
    process = _start(out, log, delay)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 0, stderr.decode()


def _annotate_half_done(out: Path) -> bool:
    manifest = out / "stages" / "02-annotate" / "manifest.json"
    try:
        shards = json.loads(manifest.read_text())["shards"]
    except (FileNotFoundError, json.JSONDecodeError, KeyError):
        return False
    return 2 <= len(shards) < 7


def _split_started(out: Path) -> bool:
    return (out / "stages" / "03-split").is_dir()


def _tables(out: Path) -> dict[str, list[dict]]:
    files = sorted((out / "dataset" / "data").glob("*.parquet")) + sorted((out / "rejects").glob("*.parquet"))
    return {p.name: pq.read_table(p).to_pylist() for p in files}


@pytest.mark.slow
@pytest.mark.parametrize("moment", [_annotate_half_done, _split_started], ids=["mid-annotate", "mid-split"])
def test_sigkill_mid_stage_then_resume_equals_an_uninterrupted_run(tmp_path, moment):
    delay = 0.05  # per annotated row: the annotate stage takes about 2 s, so the kill lands inside it
    reference, reference_log = tmp_path / "reference", tmp_path / "reference.log"
    _finish(reference, reference_log, delay)

    out, log = tmp_path / "killed", tmp_path / "killed.log"
    process = _start(out, log, delay)
    wait_for(lambda: moment(out), "the moment to kill the run", process, every_s=0.005)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (out / "dataset").exists()
    calls_before = log.read_text().splitlines()

    _finish(out, log, delay)
    assert _tables(out) == _tables(reference)
    assert json.loads((out / "run.json").read_text())["status"] == "done"
    assert not list(out.rglob(".*tmp*")), "temporary files left behind"

    # The resumed run redid at most the one shard that was in flight (5 rows).
    calls_after = log.read_text().splitlines()[len(calls_before) :]
    assert len(calls_before) + len(calls_after) <= 40 + 5
    assert {c.split(":")[1] for c in calls_before + calls_after} == {
        c.split(":")[1] for c in reference_log.read_text().splitlines()
    }
