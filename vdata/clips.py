"""`vdata split`: probe videos, cut them into clips, optionally write clip files.

The stage functions here (`probe_row`, `segment_row`, `materialize_row`) are the
ones recipes use for their ingest and segment stages.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from vdata.runner import RunResult, run_pipeline
from vdata.runstore import RunStore, refuse_overlap
from vdata.segment import (
    Materialize,
    Mode,
    SceneOptions,
    cut_copy,
    cut_exact,
    detect_cuts,
    discover_videos,
    fixed_ranges,
    scene_ranges,
)
from vdata.stages import MapStage, Reject, StageContext
from vdata.video import VideoError, probe

CLIP_SCHEMA = pa.schema(
    [
        ("video", pa.string()),
        ("sha256", pa.string()),
        ("clip_index", pa.int32()),
        ("start_s", pa.float64()),
        ("end_s", pa.float64()),
        ("method", pa.string()),
        ("video_duration_s", pa.float64()),
        ("fps", pa.float64()),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("clip_path", pa.string()),
        ("cut_start_s", pa.float64()),
        ("cut_end_s", pa.float64()),
        ("note", pa.string()),
    ]
)


@dataclass(frozen=True)
class SplitConfig:
    mode: Mode = "fixed"
    clip_seconds: float = 10.0
    min_clip_seconds: float = 1.0
    max_clip_seconds: float | None = 60.0
    scene: SceneOptions = field(default_factory=SceneOptions)
    materialize: Materialize = "none"
    workers: int = field(default_factory=lambda: os.cpu_count() or 1)

    def segment_config(self) -> dict[str, Any]:
        """What changes the clips (and so reruns the segment stage when changed)."""
        settings: dict[str, Any] = {"mode": self.mode}
        if self.mode == "fixed":
            settings["clip_seconds"] = self.clip_seconds
        else:
            settings.update(
                min_clip_seconds=self.min_clip_seconds,
                max_clip_seconds=self.max_clip_seconds,
                **asdict(self.scene),
            )
        return settings


# ---------------------------------------------------------------- stage functions


def probe_row(row: dict[str, Any], ctx: StageContext | None = None) -> dict[str, Any] | list[Any] | Reject:
    """{'video': path} -> the probe's fields, or a Reject naming what is wrong with the file; a
    stream that breaks midway gives its row and a `broken_stream` reject for the lost part."""
    path = row["video"]
    if row.get("found") == "symlink_loop":
        return Reject("symlink_loop", f"{path}: folder links loop back to a folder already read", path)
    try:
        result = probe(path)
    except VideoError as exc:
        return Reject(exc.reason, str(exc), path)
    row = {**result.to_row(), "video": path}
    if result.broken_at_s is None:
        return row
    # The readable part goes on; what is lost after the break is said here, at ingest, for
    # every command that probes (split, build).
    end = result.declared_duration_s
    lost = f"{result.broken_at_s:.2f}s..{end:.2f}s" if end else f"everything after {result.broken_at_s:.2f}s"
    return [row, Reject("broken_stream", f"{path}: {result.note}; {lost} is lost", path)]


def segment_row(
    row: dict[str, Any], ctx: StageContext | None = None, *, config: SplitConfig, threads: int = 1
) -> list[dict[str, Any] | Reject]:
    """One probed video -> its clips; a video that stops decoding early keeps the clips
    before the break and gets a reject row for the part after it."""
    path = row["video"]
    usable = row["broken_at_s"] if row.get("broken_at_s") is not None else row["duration_s"]
    note = row.get("note") or ""
    if config.mode == "fixed":
        ranges = fixed_ranges(usable, config.clip_seconds)
    else:
        scan = detect_cuts(path, usable, config.scene, threads=threads)
        if scan.error:
            note = "; ".join(n for n in (note, scan.error) if n)
        ranges = scene_ranges(
            scan.cuts, usable, min_clip_s=config.min_clip_seconds, max_clip_s=config.max_clip_seconds
        )
    out: list[dict[str, Any] | Reject] = [
        {
            "video": path,
            "sha256": row["sha256"],
            "clip_index": index,
            "start_s": start,
            "end_s": end,
            "method": config.mode,
            "video_duration_s": row["duration_s"],
            "fps": row["fps"],
            "width": row["width"],
            "height": row["height"],
            "clip_path": None,
            "cut_start_s": None,
            "cut_end_s": None,
            "note": note,
        }
        for index, (start, end) in enumerate(ranges)
    ]
    if row.get("broken_at_s") is not None and not ranges:
        out.append(Reject("broken_stream", f"{path}: {note}; no clip fits before the break", path))
    elif note and row.get("broken_at_s") is None:
        out.append(Reject("decode_errors", f"{path}: {note}; its clips are kept and flagged in 'note'", path))
    return out


def materialize_row(
    row: dict[str, Any], ctx: StageContext | None = None, *, mode: Materialize, out_dir: str
) -> dict[str, Any] | Reject:
    """Writes one clip file under OUT/clips/ and records the times actually cut."""
    video = Path(row["video"])
    relative = Path("clips") / f"{video.stem}-{row['sha256'][:8]}" / f"clip-{row['clip_index']:04d}.mp4"
    cut = cut_copy if mode == "copy" else cut_exact
    try:
        result = cut(video, row["start_s"], row["end_s"], Path(out_dir) / relative)
    except VideoError as exc:
        return Reject(exc.reason, str(exc), f"{video}#{row['clip_index']}")
    return {**row, "clip_path": relative.as_posix(), "cut_start_s": result.start_s, "cut_end_s": result.end_s}


# ---------------------------------------------------------------- the run


def split_stages(config: SplitConfig, n_videos: int, out: str | Path) -> list[MapStage]:
    workers = max(1, min(config.workers, n_videos))
    threads = max(1, (os.cpu_count() or 1) // workers)
    stages = [
        MapStage("probe", probe_row, workers=workers),
        MapStage(
            "segment",
            functools.partial(segment_row, config=config, threads=threads),
            config=config.segment_config(),
            schema=CLIP_SCHEMA,
            workers=workers,
        ),
    ]
    if config.materialize != "none":
        stages.append(
            MapStage(
                "materialize",
                functools.partial(materialize_row, mode=config.materialize, out_dir=str(Path(out).resolve())),
                config={"materialize": config.materialize},
                schema=CLIP_SCHEMA,
                workers=max(1, config.workers),
            )
        )
    return stages


def split_videos(
    paths: Sequence[str | Path],
    out: str | Path,
    config: SplitConfig = SplitConfig(),
    *,
    quiet: bool = False,
    command: str = "",
    shard_rows: int = 64,
    force: bool = False,
    engine: Any = None,
) -> RunResult:
    """Clips of every video under `paths` into OUT/clips.parquet; rejects into OUT/rejects/.
    `shard_rows` files make one unit of work (resumed whole; one task on the Ray engine).
    `engine`: where the stages run (vdata.engines; default local)."""
    refuse_overlap(Path(out), [("the videos", path) for path in paths])
    inputs = discover_videos(paths)
    stages = split_stages(config, len(inputs), out)
    with RunStore(out).lock(force=force):
        result = run_pipeline(
            out,
            "split@1",
            inputs,
            stages,
            config={**config.segment_config(), "materialize": config.materialize},
            shard_rows=shard_rows,
            quiet=quiet,
            command=command,
            engine=engine,
        )
        table = result.final_table()
        RunStore(out).write_output("clips.parquet", table if table is not None else CLIP_SCHEMA.empty_table())
    return result
