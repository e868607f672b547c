"""Clip captions read from a file: the JSONL layout (video, start_s, end_s, caption) that
`vdata synth` writes and that recipes take with `--captions`, checked against the input videos,
and the clips they make.

Every problem names the file and its lines; a clip past the point where a video's stream breaks
is a `broken_stream` reject, never a clip that shows nothing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from vdata.stages import Reject, StageContext


class CaptionsError(ValueError):
    """A captions file that does not fit the videos; the message names the lines."""


def seconds(value: float) -> str:
    """20.0 -> '20', 12.5 -> '12.5': times as people write them (never seconds x 10)."""
    return f"{round(value, 2):g}"


def read_caption_lines(path: str | Path) -> tuple[list[tuple[int, dict[str, Any]]], list[str]]:
    """The caption objects of a JSONL file (video, start_s, end_s, caption), each with its line
    number, and the problems of the lines that are not one (unparseable, a key missing, times
    not in order, an empty caption)."""
    path = Path(path)
    problems: list[str] = []
    rows: list[tuple[int, dict[str, Any]]] = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            video, start, end, caption = (
                item["video"],
                float(item["start_s"]),
                float(item["end_s"]),
                item["caption"],
            )
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            problems.append(
                f"line {number}: not a caption object with video, start_s, end_s, caption ({exc})"
            )
            continue
        if not 0 <= start < end:
            problems.append(f"line {number}: {seconds(start)}s..{seconds(end)}s is not a span of time")
            continue
        if not str(caption).strip():
            problems.append(f"line {number}: empty caption")
            continue
        rows.append((number, {"video": video, "start_s": start, "end_s": end, "caption": str(caption)}))
    return rows, problems


def caption_problems(path: str | Path, problems: list[str], what: str) -> CaptionsError:
    """One error naming the file and its first 20 bad lines."""
    shown = "\n  ".join(problems[:20])
    more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
    return CaptionsError(f"{path}: {len(problems)} line(s) {what}:\n  {shown}{more}")


def captions_of(path: str | Path, inputs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The captions file checked against the input videos' durations (`load_captions`)."""
    from vdata.video import VideoError, probe

    durations = {}
    for item in inputs:
        try:
            found = probe(item["video"], hash_file=False)
        except VideoError:
            continue  # a bad video is the ingest stage's reject, not the captions' problem
        durations[item["video"]] = {"duration_s": found.declared_duration_s or found.duration_s}
    return load_captions(path, durations)


def load_captions(path: str | Path, videos: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Caption rows checked against the videos: each line's video must be one of the inputs
    (by path relative to the captions file, or by file name) and its times inside it."""
    path = Path(path)
    lines, problems = read_caption_lines(path)
    rows: list[dict[str, Any]] = []
    by_name = {Path(v).name: v for v in videos}
    by_resolved = {str(Path(v).resolve()): v for v in videos}
    for number, item in lines:
        video, start, end = item["video"], item["start_s"], item["end_s"]
        found = by_resolved.get(str((path.parent / video).resolve())) or by_name.get(Path(video).name)
        if found is None:
            problems.append(f"line {number}: video {video!r} is not among the input videos")
            continue
        duration = videos[found]["duration_s"]
        if end > duration + 0.05:
            problems.append(
                f"line {number}: {seconds(start)}s..{seconds(end)}s is outside {video} (0..{duration}s)"
            )
            continue
        rows.append({**item, "video": found})
    if problems:
        raise caption_problems(path, problems, "do not fit the videos")
    return rows


def imported_clips(row: dict[str, Any], ctx: StageContext, *, captions: list[dict[str, Any]]) -> list[Any]:
    mine = sorted((c for c in captions if c["video"] == row["video"]), key=lambda c: c["start_s"])
    if not mine:
        return [Reject("no_captions", f"{row['video']}: the captions file has no clip of this video")]
    readable = row["broken_at_s"] if row.get("broken_at_s") is not None else float("inf")
    clips: list[Any] = []
    lost: list[Any] = []
    for c in mine:
        if c["end_s"] > readable + 0.05:  # the stream breaks before this clip ends: nothing to ask about
            detail = (
                f"{row['video']}: the clip {seconds(c['start_s'])}s..{seconds(c['end_s'])}s lies past "
                f"the break at {seconds(readable)}s"
            )
            lost.append(Reject("broken_stream", detail, payload=c))
            continue
        times = {"clip_index": len(clips), "start_s": c["start_s"], "end_s": c["end_s"]}
        clips.append({**clip_base(row), **times, "caption": c["caption"]})
    return clips + lost


def clip_base(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "video": row["video"],
        "sha256": row["sha256"],
        "video_duration_s": row.get("video_duration_s", row.get("duration_s")),
        "fps": row["fps"],
        "width": row["width"],
        "height": row["height"],
    }
