"""Videos whose content is known exactly: shots separated by hard cuts.

The seed of vdata's synthetic world; tests and benchmarks use it where the
truth (cut times, which frame is shown when) must be known to the frame.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np


def write_shots_video(
    path: Path,
    shots: list[float],
    *,
    fps: int = 25,
    size: tuple[int, int] = (160, 96),
    seed: int = 0,
    gray_index: bool = False,
    rotation: int = 0,
    audio: bool = False,
    faststart: bool = False,
    vfr: bool = False,
) -> list[float]:
    """Writes shots of the given durations separated by hard cuts; returns the cut times.

    Each shot has its own background colour and a moving square. With gray_index,
    every frame is instead a flat grey whose level tells its index: level = 2 * index.
    """
    rng = np.random.default_rng(seed)
    width, height = size
    options = {"movflags": "+faststart"} if faststart else {}
    with av.open(str(path), "w", options=options) as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "ultrafast", "g": str(fps * 2)}
        stream.codec_context.time_base = Fraction(1, fps * 10)
        if rotation:
            stream.set_display_rotation(rotation)
        sound = container.add_stream("aac", rate=16000) if audio else None
        cuts, index, pts = [], 0, 0
        for shot, seconds in enumerate(shots):
            if shot:
                cuts.append(pts / (fps * 10))
            background = rng.integers(0, 256, 3, dtype=np.uint8)
            square = rng.integers(0, 256, 3, dtype=np.uint8)
            for i in range(round(seconds * fps)):
                if gray_index:
                    image = np.full((height, width, 3), (2 * index) % 256, np.uint8)
                else:
                    image = np.empty((height, width, 3), np.uint8)
                    image[:] = background
                    x = (i * 3) % max(1, width - 24)
                    image[30:54, x : x + 24] = square
                frame = av.VideoFrame.from_ndarray(image, format="rgb24")
                frame.pts, frame.time_base = pts, Fraction(1, fps * 10)
                pts += 10 if not vfr else (5 if i % 2 else 15)
                for packet in stream.encode(frame):
                    container.mux(packet)
                index += 1
        for packet in stream.encode():
            container.mux(packet)
        if sound is not None:
            write_tone(container, sound, pts / (fps * 10))
    return cuts


def write_tone(container: av.container.OutputContainer, stream: av.AudioStream, seconds: float) -> None:
    rate = 16000
    samples = np.sin(np.arange(int(seconds * rate)) * 2 * np.pi * 440 / rate).astype(np.float32)
    for start in range(0, samples.size, 1024):
        chunk = samples[start : start + 1024]
        frame = av.AudioFrame.from_ndarray(chunk.reshape(1, -1), format="fltp", layout="mono")
        frame.sample_rate, frame.pts = rate, start
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
