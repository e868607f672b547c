"""Audit one million generated Video-R1 rows: time and peak memory (issue 8).

The rows carry the defects the audit looks for, at known rates: letters skewed
to B, exact and near-duplicate questions, null questions, malformed options,
training videos that are also in the eval set, multi-answer sets with no
negation. The baseline in the same run is reading the same file with
`json.loads` per line (the floor any Python audit pays) and the row validation
alone (`vdata validate`), so the figures say what the dataset checks add.

    python benchmarks/audit_scale.py [--rows 1000000] [--out benchmarks/results/audit_scale.json]

Target: under 60 s on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WORDS = [
    "man",
    "woman",
    "dog",
    "car",
    "door",
    "red",
    "blue",
    "table",
    "cup",
    "ball",
    "child",
    "kitchen",
    "street",
    "phone",
    "book",
    "window",
    "opens",
    "closes",
    "picks",
    "drops",
    "runs",
    "walks",
    "sits",
    "looks",
    "turns",
    "holds",
    "throws",
    "carries",
]


def generate(path: Path, rows: int, seed: int = 0) -> dict[str, int]:
    """Video-R1 rows with planted defects; returns how many of each were planted."""
    rng = random.Random(seed)
    planted = {"null_question": 0, "malformed_options": 0, "exact_duplicate": 0, "multi_no_negation": 0}
    previous: list[dict] = []
    with path.open("w") as handle:
        for i in range(rows):
            video = f"videos/v{rng.randrange(rows // 4 + 1)}.mp4"
            question = " ".join(rng.choices(WORDS, k=14)) + "?"
            options = [f"{letter}. " + " ".join(rng.choices(WORDS, k=4)) for letter in "ABCD"]
            answer = "B" if rng.random() < 0.44 else rng.choice("ACD")
            row = {
                "problem_id": i,
                "problem": question,
                "data_type": "video",
                "problem_type": "multiple choice",
                "options": options,
                "solution": f"<answer>{answer}</answer>",
                "path": "./" + video,
                "data_source": "bench",
            }
            roll = rng.random()
            if roll < 0.01:
                row["problem"] = None
                planted["null_question"] += 1
            elif roll < 0.015:
                row["options"] = options[:1]
                planted["malformed_options"] += 1
            elif roll < 0.03 and previous:
                row = {**rng.choice(previous), "problem_id": i}
                planted["exact_duplicate"] += 1
            elif roll < 0.035:
                row["problem_type"] = "multi-answer"
                row["solution"] = "<answer>A,C,D</answer>"
                planted["multi_no_negation"] += 1
            if len(previous) < 1000:
                previous.append(row)
            handle.write(json.dumps(row) + "\n")
    return planted


def eval_set(path: Path, rows: int, seed: int = 1) -> None:
    rng = random.Random(seed)
    with path.open("w") as handle:
        for i in range(rows):
            row = {
                "problem_id": f"eval-{i}",
                "problem": " ".join(rng.choices(WORDS, k=12)) + "?",
                "data_type": "video",
                "problem_type": "multiple choice",
                "options": [f"{letter}. x{letter}" for letter in "ABCD"],
                "solution": "<answer>A</answer>",
                "path": f"./videos/v{rng.randrange(rows * 4)}.mp4",
            }
            handle.write(json.dumps(row) + "\n")


_MEASURE = """
import json, resource, subprocess, sys, time
started = time.perf_counter()
result = subprocess.run(sys.argv[1:], capture_output=True, text=True)
seconds = time.perf_counter() - started
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(json.dumps({"seconds": seconds, "peak_kb": peak, "exit": result.returncode,
                  "stdout": result.stdout, "stderr": result.stderr[-3000:]}))
"""


def timed(command: list[str]) -> dict[str, object]:
    """Wall time and peak memory (max RSS) of one command, measured by a fresh parent process."""
    measured = json.loads(
        subprocess.run(
            [sys.executable, "-c", _MEASURE, *command], capture_output=True, text=True, check=True
        ).stdout
    )
    if measured["exit"] not in (0, 1):
        raise SystemExit(f"{' '.join(command)} failed:\n{measured['stderr']}")
    return {
        "seconds": round(measured["seconds"], 2),
        "peak_rss_mb": round(measured["peak_kb"] / 1024, 1),
        "exit": measured["exit"],
        "stdout": measured["stdout"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "audit_scale.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        data, evals = Path(folder) / "train.jsonl", Path(folder) / "eval.jsonl"
        started = time.perf_counter()
        planted = generate(data, args.rows)
        eval_set(evals, 2000)
        generated_s = time.perf_counter() - started
        python = sys.executable
        read = timed([python, "-c", f"import json\nfor line in open({str(data)!r}): json.loads(line)"])
        validate = timed([python, "-m", "vdata", "validate", str(data), "--json"])
        report = Path(folder) / "report.md"
        audit = timed(
            [
                python,
                "-m",
                "vdata",
                "audit",
                str(data),
                "--eval",
                str(evals),
                "--json",
                "--report",
                str(report),
            ]
        )
        found = json.loads(audit.pop("stdout"))
        read.pop("stdout"), validate.pop("stdout")
        size_mb = data.stat().st_size / 1e6
    counts = {f["code"]: f["count"] for f in found["findings"]}
    result = {
        "benchmark": "audit_scale",
        "rows": args.rows,
        "file_mb": round(size_mb, 1),
        "generate_s": round(generated_s, 1),
        "audit": audit,
        "baseline_json_loads": read,
        "baseline_validate_only": validate,
        "audit_over_validate": round(audit["seconds"] / validate["seconds"], 2),
        "target_s": 60,
        "met": audit["seconds"] < 60,
        "planted": planted,
        "found": counts,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
