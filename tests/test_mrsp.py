"""MR-SP exactness on CPU (issue 23, in progress): stage 1, encode once. A tiny random-init
Qwen2.5-VL; the parallel checks run two real processes over torch.distributed (gloo)."""

from __future__ import annotations

import os
import tempfile

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="MR-SP needs the train extra")

from vdata.trainers.config import GRPOConfig  # noqa: E402
from vdata.trainers.mrsp import SPGroup, encode_patches, encode_video, frame_shards  # noqa: E402
from vdata.trainers.random_init import TINY_QWEN2_5_VL, word_tokenizer  # noqa: E402
from vdata.trainers.video_inputs import video_inputs  # noqa: E402


def tiny_model(folder: str):
    from vdata.trainers.policy import load_policy

    word_tokenizer(["A", "B"], f"{folder}/tok")
    return load_policy(GRPOConfig(model_spec=TINY_QWEN2_5_VL, tokenizer=f"{folder}/tok", seed=3)).model


def ten_frames():
    """10 frames of 56x56: 5 temporal patches (an odd count: 3 + 2 on two ranks)."""
    return video_inputs(np.random.default_rng(0).integers(0, 255, (10, 56, 56, 3), dtype=np.uint8), fps=2.0)


def test_frame_shards_are_contiguous_and_uneven_where_they_must_be():
    assert frame_shards(5, 2) == [(0, 3), (3, 5)]
    assert frame_shards(8, 4) == [(0, 2), (2, 4), (4, 6), (6, 8)]
    assert frame_shards(1, 2) == [(0, 1), (1, 1)]
    with pytest.raises(ValueError):
        frame_shards(4, 0)


@torch.no_grad()
def test_encoding_the_parts_equals_encoding_the_whole(tmp_path):
    """The vision tower is frame-local: temporal patches encoded in parts give the whole
    video's tokens (what lets stage 1 split a video over ranks)."""
    model = tiny_model(str(tmp_path))
    video = ten_frames()
    whole = encode_patches(model, video, 0, 5)
    assert whole.shape == (5 * 16 // 4, 32)
    parts = torch.cat([encode_patches(model, video, 0, 3), encode_patches(model, video, 3, 5)])
    assert torch.allclose(parts, whole, atol=1e-6, rtol=0)
    assert torch.equal(encode_video(model, video), whole)
    # the tokens are the ones the model's own forward puts in the prompt
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    reference = base.get_video_features(video.pixel_values_videos, video.video_grid_thw).pooler_output[0]
    assert torch.equal(whole, reference)


def _encode_on_rank(rank: int, size: int, folder: str, init: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=size)
    try:
        model = tiny_model(folder)
        video = ten_frames()
        gathered = encode_video(model, video, SPGroup(rank, size))
        torch.save(gathered, os.path.join(folder, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("size", [2, 3])
def test_stage_one_over_ranks_gives_every_rank_the_whole_videos_tokens(tmp_path, size):
    """Real processes, gloo: each rank encodes its share (5 temporal patches on 2 ranks: 3 + 2;
    on 3: 2 + 2 + 1), and after the gather every rank holds the whole video's tokens."""
    import torch.multiprocessing as mp

    init = f"file://{tempfile.mkdtemp(dir=tmp_path)}/rendezvous"
    mp.spawn(_encode_on_rank, args=(size, str(tmp_path), init), nprocs=size, join=True)
    whole = encode_patches(tiny_model(str(tmp_path)), ten_frames(), 0, 5).detach()
    for rank in range(size):
        assert torch.allclose(torch.load(tmp_path / f"rank{rank}.pt"), whole, atol=1e-6, rtol=0)


def test_sampling_from_encoded_video_tokens_equals_sampling_from_pixels(tmp_path):
    """Rollout from stage 1's tokens: two prompts of two videos, n = 2 each, left-padded in one
    `generate`: the greedy tokens and the log-probabilities of the tokens equal the pixel path's,
    and a seeded sample draws the same tokens."""
    from types import SimpleNamespace

    from vdata.trainers.policy import load_policy

    word_tokenizer(["A", "B", "red", "blue"], tmp_path / "tok")
    policy = load_policy(GRPOConfig(model_spec=TINY_QWEN2_5_VL, tokenizer=str(tmp_path / "tok"), seed=3))
    rng = np.random.default_rng(1)
    prompts = []
    for count, question in ((10, "Which A?"), (6, "Which red or blue B?")):
        frames = SimpleNamespace(
            frames=rng.integers(0, 255, (count, 56, 56, 3), dtype=np.uint8),
            timestamps=[i * 0.5 for i in range(count)],
        )
        row = {"problem": question, "options": ["A. red", "B. blue"], "problem_type": "multiple choice"}
        prompts.append(policy.prompt(row, frames))
    tokens = [encode_video(policy.model, p.video) for p in prompts]
    pixels = policy.sample(prompts, 2, max_new_tokens=6, greedy=True, with_logprobs=True)
    cached = policy.sample(prompts, 2, max_new_tokens=6, greedy=True, with_logprobs=True, video_tokens=tokens)
    for (ids_a, mask_a, logp_a), (ids_b, mask_b, logp_b) in zip(pixels, cached, strict=True):
        assert torch.equal(ids_a, ids_b) and torch.equal(mask_a, mask_b)
        assert torch.allclose(logp_a, logp_b, atol=1e-5, rtol=0)
    torch.manual_seed(5)
    drawn = policy.sample(prompts, 2, max_new_tokens=6)
    torch.manual_seed(5)
    again = policy.sample(prompts, 2, max_new_tokens=6, video_tokens=tokens)
    assert all(torch.equal(a[0], b[0]) for a, b in zip(drawn, again, strict=True))
    with pytest.raises(ValueError, match="video tokens for"):
        policy.sample(prompts, 1, max_new_tokens=1, video_tokens=[tokens[0], tokens[0]])


def test_head_counts_that_cannot_be_split_are_refused_with_the_sizes_that_work():
    from types import SimpleNamespace

    from vdata.trainers.mrsp import check_heads, valid_sp_sizes

    assert valid_sp_sizes(28, 4) == [1, 2, 4, 28]  # Qwen2.5-VL-7B: sp 1, 2, 4 (KV heads 4)
    assert valid_sp_sizes(16, 2) == [1, 2, 4, 8, 16]  # 3B: KV heads replicated beyond 2
    check_heads(SimpleNamespace(num_attention_heads=16, num_key_value_heads=2), 8)
    with pytest.raises(
        ValueError, match="sp=8: the language model's 28 attention heads .* sp can be 1, 2, 4, 28"
    ):
        check_heads(SimpleNamespace(num_attention_heads=28, num_key_value_heads=4), 8)


def test_cache_video_encodes_each_video_once_and_trains_the_same(tmp_path):
    """`cache_video: true` (stage 1 in the rollout): the vision tower sees each prompt's
    patches once instead of group_size times, and two steps of training (tiny Qwen2-VL, real
    updates) give the same metrics as the pixel path."""
    import json

    from vdata.trainers.grpo import rollout
    from vdata.trainers.policy import load_policy
    from vdata.trainers.rewards import reward
    from vdata.trainers.train import frame_source, load_training_data, train

    from test_grpo import tiny_config

    runs = {}
    for cached in (False, True):
        config = tiny_config(tmp_path, out=str(tmp_path / f"run-{cached}"), cache_video=cached, steps=2)
        train(config, log=lambda line: None)
        lines = [
            json.loads(line)
            for line in (tmp_path / f"run-{cached}" / "metrics.jsonl").read_text().splitlines()
        ]
        runs[cached] = [
            {
                k: v
                for k, v in m.items()
                if not k.endswith("_s") and k not in ("tokens_per_s", "peak_memory_gb")
            }
            for m in lines
        ]
    assert runs[True] == runs[False] and runs[True][0]["groups"] >= 1

    patches = {}
    for cached in (False, True):
        config = tiny_config(tmp_path, cache_video=cached)
        policy = load_policy(config)
        data = load_training_data(config)
        frames = frame_source(config, data.media_root)
        seen = []
        visual = next(m for name, m in policy.model.named_modules() if name.endswith("visual"))
        visual.register_forward_hook(lambda module, args, out, seen=seen: seen.append(args[0].shape[0]))
        rollout(policy, data.rows[:2], [frames(r) for r in data.rows[:2]], lambda t, r: reward(t, r), config)
        patches[cached] = sum(seen)
    assert patches[False] == config.group_size * patches[True]
