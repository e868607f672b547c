from __future__ import annotations

import copy
import sqlite3
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


@pytest.fixture
def row() -> dict[str, Any]:
    """A fresh valid record dict that a test may change."""
    return copy.deepcopy(VALID_ROW)


def cached_replies(path: Path) -> int:
    """How many answers a run's request cache holds (read-only, while the run may write)."""
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
            return db.execute("SELECT COUNT(*) FROM replies").fetchone()[0]
    except sqlite3.OperationalError:
        return 0
