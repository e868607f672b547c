"""GRPO step time on one GPU: a Qwen2.5-VL-architecture model at 3B size (random init) on
16-frame videos (issue 9's GPU check).

Reports step time by phase (generate, score, log-prob, update), tokens/s per GPU, peak
memory and model FLOPs utilisation (MFU: tokens x 6 x parameters for the update, x 2 for
the forward-only phases, over the GPU's dense bf16 peak: 989 TFLOP/s for H100/H200 SXM;
attention FLOPs are left out, so MFU is a lower bound), beside EasyR1's published
1,600-2,000 tokens/s/GPU for a 7B model on H100 (images).
Tokens are prompt tokens (video included) of every response plus the response tokens, the
way EasyR1 counts them. A random-init model never stops early: every response runs to
max_new_tokens.

    python benchmarks/grpo_gpu.py [--steps 4] [--group-size 8] [--prompts 4] [--new-tokens 256]
        [--side 336] [--out benchmarks/results/grpo_gpu.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _importable_checkout() -> None:
    """Lets an uninstalled checkout import vdata.trainers (the GPU machine has no install)."""
    root = Path(__file__).resolve().parent.parent
    sys.path.insert(0, str(root))
    import vdata

    if not any(Path(p).resolve() == root for p in vdata.__path__):
        vdata.__path__.append(str(root))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=4, help="the first is warm-up, not averaged")
    parser.add_argument("--group-size", type=int, default=8)
    parser.add_argument("--prompts", type=int, default=4)
    parser.add_argument("--new-tokens", type=int, default=256)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--side", type=int, default=336, help="frame side in pixels (a multiple of 28)")
    parser.add_argument("--gradient-checkpointing", action="store_true")
    parser.add_argument(
        "--out",
        type=Path,
        default=Path(__file__).parent / "results" / "grpo_gpu.json",
        help="where the JSON goes (results/grpo_gpu_h100.json, _h200.json hold the runs so far)",
    )
    args = parser.parse_args()
    _importable_checkout()
    import torch

    from vdata.trainers.config import GRPOConfig
    from vdata.trainers.random_init import QWEN25_VL_3B, word_tokenizer
    from vdata.trainers.train import TrainingData, train

    rng = np.random.default_rng(0)
    rows = [
        {
            "id": f"q{i}",
            "problem": "Which colour is the ball?",
            "problem_type": "multiple choice",
            "options": ["A. red", "B. blue", "C. green", "D. gray"],
            "solution": "<answer>B</answer>",
            "frames": rng.integers(0, 255, (args.frames, args.side, args.side, 3), dtype=np.uint8),
        }
        for i in range(args.prompts * args.steps)
    ]
    with tempfile.TemporaryDirectory() as folder:
        word_tokenizer(
            ["Which", "colour", "is", "the", "ball", "red", "blue", "green", "gray"], Path(folder) / "tok"
        )
        config = GRPOConfig(
            data="(in memory)",
            out=str(Path(folder) / "run"),
            model_spec=QWEN25_VL_3B,
            tokenizer=str(Path(folder) / "tok"),
            dtype="bfloat16",
            frames=args.frames,
            prompts_per_step=args.prompts,
            group_size=args.group_size,
            max_new_tokens=args.new_tokens,
            steps=args.steps,
            lr=1e-6,
            gradient_checkpointing=args.gradient_checkpointing,
            save_every=10**9,
        )
        started = time.perf_counter()
        summary = train(config, data=TrainingData(rows, None), log=lambda line: print(line, flush=True))
        total_s = time.perf_counter() - started
    measured = [m for m in summary.metrics[1:] if "skipped" not in m] or summary.metrics
    parameters = _parameters(QWEN25_VL_3B, Path(__file__))
    keys = (
        "generate_s",
        "score_s",
        "logprob_s",
        "update_s",
        "step_s",
        "tokens",
        "tokens_per_s",
        "response_length",
    )
    mean = {k: round(sum(m[k] for m in measured) / len(measured), 3) for k in keys}
    peak = peak_flops(torch.cuda.get_device_name() if torch.cuda.is_available() else "")
    mfu = {}
    if peak:
        for phase, factor in (("update_s", 6), ("logprob_s", 2), ("generate_s", 2)):
            if mean[phase] > 0:
                mfu[phase.replace("_s", "")] = round(
                    mean["tokens"] * factor * parameters / mean[phase] / peak, 4
                )
    result = {
        "benchmark": "grpo_gpu",
        "model": "Qwen2.5-VL architecture, 3B shapes (random init), bfloat16, full fine-tuning, AdamW",
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
        "gpus": 1,
        "setup": {
            "frames": args.frames,
            "frame_side": args.side,
            "prompts_per_step": args.prompts,
            "group_size": args.group_size,
            "max_new_tokens": args.new_tokens,
            "gradient_checkpointing": args.gradient_checkpointing,
            "rollout": "Hugging Face generate",
        },
        "steps_measured": len(measured),
        "per_step_mean": mean,
        "tokens_per_s_per_gpu": mean["tokens_per_s"],
        "peak_memory_gb": round(max(m["peak_memory_gb"] for m in summary.metrics), 2),
        "parameters": parameters,
        "peak_bf16_flops": peak,
        "mfu": mfu,
        "baseline": {"name": "EasyR1, 7B, H100, images (published)", "tokens_per_s_per_gpu": [1600, 2000]},
        "ratio_to_baseline_low": round(mean["tokens_per_s"] / 1600, 3),
        "steps": summary.metrics,
        "total_s": round(total_s, 1),
        "python": platform.python_version(),
        "torch": torch.__version__,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "steps"}, indent=2, default=str))


PEAK_BF16_FLOPS = {"H100": 989e12, "H200": 989e12}  # dense bf16, SXM


def peak_flops(device_name: str) -> float | None:
    """The dense bf16 peak of a GPU named so (None: a kind not listed, or no GPU)."""
    return next((flops for kind, flops in PEAK_BF16_FLOPS.items() if kind in device_name), None)


def _parameters(spec, here: Path) -> int:
    """The model's parameter count, from a copy built on the meta device (no memory)."""
    import tempfile

    import torch
    import transformers

    from vdata.trainers.random_init import qwen_vl_config, word_tokenizer

    with tempfile.TemporaryDirectory() as folder:
        tokenizer = word_tokenizer(["x"], Path(folder) / "tok")
    with torch.device("meta"):
        model = transformers.Qwen2_5_VLForConditionalGeneration._from_config(qwen_vl_config(spec, tokenizer))
    return sum(p.numel() for p in model.parameters())


if __name__ == "__main__":
    main()
