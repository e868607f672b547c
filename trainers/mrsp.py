"""MR-SP for the GRPO trainer (Long-RL's multi-modal sequence parallelism; ../shared/MRSP.md).

Stage 1, encode once: a video's temporal patches are split over the sequence-parallel
ranks (contiguous, uneven counts allowed), each rank runs the vision tower on its own
patches, and the merged tokens are all-gathered in rank order. Qwen-VL's vision tower is
frame-local (one attention segment per temporal patch, spatial-only rotary positions), so
the gathered tokens equal the whole video's, which the tests check; the embeddings then
serve the whole step instead of being recomputed per response and per forward.

Status (issue 23): stage 1, and the rollout from its tokens (`cache_video: true`: each
prompt's video goes through the vision tower once instead of group_size times, same
metrics as the pixel path). Prefill once for G decodes, the log-prob forwards from the
tokens, Ulysses attention in the long forward (`sp`), `train_vision`, the torchrun launch
and the GPU measurements are still to come.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from vdata.trainers.video_inputs import VideoInputs


@dataclass(frozen=True)
class SPGroup:
    """This process's place in a sequence-parallel group (size 1: no parallelism)."""

    rank: int = 0
    size: int = 1
    group: Any = None  # a torch.distributed process group; None: the default (world) group

    @classmethod
    def world(cls) -> SPGroup:
        """The whole torch.distributed world as one group (torchrun), or size 1 without it."""
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()):
            return cls()
        return cls(dist.get_rank(), dist.get_world_size())


def valid_sp_sizes(heads: int, kv_heads: int) -> list[int]:
    """The sequence-parallel sizes Ulysses attention can split: the query heads divide evenly,
    and the KV heads either divide evenly or are replicated to `size` (size a multiple of them)."""
    return [n for n in range(1, heads + 1) if heads % n == 0 and (kv_heads % n == 0 or n % kv_heads == 0)]


def check_heads(text_config: Any, size: int) -> None:
    """Refuses a sequence-parallel size the language model's heads cannot be split over,
    naming the sizes that work."""
    heads = text_config.num_attention_heads
    kv_heads = getattr(text_config, "num_key_value_heads", None) or heads
    valid = valid_sp_sizes(heads, kv_heads)
    if size not in valid:
        raise ValueError(
            f"sp={size}: the language model's {heads} attention heads ({kv_heads} key/value heads) cannot "
            f"be split over {size} ranks; sp can be {', '.join(map(str, valid))}"
        )


def frame_shards(temporal_patches: int, size: int) -> list[tuple[int, int]]:
    """Each rank's [start, end) of a video's temporal patches: contiguous, the first
    `temporal_patches % size` ranks one more; a rank past the end gets an empty range."""
    if size < 1:
        raise ValueError(f"sequence-parallel size {size}: at least 1")
    base, extra = divmod(temporal_patches, size)
    shards, start = [], 0
    for rank in range(size):
        end = start + base + (rank < extra)
        shards.append((start, end))
        start = end
    return shards


def _vision_model(model: Any) -> Any:
    """The model that has `get_video_features` (under LoRA, peft's base model)."""
    return getattr(model, "get_base_model", lambda: model)()


def encode_patches(model: Any, video: VideoInputs, start: int, end: int) -> torch.Tensor:
    """The merged video tokens of temporal patches [start, end) of `video` (rows of
    `pixel_values_videos` are temporal-patch major, so they are one contiguous block)."""
    t, h, w = (int(x) for x in video.video_grid_thw[0].tolist())
    if not 0 <= start <= end <= t:
        raise ValueError(f"temporal patches [{start}, {end}) outside the video's {t}")
    base = _vision_model(model)
    merge = base.config.vision_config.spatial_merge_size
    device = next(base.parameters()).device
    if end == start:
        return torch.zeros(0, _hidden(model), dtype=_dtype(model), device=device)
    rows = video.pixel_values_videos[start * h * w : end * h * w].to(device)
    grid = torch.tensor([[end - start, h, w]], device=device)
    tokens = base.get_video_features(rows, grid).pooler_output[0]
    if tokens.shape[0] != (end - start) * h * w // merge**2:
        raise RuntimeError(
            f"the vision tower gave {tokens.shape[0]} tokens for {end - start} temporal patches"
        )
    return tokens


def encode_video(
    model: Any, video: VideoInputs, sp: SPGroup | None = None, *, grad: bool = False
) -> torch.Tensor:
    """Stage 1: the video's merged tokens (tokens, hidden), each rank encoding its share of
    the temporal patches, gathered in rank order on every rank. `grad=False` (a frozen
    vision tower) encodes without autograd."""
    sp = sp or SPGroup()
    t = int(video.video_grid_thw[0, 0])
    shards = frame_shards(t, sp.size)
    start, end = shards[sp.rank]
    with torch.set_grad_enabled(grad):
        local = encode_patches(model, video, start, end)
    if sp.size == 1:
        return local
    if grad:
        raise NotImplementedError("a trainable vision tower under sequence parallelism is still to come")
    import torch.distributed as dist

    _, h, w = (int(x) for x in video.video_grid_thw[0].tolist())
    per_patch = h * w // _vision_model(model).config.vision_config.spatial_merge_size ** 2
    longest = max(e - s for s, e in shards) * per_patch
    padded = torch.zeros(longest, _hidden(model), dtype=local.dtype, device=local.device)
    padded[: local.shape[0]] = local
    gathered = [torch.empty_like(padded) for _ in range(sp.size)]
    dist.all_gather(gathered, padded, group=sp.group)
    return torch.cat([part[: (e - s) * per_patch] for part, (s, e) in zip(gathered, shards, strict=True)])


def _hidden(model: Any) -> int:
    """The width of a merged video token: the language model's (the tokens replace its embeddings)."""
    return _vision_model(model).config.text_config.hidden_size


def _dtype(model: Any) -> torch.dtype:
    return next(_vision_model(model).parameters()).dtype
