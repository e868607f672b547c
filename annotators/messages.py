"""Video and images in chat messages: sampled frames as JPEG data URLs, or a video_url.

A recipe's prompt puts a `video_segment(path, start_s, end_s)` part in its message;
the client turns it into what the endpoint takes (`expand_video`), so recipes never
know whether a server reads frames or whole clips.
"""

from __future__ import annotations

import base64
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from vdata.annotators.endpoints import Endpoint
from vdata.video import SampledFrames, sample_frames


def jpeg_data_url(frame: np.ndarray, quality: int = 85) -> str:
    """An RGB frame as a data:image/jpeg URL."""
    import cv2

    ok, encoded = cv2.imencode(".jpg", frame[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return "data:image/jpeg;base64," + base64.b64encode(encoded.tobytes()).decode("ascii")


def frames_content(sampled: SampledFrames, text: str, *, quality: int = 85) -> list[dict[str, Any]]:
    """Each frame after a line with its time, then the text."""
    parts: list[dict[str, Any]] = []
    for timestamp, frame in zip(sampled.timestamps, sampled.frames, strict=True):
        parts.append({"type": "text", "text": f"Frame at {timestamp:.1f}s:"})
        parts.append({"type": "image_url", "image_url": {"url": jpeg_data_url(frame, quality)}})
    parts.append({"type": "text", "text": text})
    return parts


def video_url_content(path: str | Path, start_s: float, end_s: float, text: str) -> list[dict[str, Any]]:
    """The clip re-encoded exactly and sent whole, for servers that take video (vLLM, Qwen2.5-VL)."""
    from vdata.segment import cut_exact

    with tempfile.TemporaryDirectory(prefix="vdata-clip-") as folder:
        clip = cut_exact(path, start_s, end_s, Path(folder) / "clip.mp4", crf=23)
        data = Path(clip.path).read_bytes()
    url = "data:video/mp4;base64," + base64.b64encode(data).decode("ascii")
    return [{"type": "video_url", "video_url": {"url": url}}, {"type": "text", "text": text}]


def video_content(
    endpoint: Endpoint,
    path: str | Path,
    start_s: float,
    end_s: float,
    text: str,
    *,
    fps: float = 1.0,
    max_frames: int = 16,
    max_pixels: int = 256 * 28 * 28,
    quality: int = 85,
) -> list[dict[str, Any]]:
    """A clip as the endpoint takes it: sampled frames with their times, or a video_url."""
    if endpoint.video_input == "video_url":
        return video_url_content(path, start_s, end_s, text)
    sampled = sample_frames(
        path, start_s, end_s, fps=fps, min_frames=2, max_frames=max_frames, max_pixels=max_pixels
    )
    return frames_content(sampled, text, quality=quality)


VIDEO_SEGMENT = "video_segment"


def video_segment(
    path: str | Path, start_s: float, end_s: float, *, max_frames: int = 16, max_pixels: int = 256 * 28 * 28
) -> dict[str, Any]:
    """A message part that stands for a clip; the client expands it for the endpoint."""
    return {
        "type": VIDEO_SEGMENT,
        "video": str(path),
        "start_s": start_s,
        "end_s": end_s,
        "max_frames": max_frames,
        "max_pixels": max_pixels,
    }


def expand_video(messages: list[dict[str, Any]], endpoint: Endpoint) -> list[dict[str, Any]]:
    """The messages with each video_segment part turned into frames or a video_url."""
    if not has_video(messages):
        return messages
    expanded = []
    for message in messages:
        content = message.get("content")
        if not _has_segment(message):
            expanded.append(message)
            continue
        parts: list[dict[str, Any]] = []
        for part in content:
            if part.get("type") != VIDEO_SEGMENT:
                parts.append(part)
                continue
            clip = video_content(
                endpoint,
                part["video"],
                part["start_s"],
                part["end_s"],
                "",
                fps=part["max_frames"] / max(0.5, part["end_s"] - part["start_s"]),
                max_frames=part["max_frames"],
                max_pixels=part["max_pixels"],
            )
            parts += [p for p in clip if not (p.get("type") == "text" and not p.get("text"))]
        expanded.append({**message, "content": parts})
    return expanded


def has_video(messages: list[dict[str, Any]]) -> bool:
    return any(_has_segment(m) for m in messages)


def _has_segment(message: dict[str, Any]) -> bool:
    content = message.get("content")
    return isinstance(content, list) and any(
        isinstance(p, dict) and p.get("type") == VIDEO_SEGMENT for p in content
    )
