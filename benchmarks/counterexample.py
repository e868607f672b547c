"""`vdata build counterexample` on rendered worlds, with and without the embedded writer.

Baseline, in the same run: a model that answers every question with the language prior (the
writer's answer from the description without the violation; with `--writer none`, the control
twin's answer). On the kept rows it should score about 50% on twin pairs and 0% on the
violation halves: that is what makes the data a counterexample set. Also measured: how often the
embedded writer's prior was the physical (control) answer before the contrast stage, rows and
twin pairs kept, seconds (two runs each). Writes benchmarks/results/counterexample.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
RESULT = ROOT / "benchmarks" / "results" / "counterexample.json"


def build(out: Path, videos: int, writer: str | None) -> float:
    command = [
        sys.executable,
        "-m",
        "vdata",
        "build",
        "counterexample",
        "--synth",
        str(videos),
        "--seconds",
        "12",
    ]
    command += ["--out", str(out), "--quiet"] + (["--writer", writer] if writer else [])
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SystemExit(f"build failed: {result.stderr[-2000:]}")
    return time.perf_counter() - started


def rows_of(out: Path) -> list[dict]:
    return [
        r for p in sorted((out / "dataset" / "data").glob("*.parquet")) for r in pq.read_table(p).to_pylist()
    ]


def prior_baseline(rows: list[dict]) -> dict:
    """Accuracy of answering every paired question with its prior, per twin and over pairs."""
    from vdata.trainers.rewards import accuracy

    scores: dict[str, list[float]] = {"violation": [], "control": []}
    by_type: dict[str, Counter] = {}
    for row in rows:
        meta = json.loads(row["meta_json"])
        if meta.get("question") in (None, "when") or meta.get("prior") is None:
            continue
        rule = "embedding" if row["problem_type"] == "free-form" else "rouge"
        from vdata.trainers.rewards import RewardConfig

        score = accuracy(f"<answer>{meta['prior']}</answer>", row, RewardConfig(free_form=rule))
        if row["problem_type"] == "free-form":  # the prior is nearer one of the two references
            other = {**row, "solution": f"<answer>{meta['twin_answer']}</answer>"}
            score = float(
                score > accuracy(f"<answer>{meta['prior']}</answer>", other, RewardConfig(free_form=rule))
            )
        scores[meta["twin"]].append(score)
        by_type.setdefault(meta["question"], Counter())[meta["twin"]] += score
    mean = lambda values: round(sum(values) / len(values), 3) if values else None  # noqa: E731
    return {
        "pairs": len(scores["violation"]),
        "accuracy_on_pairs": mean(scores["violation"] + scores["control"]),
        "accuracy_on_violation_halves": mean(scores["violation"]),
        "accuracy_on_control_halves": mean(scores["control"]),
    }


def writer_priors(out: Path) -> dict:
    """Before the contrast stage: how often the writer's prior was the control's (physical) answer."""
    counts: dict[str, Counter] = {}
    for part in sorted((out / "stages").glob("*-prior/part-*.parquet")):
        for row in pq.read_table(part).to_pylist():
            question = json.loads(row["record"])
            if "prior" not in question:
                continue
            gold = question["gold"]
            prior = str(question["prior"]).strip().lower()
            if question["answers"] == "free-form":
                verdict = "free-form (judged by embedding in contrast)"
            elif prior == str(gold["control"]).lower():
                verdict = "control (physical)"
            elif prior == str(gold["violation"]).lower():
                verdict = "violation"
            else:
                verdict = "another option"
            counts.setdefault(question["type"], Counter())[verdict] += 1
    return {kind: dict(c) for kind, c in sorted(counts.items())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--videos", type=int, default=16)
    args = parser.parse_args()
    results = {"machine": platform.platform(), "videos": args.videos, "runs": []}
    for repeat in (1, 2):
        for writer in ("none", None):
            folder = Path(tempfile.mkdtemp(prefix="ce-bench-"))
            try:
                seconds = build(folder / "run", args.videos, writer)
                rows = rows_of(folder / "run")
                run = json.loads((folder / "run" / "run.json").read_text())
                results["runs"].append(
                    {
                        "repeat": repeat,
                        "writer": "none (the control twin's answer is the prior)"
                        if writer
                        else "embedded SmolLM2",
                        "seconds": round(seconds, 1),
                        "rows": len(rows),
                        "stages": {
                            s["name"]: [s["rows_in"], s["rows_out"], s["rejected"]] for s in run["stages"]
                        },
                        "kinds": dict(Counter(json.loads(r["meta_json"])["violation"] for r in rows)),
                        "writer_prior_before_contrast": writer_priors(folder / "run"),
                        "prior_baseline_on_kept_rows": prior_baseline(rows),
                    }
                )
            finally:
                shutil.rmtree(folder, ignore_errors=True)
            print(json.dumps(results["runs"][-1]), flush=True)
    RESULT.write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {RESULT}")


if __name__ == "__main__":
    main()
