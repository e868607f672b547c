"""vdata synth: one hour of 480p 30 fps video, against a straightforward renderer.

vdata: `synthesize` with 30 two-minute videos (one hour, 108,000 frames) on a
process per core. Target: under 2 minutes on 2 cores.

Baseline, in the same run and on the same simulated worlds: the way a script
would do it: an RGB canvas per frame, shapes drawn with OpenCV, frames handed to
PyAV as rgb24 (converted to YUV by the encoder) and PyAV's default libx264
settings, over a process per core. It renders 4 of the 30 videos; its rate is
reported and its time for the hour extrapolated.

Writes benchmarks/results/synth_speed.json.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import av
import numpy as np

from vdata.synth import SynthConfig, synthesize
from vdata.synth.world import BACKGROUNDS, COLOURS, OCCLUDER_COLOUR, WorldSpec, simulate

RESULT = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "synth_speed.json"
CONFIG = SynthConfig(n=30, minutes=2.0, violations=0.5, seed=0, width=854, height=480, fps=30)


def baseline_render(spec_json: str, path: str) -> int:
    import cv2

    spec = WorldSpec(**{k: tuple(v) if isinstance(v, list) else v for k, v in json.loads(spec_json).items()})
    world = simulate(spec)
    shot_of = [s for s in world.shots for _ in range(round((s.end_s - s.start_s) * world.fps))]
    with av.open(path, "w") as container:
        stream = container.add_stream("libx264", rate=world.fps)
        stream.width, stream.height, stream.pix_fmt = world.width, world.height, "yuv420p"
        for index, states in enumerate(world.frames):
            shot = shot_of[min(index, len(shot_of) - 1)]
            canvas = np.empty((world.height, world.width, 3), np.uint8)
            canvas[:] = BACKGROUNDS[shot.background]
            for state in states:
                centre = (int(state.x), int(state.y))
                cv2.circle(canvas, centre, int(state.radius), COLOURS[state.colour], -1)
            if shot.occluder:
                x0, y0, x1, y1 = (int(v) for v in shot.occluder)
                cv2.rectangle(canvas, (x0, y0), (x1, y1), OCCLUDER_COLOUR, -1)
            frame = av.VideoFrame.from_ndarray(canvas, format="rgb24")
            frame.pts = index
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return len(world.frames)


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="vdata-bench-synth-"))
    workers = os.cpu_count() or 1
    started = time.perf_counter()
    synthesize(work / "vdata", CONFIG, quiet=True)
    vdata_seconds = time.perf_counter() - started
    frames = round(CONFIG.n * CONFIG.minutes * 60 * CONFIG.fps)
    size = sum(p.stat().st_size for p in (work / "vdata" / "videos").glob("*.mp4"))

    specs = [row["spec"] for row in CONFIG.specs()[:4]]
    started = time.perf_counter()
    with ProcessPoolExecutor(workers) as pool:
        baseline_frames = sum(
            pool.map(baseline_render, specs, [str(work / f"baseline-{i}.mp4") for i in range(len(specs))])
        )
    baseline_seconds = time.perf_counter() - started
    vdata_fps = frames / vdata_seconds
    baseline_fps = baseline_frames / baseline_seconds
    result = {
        "benchmark": "synth_speed",
        "baseline": "RGB canvas drawn with OpenCV, rgb24 frames, PyAV's default libx264 settings, "
        f"a process per core; 4 of the 30 videos ({baseline_frames} frames), extrapolated to the hour",
        "machine": {"cpus": workers, "python": platform.python_version()},
        "video": f"{CONFIG.n} x {CONFIG.minutes:g} min, {CONFIG.width}x{CONFIG.height}, {CONFIG.fps} fps",
        "hours_of_video": round(frames / CONFIG.fps / 3600, 3),
        "vdata_seconds": round(vdata_seconds, 2),
        "vdata_frames_per_s": round(vdata_fps, 1),
        "vdata_megabytes": round(size / 1e6, 1),
        "baseline_frames_per_s": round(baseline_fps, 1),
        "baseline_seconds_for_the_hour": round(frames / baseline_fps, 1),
        "speedup_vs_baseline": round(vdata_fps / baseline_fps, 2),
        "target_seconds": 120,
    }
    RESULT.parent.mkdir(parents=True, exist_ok=True)
    RESULT.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
