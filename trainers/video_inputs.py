"""Frames as Qwen2-VL / Qwen2.5-VL video inputs, the way the processor lays them out.

Frames come from the kernel's sampler (vdata.video, qwen-vl-utils conventions:
sides multiples of 28, an even frame count). Two consecutive frames make one
temporal patch; each 14x14 patch of both is one row of `pixel_values_videos`,
ordered so that each 2x2 block of patches (merged into one token by the model)
is contiguous. Written here because transformers' video processor needs
torchvision, which has no CPU build beside the CPU torch we use.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

# CLIP normalisation, as Qwen2-VL's processor uses
MEAN = np.array([0.48145466, 0.4578275, 0.40821073], dtype=np.float32)
STD = np.array([0.26862954, 0.26130258, 0.27577711], dtype=np.float32)


@dataclass
class VideoInputs:
    pixel_values_videos: torch.Tensor  # (patches, 3 * temporal * patch * patch)
    video_grid_thw: torch.Tensor  # (1, 3): temporal, height and width in patches
    # seconds of video per temporal patch (temporal / sampling fps): Qwen2.5-VL's time axis
    second_per_grid: float | None = None

    @property
    def tokens(self) -> int:
        """How many <|video_pad|> tokens stand for this video in the prompt (after 2x2 merging)."""
        t, h, w = self.video_grid_thw[0].tolist()
        return t * h * w // 4


def video_inputs(
    frames: Any, *, fps: float | None = None, patch: int = 14, temporal: int = 2, merge: int = 2
) -> VideoInputs:
    """Frames (T, H, W, 3) uint8 as model inputs, or the kernel's SampledFrames (whose
    timestamps give the sampling fps). T is padded to a multiple of `temporal` by repeating
    the last frame; H and W must be multiples of patch x merge (28)."""
    stamps = getattr(frames, "timestamps", None)
    if stamps is not None:
        if fps is None and len(stamps) >= 2 and stamps[-1] > stamps[0]:
            fps = (len(stamps) - 1) / (stamps[-1] - stamps[0])
        frames = frames.frames
    video = np.asarray(frames, dtype=np.float32)
    if video.ndim != 4 or video.shape[-1] != 3:
        raise ValueError(f"frames must be (T, H, W, 3); got {video.shape}")
    frames_count, height, width, _ = video.shape
    if height % (patch * merge) or width % (patch * merge):
        raise ValueError(f"frame size {height}x{width} is not a multiple of {patch * merge}")
    if frames_count % temporal:
        video = np.concatenate([video, np.repeat(video[-1:], temporal - frames_count % temporal, axis=0)])
    video = (video / 255.0 - MEAN) / STD
    video = video.transpose(0, 3, 1, 2)  # T, C, H, W
    grid_t, grid_h, grid_w = video.shape[0] // temporal, height // patch, width // patch
    patches = video.reshape(
        grid_t, temporal, 3, grid_h // merge, merge, patch, grid_w // merge, merge, patch
    ).transpose(0, 3, 6, 4, 7, 2, 1, 5, 8)
    flat = patches.reshape(grid_t * grid_h * grid_w, 3 * temporal * patch * patch)
    return VideoInputs(
        torch.from_numpy(np.ascontiguousarray(flat)),
        torch.tensor([[grid_t, grid_h, grid_w]]),
        temporal / fps if fps else None,
    )
