"""`vdata train grpo`: a short GRPO run on a dataset, with metrics per step, held-out evaluation
and resumable checkpoints.

The loop: draw prompts, roll out G responses each (dropping zero-variance groups
and drawing more when dynamic sampling is on), take one GRPO step (its updates),
write the step's metrics to OUT/metrics.jsonl and a few responses to
OUT/samples.jsonl, evaluate on the held-out set every `eval_every` steps and at
the end (OUT/eval.json), and save OUT/checkpoint every `save_every` steps and at
the end. Rerunning the same command resumes from the checkpoint: weights (every
one of them, checked), optimizer, learning-rate schedule, position in the data.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import random
import resource
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from vdata.runstore import OutputRefused, claim_output, refuse_overlap
from vdata.trainers.config import ConfigError, GRPOConfig
from vdata.trainers.grpo import Group, grpo_step, rollout
from vdata.trainers.policy import AdaptersOff, Policy, load_policy
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
    from vdata.formats import media_root_of

    path = Path(config.data)
    rows = split_rows(path, config.split)
    usable, skipped = _usable(rows, str(path))
    return TrainingData(
        usable, Path(config.media_root) if config.media_root else media_root_of(path), skipped
    )


def split_rows(path: Path, split: str) -> list[dict[str, Any]]:
    """The rows of `split` in a dataset, each with its split set (every row when `split` is ""
    or the dataset names no split); a dataset with unreadable rows is refused, not thinned."""
    from vdata.formats import DatasetReadError, load_rows

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
    if split and split in splits:
        return [r for r in rows if r["split"] == split]
    if split and splits != {""}:
        raise ConfigError(f"data {path} has splits {sorted(splits)}, not {split!r}; set split=")
    return rows


def _usable(rows: list[dict[str, Any]], name: str) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """The rows a reward can score, and how many of each other problem_type were left out."""
    usable, skipped = [], Counter()
    for row in rows:
        if row.get("data_type") not in (None, "", "video"):
            skipped[f"{row.get('data_type')} rows (the trainer reads video and text rows)"] += 1
        elif row.get("problem_type") in PROBLEM_TYPES_WITH_REWARDS and row.get("solution"):
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

        segment = row.get("segment") or {}
        # the video and the part of it: two clips of one video are two different inputs
        key = json.dumps([row.get("path"), segment.get("start_s"), segment.get("end_s")])
        if key not in cache:
            path = (media_root or Path(".")) / str(row["path"])
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
                name = row.get("id") or row.get("path")
                raise ConfigError(
                    f"row {name}: {exc}; fix or filter the row (vdata audit finds these)"
                ) from exc
            cache[key] = sampled  # frames and their times (Qwen2.5-VL reads the fps)
        return with_frame_noise(cache[key], row)

    return frames


def with_frame_noise(sampled: Any, row: Mapping[str, Any]) -> Any:
    """The frames with a share blanked when the row asks for it (meta_json `frame_noise`:
    {"mask_fraction": f}, set by `vdata filter augment` on questions the policy always answers),
    the same frames for the same row every time."""
    meta = row.get("meta_json")
    if not isinstance(meta, str) or '"frame_noise"' not in meta:
        return sampled
    fraction = float((json.loads(meta).get("frame_noise") or {}).get("mask_fraction") or 0.0)
    frames = list(sampled.frames)
    count = min(len(frames), round(len(frames) * fraction))
    if not count:
        return sampled
    rng = random.Random(str(row.get("id") or row.get("path")))
    for index in rng.sample(range(len(frames)), count):
        frames[index] = frames[index] * 0
    return dataclasses.replace(sampled, frames=frames)


def prompt_stream(
    rows: list[dict[str, Any]], seed: int, start: int, stages: list[int] | None = None
) -> Iterator[dict[str, Any]]:
    """Rows in seeded shuffled epochs, from position `start` (for resume). With `stages` (a
    curriculum stage per row), each epoch reads stage 0's rows, shuffled, then stage 1's, ..."""
    position = 0
    epoch = 0
    while True:
        order = list(range(len(rows)))
        random.Random(seed * 1000003 + epoch).shuffle(order)
        if stages is not None:
            order.sort(key=lambda index: stages[index])  # stable: shuffled within a stage
        for index in order:
            if position >= start:
                yield rows[index]
            position += 1
        epoch += 1


def curriculum_stages(rows: list[dict[str, Any]]) -> list[int]:
    """Each row's `meta_json.curriculum_stage` (`vdata build counterexample --real` writes it:
    0 real physics, 1 counterexamples); a row without one is a ConfigError naming it."""
    stages = []
    for row in rows:
        try:
            stage = json.loads(row.get("meta_json") or "{}").get("curriculum_stage")
        except (ValueError, AttributeError):
            stage = None
        if not isinstance(stage, int) or isinstance(stage, bool):
            raise ConfigError(
                f"curriculum: true needs meta_json.curriculum_stage on every row; row {row.get('id')!r} "
                "has none (build with `vdata build counterexample --real`, or set curriculum: false)"
            )
        stages.append(stage)
    return stages


# ---------------------------------------------------------------- the loop


@dataclass
class RunSummary:
    out: Path
    steps: int
    metrics: list[dict[str, Any]]


# what a training run writes in its folder (an ablation's run folder also holds ablation.json)
TRAIN_ENTRIES = (
    "config.json",
    "metrics.jsonl",
    "samples.jsonl",
    "eval.json",
    "checkpoint",
    "checkpoint.tmp",
    "checkpoint.old",
    "tensorboard",
    "train.log",
    "train.json",
    "ablation.json",
)


def is_train_run(folder: Path) -> bool:
    """A folder a training run (or an ablation, for one of its runs) wrote."""
    if (folder / "ablation.json").is_file():
        return True
    try:
        return "group_size" in json.loads((folder / "config.json").read_text())
    except (OSError, ValueError, TypeError):
        return False


def train(
    config: GRPOConfig, *, data: TrainingData | None = None, log: Callable[[str], None] = print
) -> RunSummary:
    out = Path(config.out)
    try:
        claim_output(
            out,
            ours=is_train_run,
            owns=TRAIN_ENTRIES,
            kind="a training run (no config.json of one)",
            where="out=",
            force_flag=None,
        )
        refuse_overlap(out, [("data", config.data), ("eval_data", config.eval_data)])
    except OutputRefused as exc:
        raise ConfigError(str(exc)) from None
    data = data or load_training_data(config)
    if data.skipped:
        shown = ", ".join(f"{count} {kind}" for kind, count in sorted(data.skipped.items()))
        log(f"training on {len(data.rows)} rows; left out, no reward for them: {shown}")
    stages = curriculum_stages(data.rows) if config.curriculum else None
    held_out = load_eval_data(config) if config.eval_data else None
    sp, device = _sequence_parallel(config)
    if device != config.device:
        config = dataclasses.replace(config, device=device)
    main = sp.rank == 0  # under MR-SP every rank trains alike; the first alone writes and logs
    if not main:
        log = lambda line: None  # noqa: E731
    policy = load_policy(config)
    if sp.size > 1 or config.shared_prefix:  # MR-SP's attention on the language model
        from vdata.trainers.mrsp import enable

        enable(policy.model, sp)
        policy.sp = sp
    reference = _reference(policy) if config.kl_coef > 0 else None
    trainable = [p for p in policy.model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=config.lr, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(config))
    state = _resume(out, policy, optimizer, scheduler, config)
    if main:
        (out / "config.json").write_text(json.dumps(config.to_dict(), indent=1, default=str))
    reward_config = RewardConfig(
        config.accuracy_weight,
        config.format_weight,
        config.format_style,
        config.tolerant_letters,
        config.multi_answer_strict,
        config.free_form_reward,
    )
    score = lambda text, row: reward(text, row, reward_config)  # noqa: E731
    frames = frame_source(config, data.media_root) if policy.is_vl else (lambda row: None)
    eval_frames = frames
    if held_out is not None and policy.is_vl:
        eval_frames = frame_source(config, held_out.media_root)
    prompts = prompt_stream(data.rows, config.seed, state["prompts_drawn"], stages)
    metrics_path = out / "metrics.jsonl"
    board = _tensorboard(out) if config.tensorboard and main else None
    written = []
    if held_out is not None and config.eval_every and state["step"] == 0:
        # the baseline: the model before any update, on the same rows
        result = evaluate(policy, held_out.rows, eval_frames, score, config, step=0)
        if main:
            with metrics_path.open("a") as handle:
                handle.write(
                    json.dumps(_rounded({"step": 0, **{f"eval_{k}": v for k, v in result.items()}})) + "\n"
                )
        shown = f"{result['accuracy_greedy']:.3f} greedy, {result['accuracy_sampled']:.3f} sampled"
        log(f"step 0: eval acc {shown}")
    while state["step"] < config.steps:
        torch.manual_seed(
            config.seed * 1000003 + state["step"]
        )  # a resumed run samples as an uninterrupted one
        step_started = time.perf_counter()
        groups, drawn, zero_variance, sampled, generate_s, score_s = _collect_groups(
            policy, prompts, frames, score, config
        )
        state["prompts_drawn"] += drawn
        if len(groups) < config.prompts_per_step and groups:
            log(
                f"step {state['step'] + 1}: {len(groups)} of {config.prompts_per_step} groups with reward "
                f"variance after {config.max_refills} refills; the step trains on those"
            )
        if not groups:
            metrics = {"step": state["step"] + 1, "skipped": "every group had zero reward variance"}
        else:
            metrics = _step_metrics(policy, reference, optimizer, groups, sampled, zero_variance, config)
            metrics.update(step=state["step"] + 1, generate_s=generate_s, score_s=score_s)
            if main:
                _write_samples(out / "samples.jsonl", metrics["step"], groups, config.log_samples)
        metrics["groups_short"] = config.prompts_per_step - len(groups)
        metrics["lr"] = scheduler.get_last_lr()[0]
        scheduler.step()
        metrics["step_s"] = time.perf_counter() - step_started
        metrics["tokens_per_s"] = metrics.get("tokens", 0) / metrics["step_s"]
        metrics["peak_memory_gb"] = _peak_memory_gb(policy.device)
        state["step"] += 1
        last = state["step"] == config.steps
        if held_out is not None and (last or (config.eval_every and state["step"] % config.eval_every == 0)):
            result = evaluate(policy, held_out.rows, eval_frames, score, config, step=state["step"])
            metrics.update({f"eval_{key}": value for key, value in result.items()})
            if last and main:
                (out / "eval.json").write_text(json.dumps({"step": state["step"], **result}, indent=1) + "\n")
        if main:
            with metrics_path.open("a") as handle:
                handle.write(json.dumps(_rounded(metrics)) + "\n")
        written.append(metrics)
        if board is not None:
            for key, value in metrics.items():
                if isinstance(value, (int, float)) and key != "step":
                    board.add_scalar(key, value, metrics["step"])
            board.flush()
        log(_one_line(metrics))
        if main and (config.save_every and state["step"] % config.save_every == 0 or last):
            _save(out, policy, optimizer, scheduler, state)
    return RunSummary(out, state["step"], written)


def _sequence_parallel(config: GRPOConfig) -> tuple[Any, str]:
    """MR-SP's group of this process and its device (one rank per process, torchrun)."""
    from vdata.trainers.mrsp import start

    try:
        return start(config.sp, config.device)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc


def lr_factor(config: GRPOConfig) -> Callable[[int], float]:
    """The learning rate's multiplier at a step: linear warmup over `warmup_steps`, then
    constant, or linear or cosine decay to 0 at `steps`."""

    def factor(step: int) -> float:
        if step < config.warmup_steps:
            return (step + 1) / (config.warmup_steps + 1)
        if config.lr_schedule == "constant":
            return 1.0
        progress = (step - config.warmup_steps) / max(config.steps - config.warmup_steps, 1)
        progress = min(max(progress, 0.0), 1.0)
        if config.lr_schedule == "linear":
            return 1.0 - progress
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


# ---------------------------------------------------------------- held-out evaluation


def load_eval_data(config: GRPOConfig) -> TrainingData:
    """The held-out rows: `eval_data`'s `eval_split`, the first `eval_rows` of them (all: 0)."""
    held = load_training_data(dataclasses.replace(config, data=config.eval_data, split=config.eval_split))
    if config.eval_rows:
        held.rows = held.rows[: config.eval_rows]
    return held


@torch.no_grad()
def evaluate(
    policy: Policy, rows: list[dict[str, Any]], frames: Frames, score, config: GRPOConfig, *, step: int = 0
) -> dict:
    """Accuracy and reward on the held-out rows: one greedy answer each, and `group_size`
    answers sampled at `eval_temperature` (mean accuracy over them). Comparable across
    datasets, which training reward on two different datasets is not. The samples are seeded
    by the run's seed and the step alone, so that two runs of one seed (two variants of an
    ablation, or a resumed run and an uninterrupted one) draw the same evaluation noise."""
    torch.manual_seed(config.seed * 1000003 + step + 7_919_000_017)  # apart from the steps' seeds
    greedy_acc, greedy_reward, sampled_acc, sampled_reward = [], [], [], []
    for start in range(0, len(rows), config.prompts_per_step):
        batch = rows[start : start + config.prompts_per_step]
        prompts = [policy.prompt(row, frames(row)) for row in batch]
        greedy = policy.sample(prompts, 1, max_new_tokens=config.max_new_tokens, greedy=True)
        sampled = policy.sample(
            prompts,
            config.group_size,
            max_new_tokens=config.max_new_tokens,
            temperature=config.eval_temperature,
        )
        for row, (g_ids, g_mask), (s_ids, s_mask) in zip(batch, greedy, sampled, strict=True):
            for text in policy.decode(g_ids, g_mask):
                scored = score(text, row)
                greedy_acc.append(scored.accuracy)
                greedy_reward.append(scored.total)
            for text in policy.decode(s_ids, s_mask):
                scored = score(text, row)
                sampled_acc.append(scored.accuracy)
                sampled_reward.append(scored.total)
    mean = lambda values: sum(values) / len(values) if values else 0.0  # noqa: E731
    return {
        "rows": len(rows),
        "accuracy_greedy": mean(greedy_acc),
        "reward_greedy": mean(greedy_reward),
        "accuracy_sampled": mean(sampled_acc),
        "reward_sampled": mean(sampled_reward),
        "temperature": config.eval_temperature,
    }


def _write_samples(path: Path, step: int, groups: list[Group], n: int) -> None:
    """A few responses of the step with their rewards: what the numbers are made of."""
    if n <= 0:
        return
    with path.open("a") as handle:
        for group in groups[:n]:
            best = max(range(len(group.texts)), key=lambda i: group.rewards[i].total)
            handle.write(
                json.dumps(
                    {
                        "step": step,
                        "row": group.row.get("id") or group.row.get("path"),
                        "question": group.row.get("problem"),
                        "solution": group.row.get("solution"),
                        "response": group.texts[best],
                        "reward": group.rewards[best].total,
                        "group_rewards": [round(r.total, 4) for r in group.rewards],
                    },
                    ensure_ascii=False,
                )
                + "\n"
            )


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
        return AdaptersOff(policy.model)
    reference = copy.deepcopy(policy.model).eval()
    for parameter in reference.parameters():
        parameter.requires_grad_(False)
    return reference


# ---------------------------------------------------------------- checkpoints


def _save(
    out: Path, policy: Policy, optimizer: torch.optim.Optimizer, scheduler: Any, state: dict[str, Any]
) -> None:
    """OUT/checkpoint: weights (or adapters, in transformers' own layout, loadable with
    from_pretrained), optimizer, schedule, step. Written beside, then swapped in by renames,
    so that a kill at any moment leaves a whole checkpoint: the new one, or the old one
    (OUT/checkpoint.old, which a resume falls back to)."""
    import shutil

    tmp, final, previous = out / "checkpoint.tmp", out / "checkpoint", out / "checkpoint.old"
    shutil.rmtree(tmp, ignore_errors=True)
    policy.model.save_pretrained(str(tmp / "model"))
    torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
    (tmp / "state.json").write_text(json.dumps(state))
    shutil.rmtree(previous, ignore_errors=True)
    if final.exists():
        final.rename(previous)
    tmp.rename(final)
    shutil.rmtree(previous, ignore_errors=True)


def _resume(
    out: Path, policy: Policy, optimizer: torch.optim.Optimizer, scheduler: Any, config: GRPOConfig
) -> dict[str, Any]:
    """The state of the last whole checkpoint, with its weights loaded; a fresh start (and fresh
    metrics) only when there is none at all."""
    checkpoint = next(
        (c for c in (out / "checkpoint", out / "checkpoint.old") if (c / "state.json").exists()), None
    )
    if checkpoint is None:
        (out / "metrics.jsonl").unlink(missing_ok=True)
        (out / "samples.jsonl").unlink(missing_ok=True)
        return {"step": 0, "prompts_drawn": 0}
    state = json.loads((checkpoint / "state.json").read_text())
    load_weights(policy.model, checkpoint / "model")
    optimizer.load_state_dict(torch.load(checkpoint / "optimizer.pt", weights_only=True))
    if (checkpoint / "scheduler.pt").exists():
        scheduler.load_state_dict(torch.load(checkpoint / "scheduler.pt", weights_only=True))
    _truncate_metrics(out / "metrics.jsonl", state["step"])
    _truncate_metrics(out / "samples.jsonl", state["step"])
    return state


def load_weights(model: Any, directory: Path) -> None:
    """Loads a checkpoint that `save_pretrained` wrote into `model`, every tensor of it.

    Adapters go through peft. Full weights are read back by transformers itself
    (`from_pretrained`), which maps its saved names onto the module's (transformers 5 saves
    Qwen2-VL's `model.language_model.*` as `model.*`, and `model.visual.*` as `visual.*`:
    a plain `load_state_dict(strict=False)` skipped 45 of 46 tensors in silence); the copy is
    then loaded strictly, so that a tensor left out is an error, not a different model."""
    if hasattr(model, "peft_config"):
        from peft import set_peft_model_state_dict
        from safetensors.torch import load_file

        weights = {}
        for file in sorted(directory.glob("*.safetensors")):
            weights.update(load_file(str(file)))
        result = set_peft_model_state_dict(model, weights)
        unexpected = list(getattr(result, "unexpected_keys", []) or [])
        if unexpected:
            raise RuntimeError(f"checkpoint {directory}: adapter tensors not in the model: {unexpected[:5]}")
        return
    saved, info = type(model).from_pretrained(
        str(directory), dtype=next(model.parameters()).dtype, output_loading_info=True
    )
    missing = [*info.get("missing_keys", []), *info.get("mismatched_keys", [])]
    if missing:
        raise RuntimeError(
            f"checkpoint {directory} lacks {len(missing)} tensor(s) of the model: {missing[:5]}"
        )
    model.load_state_dict(saved.state_dict(), strict=True)
    del saved


def _truncate_metrics(path: Path, steps: int) -> None:
    """Keeps the lines of the checkpointed steps: steps after it will run again."""
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
    line = (
        f"step {metrics['step']}: reward {metrics['reward_mean']:.3f} acc {metrics['accuracy']:.3f} "
        f"format {metrics['format_rate']:.2f} len {metrics['response_length']:.0f} kl {metrics['kl']:.4f} "
        f"{metrics['step_s']:.1f}s"
    )
    if "eval_accuracy_greedy" in metrics:
        line += (
            f"; eval acc {metrics['eval_accuracy_greedy']:.3f} greedy, "
            f"{metrics['eval_accuracy_sampled']:.3f} sampled"
        )
    if metrics.get("skipped_updates"):
        line += f"; {metrics['skipped_updates']} update(s) skipped: non-finite gradient"
    return line
