"""`vdata build video-thinker` with the embedded model, on a `vdata synth` set (both branches)
and on VideoChat-R1's real ActivityNet annotations (`--annotations-only`, caption branch).

For each build: the rows in and kept per stage with the top reject reasons, the requests per
stage, traces written per kept row, and the hindsight pass rate. The baseline, in the same run,
is the recipe without hindsight: the rows the trace stage passed, which would all have been kept.
Builds are resumable in their directories (a rerun reads the cache). Writes
benchmarks/results/video_thinker.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REAL = Path(os.environ.get("VDATA_REAL_DATA") or ROOT.parent / "shared" / "real-data")
RESULT = ROOT / "benchmarks" / "results" / "video_thinker.json"


def vdata(*args: str) -> float:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "vdata", *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.exit(f"vdata {' '.join(args[:2])} failed:\n{done.stderr[-3000:]}")
    return time.perf_counter() - started


def summary(out: Path, seconds: float) -> dict:
    from vdata.formats import load_rows
    from vdata.runstore import RunStore

    store = RunStore(out)
    run = store.read_run() or {}
    stages = {
        s["name"]: {
            "in": s["rows_in"],
            "kept": s["rows_out"],
            "rejected": dict(store.reject_reasons(s["name"]).most_common(4)),
        }
        for s in run.get("stages", [])
    }
    rows = load_rows(out / "dataset").rows
    attempts = Counter(json.loads(r["meta_json"])["attempts"] for r in rows)
    hindsight = stages.get("hindsight", {"in": 0, "kept": 0})
    return {
        "seconds_this_invocation": round(seconds, 1),
        "seconds_first_invocation": run.get("timings", {}).get("total_s"),
        "stages": stages,
        "requests": {
            stage: sum(m["requests"] for m in u.values()) for stage, u in run.get("usage", {}).items()
        },
        "kept": len(rows),
        "traces_per_kept_row": dict(sorted(attempts.items())),
        "hindsight_pass_rate": round(hindsight["kept"] / hindsight["in"], 3) if hindsight["in"] else None,
        "baseline_without_hindsight_kept": hindsight["in"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--work", type=Path, default=Path("/tmp/vdata-bench-thinker"))
    parser.add_argument("--synth-videos", type=int, default=2)
    parser.add_argument("--anet-videos", type=int, default=10)
    args = parser.parse_args()
    synth = args.work / "synth"
    vdata("synth", "--n", str(args.synth_videos), "--minutes", "0.5", "--out", str(synth), "--quiet")
    result: dict = {"machine": {"cpus": os.cpu_count()}, "model": "embedded SmolLM2-135M (llama.cpp)"}
    out = args.work / "thinker-synth"
    seconds = vdata(
        "build", "video-thinker", "--source", f"synth-captions={synth / 'captions.jsonl'}:caption",
        "--source", f"synth-qa={synth}:qa", "--captioner", "synth-truth", "--out", str(out),
        "--quiet", "--allow-empty",
    )  # fmt: skip
    result["synth_both_branches"] = summary(out, seconds)
    anet = REAL / "videochatr1_activitynet_val_2.json"
    if anet.is_file():
        out = args.work / "thinker-anet"
        seconds = vdata(
            "build", "video-thinker", "--source", f"anet={anet}:caption", "--annotations-only",
            "--max-videos", str(args.anet_videos), "--out", str(out), "--quiet", "--allow-empty",
        )  # fmt: skip
        result["activitynet_annotations_only"] = summary(out, seconds)
    RESULT.parent.mkdir(parents=True, exist_ok=True)
    RESULT.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
