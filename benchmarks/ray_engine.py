"""The Ray engine's overhead on one machine: `vdata split` of 20 videos, and the README's
main job (`vdata build longvideo-reason` on the bundled examples with the embedded model),
local engine against Ray.

Both engines cut the same 20 synthetic videos (vdata.synth's shot videos, 12-20 s, hard
cuts) into scene clips: the local engine with a process pool of one worker per core (a
pool per shard), Ray with one task per shard on a local cluster of as many CPUs (its
workers stay up between shards and runs). Two shard sizes: 4 files (10 tasks over the
two per-file stages) and 64 (split's default: one shard). Ray's start (`ray.init`) is
timed apart from the runs. Each is run twice (fresh run directories); the outputs are
compared byte for byte. The build runs as the user runs it (`python -m vdata build ...
--engine local|ray`, a fresh process each time, so Ray's start is inside its time), in
turn, `--build-repeats` times each; its per-stage seconds and shard counts come from each
run's run.json (the per-shard costs that benchmarks/README.md scales on paper). Writes
benchmarks/results/ray_engine.json.

    python benchmarks/ray_engine.py [--videos 20] [--repeats 2] [--build-repeats 2 | 0 to skip]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--videos", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--build-repeats", type=int, default=2, help="examples builds per engine (0: none)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "ray_engine.json")
    args = parser.parse_args()

    import ray

    from vdata.clips import SplitConfig, split_videos
    from vdata.engines.local import LocalEngine
    from vdata.engines.ray import RayEngine
    from vdata.synth.cuts import write_shots_video

    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        videos = root / "videos"
        videos.mkdir()
        for i in range(args.videos):
            write_shots_video(videos / f"v{i:02d}.mp4", [4.0 + i % 3, 5.0, 3.0 + i % 5], seed=i)
        config = SplitConfig(mode="scene", workers=cores)
        started = time.perf_counter()
        engine = RayEngine(num_cpus=cores)
        ray_start_s = time.perf_counter() - started
        cases = {}
        try:
            for shard_rows in (4, 64):
                times: dict[str, list[float]] = {"local": [], "ray": []}
                outputs = {}
                for repeat in range(args.repeats):
                    for name, chosen in (("local", LocalEngine()), ("ray", engine)):
                        out = root / f"{name}-{shard_rows}-{repeat}"
                        started = time.perf_counter()
                        result = split_videos(
                            [videos], out, config, quiet=True, shard_rows=shard_rows, engine=chosen
                        )
                        times[name].append(time.perf_counter() - started)
                        outputs[name] = (out / "clips.parquet").read_bytes()
                mean = {name: sum(values) / len(values) for name, values in times.items()}
                cases[f"shards of {shard_rows} files"] = {
                    "clips": result.stages[-1].rows_out,
                    "identical_clips_parquet": outputs["local"] == outputs["ray"],
                    "seconds": {name: [round(v, 2) for v in values] for name, values in times.items()},
                    "mean_s": {name: round(v, 2) for name, v in mean.items()},
                    "ray_over_local": round(mean["ray"] / mean["local"], 3),
                }
        finally:
            engine.close()
        assert not ray.is_initialized()
    build = _examples_build(args.build_repeats) if args.build_repeats else None
    result = {
        "benchmark": "ray_engine",
        "baseline": "the local engine (a process pool of one worker per core, started per shard)",
        "what": f"vdata split --mode scene of {args.videos} videos",
        "cores": cores,
        "ray_start_s": round(ray_start_s, 2),
        "cases": cases,
        "examples_build": build,
        "python": platform.python_version(),
        "ray": ray.__version__,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


def _examples_build(repeats: int) -> dict:
    """The README's main command on examples/, local and Ray in turn, each in its own process."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    times: dict[str, list[float]] = {"local": [], "ray": []}
    kept: dict[str, list[int]] = {"local": [], "ray": []}
    stages: dict[str, list[dict]] = {"local": [], "ray": []}
    datasets: dict[str, list[bytes]] = {"local": [], "ray": []}
    with tempfile.TemporaryDirectory() as folder:
        for repeat in range(repeats):
            for name in ("local", "ray"):
                out = Path(folder) / f"{name}-{repeat}"
                command = [sys.executable, "-m", "vdata", "build", "longvideo-reason"]
                command += ["--videos", str(root / "examples" / "videos")]
                command += ["--captions", str(root / "examples" / "captions.jsonl")]
                command += ["--out", str(out), "--quiet", "--engine", name]
                started = time.perf_counter()
                subprocess.run(command, check=True, capture_output=True, cwd=root)
                times[name].append(time.perf_counter() - started)
                run = json.loads((out / "run.json").read_text())
                stages[name].append({stage["name"]: _stage_cost(out, stage) for stage in run["stages"]})
                files = sorted((out / "dataset" / "data").glob("*.parquet"))
                kept[name].append(sum(_rows(f) for f in files))
                datasets[name].append(b"".join(f.read_bytes() for f in files))
    mean = {name: sum(v) / len(v) for name, v in times.items()}
    return {
        "what": "vdata build longvideo-reason on examples/ (2 videos, 8 questions asked), embedded model",
        "seconds": {name: [round(v, 1) for v in values] for name, values in times.items()},
        "mean_s": {name: round(v, 1) for name, v in mean.items()},
        "ray_over_local": round(mean["ray"] / mean["local"], 3),
        "questions_kept": kept,
        "identical_datasets_same_repeat": [
            a == b for a, b in zip(datasets["local"], datasets["ray"], strict=True)
        ],
        "stages": stages,
    }


def _stage_cost(out: Path, stage: dict) -> dict:
    """A stage's seconds, rows in, and shards (from its manifest)."""
    manifest = json.loads((out / "stages" / stage["dir"] / "manifest.json").read_text())
    return {"seconds": stage["seconds"], "rows_in": stage["rows_in"], "shards": len(manifest["shards"])}


def _rows(path: Path) -> int:
    import pyarrow.parquet as pq

    return pq.read_metadata(path).num_rows


if __name__ == "__main__":
    main()
