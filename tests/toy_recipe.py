"""A small real recipe for runner tests: import Video-R1 rows, annotate slowly, split.

Run as a script (`python tests/toy_recipe.py --out DIR`) so that a test can kill it.
Each processed row of the `annotate` stage is appended to $TOY_CALL_LOG, so a
test can count the work a resumed run repeats.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

from vdata.formats import from_video_r1
from vdata.record import SCHEMA, validate
from vdata.runner import RunResult, run_pipeline
from vdata.runstore import write_dataset
from vdata.stages import DatasetStage, MapStage, Reject, StageContext, StageOutput


def toy_inputs(n: int = 40) -> list[dict[str, Any]]:
    rows = []
    for i in range(n):
        rows.append(
            {
                "problem_id": i,
                "problem": None if i % 13 == 5 else f"Question {i} about video {i % 7}?",
                "data_type": "video",
                "problem_type": "multiple choice",
                "options": ["A. red", "B. green", "C. blue", "D. black"],
                "solution": "<answer>E</answer>" if i == 17 else f"<answer>{'ABCD'[i % 4]}</answer>",
                "path": f"videos/v{i % 7}.mp4",
                "data_source": "toy",
            }
        )
    return rows


def import_row(row: dict[str, Any], ctx: StageContext) -> dict[str, Any] | Reject:
    record = from_video_r1(row)
    errors = [p for p in validate(record) if p.severity == "error"]
    if errors:
        return Reject(errors[0].code, "; ".join(p.message for p in errors))
    return record


def annotate(delay_s: float, tag: str):
    log = os.environ.get("TOY_CALL_LOG")

    def annotate_row(row: dict[str, Any], ctx: StageContext) -> dict[str, Any]:
        time.sleep(delay_s)
        if log:
            with open(log, "a") as handle:
                handle.write(f"{ctx.shard}:{row['id']}\n")
        if row["problem"].startswith("Question 33 "):
            raise ValueError("the annotator cannot read question 33")
        return {**row, "category": f"{tag}-{len(row['problem']) % 3}"}

    return annotate_row


def split_by_video(rows: list[dict[str, Any]], ctx: StageContext) -> StageOutput:
    time.sleep(float(os.environ.get("TOY_SPLIT_DELAY", "0")))
    videos = sorted({r["path"] for r in rows})
    order = ctx.rng("videos").sample(videos, len(videos))
    split_of = {v: ("eval" if i == 0 else "sft" if i % 3 == 1 else "rl") for i, v in enumerate(order)}
    return StageOutput(rows=[{**r, "split": split_of[r["path"]]} for r in rows])


def build(
    out: str | Path, delay_s: float = 0.0, tag: str = "t", seed: int = 0, quiet: bool = True, engine=None
) -> RunResult:
    stages = [
        MapStage("import", import_row, schema=SCHEMA),
        MapStage("annotate", annotate(delay_s, tag), config={"tag": tag}, schema=SCHEMA),
        DatasetStage("split", split_by_video, schema=SCHEMA, seeded=True),
    ]
    result = run_pipeline(
        out,
        "toy@1",
        toy_inputs(),
        stages,
        config={"tag": tag},
        seed=seed,
        shard_rows=5,
        quiet=quiet,
        engine=engine,
    )
    write_dataset(result.final_table(), Path(out) / "dataset")
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("--tag", default="t")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    build(args.out, args.delay, args.tag, args.seed)
