"""Commands that make and cut videos: synth, split."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, get_args

import typer

from vdata.cli import ForceOption, app, choices, command_line, err, fail, with_engine
from vdata.segment import Materialize, Mode, SceneOptions

SplitMode = choices("SplitMode", get_args(Mode))


MaterializeMode = choices("MaterializeMode", get_args(Materialize))


@app.command()
@with_engine
def split(
    videos: Annotated[
        list[Path],
        typer.Argument(
            help="Video files, or folders to search for videos.", readable=False, resolve_path=False
        ),
    ],
    out: Annotated[Path, typer.Option("--out", help="Run directory; rerun the command to resume.")],
    mode: Annotated[SplitMode, typer.Option(help="fixed-length clips, or scene clips.")] = SplitMode["fixed"],
    clip_seconds: Annotated[float, typer.Option(help="Clip length for --mode fixed.")] = 10.0,
    min_clip_seconds: Annotated[float, typer.Option(help="Shorter scenes join a neighbour.")] = 1.0,
    max_clip_seconds: Annotated[float, typer.Option(help="Longer scenes are split evenly; 0: never.")] = 60.0,
    threshold: Annotated[float, typer.Option(help="AdaptiveDetector adaptive_threshold.")] = (
        SceneOptions.adaptive_threshold
    ),
    window_width: Annotated[int, typer.Option(help="AdaptiveDetector window_width (frames).")] = (
        SceneOptions.window_width
    ),
    min_scene_seconds: Annotated[float, typer.Option(help="AdaptiveDetector min_scene_len.")] = (
        SceneOptions.min_scene_len_s
    ),
    frame_skip: Annotated[int, typer.Option(help="Look at every (N+1)-th frame when detecting scenes.")] = 0,
    fast_decode: Annotated[
        bool,
        typer.Option(
            "--fast-decode/--full-decode",
            help="Skip the in-loop filter when decoding (a sixth faster, scores a few percent off), or "
            "decode every frame in full, PySceneDetect's own scores (the default).",
        ),
    ] = False,
    materialize: Annotated[
        MaterializeMode,
        typer.Option(help="Also write clip files: copy (keyframe-snapped) or exact (re-encoded)."),
    ] = MaterializeMode["none"],
    workers: Annotated[int, typer.Option(help="Processes over files; default: one per core.")] = 0,
    quiet: Annotated[bool, typer.Option("--quiet", help="Log lines instead of progress bars.")] = False,
    force: ForceOption = False,
    engine: Any = None,
) -> None:
    """Cut videos into clips: OUT/clips.parquet (time ranges) and OUT/rejects/*.parquet.

    Bad files (empty, truncated, not a video, audio only, unreadable) become reject
    rows with a reason; the run goes on. Files are only cut with --materialize.
    """
    from vdata.clips import SplitConfig, split_videos
    from vdata.segment import SceneOptions

    scene = SceneOptions(
        adaptive_threshold=threshold,
        window_width=window_width,
        min_scene_len_s=min_scene_seconds,
        frame_skip=frame_skip,
        fast_decode=fast_decode,
    )
    config = SplitConfig(
        mode=mode.value,
        clip_seconds=clip_seconds,
        min_clip_seconds=min_clip_seconds,
        max_clip_seconds=max_clip_seconds or None,
        scene=scene,
        materialize=materialize.value,
        workers=workers or (os.cpu_count() or 1),
    )
    from vdata.runner import RunError

    try:
        result = split_videos(
            videos, out, config, quiet=quiet, command=command_line(), force=force, engine=engine
        )
    except (ValueError, RunError) as exc:
        fail(str(exc))
    clips = result.stages[-1].rows_out
    rejected = sum(r.rejected for r in result.stages)
    err.print(f"{clips} clips in {out / 'clips.parquet'}; {rejected} rejected (see {out / 'rejects'})")


@app.command()
def synth(
    out: Annotated[Path, typer.Option("--out", help="Output directory; rerun to resume.")],
    n: Annotated[int, typer.Option("--n", help="How many videos.")] = 20,
    minutes: Annotated[float, typer.Option(help="Length of each video.")] = 2.0,
    violations: Annotated[float, typer.Option(help="Share of videos with impossible events (0..1).")] = 0.5,
    seed: Annotated[int, typer.Option(help="Same seed, same videos and truth.")] = 0,
    width: Annotated[int, typer.Option()] = 854,
    height: Annotated[int, typer.Option()] = 480,
    fps: Annotated[int, typer.Option()] = 30,
    workers: Annotated[int, typer.Option(help="Processes; default: one per core.")] = 0,
    quiet: Annotated[bool, typer.Option("--quiet", help="Log lines instead of progress bars.")] = False,
    force: ForceOption = False,
) -> None:
    """Render synthetic videos whose content is known exactly, with ground truth and questions.

    Moving shapes in shots separated by hard cuts; events (enter, exit, collide, bounce, stop,
    change colour, split, merge, occlusion); with --violations, impossible events (teleport,
    pass-through, spontaneous changes, vanishing, reversed gravity, time running backwards).
    """
    from vdata.synth import SynthConfig, synthesize

    if not 0 <= violations <= 1 or n < 1 or minutes <= 0 or width % 2 or height % 4:
        fail(
            "--violations must be within 0..1, --n and --minutes positive, "
            "--width even and --height a multiple of 4"
        )
    config = SynthConfig(n, minutes, violations, seed, width, height, fps, workers=workers)
    result = synthesize(out, config, quiet=quiet, command=command_line(), force=force)
    err.print(f"{result.stages[-1].rows_out} videos, their truth and questions in {out}")
