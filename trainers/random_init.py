"""Random-init Qwen2-VL-architecture models and a word tokenizer, made without downloads.

Tests run a tiny one on CPU; the GPU benchmark a 3B-sized Qwen2.5-VL. The
tokenizer knows Qwen's chat and vision tokens and the reward tags as single
tokens, plus the words it is given.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

QWEN_SPECIAL = [
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
    "<|video_pad|>", "<|image_pad|>", "<think>", "</think>", "<answer>", "</answer>",
]  # fmt: skip
_SPLIT = r"<\|[a-z_]+\|>|</?think>|</?answer>|\s|[A-Za-z]+|\d|."

# Qwen2.5-VL-3B-Instruct's shapes (its config.json), for a random-init model of that size
QWEN25_VL_3B: dict[str, Any] = {
    "model_type": "qwen2_5_vl",
    "text_config": {
        "hidden_size": 2048, "intermediate_size": 11008, "num_hidden_layers": 36,
        "num_attention_heads": 16, "num_key_value_heads": 2, "max_position_embeddings": 128000,
        "rope_theta": 1000000.0, "rms_norm_eps": 1e-6, "vocab_size": 151936, "tie_word_embeddings": True,
        "rope_scaling": {"type": "mrope", "mrope_section": [16, 24, 24]},
    },
    "vision_config": {
        "depth": 32, "hidden_size": 1280, "intermediate_size": 3420, "num_heads": 16, "out_hidden_size": 2048,
        "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2, "window_size": 112,
        "fullatt_block_indexes": [7, 15, 23, 31], "in_chans": 3,
    },
}  # fmt: skip

# Qwen2.5-VL-7B-Instruct's shapes (the MR-SP benchmark's larger model)
QWEN25_VL_7B: dict[str, Any] = {
    "model_type": "qwen2_5_vl",
    "text_config": {
        "hidden_size": 3584, "intermediate_size": 18944, "num_hidden_layers": 28,
        "num_attention_heads": 28, "num_key_value_heads": 4, "max_position_embeddings": 128000,
        "rope_theta": 1000000.0, "rms_norm_eps": 1e-6, "vocab_size": 152064, "tie_word_embeddings": False,
        "rope_scaling": {"type": "mrope", "mrope_section": [16, 24, 24]},
    },
    "vision_config": {
        "depth": 32, "hidden_size": 1280, "intermediate_size": 3420, "num_heads": 16, "out_hidden_size": 3584,
        "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2, "window_size": 112,
        "fullatt_block_indexes": [7, 15, 23, 31], "in_chans": 3,
    },
}  # fmt: skip

TINY_QWEN2_5_VL: dict[str, Any] = {
    "model_type": "qwen2_5_vl",
    "text_config": {
        "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
        "num_key_value_heads": 2, "max_position_embeddings": 1024, "tie_word_embeddings": True,
        "rope_scaling": {"type": "mrope", "mrope_section": [1, 1, 2]},
    },
    "vision_config": {
        "depth": 1, "hidden_size": 32, "intermediate_size": 64, "num_heads": 2, "out_hidden_size": 32,
        "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2, "window_size": 56,
        "fullatt_block_indexes": [0], "in_chans": 3,
    },
}  # fmt: skip

TINY_QWEN2_VL: dict[str, Any] = {
    "model_type": "qwen2_vl",
    "text_config": {
        "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
        "num_key_value_heads": 2, "max_position_embeddings": 1024,
        "rope_scaling": {"type": "mrope", "mrope_section": [1, 1, 2]},
    },
    "vision_config": {
        "depth": 1, "embed_dim": 32, "hidden_size": 32, "num_heads": 2, "mlp_ratio": 2,
        "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2, "in_channels": 3,
    },
}  # fmt: skip


def word_tokenizer(words: list[str], out: str | Path | None = None) -> Any:
    """A word-level fast tokenizer: Qwen's special tokens, then `words`, single characters and
    digits. Saved to `out` when given (loadable with AutoTokenizer)."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    chat = ["system", "user", "assistant", "You", "are", "a", "helpful"]  # the chat turns' own words
    base = list(
        dict.fromkeys([*QWEN_SPECIAL, *chat, *words, " ", "\n", *".,?!:;()-", *"0123456789", "[UNK]"])
    )
    tokenizer = Tokenizer(models.WordLevel({t: i for i, t in enumerate(base)}, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Split(Regex(_SPLIT), behavior="isolated")
    tokenizer.decoder = decoders.Fuse()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, unk_token="[UNK]", eos_token="<|im_end|>", pad_token="<|endoftext|>"
    )
    if out is not None:
        fast.save_pretrained(str(out))
    return fast


def qwen_vl_config(spec: dict[str, Any], tokenizer: Any) -> Any:
    """A transformers config for `spec` (TINY_QWEN2_VL, QWEN25_VL_3B or alike) whose special
    token ids are the tokenizer's."""
    from transformers import Qwen2_5_VLConfig, Qwen2VLConfig

    ids = {name: tokenizer.convert_tokens_to_ids(token) for name, token in (
        ("video_token_id", "<|video_pad|>"), ("image_token_id", "<|image_pad|>"),
        ("vision_start_token_id", "<|vision_start|>"), ("vision_end_token_id", "<|vision_end|>"),
    )}  # fmt: skip
    special = {
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
        "bos_token_id": None,
    }
    text = {"vocab_size": max(len(tokenizer), 1), **spec["text_config"], **special}
    if spec["text_config"].get("vocab_size"):
        text["vocab_size"] = spec["text_config"]["vocab_size"]
    kind = Qwen2_5_VLConfig if spec["model_type"] == "qwen2_5_vl" else Qwen2VLConfig
    return kind(text_config=text, vision_config=spec["vision_config"], **ids, **special)
