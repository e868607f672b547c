"""The README's main command, exactly as written there, on the bundled examples with the
embedded model that vdata starts itself: the slowest test of the suite (about 2 minutes on 2
cores), in a file of its own so that pytest-xdist can run it beside the other files.
test_longvideo_reason_live proves the same recipe on a smaller run."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from vdata.record import validate

from conftest import dataset

pytestmark = pytest.mark.model
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_the_readme_command_yields_a_valid_balanced_dataset(tmp_path):
    # Exactly the README's main command, on the bundled examples with the embedded model.
    out = tmp_path / "out" / "longvideo-reason"
    command = [
        "vdata",
        "build",
        "longvideo-reason",
        "--videos",
        "examples/videos",
        "--captions",
        "examples/captions.jsonl",
        "--out",
        str(out),
    ]
    readme = (EXAMPLES.parent / "README.md").read_text()
    assert " ".join(command[:-1]) + " out/longvideo-reason" in readme, "the README's command changed"
    result = subprocess.run(
        [sys.executable, "-m", "vdata", *command[1:]],
        cwd=EXAMPLES.parent,
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    splits = dataset(out)
    rows = [row for part in splits.values() for row in part]
    assert rows, "the examples build kept no question"
    assert all(splits.values()), {name: len(part) for name, part in splits.items()}  # no empty split
    for row in rows:
        assert validate(row) == [], row
    for part in splits.values():  # letters as even as the split's size allows
        letters = Counter(row["solution"][8] for row in part)
        assert max(letters.values()) - min(letters.get(x, 0) for x in "ABCD") <= 1, letters
    assert len({row["id"] for row in rows}) == len(rows)
    for video in {row["path"] for row in rows}:  # split by video: each video's questions in one split
        assert len({name for name, part in splits.items() for row in part if row["path"] == video}) == 1
    shown = subprocess.run(
        [sys.executable, "-m", "vdata", "inspect", str(out / "dataset")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert shown.returncode == 0, shown.stderr
    card = (out / "dataset" / "README.md").read_text()
    usage = json.loads((out / "run.json").read_text())["usage"]
    tokens = sum(m["prompt_tokens"] for stage in usage.values() for m in stage.values())
    assert tokens > 0 and f"{usage['generate']['smollm2-135m-instruct']['prompt_tokens']:,} prompt" in card
    assert f"{len(rows)} questions about" in card
    # no --policy: the difficulty step did not run, and the summary and the card say so
    assert "difficulty: not run (no --policy)" in result.stderr
    assert "Difficulty: not measured" in card
