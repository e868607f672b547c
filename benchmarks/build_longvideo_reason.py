"""vdata build longvideo-reason on examples/: what it yields, where the time goes, what a question costs.

(1) The main command on the bundled examples with the embedded model (captions
    imported), at seeds 0, 1 and 2: questions kept, seconds per stage, requests
    and tokens per kept question. Baseline, in the same run at seed 0: the same
    build with the reply schemas fixed for every request, as before issue 13
    (any integer for a cited part, any string for the question, unbounded
    lengths): the schema is what lets a 135M model yield data at all.
(2) The captioning path, whose cost is decoding: every clip of the examples is
    captioned through a stand-in server (it answers with a fixed caption after
    20 ms; it is not a VLM, none runs here), counting how often each clip's
    video is opened and decoded: vdata samples each clip's frames in one decode
    of its range. Baseline, on the same clips: the upstream scripts' way, a
    stream copy of every clip to its own file (ffmpeg -c copy), then frames
    sampled from that file.

Writes benchmarks/results/build_longvideo_reason.json.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from pydantic import BaseModel, Field

import vdata.builders.longvideo_reason as recipe
import vdata.video
from vdata.annotators.endpoints import Endpoint, Endpoints
from vdata.builders.longvideo_reason import GeneratedQuestion, LongVideoReasonConfig
from vdata.runstore import RunStore
from vdata.segment import cut_copy, fixed_ranges
from vdata.video import probe, sample_frames

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
RESULT = ROOT / "benchmarks" / "results" / "build_longvideo_reason.json"
FRAMES = 8
MAX_PIXELS = 256 * 28 * 28


class LooseReasoning(BaseModel):
    reasoning: str = Field(min_length=20)


def main_command(work: Path, seed: int = 0, loose: bool = False) -> dict:
    out = work / f"main-{seed}{'-loose' if loose else ''}"
    config = LongVideoReasonConfig(
        videos=[str(EXAMPLES / "videos")], captions=str(EXAMPLES / "captions.jsonl"), out=str(out), seed=seed
    )
    patched = {"generation_schema": lambda row: GeneratedQuestion, "Reasoning": LooseReasoning}
    saved = {name: getattr(recipe, name) for name in patched}
    if loose:
        for name, value in patched.items():
            setattr(recipe, name, value)
    try:
        started = time.perf_counter()
        result = recipe.build(config, quiet=True)
        seconds = time.perf_counter() - started
    finally:
        for name, value in saved.items():
            setattr(recipe, name, value)
    run = json.loads((out / "run.json").read_text())
    kept = result.stages[-1].rows_out
    totals = Counter()
    for usage in run["usage"].values():
        for counters in usage.values():
            totals.update({k: counters.get(k, 0) for k in ("requests", "prompt_tokens", "completion_tokens")})
    rejects = {
        stage: dict(RunStore(out).reject_reasons(stage).most_common(4))
        for stage in ("generate", "check", "rewrite")
    }
    return {
        "model": "embedded SmolLM2-135M-Instruct (llama.cpp)",
        "seed": seed,
        "reply_schemas": "fixed for every request (baseline)" if loose else "built per request",
        "seconds": round(seconds, 1),
        "rejected": rejects,
        "seconds_per_stage": {s["name"]: s["seconds"] for s in run["stages"]},
        "questions_asked": result.stages[[s.name for s in result.stages].index("generate")].rows_in,
        "questions_kept": kept,
        "requests": totals["requests"],
        "tokens": totals["prompt_tokens"] + totals["completion_tokens"],
        "requests_per_kept_question": round(totals["requests"] / kept, 1) if kept else None,
        "tokens_per_kept_question": round((totals["prompt_tokens"] + totals["completion_tokens"]) / kept)
        if kept
        else None,
    }


def caption_path(work: Path) -> dict:
    opened: Counter = Counter()
    original = vdata.video.open_video

    def counting_open(path, *args, **kwargs):
        opened[str(Path(path).resolve())] += 1
        return original(path, *args, **kwargs)

    stand_in = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "vdata.annotators.testing",
            "--latency",
            "0.02",
            "--reply",
            "A small object moves across a plain background and bounces off a wall.",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        url = stand_in.stdout.readline().strip()
        endpoint = Endpoint(base_url=url, model="stand-in", max_concurrency=8)
        endpoints = Endpoints(roles={"captioner": endpoint, "reasoner": endpoint, "rewriter": endpoint})
        config = LongVideoReasonConfig(
            videos=[str(EXAMPLES / "videos")], out=str(work / "captions"), workers=1
        )
        vdata.video.open_video = counting_open  # every probe and frame sample opens through it
        try:
            result = recipe.build(config, endpoints, quiet=True)
        finally:
            vdata.video.open_video = original
    finally:
        stand_in.terminate()
        stand_in.wait(10)
    run = json.loads((work / "captions" / "run.json").read_text())
    caption_stage = next(s for s in run["stages"] if s["name"] == "caption")
    clips = caption_stage["rows_in"]
    probes = next(s for s in run["stages"] if s["name"] == "ingest")["rows_in"]  # one open per video

    # Decoding for captions, both ways, on the same clips.
    ranges = []
    for video in sorted((EXAMPLES / "videos").glob("*.mp4")):
        ranges += [(video, s, e) for s, e in fixed_ranges(probe(video).duration_s, 10.0)]
    started = time.perf_counter()
    for video, start, end in ranges:
        sample_frames(video, start, end, nframes=FRAMES, max_pixels=MAX_PIXELS)
    vdata_seconds = time.perf_counter() - started
    started = time.perf_counter()
    for index, (video, start, end) in enumerate(ranges):
        clip = cut_copy(video, start, end, work / "upstream" / f"clip-{index}.mp4")
        sample_frames(
            clip.path, start - clip.start_s, end - clip.start_s, nframes=FRAMES, max_pixels=MAX_PIXELS
        )
    upstream_seconds = time.perf_counter() - started
    return {
        "captioner": "stand-in server, fixed caption after 20 ms (not a VLM)",
        "clips_captioned": clips,
        "video_opens_during_the_run": sum(opened.values()),
        "decodes_per_clip_for_captions": round((sum(opened.values()) - probes) / clips, 2),
        "captioning_seconds": caption_stage["seconds"],
        "frame_preparation_seconds_vdata": round(vdata_seconds, 3),
        "frame_preparation_seconds_upstream_copy_then_decode": round(upstream_seconds, 3),
        "speedup_vs_upstream": round(upstream_seconds / vdata_seconds, 2),
        "questions_kept": result.stages[-1].rows_out,
    }


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="vdata-bench-build-"))
    runs = [main_command(work, seed) for seed in (0, 1, 2)]
    baseline = main_command(work, 0, loose=True)
    kept = [r["questions_kept"] for r in runs]
    result = {
        "benchmark": "build_longvideo_reason",
        "baseline": "main command: the same build with reply schemas fixed for every request (before issue "
        "13); captioning: upstream clip preparation, a stream copy of each clip to a file, then decode it",
        "main_command": {
            "questions_kept_per_seed": kept,
            "seconds_per_seed": [r["seconds"] for r in runs],
            "baseline_questions_kept_seed_0": baseline["questions_kept"],
            "runs": runs,
            "baseline_run": baseline,
        },
        "captioning": caption_path(work),
    }
    RESULT.parent.mkdir(parents=True, exist_ok=True)
    RESULT.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
