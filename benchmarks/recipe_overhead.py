"""What declaring recipes costs: the generated command line and the provenance stage.

Two measures, each against a baseline in the same run:
- command: seconds for a fresh `vdata build NAME --help` (the recipe found, its module imported,
  its command generated from the config model) and for `vdata build --list` (every recipe
  loaded), against `vdata --version` (the command line's own start), three processes of each,
  alternating, two rounds;
- provenance: seconds for a run of 20,000 record rows through one whole-dataset stage that copies
  them (the baseline) and through the same stage followed by the provenance stage every recipe
  now ends with (the field map of LongVideo-Reason), twice each, alternating.

Writes benchmarks/results/recipe_overhead.json.
    python benchmarks/recipe_overhead.py [--rows 20000]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

RESULT = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "recipe_overhead.json"


def seconds(*args: str) -> float:
    began = time.perf_counter()
    subprocess.run([sys.executable, "-m", "vdata", *args], check=True, capture_output=True)
    return time.perf_counter() - began


def copy_rows(rows, ctx):
    from vdata.stages import StageOutput

    return StageOutput(rows=list(rows))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--out", type=Path, default=RESULT)
    args = parser.parse_args()

    from vdata.builders import provenance_stage
    from vdata.builders.longvideo_reason import RECIPE, LongVideoReasonConfig
    from vdata.record import Record
    from vdata.runner import run_pipeline
    from vdata.stages import DatasetStage

    commands = {
        "vdata --version (baseline)": ["--version"],
        "vdata build longvideo-reason --help": ["build", "longvideo-reason", "--help"],
        "vdata build streaming-cot --help": ["build", "streaming-cot", "--help"],
        "vdata build --list": ["build", "--list"],
    }
    rounds: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(2):
        per_round: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(3):
            for name, command in commands.items():
                per_round[name].append(seconds(*command))
        for name, values in per_round.items():
            rounds[name].append(round(statistics.median(values), 3))

    row = Record(
        recipe="longvideo-reason@1",
        path="videos/v.mp4",
        problem="What happens after the red circle enters?",
        problem_type="multiple choice",
        options=["A. it stops", "B. it bounces", "C. it turns blue", "D. it leaves"],
        solution="<answer>B</answer>",
    ).to_row()
    rows = [{**row, "id": f"{i:08d}"} for i in range(args.rows)]
    config = LongVideoReasonConfig(videos=["v"], out="o", captions="c.jsonl")
    times: dict[str, list[float]] = {"copy (baseline)": [], "copy + provenance": []}
    with tempfile.TemporaryDirectory() as folder:
        for repeat in range(2):
            for name in times:
                stages = [DatasetStage("copy", copy_rows)]
                if name != "copy (baseline)":
                    stages.append(provenance_stage(RECIPE, config))
                began = time.perf_counter()
                run_pipeline(Path(folder) / f"{repeat}-{len(stages)}", "bench@1", rows, stages, quiet=True)
                times[name].append(round(time.perf_counter() - began, 3))
    added = statistics.mean(times["copy + provenance"]) - statistics.mean(times["copy (baseline)"])
    result = {
        "benchmark": "recipe_overhead",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "command": "python benchmarks/recipe_overhead.py"
        + (f" --rows {args.rows}" if args.rows != 20_000 else ""),
        "command_start_s": {"medians of 3 per round, 2 rounds": rounds},
        "provenance": {
            "rows": args.rows,
            "seconds": times,
            "added_s_per_10k_rows": round(added / args.rows * 10_000, 3),
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
