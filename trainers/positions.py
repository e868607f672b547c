"""Qwen2-VL / Qwen2.5-VL 3D rotary positions, by the rule the models were trained with.

The rule (qwen-vl-utils and transformers 4.57's `get_rope_index`): text tokens count
up by one on all three axes; a video's tokens take (t x interval, h, w) offset by the
position where the video starts, with interval = tokens_per_second x seconds per
temporal patch for Qwen2.5-VL (1 for Qwen2-VL); the text after a video starts at the
video's largest position + 1. transformers 5 resumes the text at the start plus
max(h, w) instead, which differs as soon as a video has more temporal patches than
spatial ones (a 16-frame video of 448x448 in Qwen2-VL: 8 temporal patches, 16 merged
rows): the text after the video would sit at other positions than in pretraining.
`use_reference_positions` puts this rule on a loaded model, for training forwards and
generation alike (the model calls its `get_rope_index` in both).
"""

from __future__ import annotations

import types
from typing import Any

import torch


def rope_index(
    model: Any, input_ids: torch.Tensor, *args: Any, **kwargs: Any
) -> tuple[torch.Tensor, torch.Tensor]:
    """(position_ids (3, B, L), rope deltas (B, 1)) for a batch, padding (attention 0) left at 0.
    Takes the arguments as any transformers version passes them: by name, or in the positional
    order of 5.x (mm_token_type_ids, image_grid_thw, video_grid_thw, ...) or of 4.x
    (image_grid_thw, video_grid_thw, second_per_grid_ts, attention_mask)."""
    names = ["image_grid_thw", "video_grid_thw", "second_per_grid_ts", "attention_mask"]
    if args and torch.is_tensor(args[0]) and args[0].shape == input_ids.shape:
        names = [
            "mm_token_type_ids",
            "image_grid_thw",
            "video_grid_thw",
            "second_per_grid_ts",
            "attention_mask",
        ]
    kwargs.update(zip(names, args, strict=False))
    mm_token_type_ids = kwargs.get("mm_token_type_ids")
    image_grid_thw, video_grid_thw = kwargs.get("image_grid_thw"), kwargs.get("video_grid_thw")
    second_per_grid_ts, attention_mask = kwargs.get("second_per_grid_ts"), kwargs.get("attention_mask")
    config = model.config
    vision = getattr(config, "vision_config", config)
    merge = vision.spatial_merge_size
    per_second = getattr(vision, "tokens_per_second", None)
    if mm_token_type_ids is None:
        mm_token_type_ids = (input_ids == config.video_token_id).int() * 2 + (
            input_ids == config.image_token_id
        ).int()
    grids = {
        1: iter(image_grid_thw if image_grid_thw is not None else []),
        2: iter(video_grid_thw if video_grid_thw is not None else []),
    }
    seconds = iter(second_per_grid_ts.tolist() if second_per_grid_ts is not None else [])
    positions = torch.zeros(3, *input_ids.shape, dtype=torch.long, device=input_ids.device)
    deltas = []
    for b in range(input_ids.shape[0]):
        keep = (
            attention_mask[b].bool()
            if attention_mask is not None
            else torch.ones_like(input_ids[b], dtype=torch.bool)
        )
        kinds = mm_token_type_ids[b][keep].tolist()
        parts, start, i = [], 0, 0
        while i < len(kinds):
            j = i
            while j < len(kinds) and kinds[j] == kinds[i]:
                j += 1
            if kinds[i] == 0:
                parts.append(torch.arange(start, start + j - i).expand(3, -1))
            else:
                t, h, w = (int(x) for x in next(grids[kinds[i]]))
                interval = 1.0
                if kinds[i] == 2 and per_second is not None:  # Qwen2.5-VL: time in seconds
                    interval = per_second * float(next(seconds, 1.0))
                grid_t = (
                    torch.arange(t).view(-1, 1).expand(-1, (h // merge) * (w // merge)) * interval
                ).long()
                grid_h = torch.arange(h // merge).view(1, -1, 1).expand(t, -1, w // merge)
                grid_w = torch.arange(w // merge).view(1, 1, -1).expand(t, h // merge, -1)
                block = torch.stack([grid_t.flatten(), grid_h.flatten(), grid_w.flatten()]) + start
                if block.shape[1] != j - i:
                    raise ValueError(f"{j - i} vision tokens for a grid of {block.shape[1]}")
                parts.append(block)
            start = int(parts[-1].max()) + 1
            i = j
        row = torch.cat(parts, dim=1) if parts else torch.zeros(3, 0, dtype=torch.long)
        positions[:, b, keep] = row.to(positions.device)
        deltas.append(start - len(kinds))
    return positions, torch.tensor(deltas, device=input_ids.device).unsqueeze(1)


def use_reference_positions(model: Any) -> None:
    """Makes a Qwen2-VL / Qwen2.5-VL model (or its peft wrapper) compute positions by
    `rope_index`: every module of it whose class has `get_rope_index` gets this one."""
    patched = 0
    for module in model.modules():
        if hasattr(type(module), "get_rope_index"):
            module.get_rope_index = types.MethodType(rope_index, module)
            patched += 1
    if not patched:
        raise ValueError("not a Qwen2-VL-family model: no get_rope_index to replace")
