"""Video files: probe them, and sample frames for VLMs in qwen-vl-utils conventions.

Every failure is a `VideoError` with a stable reason code and a message that
names the file, so a stage can turn it into a reject row and go on. Times are
seconds from the first frame of the video stream.
"""

from __future__ import annotations

import errno
import hashlib
import math
import os
import stat
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import av
import numpy as np
from av.video.reformatter import VideoReformatter

VIDEO_SUFFIXES = frozenset(
    {".mp4", ".m4v", ".mkv", ".webm", ".mov", ".avi", ".ts", ".mts", ".flv", ".mpg", ".mpeg", ".wmv", ".3gp"}
)
_HASH_CHUNK = 1 << 20


class VideoError(Exception):
    """A video that cannot be used, with a stable `reason` code."""

    def __init__(self, reason: str, path: str | Path, detail: str):
        super().__init__(f"{path}: {detail}")
        self.reason = reason
        self.path = str(path)
        self.detail = detail


@dataclass
class VideoProbe:
    path: str
    duration_s: float
    fps: float
    variable_fps: bool
    frames: int
    frames_exact: bool
    width: int  # after rotation
    height: int
    rotation: int
    codec: str
    pix_fmt: str
    has_audio: bool
    size_bytes: int
    sha256: str
    broken_at_s: float | None = None  # demuxing stopped here; the rest is unreadable
    declared_duration_s: float | None = None  # what the container says, when it says
    note: str = ""

    def to_row(self) -> dict[str, Any]:
        return asdict(self)


# ---------------------------------------------------------------- opening


def check_readable(path: str | Path) -> Path:
    """Raises VideoError for paths that are not readable regular files."""
    path = Path(path)
    try:
        info = path.stat()
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise VideoError(
                "symlink_loop", path, "symbolic links loop; point the link at a real file"
            ) from exc
        if exc.errno == errno.EACCES:
            raise VideoError("permission_denied", path, "permission denied; make the file readable") from exc
        if path.is_symlink():
            raise VideoError("missing", path, "a symbolic link to a file that does not exist") from exc
        raise VideoError("missing", path, "no such file") from exc
    if stat.S_ISDIR(info.st_mode):
        raise VideoError("is_directory", path, "a directory, not a video file; pass the files inside it")
    if not stat.S_ISREG(info.st_mode):
        raise VideoError("not_a_file", path, "not a regular file (a device, pipe or socket)")
    if info.st_size == 0:
        raise VideoError("empty_file", path, "zero bytes; the file was never written or was cut off")
    if not os.access(path, os.R_OK):
        raise VideoError("permission_denied", path, "permission denied; make the file readable")
    return path


def open_video(path: str | Path) -> tuple[av.container.InputContainer, av.video.stream.VideoStream]:
    """Opens the file and its first video stream, or raises VideoError."""
    path = check_readable(path)
    try:
        container = av.open(str(path), metadata_errors="ignore")
    except PermissionError as exc:
        raise VideoError("permission_denied", path, "permission denied; make the file readable") from exc
    except (av.error.InvalidDataError, av.error.FFmpegError, UnicodeDecodeError) as exc:
        if looks_like_video(path):
            raise VideoError(
                "truncated", path, "starts like a video file but cannot be read: it was probably cut off"
            ) from exc
        raise VideoError("not_a_video", path, f"not a video container that FFmpeg can read ({exc})") from exc
    if not container.streams.video:
        kinds = sorted({s.type for s in container.streams}) or ["no"]
        container.close()
        reason = "audio_only" if kinds == ["audio"] else "no_video_stream"
        raise VideoError(reason, path, f"has {' and '.join(kinds)} streams but no video stream")
    return container, container.streams.video[0]


_SIGNATURES = (
    (4, b"ftyp"),  # MP4, MOV, 3GP
    (4, b"moov"),  # QuickTime files that start with their other boxes
    (4, b"mdat"),
    (4, b"wide"),
    (4, b"free"),
    (0, b"\x1a\x45\xdf\xa3"),  # Matroska, WebM
    (0, b"RIFF"),  # AVI
    (0, b"FLV"),
    (0, b"\x00\x00\x01\xba"),  # MPEG program stream
    (0, b"\x00\x00\x01\xb3"),  # MPEG-1/2 video
    (0, b"\x30\x26\xb2\x75"),  # ASF (WMV)
)


def looks_like_video(path: str | Path) -> bool:
    """Whether a file starts as a video container does (not whether it plays): what a file
    must show before vdata serves or uploads it as a row's video. False when unreadable."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(200)
    except (OSError, ValueError):  # ValueError: a NUL in the path
        return False
    transport_stream = head[:1] == head[188:189] == b"\x47"  # a sync byte every 188 bytes
    return transport_stream or any(
        head[offset : offset + len(magic)] == magic for offset, magic in _SIGNATURES
    )


def stream_start_s(stream: av.video.stream.VideoStream) -> float:
    return float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0


# ---------------------------------------------------------------- probe


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def probe(path: str | Path, *, hash_file: bool = True) -> VideoProbe:
    """What a stage needs to know about a video, from a packet scan and one decoded frame.

    The packet scan reads every packet without decoding: it counts frames
    exactly, finds variable frame rates and notices a file that stops early.
    """
    container, stream = open_video(path)
    try:
        start = stream_start_s(stream)
        first = _first_frame(container, stream, path)
        rotation = int(getattr(first, "rotation", 0) or 0) % 360
        container.seek(0, stream=stream, backward=True)
        times, broken_at, scan_error = _scan_packets(container, stream, start)
        has_audio = bool(container.streams.audio)
        declared = _declared_duration(container, stream)
        average_rate = float(stream.average_rate) if stream.average_rate else None
        codec = stream.codec_context.name
    finally:
        container.close()
    if len(times) <= 1:
        raise VideoError(
            "too_short", path, f"{len(times)} frame(s); a video needs at least two frames to have a duration"
        )
    step = _median_step(times)
    end = times[-1] + step
    duration = end if broken_at is not None or declared is None else max(min(declared, end + step), end)
    rate = average_rate or (len(times) - 1) / (times[-1] - times[0])
    if duration <= 0:
        raise VideoError("too_short", path, "zero duration")
    width, height = first.width, first.height
    if rotation in (90, 270):
        width, height = height, width
    note = ""
    if broken_at is not None:
        note = f"packets stop at {broken_at:.2f}s of a declared {declared or 0:.2f}s ({scan_error})"
    return VideoProbe(
        path=str(path),
        duration_s=round(duration, 6),
        fps=round(rate, 6),
        variable_fps=_is_variable(times),
        frames=len(times),
        frames_exact=True,
        width=width,
        height=height,
        rotation=rotation,
        codec=codec,
        pix_fmt=first.format.name,
        has_audio=has_audio,
        size_bytes=Path(path).stat().st_size,
        sha256=sha256_file(path) if hash_file else "",
        broken_at_s=None if broken_at is None else round(broken_at, 6),
        declared_duration_s=None if declared is None else round(declared, 6),
        note=note,
    )


def _first_frame(container: Any, stream: Any, path: str | Path) -> av.VideoFrame:
    try:
        for frame in container.decode(stream):
            return frame
    except av.error.FFmpegError as exc:
        raise VideoError("undecodable", path, f"the first frame does not decode ({exc})") from exc
    raise VideoError("too_short", path, "the video stream holds no decodable frame")


def _scan_packets(container: Any, stream: Any, start: float) -> tuple[list[float], float | None, str]:
    """Presentation times of all video packets; where and why demuxing stopped early."""
    times: list[float] = []
    base = stream.time_base
    try:
        for packet in container.demux(stream):
            if packet.pts is not None and packet.size:
                times.append(float(packet.pts * base) - start)
    except av.error.FFmpegError as exc:
        times.sort()
        return times, (times[-1] if times else 0.0), str(exc)
    times.sort()
    declared = _declared_duration(container, stream)
    if declared is not None and times and times[-1] < declared * 0.9 - 1.0:
        # The index promised more than the file holds: it was cut off.
        return times, times[-1], "the file ends before its declared duration"
    return times, None, ""


def _declared_duration(container: Any, stream: Any) -> float | None:
    if stream.duration is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / 1_000_000
    return None


def _median_step(times: Sequence[float]) -> float:
    steps = np.diff(np.asarray(times, dtype=float))
    steps = steps[steps > 0]
    return float(np.median(steps)) if steps.size else 0.0


def _is_variable(times: Sequence[float]) -> bool:
    steps = np.diff(np.asarray(times, dtype=float))
    steps = steps[steps > 0]
    if steps.size < 3:
        return False
    median = float(np.median(steps))
    return bool(np.mean(np.abs(steps - median) > 0.1 * median) > 0.05)


# ---------------------------------------------------------------- frame sampling (qwen-vl-utils)

IMAGE_FACTOR = 28
FRAME_FACTOR = 2
FPS = 2.0
FPS_MIN_FRAMES = 4
FPS_MAX_FRAMES = 768
VIDEO_MIN_PIXELS = 128 * 28 * 28
VIDEO_MAX_PIXELS = 768 * 28 * 28


def _round_by(value: float, factor: int) -> int:
    return round(value / factor) * factor


def _floor_by(value: float, factor: int) -> int:
    return math.floor(value / factor) * factor


def _ceil_by(value: float, factor: int) -> int:
    return math.ceil(value / factor) * factor


def smart_resize(
    height: int,
    width: int,
    factor: int = IMAGE_FACTOR,
    min_pixels: int = VIDEO_MIN_PIXELS,
    max_pixels: int = VIDEO_MAX_PIXELS,
) -> tuple[int, int]:
    """(height, width): multiples of `factor`, pixels within bounds, aspect ratio kept."""
    if max(height, width) / max(1, min(height, width)) > 200:
        raise ValueError(f"aspect ratio of {width}x{height} is over 200; such a frame cannot be sampled")
    h = max(factor, _round_by(height, factor))
    w = max(factor, _round_by(width, factor))
    if h * w > max_pixels:
        beta = math.sqrt(height * width / max_pixels)
        h = max(factor, _floor_by(height / beta, factor))
        w = max(factor, _floor_by(width / beta, factor))
    elif h * w < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h = _ceil_by(height * beta, factor)
        w = _ceil_by(width * beta, factor)
    return h, w


def frame_count(
    frames_in_range: int,
    video_fps: float,
    *,
    fps: float | None = FPS,
    nframes: int | None = None,
    min_frames: int = FPS_MIN_FRAMES,
    max_frames: int = FPS_MAX_FRAMES,
) -> int:
    """How many frames to sample from a range, as qwen-vl-utils decides it."""
    if nframes is not None:
        count = _round_by(nframes, FRAME_FACTOR)
    else:
        low = _ceil_by(min_frames, FRAME_FACTOR)
        high = _floor_by(min(max_frames, frames_in_range), FRAME_FACTOR)
        wanted = frames_in_range / video_fps * (fps or FPS)
        count = _floor_by(min(max(wanted, low), high, frames_in_range), FRAME_FACTOR)
    if count < 1 or count > frames_in_range:
        raise ValueError(
            f"cannot take {count} frames from a range of {frames_in_range}; "
            "lower nframes/min_frames or choose a longer range"
        )
    return count


@dataclass
class SampledFrames:
    """RGB frames (height x width x 3, uint8) with the times they were shown at."""

    frames: list[np.ndarray] = field(default_factory=list)
    timestamps: list[float] = field(default_factory=list)
    width: int = 0
    height: int = 0

    def __len__(self) -> int:
        return len(self.frames)


def sample_frames(
    path: str | Path,
    start_s: float = 0.0,
    end_s: float | None = None,
    *,
    fps: float | None = FPS,
    nframes: int | None = None,
    min_frames: int = FPS_MIN_FRAMES,
    max_frames: int = FPS_MAX_FRAMES,
    min_pixels: int = VIDEO_MIN_PIXELS,
    max_pixels: int = VIDEO_MAX_PIXELS,
    factor: int = IMAGE_FACTOR,
) -> SampledFrames:
    """Frames from [start_s, end_s) by rate (fps, clamped to min/max) or exactly `nframes` uniform.

    One decode per range: seek to the keyframe before start_s, decode forward,
    keep the frames nearest to the wanted times. Frames are rotated upright.
    """
    return sample_ranges(
        path,
        [(start_s, end_s)],
        fps=fps,
        nframes=nframes,
        min_frames=min_frames,
        max_frames=max_frames,
        min_pixels=min_pixels,
        max_pixels=max_pixels,
        factor=factor,
    )[0]


def sample_ranges(
    path: str | Path,
    ranges: Sequence[tuple[float, float | None]],
    **options: Any,
) -> list[SampledFrames]:
    """`sample_frames` for several ranges of one file, opened once."""
    container, stream = open_video(path)
    try:
        stream.thread_type = "AUTO"
        start0 = stream_start_s(stream)
        rate = float(stream.average_rate or stream.guessed_rate or 25)
        duration = _declared_duration(container, stream)
        reformatter = VideoReformatter()
        return [
            _sample_range(container, stream, reformatter, path, start0, rate, duration, start, end, options)
            for start, end in ranges
        ]
    finally:
        container.close()


def _sample_range(
    container: Any,
    stream: Any,
    reformatter: VideoReformatter,
    path: str | Path,
    start0: float,
    rate: float,
    duration: float | None,
    start: float,
    end: float | None,
    options: dict[str, Any],
) -> SampledFrames:
    end = duration if end is None else end
    if end is None or end <= start or start < 0:
        raise ValueError(f"{path}: invalid range {start}s..{end}s")
    in_range = max(1, round((end - start) * rate))
    count = frame_count(
        in_range,
        rate,
        fps=options.get("fps", FPS),
        nframes=options.get("nframes"),
        min_frames=options.get("min_frames", FPS_MIN_FRAMES),
        max_frames=options.get("max_frames", FPS_MAX_FRAMES),
    )
    first_index, last_index = round(start * rate), max(round(start * rate), round(end * rate) - 1)
    wanted = [i / rate for i in np.linspace(first_index, last_index, count).round()]
    out = SampledFrames()
    size: tuple[int, int] | None = None
    container.seek(int((start + start0) / stream.time_base), stream=stream, backward=True)
    pending = iter(wanted)
    target = next(pending, None)
    previous: tuple[float, av.VideoFrame] | None = None
    try:
        for frame in container.decode(stream):
            if target is None:
                break
            t = float(frame.pts * stream.time_base) - start0 if frame.pts is not None else 0.0
            while target is not None and t >= target - 0.5 / rate:
                chosen_t, chosen = (t, frame)
                if previous is not None and abs(previous[0] - target) < abs(t - target):
                    chosen_t, chosen = previous
                if size is None:
                    size = _target_size(chosen, options)
                out.frames.append(_to_rgb(reformatter, chosen, size))
                out.timestamps.append(round(chosen_t, 6))
                target = next(pending, None)
            previous = (t, frame)
    except av.error.FFmpegError as exc:
        raise VideoError("decode_error", path, f"decoding failed near {start}s ({exc})") from exc
    if target is not None and previous is not None and len(out) < count:
        # The stream ended before the last wanted times: the last frame is the nearest one.
        while target is not None:
            if size is None:
                size = _target_size(previous[1], options)
            out.frames.append(_to_rgb(reformatter, previous[1], size))
            out.timestamps.append(round(previous[0], 6))
            target = next(pending, None)
    if not out.frames:
        raise VideoError("decode_error", path, f"no frame decodes in {start}s..{end}s")
    out.height, out.width = out.frames[0].shape[:2]
    return out


def _target_size(frame: av.VideoFrame, options: dict[str, Any]) -> tuple[int, int]:
    rotation = int(getattr(frame, "rotation", 0) or 0) % 360
    height, width = frame.height, frame.width
    if rotation in (90, 270):
        height, width = width, height
    return smart_resize(
        height,
        width,
        factor=options.get("factor", IMAGE_FACTOR),
        min_pixels=options.get("min_pixels", VIDEO_MIN_PIXELS),
        max_pixels=options.get("max_pixels", VIDEO_MAX_PIXELS),
    )


def _to_rgb(reformatter: VideoReformatter, frame: av.VideoFrame, size: tuple[int, int]) -> np.ndarray:
    height, width = size
    rotation = int(getattr(frame, "rotation", 0) or 0) % 360
    if rotation in (90, 270):
        height, width = width, height
    image = reformatter.reformat(frame, width, height, format="rgb24", interpolation="BICUBIC").to_ndarray()
    if rotation:
        # Display rotation is counter-clockwise; rot90 turns counter-clockwise for positive k.
        image = np.ascontiguousarray(np.rot90(image, k=rotation // 90))
    return image
