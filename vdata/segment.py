"""Cut videos into clips: fixed-length or scene clips, kept as time ranges.

Files are written only on request (`materialize`): a stream copy whose cut
times snap to keyframes (and are recorded), or an exact re-encode.

Scene detection runs PySceneDetect's AdaptiveDetector on frames that vdata
decodes itself, for speed:
- every frame decoded in full (PySceneDetect's own scores); `fast_decode=True`
  skips the H.264/HEVC in-loop filter (a sixth faster, scores a few percent off);
- frames shrunk by taking every n-th pixel of the Y, U and V planes, with one
  small colour conversion instead of a full-size one;
- the video cut at keyframes into pieces of about 20 s, scanned in parallel
  processes; each piece runs a second into the next, whose detector starts cold,
  and reports the cuts there. The pieces depend on the file alone, so the cuts
  do not depend on the number of processes.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal

import av
import numpy as np

from vdata.orphans import worker_pool
from vdata.video import VIDEO_SUFFIXES, VideoError, open_video, stream_start_s

Mode = Literal["fixed", "scene"]
Materialize = Literal["none", "copy", "exact"]


@dataclass(frozen=True)
class SceneOptions:
    """AdaptiveDetector settings; the defaults are PySceneDetect's command line's (3.0, 2): on
    real footage they find the soft cuts that 3.5/3 misses (benchmarks/split_vs_scenedetect.py)."""

    adaptive_threshold: float = 3.0
    window_width: int = 2
    min_scene_len_s: float = 0.6
    min_content_val: float = 15.0
    detect_width: int = 128  # frames are shrunk to about this width before detection
    frame_skip: int = 0  # look at every (frame_skip + 1)-th frame
    # By default every frame is decoded in full: the scores PySceneDetect itself computes.
    # Fast decoding skips the in-loop (deblocking) filter: a sixth less work, cut times still
    # frame-exact, but scores a few percent off, and a soft cut of bikes.mp4 is missed.
    # (Skipping B-frames as well halves the work and loses soft cuts on real footage.)
    fast_decode: bool = False
    chunk_s: float = 20.0  # length of the pieces decoded in parallel (cut at keyframes)
    warmup_s: float = 1.0  # a piece runs this far into the next, whose detector starts cold


# ---------------------------------------------------------------- clip ranges


def fixed_ranges(duration_s: float, clip_s: float) -> list[tuple[float, float]]:
    """[0, L), [L, 2L), ...; a last clip shorter than L/2 joins the one before it."""
    if clip_s <= 0:
        raise ValueError(f"clip length must be positive, got {clip_s}")
    if duration_s <= 0:
        return []
    count = max(1, math.floor(duration_s / clip_s))
    starts = [i * clip_s for i in range(count)]
    remainder = duration_s - count * clip_s
    if remainder >= clip_s / 2 - 1e-9:
        starts.append(count * clip_s)
    ends = starts[1:] + [duration_s]
    return [(round(s, 6), round(e, 6)) for s, e in zip(starts, ends, strict=True)]


def scene_ranges(
    cuts: Iterable[float],
    duration_s: float,
    *,
    min_clip_s: float = 1.0,
    max_clip_s: float | None = 60.0,
) -> list[tuple[float, float]]:
    """Scenes between cuts; scenes under min_clip_s join a neighbour, long ones split evenly."""
    bounds = [0.0] + sorted(c for c in set(cuts) if 0.0 < c < duration_s) + [duration_s]
    scenes = [[a, b] for a, b in zip(bounds, bounds[1:], strict=False) if b > a]
    merged: list[list[float]] = []
    for scene in scenes:
        if merged and scene[1] - scene[0] < min_clip_s:
            merged[-1][1] = scene[1]  # a tiny scene joins the one before it
        elif merged and merged[-1][1] - merged[-1][0] < min_clip_s:
            merged[-1][1] = scene[1]  # a tiny first scene joins the one after it
        else:
            merged.append(scene)
    out: list[tuple[float, float]] = []
    for start, end in merged:
        pieces = 1 if not max_clip_s else max(1, math.ceil((end - start) / max_clip_s - 1e-9))
        step = (end - start) / pieces
        out += [(round(start + i * step, 6), round(start + (i + 1) * step, 6)) for i in range(pieces)]
    return out


# ---------------------------------------------------------------- scene detection


@dataclass
class SceneScan:
    cuts: list[float]
    frames_seen: int
    decoded_until_s: float
    error: str = ""  # packets that failed to decode (skipped; decoding went on)


def detect_cuts(
    path: str | Path, duration_s: float, options: SceneOptions = SceneOptions(), threads: int | None = None
) -> SceneScan:
    """Cut times (seconds) where a new scene starts, up to `duration_s`."""
    threads = threads or os.cpu_count() or 1
    bounds = chunk_bounds(path, duration_s, options.chunk_s)
    chunks = list(zip(bounds, bounds[1:] + [None], strict=True))
    if threads == 1 or len(chunks) == 1:
        parts = [_scan_chunk(path, start, end, options) for start, end in chunks]
    else:
        parts = _scan_in_processes(path, chunks, options, min(threads, len(chunks)))
    cuts: list[float] = []
    for part in parts:
        for cut in part.cuts:
            if not cuts or cut - cuts[-1] >= options.min_scene_len_s - 1e-6:
                cuts.append(cut)
    errors = [p.error for p in parts if p.error]
    last = parts[-1].decoded_until_s
    return SceneScan(
        cuts=[c for c in cuts if c <= last],
        frames_seen=sum(p.frames_seen for p in parts),
        decoded_until_s=last,
        error="; ".join(errors),
    )


def _scan_in_processes(
    path: str | Path, chunks: list[tuple[float, float | None]], options: SceneOptions, workers: int
) -> list[SceneScan]:
    """Chunks in forked processes: the detector is Python code that holds the GIL, so
    threads would take turns. Forked children start at once with everything imported;
    they only decode and detect (OpenCV pinned to one thread), never touching locks
    that another thread of the parent might hold."""
    starts = [c[0] for c in chunks]
    ends = [c[1] for c in chunks]
    with worker_pool(workers, "fork", initializer=_single_threaded_opencv) as pool:
        n = len(chunks)
        return list(pool.map(_scan_chunk, [path] * n, starts, ends, [options] * n, [1] * n))


def _single_threaded_opencv() -> None:
    import cv2

    cv2.setNumThreads(1)


def chunk_bounds(path: str | Path, duration_s: float, chunk_s: float) -> list[float]:
    """Chunk starts: the keyframe nearest each multiple of chunk_s, so that no chunk
    decodes frames before its start. They depend on the file alone, not on threads."""
    if duration_s <= chunk_s * 1.5:
        return [0.0]
    container, stream = open_video(path)
    origin = stream_start_s(stream)
    keyframes: list[float] = []
    try:
        for packet in container.demux(stream):
            if packet.is_keyframe and packet.pts is not None:
                keyframes.append(float(packet.pts * stream.time_base) - origin)
    except av.error.FFmpegError:
        pass  # a broken tail: the chunks cover what could be read
    finally:
        container.close()
    keyframes = sorted(k for k in keyframes if 0 < k < duration_s)
    bounds = [0.0]
    for i in range(1, math.ceil(duration_s / chunk_s)):
        if not keyframes:
            break
        nearest = min(keyframes, key=lambda k: abs(k - i * chunk_s))
        if nearest - bounds[-1] >= chunk_s / 2 and duration_s - nearest >= chunk_s / 4:
            bounds.append(nearest)
    return bounds


def _scan_chunk(
    path: str | Path, start: float, end: float | None, options: SceneOptions, decode_threads: int = 0
) -> SceneScan:
    """Cuts in [start + guard, end + guard): the detector starts cold at `start` (a keyframe),
    so cuts just after it belong to the chunk before, which runs on past its end. Chunks scanned
    side by side decode on one thread each (`decode_threads`; 0 is FFmpeg's choice)."""
    container, stream = open_video(path)
    stream.thread_count = decode_threads
    if options.fast_decode:
        stream.codec_context.options = {"skip_loop_filter": "all"}
    rate = float(stream.average_rate or stream.guessed_rate or 25)
    detector = AdaptiveCuts(
        adaptive_threshold=options.adaptive_threshold,
        min_scene_len=max(1, round(options.min_scene_len_s * rate)),
        window_width=options.window_width,
        min_content_val=options.min_content_val,
    )
    origin = stream_start_s(stream)
    guard = options.warmup_s if start > 0 else 0.0
    stop = None if end is None else end + options.warmup_s + (options.window_width + 1) / rate
    report_until = None if end is None else end + options.warmup_s
    cuts: list[float] = []
    seen, last_t, index, failures, first_failure = 0, start, 0, 0, ""
    shrink = None

    def frames():
        """Decoded frames, packet by packet: a packet that fails to decode is counted and
        skipped, and decoding picks up again at the next keyframe."""
        nonlocal failures, first_failure
        for packet in container.demux(stream):
            try:
                yield from stream.decode(packet if packet.size else None)
            except av.error.FFmpegError as exc:
                failures += 1
                first_failure = first_failure or f"{exc} near {last_t:.2f}s"

    try:
        if start > 0:
            container.seek(int((start + origin) / stream.time_base), stream=stream, backward=True)
        for frame in frames():
            t = float(frame.pts * stream.time_base) - origin if frame.pts is not None else last_t
            if t < start - 1e-6:
                continue
            if stop is not None and t >= stop:
                break
            last_t = t
            index += 1
            if end is None or t < end:
                seen += 1
            if options.frame_skip and (index - 1) % (options.frame_skip + 1):
                continue
            if shrink is None:
                shrink = _Shrinker(frame, options.detect_width)
            for cut in detector.process(round(t * rate), shrink(frame)):
                at = cut / rate
                if at >= start + guard - 1e-6 and (report_until is None or at < report_until - 1e-6):
                    cuts.append(round(at, 6))
    finally:
        container.close()
    error = f"{failures} packet(s) failed to decode, the first: {first_failure}" if failures else ""
    return SceneScan(cuts=cuts, frames_seen=seen, decoded_until_s=last_t, error=error)


class AdaptiveCuts:
    """PySceneDetect's AdaptiveDetector (0.7), computed as it computes it, score for score:
    a frame's content score is the mean absolute change of hue, saturation and value from the
    frame before; a cut is where the score exceeds `adaptive_threshold` times the mean score of
    the `window_width` frames on each side, and `min_content_val`, at least `min_scene_len`
    frames after the last cut. Its own copy, so that scanning a video does not import
    PySceneDetect (and with it pandas) into every worker; tests/test_segment.py checks that
    both give the same cuts on real frames."""

    def __init__(
        self, adaptive_threshold: float, min_scene_len: int, window_width: int, min_content_val: float
    ):
        if window_width < 1:
            raise ValueError("window_width must be at least 1")
        self.adaptive_threshold = adaptive_threshold
        self.min_scene_len = min_scene_len
        self.window_width = window_width
        self.min_content_val = min_content_val
        self._last_hsv: np.ndarray | None = None
        self._buffer: list[tuple[int, float]] = []
        self._last_cut: int | None = None

    def score(self, bgr: np.ndarray) -> float:
        """ContentDetector's frame score with its default weights (1, 1, 1, edges 0): the sums of
        absolute differences are integers, so OpenCV's float sums are PySceneDetect's exactly."""
        import cv2

        hsv = cv2.cvtColor(bgr, cv2.COLOR_BGR2HSV)
        last, self._last_hsv = self._last_hsv, hsv
        if last is None:
            return 0.0
        pixels = float(hsv.shape[0] * hsv.shape[1])
        hue, sat, lum, _ = cv2.sumElems(cv2.absdiff(hsv, last))
        return (hue / pixels * 1.0 + sat / pixels * 1.0 + lum / pixels * 1.0 + 0.0 * 0.0) / 3.0

    def process(self, frame_num: int, bgr: np.ndarray) -> list[int]:
        """The frame numbers of the cuts this frame confirms (`window_width` frames behind it)."""
        score = self.score(bgr)
        if self._last_cut is None:
            self._last_cut = frame_num
        width = self.window_width
        self._buffer.append((frame_num, score))
        if len(self._buffer) < 1 + 2 * width:
            return []
        self._buffer = self._buffer[-(1 + 2 * width) :]
        target_num, target_score = self._buffer[width]
        window = sum(s for i, (_, s) in enumerate(self._buffer) if i != width) / (2.0 * width)
        ratio = 0.0
        if abs(window) >= 0.00001:
            ratio = min(target_score / window, 255.0)
        elif target_score >= self.min_content_val:
            ratio = 255.0
        if (
            ratio >= self.adaptive_threshold
            and target_score >= self.min_content_val
            and target_num - self._last_cut >= self.min_scene_len
        ):
            self._last_cut = target_num
            return [target_num]
        return []


class _Shrinker:
    """A small BGR image of a frame: every n-th pixel of its planes, one colour conversion."""

    def __init__(self, frame: av.VideoFrame, width: int):
        self.step = max(1, frame.width // max(8, width))
        self.planar = frame.format.name in ("yuv420p", "yuvj420p")
        self.height = (frame.height // self.step) // 2 * 2
        self.width = (frame.width // self.step) // 2 * 2
        from av.video.reformatter import VideoReformatter

        self.reformatter = VideoReformatter()

    def __call__(self, frame: av.VideoFrame) -> np.ndarray:
        import cv2

        if not self.planar or frame.format.name not in ("yuv420p", "yuvj420p"):
            return self.reformatter.reformat(
                frame, self.width, self.height, format="bgr24", interpolation="POINT"
            ).to_ndarray()
        step, h, w = self.step, self.height, self.width
        y = _plane(frame, 0)[::step, ::step][:h, :w]
        u = _plane(frame, 1)[::step, ::step][: h // 2, : w // 2]
        v = _plane(frame, 2)[::step, ::step][: h // 2, : w // 2]
        i420 = np.concatenate([y.reshape(-1), u.reshape(-1), v.reshape(-1)]).reshape(h * 3 // 2, w)
        return cv2.cvtColor(i420, cv2.COLOR_YUV2BGR_I420)


def _plane(frame: av.VideoFrame, index: int) -> np.ndarray:
    plane = frame.planes[index]
    rows = plane.height
    return np.frombuffer(plane, np.uint8).reshape(rows, plane.line_size)[:, : plane.width]


# ---------------------------------------------------------------- materialize


@dataclass
class CutResult:
    path: str
    start_s: float  # the times actually cut (keyframe-snapped for a stream copy)
    end_s: float


def cut_copy(source: str | Path, start_s: float, end_s: float, target: str | Path) -> CutResult:
    """Stream copy of [start_s, end_s): starts at the keyframe at or before start_s and ends
    at the first keyframe at or after end_s (or the end), so every frame decodes."""
    container, stream = open_video(source)
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}{target.suffix}")
    origin = stream_start_s(stream)
    others = [s for s in container.streams.audio[:1]]
    try:
        keyframes = _keyframe_times(container, stream, origin)
        cut_start = max([k for k in keyframes if k <= start_s + 1e-6], default=0.0)
        later = [k for k in keyframes if k >= end_s - 1e-6]
        cut_end = later[0] if later else None
        container.seek(int((cut_start + origin) / stream.time_base), stream=stream, backward=True)
        with av.open(str(tmp), "w", format=_muxer(target)) as output:
            mapping = {stream.index: output.add_stream_from_template(stream)}
            for other in others:
                mapping[other.index] = output.add_stream_from_template(other)
            offsets: dict[int, int] = {}
            last_end = cut_start
            for packet in container.demux([stream, *others]):
                if packet.dts is None or packet.pts is None:
                    continue
                t = float(packet.pts * packet.time_base) - origin
                if packet.stream.index == stream.index:
                    if cut_end is not None and packet.is_keyframe and t >= cut_end - 1e-6:
                        break
                    if t < cut_start - 1e-6:
                        continue
                    last_end = max(last_end, t + float((packet.duration or 0) * packet.time_base))
                elif t < cut_start - 1e-6 or (cut_end is not None and t >= cut_end):
                    continue
                offset = offsets.setdefault(packet.stream.index, packet.dts)
                packet.pts -= offset
                packet.dts -= offset
                packet.stream = mapping[packet.stream.index]
                output.mux(packet)
        os.replace(tmp, target)
    finally:
        container.close()
        tmp.unlink(missing_ok=True)
    return CutResult(str(target), round(cut_start, 6), round(cut_end if cut_end is not None else last_end, 6))


def cut_exact(
    source: str | Path, start_s: float, end_s: float, target: str | Path, crf: int = 18
) -> CutResult:
    """Re-encodes exactly the frames shown in [start_s, end_s) with libx264 (video only)."""
    container, stream = open_video(source)
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}{target.suffix}")
    origin = stream_start_s(stream)
    rate = stream.average_rate or stream.guessed_rate or 25
    first = last = None
    try:
        container.seek(int((start_s + origin) / stream.time_base), stream=stream, backward=True)
        with av.open(str(tmp), "w", format=_muxer(target)) as output:
            encoder = output.add_stream("libx264", rate=rate)
            encoder.options = {"crf": str(crf), "preset": "veryfast"}
            written = 0
            for frame in container.decode(stream):
                t = float(frame.pts * stream.time_base) - origin
                if t < start_s - 1e-6:
                    continue
                if t >= end_s - 1e-6:
                    break
                if written == 0:
                    encoder.width, encoder.height = frame.width // 2 * 2, frame.height // 2 * 2
                    encoder.pix_fmt = "yuv420p"
                    first = t
                image = frame.reformat(encoder.width, encoder.height, format="yuv420p")
                image.pts, image.time_base = written, Fraction(1, 1) / Fraction(rate)
                for packet in encoder.encode(image):
                    output.mux(packet)
                written += 1
                last = t
            for packet in encoder.encode():
                output.mux(packet)
        if first is None:
            raise VideoError("decode_error", source, f"no frame decodes in {start_s}s..{end_s}s")
        os.replace(tmp, target)
    finally:
        container.close()
        tmp.unlink(missing_ok=True)
    return CutResult(str(target), round(first, 6), round(min(end_s, last + 1 / float(rate)), 6))


def _keyframe_times(container: Any, stream: Any, origin: float) -> list[float]:
    times = []
    for packet in container.demux(stream):
        if packet.is_keyframe and packet.pts is not None:
            times.append(float(packet.pts * stream.time_base) - origin)
    container.seek(0, stream=stream, backward=True)
    return sorted(times)


def _muxer(target: Path) -> str:
    return {".mkv": "matroska", ".webm": "webm", ".mov": "mov", ".ts": "mpegts"}.get(
        target.suffix.lower(), "mp4"
    )


# ---------------------------------------------------------------- finding videos


def discover_videos(paths: Sequence[str | Path]) -> list[dict[str, str]]:
    """Input rows for every file asked for: explicit paths as given, and under folders
    every entry named like a video. Nothing is dropped here: entries that are not
    usable (a folder named like a video, a link loop) become rows that the probe
    stage rejects with the reason. A path given that does not exist at all (not even as a
    broken link) is a mistake in the command: ValueError names it."""
    absent = [str(p) for p in paths if not os.path.lexists(p)]
    if absent:
        raise ValueError(f"no such file or folder: {', '.join(absent)}")
    rows: list[dict[str, str]] = []
    for given in paths:
        path = Path(given)
        if path.is_dir() and path.suffix.lower() not in VIDEO_SUFFIXES:
            rows += _walk(path)
        else:
            rows.append({"video": str(path), "found": "argument"})
    return rows


def _walk(root: Path) -> list[dict[str, str]]:
    rows: list[dict[str, str]] = []
    seen: set[str] = set()
    for folder, dirs, files in os.walk(root, followlinks=True):
        real = os.path.realpath(folder)
        if real in seen:
            rows.append({"video": folder, "found": "symlink_loop"})
            dirs[:] = []
            continue
        seen.add(real)
        keep = []
        for name in sorted(dirs):
            if Path(name).suffix.lower() in VIDEO_SUFFIXES:
                rows.append({"video": os.path.join(folder, name), "found": "walk"})
            else:
                keep.append(name)
        dirs[:] = keep
        for name in sorted(files):
            if Path(name).suffix.lower() in VIDEO_SUFFIXES:
                rows.append({"video": os.path.join(folder, name), "found": "walk"})
    return rows
