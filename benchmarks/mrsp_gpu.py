"""MR-SP on one and two GPUs: GRPO steps on long videos, today's trainer against MR-SP.

Configurations (the same random-init Qwen2.5-VL shapes, bf16, full fine-tuning with AdamW,
gradient checkpointing, the vision tower frozen, KL to a frozen copy (a reference forward
per step), the same G, prompt and response length; a random-init model never stops early,
so every response runs to --new-tokens; rewards alternate 1, 0 within each group, so groups
have variance and every update moves the weights. The H200 runs of 2026-11-30 scored by a
hash of the response text instead, which was constant: the random model's tokens lie past
the word tokenizer's vocabulary and decode to nothing, so their gradients were zero; the
forward and backward work timed is the same):

  A  today's code path: pixels to every forward (the vision tower runs on G copies in the
     rollout, the reference and the update), G prefills, the whole group per forward;
  B  MR-SP on one GPU: stage 1 (each video encoded once per step, the tower frozen),
     the prompt prefilled once for G decodes, one response per forward (micro-batch 1);
  C  B with sp=2 (Ulysses attention over 2 GPUs; torchrun, 2 processes);
  D  B data-parallel on 2 GPUs (torchrun, 2 processes, a prompt each, the gradients
     all-reduced after the step: its time is added): the fair 2-GPU baseline;
  E  B with shared_prefix (the trainer's default with cache_video): each forward is
     [prompt | r1 | ... | rG], the long prompt computed once instead of G times;
  F  E with sp=2 (torchrun, 2 processes).

    python benchmarks/mrsp_gpu.py --configuration A --shape 3b --frames 16,512 --sweep 1024,2048
    torchrun --nproc-per-node 2 benchmarks/mrsp_gpu.py --configuration C --frames 512
    python benchmarks/mrsp_gpu.py --report OUT/runs  # OUT's runs into OUT.json, with ratios

--frames are measured (--steps, the first a warm-up); --sweep frames run one step each, in
order, until a real torch.cuda.OutOfMemoryError, which is recorded (the frame ceiling).
Counters per step prove the work done: vision-tower patches, prefill tokens, all-to-alls.
Tokens/s/GPU is counted EasyR1's way (the prompt, video included, once per response, plus
the responses: benchmarks/results/grpo_gpu_h200.json counts so) and with the prompt once
per group. MFU: (6 for the update + 2 for the reference forward) x the language model's
parameters x the tokens each GPU's update forward took in, over the step and the GPU's dense
bf16 peak (attention and the vision tower left out: a lower bound; checkpointing's
recomputation not counted; the shared prefix's prompt counted once, as computed).
"""

from __future__ import annotations

import argparse
import gc
import itertools
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from grpo_gpu import _importable_checkout, peak_flops  # noqa: E402

SIDE = 308  # 11 x 11 merged tokens per 2-frame patch: 60.5 tokens a frame (Long-RL uses 60)
CONFIGURATIONS = {
    "A": dict(cache_video=False, response_micro_batch=0),
    "B": dict(cache_video=True, response_micro_batch=1, shared_prefix=False),
    "C": dict(cache_video=True, response_micro_batch=1, sp=2, shared_prefix=False),
    "D": dict(cache_video=True, response_micro_batch=1, shared_prefix=False),
    "E": dict(cache_video=True, response_micro_batch=0, shared_prefix=True),
    "F": dict(cache_video=True, response_micro_batch=0, shared_prefix=True, sp=2),
}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--configuration", choices=sorted(CONFIGURATIONS))
    parser.add_argument("--shape", choices=["3b", "7b", "tiny"], default="3b", help="tiny: a CPU smoke run")
    parser.add_argument("--side", type=int, default=SIDE, help="frame side in pixels (a multiple of 28)")
    parser.add_argument("--frames", default="", help="comma-separated frame counts to time")
    parser.add_argument("--sweep", default="", help="comma-separated frame counts, one step each, until OOM")
    parser.add_argument("--steps", type=int, default=4, help="per timed frame count; the first is warm-up")
    parser.add_argument("--group-size", type=int, default=8)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "mrsp_gpu")
    parser.add_argument("--report", type=Path, help="combine the runs in this folder (OUT/runs -> OUT.json)")
    args = parser.parse_args()
    if args.report:
        report(args.report)
        return
    _importable_checkout()
    run(args)


def run(args: argparse.Namespace) -> None:
    import torch

    from vdata.trainers import mrsp
    from vdata.trainers.config import GRPOConfig
    from vdata.trainers.grpo import grpo_step, rollout
    from vdata.trainers.policy import load_policy
    from vdata.trainers.random_init import QWEN25_VL_3B, QWEN25_VL_7B, TINY_QWEN2_5_VL, word_tokenizer
    from vdata.trainers.rewards import Reward
    from vdata.trainers.train import _reference

    name = args.configuration
    gpu = torch.cuda.is_available()
    distributed = name in ("C", "D", "F")
    if distributed:
        import torch.distributed as dist

        dist.init_process_group("nccl" if gpu else "gloo")
        rank, world = dist.get_rank(), dist.get_world_size()
        if gpu:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", rank)))
    else:
        rank, world = 0, 1
    spec = {"3b": QWEN25_VL_3B, "7b": QWEN25_VL_7B, "tiny": TINY_QWEN2_5_VL}[args.shape]
    folder = tempfile.mkdtemp()
    word_tokenizer(
        ["Which", "colour", "is", "the", "ball", "red", "blue", "green", "gray"], Path(folder) / "tok"
    )
    config = GRPOConfig(
        model_spec=spec,
        tokenizer=str(Path(folder) / "tok"),
        dtype="bfloat16" if gpu else "float32",
        device=f"cuda:{torch.cuda.current_device()}" if gpu else "cpu",
        group_size=args.group_size,
        max_new_tokens=args.new_tokens,
        prompts_per_step=1,
        gradient_checkpointing=True,
        kl_coef=0.01,
        lr=1e-6,
        seed=0,
        **CONFIGURATIONS[name],
    )
    policy = load_policy(config)
    if name in ("C", "E", "F"):
        sp = mrsp.SPGroup(rank, world) if distributed else mrsp.SPGroup()
        mrsp.enable(policy.model, sp)
        policy.sp = sp
    for parameter_name, parameter in policy.model.named_parameters():  # frozen vision in every run
        if "visual" in parameter_name:
            parameter.requires_grad_(False)
    reference = _reference(policy)
    trainable = [p for p in policy.model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=config.lr)
    language_parameters = sum(
        p.numel() for n, p in policy.model.named_parameters() if "visual" not in n and "lm_head" not in n
    )
    prompts: dict[str, object] = {}
    original_prompt = policy.prompt

    def prompt_once(row, frames):  # the frames' conversion to patches (CPU), once per row
        if row["id"] not in prompts:
            prompts[row["id"]] = original_prompt(row, frames)
        import copy

        return copy.copy(prompts[row["id"]])

    policy.prompt = prompt_once
    # proof counters, the same for every configuration: patches through the vision tower and
    # tokens through the language model, by phase (rollout: prefill x batch, decode steps)
    counters: dict[str, int] = {}
    phase = {"now": "rollout"}

    def count(key: str, value: int) -> None:
        key = f"{key}_{phase['now']}"
        counters[key] = counters.get(key, 0) + value

    visual = next(m for n, m in policy.model.named_modules() if n.split(".")[-1] == "visual")
    visual.register_forward_hook(lambda module, inputs, output: count("vision_patches", inputs[0].shape[0]))
    language = next(m for n, m in policy.model.named_modules() if n.split(".")[-1] == "language_model")

    def tokens_in(module, inputs, kwargs):
        embeds = kwargs.get("inputs_embeds")
        if embeds is not None and embeds.shape[1] > 1:
            count("lm_sequence_tokens", embeds.shape[0] * embeds.shape[1])

    language.register_forward_pre_hook(tokens_in, with_kwargs=True)
    mrsp.TIMED["on"] = True

    calls = itertools.count()

    def score(text, row):  # a random-init model answers nothing: alternate 1 and 0 in each group,
        value = float(next(calls) % 2)  # so groups have variance and every update moves the weights
        return Reward(value, 0.0, value)

    results = []
    plan = [(int(f), args.steps) for f in args.frames.split(",") if f] + [
        (int(f), 1) for f in args.sweep.split(",") if f
    ]
    args.out.mkdir(parents=True, exist_ok=True)
    tag = f"{name}_{args.shape}"
    for frames, steps in plan:
        prompts.clear()
        rng = np.random.default_rng(rank)
        row = {
            "id": f"r{frames}",
            "problem": "Which colour is the ball?",
            "problem_type": "multiple choice",
            "options": ["A. red", "B. blue", "C. green", "D. gray"],
            "solution": "<answer>B</answer>",
            "frames": rng.integers(0, 255, (frames, args.side, args.side, 3), dtype=np.uint8),
        }
        if gpu:
            torch.cuda.reset_peak_memory_stats()
        point = {"frames": frames, "steps": []}
        try:
            for step in range(steps):
                torch.manual_seed(step)
                mrsp.STATS.clear()
                counters.clear()
                _sync(torch)
                started = time.perf_counter()
                phase["now"] = "rollout"
                groups = rollout(policy, [row], [row["frames"]], score, config)
                phase["now"] = "train"
                metrics = grpo_step(policy, reference, optimizer, groups, config)
                _sync(torch)
                step_s = time.perf_counter() - started
                if name == "D":  # data parallel: the gradients' all-reduce a real DP step pays
                    flat = torch.zeros(sum(p.numel() for p in trainable), dtype=trainable[0].dtype)
                    flat = flat.to(config.device)
                    begun = time.perf_counter()
                    dist.all_reduce(flat)
                    _sync(torch)
                    metrics["dp_allreduce_s"] = time.perf_counter() - begun
                    step_s += metrics["dp_allreduce_s"]
                    del flat
                group = groups[0]
                prompt_tokens = group.prompt.input_ids.shape[1]
                responses = int(group.mask.sum())
                point["steps"].append(
                    {
                        "step_s": step_s,
                        "generate_s": group.generate_s,
                        "logprob_s": metrics["logprob_s"],
                        "update_s": metrics["update_s"],
                        "encode_s": mrsp.STATS["encode_us"] / 1e6,
                        "prefill_s": mrsp.STATS["prefill_us"] / 1e6,
                        "decode_s": mrsp.STATS["decode_us"] / 1e6,
                        "all_to_all_s": mrsp.STATS["all_to_all_us"] / 1e6,
                        "all_to_all_calls": mrsp.STATS["all_to_all"],
                        "vision_patches_rollout": counters.get("vision_patches_rollout", 0),
                        "vision_patches_train": counters.get("vision_patches_train", 0),
                        "prefill_tokens": counters.get("lm_sequence_tokens_rollout", 0),
                        "train_forward_tokens": counters.get("lm_sequence_tokens_train", 0),
                        "prompt_tokens": prompt_tokens,
                        "response_tokens": responses,
                        "replica_spread": metrics.get("replica_spread"),
                        "grad_norm": metrics["grad_norm"],
                        "dp_allreduce_s": metrics.get("dp_allreduce_s"),
                    }
                )
                print(f"[{tag} rank {rank}] {frames} frames step {step}: {step_s:.2f}s", flush=True)
                if rank == 0 and step < steps - 1:  # what a time limit cuts short is kept
                    partial = {**point, "partial": True}
                    if gpu:
                        partial["peak_allocated_gb"] = torch.cuda.max_memory_allocated() / 2**30
                    partial = _summary(partial, name, world, args.group_size, 0, torch)
                    _write(args, tag, rank, [*results, partial], config, torch, language_parameters)
            if gpu:
                point["peak_allocated_gb"] = torch.cuda.max_memory_allocated() / 2**30
                point["peak_reserved_gb"] = torch.cuda.max_memory_reserved() / 2**30
            if name in ("C", "F") and steps > 1:
                point["exactness"] = _sp_against_one(policy, groups[0], mrsp)
        except torch.cuda.OutOfMemoryError as exc:
            point["oom"] = str(exc).splitlines()[0][:300]
            point["peak_allocated_gb"] = torch.cuda.max_memory_allocated() / 2**30
            print(f"[{tag} rank {rank}] {frames} frames: out of memory", flush=True)
        finally:
            groups = None
            gc.collect()
            if gpu:
                torch.cuda.empty_cache()
        results.append(_summary(point, name, world, args.group_size, language_parameters, torch))
        if rank == 0 or "oom" in point:
            _write(args, tag, rank, results, config, torch, language_parameters)
        if "oom" in point:
            if distributed:
                os._exit(3)  # the other rank waits in a collective: end the run, as torchrun will
            break
    mrsp.finish()  # the ranks leave together


def _sync(torch) -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _sp_against_one(policy, group, mrsp) -> dict:
    """The same group's log-probs under sp=2 and in one process (rank 0), bf16."""
    import torch
    import torch.distributed as dist

    responses, mask = group.responses[:2], group.mask[:2].bool()
    with torch.no_grad():
        sharded = policy.log_probs(group.prompt, responses)[0].float().cpu()
        result = {}
        if policy.sp.rank == 0:
            sp = policy.sp
            policy.sp = mrsp.SPGroup()
            whole = policy.log_probs(group.prompt, responses)[0].float().cpu()
            policy.sp = sp
            delta = (sharded - whole).abs()[mask]
            result = {"max_abs_logp_diff": float(delta.max()), "mean_abs_logp_diff": float(delta.mean())}
        dist.barrier()
    return result


def _summary(point: dict, name: str, world: int, group: int, parameters: int, torch) -> dict:
    """Means and ranges over the measured steps (the first is warm-up when there are more)."""
    point = {**point, "steps": list(point["steps"])}
    steps = point["steps"][1:] if len(point["steps"]) > 1 else point["steps"]
    if not steps:
        return point
    keys = [k for k, v in steps[0].items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
    mean = {k: sum(s[k] for s in steps) / len(steps) for k in keys}
    span = {
        k: [min(s[k] for s in steps), max(s[k] for s in steps)] for k in ("step_s", "update_s", "generate_s")
    }
    easyr1 = mean["prompt_tokens"] * group + mean["response_tokens"]
    once = mean["prompt_tokens"] + mean["response_tokens"]
    groups = world if name == "D" else 1  # data parallel: a prompt group per GPU at once
    point.update(
        measured_steps=len(steps),
        mean=mean,
        range=span,
        prompt_groups_per_step=groups,
        gpu_seconds_per_prompt_group=mean["step_s"] * world / groups,
        tokens_per_s_per_gpu=easyr1 * groups / mean["step_s"] / world,
        tokens_per_s_per_gpu_prompt_once=once * groups / mean["step_s"] / world,
        mfu=_mfu(mean, parameters, torch.cuda.get_device_name() if torch.cuda.is_available() else ""),
    )
    return point


def _mfu(mean: dict, parameters: int, device: str) -> float | None:
    """The language model's dense FLOPs done per GPU over the step and the GPU's bf16 peak:
    (6 for the update + 2 for the reference forward) x parameters x the tokens this GPU's
    update forward took in (its shard under sp; the prompt once per forward with the shared
    prefix, so work not done is not counted). Attention, the vision tower, the rollout and
    checkpointing's recomputation are left out: a lower bound."""
    peak = peak_flops(device)
    tokens = mean.get("train_forward_tokens")
    if not (peak and parameters and tokens):
        return None
    return 8 * parameters * tokens / mean["step_s"] / peak


def _write(args, tag, rank, results, config, torch, parameters) -> None:
    path = args.out / (f"{tag}.json" if rank == 0 else f"{tag}_rank{rank}.json")
    previous = json.loads(path.read_text()) if path.exists() else {"points": []}
    done = {p["frames"] for p in results}
    points = [p for p in previous["points"] if p["frames"] not in done] + results
    path.write_text(
        json.dumps(
            {
                "configuration": args.configuration,
                "shape": args.shape,
                "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
                "gpus": int(os.environ.get("WORLD_SIZE", 1)),
                "frame_side": args.side,
                "tokens_per_frame": (args.side // 28) ** 2 / 2,
                "group_size": args.group_size,
                "new_tokens": args.new_tokens,
                "language_parameters": parameters,
                "settings": {k: v for k, v in config.to_dict().items() if k != "model_spec"},
                "torch": torch.__version__,
                "python": platform.python_version(),
                "points": sorted(points, key=lambda p: p["frames"]),
            },
            indent=1,
            default=str,
        )
        + "\n"
    )


# the ratios the report gives, each where both configurations ran at a frame count
RATIOS = [
    ("A", "B", "gpu_seconds_per_prompt_group"),
    ("B", "A", "tokens_per_s_per_gpu"),
    ("B", "C", "gpu_seconds_per_prompt_group"),
    ("B", "C", "step_s"),
    ("C", "D", "gpu_seconds_per_prompt_group"),
    ("A", "C", "gpu_seconds_per_prompt_group"),
    ("A", "E", "gpu_seconds_per_prompt_group"),
    ("E", "A", "tokens_per_s_per_gpu"),
    ("B", "E", "gpu_seconds_per_prompt_group"),
    ("C", "F", "gpu_seconds_per_prompt_group"),
    ("E", "F", "step_s"),
    ("E", "F", "gpu_seconds_per_prompt_group"),
]
RATIO_NAMES = {
    "gpu_seconds_per_prompt_group": "gpu_s_per_group",
    "tokens_per_s_per_gpu": "tokens_per_s",
    "step_s": "step_s",
}


def report(folder: Path) -> None:
    """One JSON of every run in `folder`, with the ratios the issue asks for."""
    runs = {p.stem: json.loads(p.read_text()) for p in sorted(folder.glob("*.json")) if "_rank" not in p.stem}
    table = {}
    for tag, run in runs.items():
        for point in run["points"]:
            entry = {
                k: point.get(k)
                for k in (
                    "gpu_seconds_per_prompt_group",
                    "tokens_per_s_per_gpu",
                    "tokens_per_s_per_gpu_prompt_once",
                    "mfu",
                    "peak_allocated_gb",
                    "oom",
                    "measured_steps",
                    "exactness",
                )
            }
            if point.get("mean"):
                entry["mfu"] = _mfu(point["mean"], run["language_parameters"], run["device"])
                entry["step_s"] = point["mean"]["step_s"]
                entry["step_s_range"] = point["range"]["step_s"]
                entry["phases_s"] = {
                    k: round(v, 3) for k, v in point["mean"].items() if k.endswith("_s") and k != "step_s"
                }
            table.setdefault(tag, {})[point["frames"]] = entry
    ratios = {}
    for shape in sorted({tag.split("_", 1)[1] for tag in runs}):
        runs_of = {x: table.get(f"{x}_{shape}", {}) for x in "ABCDEF"}
        for frames in sorted(set().union(*runs_of.values())):
            entry = {}
            for top, bottom, key in RATIOS:
                x, y = ((runs_of[t].get(frames) or {}).get(key) for t in (top, bottom))
                if x and y:
                    entry[f"{top}_over_{bottom}_{RATIO_NAMES[key]}"] = round(x / y, 3)
            if entry:
                ratios[f"{shape} {frames} frames"] = entry
        ceilings = {}
        for x, t in runs_of.items():
            fine = [f for f, e in t.items() if not e.get("oom")]
            failed = [f for f, e in t.items() if e.get("oom")]
            if fine or failed:
                ceilings[x] = {
                    "largest_completed": max(fine, default=None),
                    "first_oom": min(failed, default=None),
                }
        if ceilings:
            ratios[f"{shape} frame ceilings"] = ceilings
    folder.parent.with_suffix(".json").write_text(
        json.dumps({"benchmark": "mrsp_gpu", "ratios": ratios, "runs": table, "raw": runs}, indent=1) + "\n"
    )
    print(json.dumps({"ratios": ratios, "runs": table}, indent=1))


if __name__ == "__main__":
    main()
