"""What the consumer tests share: a tiny Qwen2-VL processor and model, made here with no
download, that the trainers' own loaders drive as they drive the real ones.

One part is a stand-in, and says so: transformers' Qwen2-VL *video* processor (and
qwen-vl-utils, which the trainers decode videos with) needs torchvision, which has no build
beside the CPU torch this machine runs. `FramesToPatches` takes its place: the same frame
sizes (multiples of 28), the same patch layout (vdata.trainers.video_inputs) and the same
grid, so the processor's own token expansion and the model's own check that video tokens
match video features run for real.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vdata.trainers.random_init import TINY_QWEN2_VL, qwen_vl_config, word_tokenizer
from vdata.trainers.video_inputs import video_inputs
from vdata.video import sample_frames, smart_resize

# a Qwen2-VL chat layout: each video part of a message becomes one placeholder, which the
# processor expands to the video's tokens
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'video' %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif part['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
FRAME_PIXELS = 56 * 56  # tiny frames: a few tokens per video


class FramesToPatches:
    """Stand-in for Qwen2VLVideoProcessor (which needs torchvision): frames of each video,
    resized to sides that are multiples of 28, as pixel_values_videos and video_grid_thw."""

    model_input_names = ["pixel_values_videos", "video_grid_thw"]
    patch_size, temporal_patch_size, merge_size = 14, 2, 2

    def __call__(self, videos: Any = None, images: Any = None, **kwargs: Any) -> dict[str, torch.Tensor]:
        done = [video_inputs(as_frames(video)) for video in videos]
        return {
            "pixel_values_videos": torch.cat([d.pixel_values_videos for d in done]),
            "video_grid_thw": torch.cat([d.video_grid_thw for d in done]),
        }

    preprocess = __call__


def as_frames(video: Any) -> np.ndarray:
    """A video as (T, H, W, 3) uint8 with sides that are multiples of 28: from an array, a
    tensor (T, C, H, W) or a list of PIL images."""
    from PIL import Image

    if isinstance(video, torch.Tensor):
        video = video.permute(0, 2, 3, 1).numpy()
    frames = [np.asarray(f.convert("RGB")) if isinstance(f, Image.Image) else np.asarray(f) for f in video]
    height, width = frames[0].shape[:2]
    h, w = smart_resize(height, width, factor=28, min_pixels=FRAME_PIXELS, max_pixels=FRAME_PIXELS)
    resized = [np.asarray(Image.fromarray(f.astype(np.uint8)).resize((w, h))) for f in frames]
    return np.stack(resized)


def decode(path: str | Path, fps: float = 2.0, max_frames: int = 8) -> np.ndarray:
    """Frames of a video file for a processor: vdata's sampler standing in for qwen-vl-utils'
    fetch_video (which imports torchvision)."""
    sampled = sample_frames(
        path, fps=fps, max_frames=max_frames, min_frames=2, min_pixels=FRAME_PIXELS, max_pixels=FRAME_PIXELS
    )
    return np.stack(sampled.frames)


@contextlib.contextmanager
def _any_video_processor() -> Iterator[None]:
    """ProcessorMixin checks each part's class through a mapping that, without torchvision, has
    no video processors at all; the stand-in is let through that check alone."""
    from transformers.processing_utils import ProcessorMixin

    check = ProcessorMixin.check_argument_for_proper_class

    def let_video_through(self: Any, name: str, argument: Any) -> Any:
        return None if name == "video_processor" else check(self, name, argument)

    ProcessorMixin.check_argument_for_proper_class = let_video_through
    try:
        yield
    finally:
        ProcessorMixin.check_argument_for_proper_class = check


def tiny_processor(words: list[str], folder: Path) -> Any:
    """A real Qwen2VLProcessor (tokenizer of `words`, PIL image processor, the chat template
    above) with FramesToPatches as its video processor; the tokenizer is saved in `folder`."""
    from transformers import Qwen2VLImageProcessorPil, Qwen2VLProcessor

    tokenizer = word_tokenizer(words, folder)
    tokenizer.chat_template = CHAT_TEMPLATE
    with _any_video_processor():
        processor = Qwen2VLProcessor(
            image_processor=Qwen2VLImageProcessorPil(),
            tokenizer=tokenizer,
            video_processor=FramesToPatches(),
            chat_template=CHAT_TEMPLATE,
        )
    return processor


def tiny_model(processor: Any) -> Any:
    """A random-init Qwen2-VL whose token ids are the processor's."""
    from transformers import Qwen2VLForConditionalGeneration

    torch.manual_seed(0)
    return Qwen2VLForConditionalGeneration(qwen_vl_config(TINY_QWEN2_VL, processor.tokenizer)).eval()


def video_tokens(inputs: Any, processor: Any) -> int:
    ids = torch.as_tensor(inputs["input_ids"])
    return int((ids == processor.tokenizer.convert_tokens_to_ids("<|video_pad|>")).sum())


def model_accepts(model: Any, inputs: Any, processor: Any) -> None:
    """One forward pass: Qwen2-VL itself refuses inputs whose video tokens do not match the
    video features (the error a trainer meets at its first step)."""
    keep = ("input_ids", "attention_mask", "mm_token_type_ids", "pixel_values_videos", "video_grid_thw")
    given = {k: v for k, v in inputs.items() if k in keep}
    given["input_ids"] = torch.as_tensor(given["input_ids"]).reshape(1, -1)
    given.setdefault("attention_mask", torch.ones_like(given["input_ids"]))
    given["attention_mask"] = torch.as_tensor(given["attention_mask"]).reshape(1, -1)
    if "mm_token_type_ids" not in given:  # what the processor would have returned beside the ids
        types = processor.create_mm_token_type_ids(given["input_ids"].tolist())
        given["mm_token_type_ids"] = torch.tensor(types)
    with torch.no_grad():
        model(**given)


def words_of(*texts: str) -> list[str]:
    """Every word of the texts, for a word tokenizer that knows them (no [UNK] in a prompt)."""
    import re

    return sorted({w for text in texts for w in re.findall(r"[A-Za-z]+", text)})
