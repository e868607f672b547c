"""`vdata train grpo`: a short GRPO run on a dataset, with metrics per step and resumable checkpoints.

The loop: draw prompts, roll out G responses each (dropping zero-variance groups
and drawing more when dynamic sampling is on), take one GRPO step, write the
step's metrics to OUT/metrics.jsonl, and save OUT/checkpoint every
`save_every` steps and at the end. Rerunning the same command resumes from the
checkpoint.
"""

from __future__ import annotations

import copy
import json
import random
import resource
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from vdata.trainers.config import ConfigError, GRPOConfig
from vdata.trainers.grpo import Group, grpo_step, rollout
from vdata.trainers.policy import Policy, load_policy
from vdata.trainers.rewards import PROBLEM_TYPES_WITH_REWARDS, RewardConfig, reward

Frames = Callable[[Mapping[str, Any]], Any]


# ---------------------------------------------------------------- data


@dataclass
class TrainingData:
    rows: list[dict[str, Any]]
    media_root: Path | None
    skipped: dict[str, int] = field(default_factory=dict)  # problem_type -> rows with no reward


def load_training_data(config: GRPOConfig) -> TrainingData:
    """Rows of `config.split` from a vdata dataset or run dir, an export file, or hf:ID."""
    if config.data.startswith("hf:"):
        import datasets

        from vdata.formats import MAPPERS, detect_shape

        raw = [dict(r) for r in datasets.load_dataset(config.data[3:], split=config.split)]
        convert = MAPPERS.get(detect_shape(raw))
        rows = [convert(r) for r in raw] if convert else raw
        usable, skipped = _usable(rows, config.data)
        return TrainingData(usable, Path(config.media_root) if config.media_root else None, skipped)
    from vdata.formats import DatasetReadError, load_rows, media_root_of

    path = Path(config.data)
    try:
        loaded = load_rows(path)
    except DatasetReadError as exc:
        raise ConfigError(f"data: {exc}") from exc
    bad = len(loaded.unreadable) + sum(not isinstance(row, Mapping) for row in loaded.rows)
    if bad:
        raise ConfigError(f"data {path}: {bad} lines or rows cannot be read; `vdata audit {path}` lists them")
    rows = [
        {**row, "split": row.get("split") or split}
        for row, split in zip(loaded.rows, loaded.splits, strict=True)
    ]
    splits = {r["split"] for r in rows}
    if config.split and config.split in splits:
        rows = [r for r in rows if r["split"] == config.split]
    elif config.split and splits != {""}:
        raise ConfigError(f"data {path} has splits {sorted(splits)}, not {config.split!r}; set split=")
    usable, skipped = _usable(rows, str(path))
    return TrainingData(
        usable, Path(config.media_root) if config.media_root else media_root_of(path), skipped
    )


def _usable(rows: list[dict[str, Any]], name: str) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """The rows a reward can score, and how many of each other problem_type were left out."""
    usable, skipped = [], Counter()
    for row in rows:
        if row.get("problem_type") in PROBLEM_TYPES_WITH_REWARDS and row.get("solution"):
            usable.append(row)
        else:
            skipped[str(row.get("problem_type")) if row.get("solution") else "no solution"] += 1
    if not usable:
        raise ConfigError(f"data {name}: no rows with a problem_type that has a reward and a solution")
    return usable, dict(skipped)


def frame_source(config: GRPOConfig, media_root: Path | None) -> Frames:
    """Frames of a row's video (its segment) from the kernel's sampler, cached per row; rows
    that carry `frames` (arrays) use them. A video that cannot be read is an error that names
    it: nothing else is substituted (METHODS.md: Video-R1 silently trained on a fallback video)."""
    cache: dict[str, Any] = {}

    def frames(row: Mapping[str, Any]) -> Any:
        if row.get("frames") is not None:
            return row["frames"]
        from vdata.video import VideoError, sample_frames

        key = str(row.get("id") or row.get("path"))
        if key not in cache:
            path = (media_root or Path(".")) / str(row["path"])
            segment = row.get("segment") or {}
            try:
                sampled = sample_frames(
                    path,
                    segment.get("start_s", 0.0),
                    segment.get("end_s"),
                    fps=None,
                    nframes=config.frames,
                    max_pixels=config.max_pixels,
                )
            except VideoError as exc:
                raise ConfigError(
                    f"row {key}: {exc}; fix or filter the row (vdata audit finds these)"
                ) from exc
            cache[key] = sampled.frames
        return cache[key]

    return frames


def prompt_stream(rows: list[dict[str, Any]], seed: int, start: int) -> Iterator[dict[str, Any]]:
    """Rows in seeded shuffled epochs, from position `start` (for resume)."""
    position = 0
    epoch = 0
    while True:
        order = list(range(len(rows)))
        random.Random(seed * 1000003 + epoch).shuffle(order)
        for index in order:
            if position >= start:
                yield rows[index]
            position += 1
        epoch += 1


# ---------------------------------------------------------------- the loop


@dataclass
class RunSummary:
    out: Path
    steps: int
    metrics: list[dict[str, Any]]


def train(
    config: GRPOConfig, *, data: TrainingData | None = None, log: Callable[[str], None] = print
) -> RunSummary:
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    data = data or load_training_data(config)
    if data.skipped:
        shown = ", ".join(f"{count} {kind}" for kind, count in sorted(data.skipped.items()))
        log(f"training on {len(data.rows)} rows; left out, no reward for them: {shown}")
    policy = load_policy(config)
    reference = _reference(policy) if config.kl_coef > 0 else None
    trainable = [p for p in policy.model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=config.lr, weight_decay=config.weight_decay)
    state = _resume(out, policy, optimizer, config)
    (out / "config.json").write_text(json.dumps(config.to_dict(), indent=1, default=str))
    reward_config = RewardConfig(
        config.accuracy_weight, config.format_weight, config.format_style, config.tolerant_letters
    )
    score = lambda text, row: reward(text, row, reward_config)  # noqa: E731
    frames = frame_source(config, data.media_root) if policy.is_vl else (lambda row: None)
    prompts = prompt_stream(data.rows, config.seed, state["prompts_drawn"])
    metrics_path = out / "metrics.jsonl"
    board = _tensorboard(out) if config.tensorboard else None
    written = []
    while state["step"] < config.steps:
        torch.manual_seed(
            config.seed * 1000003 + state["step"]
        )  # a resumed run samples as an uninterrupted one
        step_started = time.perf_counter()
        groups, drawn, zero_variance, sampled, generate_s, score_s = _collect_groups(
            policy, prompts, frames, score, config
        )
        state["prompts_drawn"] += drawn
        if not groups:
            metrics = {"step": state["step"] + 1, "skipped": "every group had zero reward variance"}
        else:
            metrics = _step_metrics(policy, reference, optimizer, groups, sampled, zero_variance, config)
            metrics.update(step=state["step"] + 1, generate_s=generate_s, score_s=score_s)
        metrics["step_s"] = time.perf_counter() - step_started
        metrics["tokens_per_s"] = metrics.get("tokens", 0) / metrics["step_s"]
        metrics["peak_memory_gb"] = _peak_memory_gb(policy.device)
        state["step"] += 1
        with metrics_path.open("a") as handle:
            handle.write(json.dumps(_rounded(metrics)) + "\n")
        written.append(metrics)
        if board is not None:
            for key, value in metrics.items():
                if isinstance(value, (int, float)) and key != "step":
                    board.add_scalar(key, value, metrics["step"])
            board.flush()
        log(_one_line(metrics))
        if config.save_every and state["step"] % config.save_every == 0 or state["step"] == config.steps:
            _save(out, policy, optimizer, state)
    return RunSummary(out, state["step"], written)


def _collect_groups(policy: Policy, prompts: Iterator, frames: Frames, score, config: GRPOConfig):
    """prompts_per_step scored groups; with dynamic sampling, zero-variance groups are dropped
    and more prompts drawn, at most max_refills extra rounds."""
    groups: list[Group] = []
    drawn = zero = sampled = 0
    generate_s = score_s = 0.0
    rounds = 0
    while len(groups) < config.prompts_per_step and rounds <= (
        config.max_refills if config.dynamic_sampling else 0
    ):
        rows = [next(prompts) for _ in range(config.prompts_per_step - len(groups))]
        drawn += len(rows)
        for group in rollout(policy, rows, [frames(row) for row in rows], score, config):
            generate_s += group.generate_s
            score_s += group.score_s
            sampled += 1
            zero += group.zero_variance
            if config.dynamic_sampling and group.zero_variance:
                continue
            groups.append(group)
        rounds += 1
    return groups, drawn, zero, sampled, generate_s, score_s


def _step_metrics(policy, reference, optimizer, groups, sampled, zero_variance, config) -> dict[str, Any]:
    totals = torch.cat([g.totals for g in groups])
    accuracy = [r.accuracy for g in groups for r in g.rewards]
    formats = [r.format for g in groups for r in g.rewards]
    lengths = torch.cat([g.mask.sum(-1) for g in groups]).float()
    loss = grpo_step(policy, reference, optimizer, groups, config)
    prompt_tokens = sum(g.prompt.input_ids.shape[1] * g.responses.shape[0] for g in groups)
    return {
        "reward_mean": totals.mean().item(),
        "reward_std": totals.std().item(),
        "accuracy": sum(accuracy) / len(accuracy),
        "format_rate": sum(formats) / len(formats),
        "zero_variance_fraction": zero_variance / max(sampled, 1),
        "groups": len(groups),
        "response_length": lengths.mean().item(),
        "tokens": int(lengths.sum().item()) + prompt_tokens,
        **loss,
    }


def _reference(policy: Policy) -> Any:
    """The frozen model that KL is measured against: the base model without adapters under
    LoRA, else a copy of the initial weights."""
    if hasattr(policy.model, "disable_adapter"):
        return _AdaptersOff(policy.model)
    reference = copy.deepcopy(policy.model).eval()
    for parameter in reference.parameters():
        parameter.requires_grad_(False)
    return reference


class _AdaptersOff:
    def __init__(self, model: Any):
        self.model = model

    def __call__(self, **inputs: Any) -> Any:
        with self.model.disable_adapter():
            return self.model(**inputs)


# ---------------------------------------------------------------- checkpoints


def _save(out: Path, policy: Policy, optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
    """OUT/checkpoint: weights (or adapters), optimizer, step; written beside, then swapped in."""
    import shutil

    tmp, final = out / "checkpoint.tmp", out / "checkpoint"
    shutil.rmtree(tmp, ignore_errors=True)
    policy.model.save_pretrained(str(tmp / "model"))
    torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    (tmp / "state.json").write_text(json.dumps(state))
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)


def _resume(
    out: Path, policy: Policy, optimizer: torch.optim.Optimizer, config: GRPOConfig
) -> dict[str, Any]:
    state_path = out / "checkpoint" / "state.json"
    if not state_path.exists():
        (out / "metrics.jsonl").unlink(missing_ok=True)
        return {"step": 0, "prompts_drawn": 0}
    from safetensors.torch import load_file

    state = json.loads(state_path.read_text())
    model_dir = out / "checkpoint" / "model"
    weights = {}
    for file in sorted(model_dir.glob("*.safetensors")):
        weights.update(load_file(str(file)))
    if hasattr(policy.model, "peft_config"):
        from peft import set_peft_model_state_dict

        set_peft_model_state_dict(policy.model, weights)
    else:
        policy.model.load_state_dict(weights, strict=False)
    optimizer.load_state_dict(torch.load(out / "checkpoint" / "optimizer.pt", weights_only=True))
    _truncate_metrics(out / "metrics.jsonl", state["step"])
    return state


def _truncate_metrics(path: Path, steps: int) -> None:
    """Keeps the metrics of the checkpointed steps: steps after it will run again."""
    if path.exists():
        lines = [line for line in path.read_text().splitlines() if line.strip()]
        path.write_text("".join(line + "\n" for line in lines if json.loads(line)["step"] <= steps))


def _tensorboard(out: Path) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as exc:
        raise ConfigError(
            f"tensorboard=true needs the tensorboard package ({exc}): pip install tensorboard"
        ) from exc
    return SummaryWriter(str(out / "tensorboard"))


def _peak_memory_gb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def _rounded(metrics: dict[str, Any]) -> dict[str, Any]:
    return {k: round(v, 6) if isinstance(v, float) else v for k, v in metrics.items()}


def _one_line(metrics: dict[str, Any]) -> str:
    if "skipped" in metrics:
        return f"step {metrics['step']}: skipped ({metrics['skipped']})"
    return (
        f"step {metrics['step']}: reward {metrics['reward_mean']:.3f} acc {metrics['accuracy']:.3f} "
        f"format {metrics['format_rate']:.2f} len {metrics['response_length']:.0f} kl {metrics['kl']:.4f} "
        f"{metrics['step_s']:.1f}s"
    )
