"""Rendering a simulated world to H.264: numpy drawing straight into YUV 4:2:0 planes.

Colours are converted to YUV once, shapes become sprites once, and each frame
is the shot's background copied into one I420 buffer with the sprites painted
over it: no per-frame colour conversion, one copy into the encoder.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import av
import numpy as np

from vdata.synth.world import BACKGROUNDS, COLOURS, OCCLUDER_COLOUR, BodyState, Shot, World


def yuv(rgb: tuple[int, int, int]) -> tuple[int, int, int]:
    """BT.601 limited range, as H.264 players read yuv420p."""
    r, g, b = rgb
    y = 16 + (65.481 * r + 128.553 * g + 24.966 * b) / 255
    u = 128 + (-37.797 * r - 74.203 * g + 112.0 * b) / 255
    v = 128 + (112.0 * r - 93.786 * g - 18.214 * b) / 255
    return round(y), round(u), round(v)


@lru_cache(maxsize=512)
def sprite(shape: str, radius: int, texture: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mask, luma offsets) at full size and the mask at half size, for a shape of `radius`."""
    size = 2 * radius + 1
    yy, xx = np.mgrid[-radius : radius + 1, -radius : radius + 1].astype(np.float32)
    r = float(radius)
    if shape == "circle":
        mask = xx**2 + yy**2 <= r * r
    elif shape == "square":
        mask = (np.abs(xx) <= 0.8 * r) & (np.abs(yy) <= 0.8 * r)
    elif shape == "diamond":
        mask = np.abs(xx) + np.abs(yy) <= r
    elif shape == "triangle":
        mask = (yy <= 0.7 * r) & (yy >= -r + 1.7 * np.abs(xx))
    elif shape == "hexagon":
        mask = (np.abs(yy) <= 0.866 * r) & (np.abs(yy) <= 1.732 * (r - np.abs(xx)))
    else:
        raise ValueError(f"unknown shape {shape!r}")
    offsets = np.zeros((size, size), np.int16)
    if texture == "striped":
        offsets[(np.arange(size) // max(2, radius // 4)) % 2 == 1, :] = -45
    elif texture == "dotted":
        step = max(4, radius // 2)
        dots = ((xx.astype(int) % step) ** 2 + (yy.astype(int) % step) ** 2) <= (step // 4) ** 2
        offsets[dots] = -45
    half = mask[::2, ::2]
    return mask, offsets, half


class FramePainter:
    """Paints a frame's states over its shot's background into one I420 buffer."""

    def __init__(self, width: int, height: int):
        if width % 2 or height % 4:
            raise ValueError(f"{width}x{height}: width must be even and height a multiple of 4")
        self.width, self.height = width, height
        self.buffer = np.empty(width * height * 3 // 2, np.uint8)
        quarter = width * height // 4
        self.y = self.buffer[: width * height].reshape(height, width)
        self.u = self.buffer[width * height : width * height + quarter].reshape(height // 2, width // 2)
        self.v = self.buffer[width * height + quarter :].reshape(height // 2, width // 2)
        self._background: tuple[int, np.ndarray] | None = None

    def background(self, shot: Shot) -> np.ndarray:
        if self._background and self._background[0] == shot.index:
            return self._background[1]
        self.y[:], self.u[:], self.v[:] = yuv(BACKGROUNDS[shot.background])
        # a gentle vertical shade, so that the floor reads as a floor
        shade = np.linspace(0, 18, self.height).astype(np.int16)[:, None]
        self.y[:] = np.clip(self.y.astype(np.int16) - shade, 16, 235).astype(np.uint8)
        if shot.pad:
            x0, y0, x1, y1, colour = shot.pad
            self._rect(x0, y0, x1, y1, yuv(COLOURS[colour]))
        if shot.text:
            import cv2

            cv2.putText(self.y, shot.text, (12, 28), cv2.FONT_HERSHEY_SIMPLEX, 0.7, 235, 2, cv2.LINE_AA)
        self._background = (shot.index, self.buffer.copy())
        return self._background[1]

    def paint(self, shot: Shot, states: list[BodyState]) -> np.ndarray:
        np.copyto(self.buffer, self.background(shot))
        for state in states:
            self._body(state)
        if shot.occluder:
            self._rect(*shot.occluder, yuv(OCCLUDER_COLOUR))
        return self.buffer.reshape(self.height * 3 // 2, self.width)

    def _rect(self, x0: float, y0: float, x1: float, y1: float, colour: tuple[int, int, int]) -> None:
        a, b = max(0, int(x0)), min(self.width, int(x1))
        c, d = max(0, int(y0)), min(self.height, int(y1))
        if a >= b or c >= d:
            return
        self.y[c:d, a:b] = colour[0]
        self.u[c // 2 : d // 2, a // 2 : b // 2] = colour[1]
        self.v[c // 2 : d // 2, a // 2 : b // 2] = colour[2]

    def _body(self, state: BodyState) -> None:
        radius = max(2, int(round(state.radius)))
        mask, offsets, half = sprite(state.shape, radius, state.texture)
        cy, cx = int(round(state.y)) & ~1, int(round(state.x)) & ~1  # even, so the chroma aligns
        top, left = cy - radius, cx - radius
        y0, x0 = max(0, top), max(0, left)
        y1, x1 = min(self.height, top + mask.shape[0]), min(self.width, left + mask.shape[1])
        if y0 >= y1 or x0 >= x1:
            return
        luma, cb, cr = yuv(COLOURS[state.colour])
        window = mask[y0 - top : y1 - top, x0 - left : x1 - left]
        values = np.clip(luma + offsets[y0 - top : y1 - top, x0 - left : x1 - left], 16, 235)
        region = self.y[y0:y1, x0:x1]
        region[window] = values[window]
        hy0, hx0 = (y0 - top + 1) // 2, (x0 - left + 1) // 2
        cy0, cx0 = (top + 2 * hy0) // 2, (left + 2 * hx0) // 2
        cy1, cx1 = min(self.height // 2, (y1 + 1) // 2), min(self.width // 2, (x1 + 1) // 2)
        chroma_window = half[hy0 : hy0 + cy1 - cy0, hx0 : hx0 + cx1 - cx0]
        self.u[cy0:cy1, cx0:cx1][chroma_window] = cb
        self.v[cy0:cy1, cx0:cx1][chroma_window] = cr


def render(
    world: World, path: str | Path, *, preset: str = "ultrafast", crf: int = 23, threads: int = 0
) -> Path:
    """Writes the world as an H.264 MP4 (atomically: a temp file, then a rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}.mp4")
    painter = FramePainter(world.width, world.height)
    shot_of = [shot for shot in world.shots for _ in range(round((shot.end_s - shot.start_s) * world.fps))]
    try:
        with av.open(str(tmp), "w") as container:
            stream = container.add_stream("libx264", rate=world.fps)
            stream.width, stream.height, stream.pix_fmt = world.width, world.height, "yuv420p"
            stream.options = {"preset": preset, "crf": str(crf), "g": str(world.fps * 2)}
            stream.codec_context.thread_count = threads
            for index, states in enumerate(world.frames):
                image = painter.paint(shot_of[min(index, len(shot_of) - 1)], states)
                frame = av.VideoFrame.from_ndarray(image, format="yuv420p")
                frame.pts = index
                for packet in stream.encode(frame):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
