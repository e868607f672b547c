"""One GRPO step, in order: rollout, reward, advantage, old and reference log-probs, loss, updates.

The objective's pieces are small functions the step calls; the variants are
flags on them: DAPO (clip-higher, dynamic sampling in the training loop, soft
overlong penalty), TW-GRPO (token weights from how far each rollout's next-token
distribution is from the group's), Reg-GRPO (regress the log-ratio onto the
advantage), T-GRPO (a bonus when ordered frames beat shuffled ones). A rollout
batch is used for `ppo_epochs` passes of `mini_batch_size` prompts each: from
the second update on, the policy differs from the one that sampled, and the
ratio and its clipping act (one update per batch makes the ratio exactly 1).
Read this file top to bottom.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from vdata.trainers.mrsp import reduce_gradients, replica_spread
from vdata.trainers.policy import Policy, Prompt
from vdata.trainers.rewards import Reward


@dataclass
class Group:
    """One prompt and its G sampled responses, scored."""

    row: Mapping[str, Any]
    prompt: Prompt
    responses: torch.Tensor  # (G, L)
    mask: torch.Tensor  # (G, L)
    texts: list[str]
    rewards: list[Reward]
    generate_s: float = 0.0
    score_s: float = 0.0

    @property
    def totals(self) -> torch.Tensor:
        return torch.tensor([r.total for r in self.rewards], dtype=torch.float32)

    @property
    def zero_variance(self) -> bool:
        return bool(self.totals.std() == 0)


# ---------------------------------------------------------------- 1. rollout and 2. reward


def rollout(
    policy: Policy,
    rows: Sequence[Mapping[str, Any]],
    frames: Sequence[Any],
    score: Callable[[str, Mapping[str, Any]], Reward],
    config: Any,
) -> list[Group]:
    """G responses to each row's prompt, sampled in one batch, then scored: accuracy and format,
    less DAPO's overlong penalty, plus T-GRPO's temporal bonus when it is on."""
    started = time.perf_counter()
    prompts = [policy.prompt(row, row_frames) for row, row_frames in zip(rows, frames, strict=True)]
    if config.cache_video:  # MR-SP: each video through the vision tower once, a prefill per group
        from vdata.trainers.mrsp import encode_video, sample_group

        for prompt in prompts:
            if prompt.video is not None:
                prompt.video_tokens = encode_video(policy.model, prompt.video, policy.sp)
        sampled = [
            sample_group(
                policy,
                prompt,
                prompt.video_tokens,
                config.group_size,
                max_new_tokens=config.max_new_tokens,
                sp=policy.sp,
            )
            for prompt in prompts
        ]
    else:
        sampled = policy.sample(prompts, config.group_size, max_new_tokens=config.max_new_tokens)
    texts = [policy.decode(responses, mask) for responses, mask in sampled]
    bonus = [0.0] * len(rows)
    if config.temporal_bonus > 0 and policy.is_vl:
        bonus = temporal_bonuses(policy, rows, frames, score, texts, config)
    generate_s = (time.perf_counter() - started) / len(rows)
    groups = []
    for index, (row, prompt, (responses, mask), row_texts) in enumerate(
        zip(rows, prompts, sampled, texts, strict=True)
    ):
        started = time.perf_counter()
        rewards = []
        for text, length in zip(row_texts, mask.sum(-1).tolist(), strict=True):
            scored = score(text, row)
            extra = bonus[index] * scored.accuracy - overlong_penalty(length, config)
            rewards.append(Reward(scored.accuracy, scored.format, scored.total + extra))
        score_s = time.perf_counter() - started
        groups.append(Group(row, prompt, responses, mask, row_texts, rewards, generate_s, score_s))
    return groups


def overlong_penalty(length: int, config: Any) -> float:
    """DAPO's soft overlong punishment: 0 up to max_new_tokens - overlong_buffer tokens, then
    rising linearly to `overlong_penalty` at max_new_tokens."""
    if config.overlong_buffer <= 0:
        return 0.0
    start = config.max_new_tokens - config.overlong_buffer
    return max(0.0, (length - start) / config.overlong_buffer) * config.overlong_penalty


def temporal_bonuses(
    policy: Policy,
    rows: Sequence[Mapping[str, Any]],
    frames: Sequence[Any],
    score: Callable[[str, Mapping[str, Any]], Reward],
    ordered_texts: list[list[str]],
    config: Any,
) -> list[float]:
    """T-GRPO: per row, `temporal_bonus` when the group answers at least `temporal_ratio` times
    as often correctly with the frames in order as with the same frames shuffled, else 0; the
    bonus goes to the correct answers of the ordered group."""
    import numpy as np

    generator = torch.Generator().manual_seed(int(torch.randint(0, 2**31 - 1, (1,)).item()))
    shuffled = []
    for row_frames in frames:
        images = list(getattr(row_frames, "frames", row_frames))
        order = torch.randperm(len(images), generator=generator).tolist()
        mixed = [images[i] for i in order]
        # the same times (and fps) with the pictures out of order
        shuffled.append(
            dataclasses.replace(row_frames, frames=mixed)
            if hasattr(row_frames, "frames")
            else np.asarray(mixed)
        )
    prompts = [policy.prompt(row, f) for row, f in zip(rows, shuffled, strict=True)]
    sampled = policy.sample(prompts, config.group_size, max_new_tokens=config.max_new_tokens)
    bonuses = []
    for row, (responses, mask), texts in zip(rows, sampled, ordered_texts, strict=True):
        ordered = sum(score(t, row).accuracy for t in texts) / len(texts)
        mixed_texts = policy.decode(responses, mask)
        mixed = sum(score(t, row).accuracy for t in mixed_texts) / len(mixed_texts)
        bonuses.append(
            config.temporal_bonus if ordered > 0 and ordered >= config.temporal_ratio * mixed else 0.0
        )
    return bonuses


# ---------------------------------------------------------------- 3. advantage


def group_advantages(rewards: torch.Tensor, *, scale: bool = True, eps: float = 1e-6) -> torch.Tensor:
    """Each response's reward minus its group's mean, divided by the group's std when `scale`."""
    centred = rewards - rewards.mean()
    return centred / (rewards.std() + eps) if scale else centred


# ---------------------------------------------------------------- 4. the loss


def clipped_policy_loss(
    logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor, *, clip_low: float, clip_high: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token PPO loss -min(r A, clip(r, 1-low, 1+high) A), and where the clip was active."""
    ratio = torch.exp(logp - old_logp)
    advantage = advantages.unsqueeze(-1)
    unclipped = ratio * advantage
    clipped = torch.clamp(ratio, 1 - clip_low, 1 + clip_high) * advantage
    return -torch.minimum(unclipped, clipped), (clipped < unclipped).float()


def k3_kl(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """The low-variance KL estimate exp(ref - logp) - (ref - logp) - 1, per token (>= 0)."""
    delta = ref_logp - logp
    return torch.exp(delta) - delta - 1


def regression_loss(
    logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor, *, beta: float
) -> torch.Tensor:
    """Reg-GRPO: per response, (mean log-ratio, centred in the group, - beta x advantage)^2.
    Its minimum moves each response's log-probability in proportion to its advantage."""
    log_ratio = ((logp - old_logp) * mask).sum(-1) / mask.sum(-1).clamp(min=1)
    centred = log_ratio - log_ratio.mean()
    per_sequence = (centred - beta * advantages) ** 2
    return per_sequence.unsqueeze(-1).expand_as(logp)


def divergence_weights(
    distributions: torch.Tensor, mask: torch.Tensor, alpha: float, clamp: float = 11.0
) -> torch.Tensor:
    """TW-GRPO's token weights (its paper and code): at each position t, each rollout's full
    next-token log-distribution log p_i (a position past a rollout's end counts as uniform) is
    compared with the group's geometric mean m = mean_i log p_i by sum over the vocabulary of
    exp(d) - d - 1, d = m - log p_i (clamped to +-`clamp`); the position's score is the mean over
    rollouts, min-max normalised over positions, and its weight 1 + (alpha - 1) x score, the
    same for every rollout. `distributions` (G, L, V) are constants here: no gradient flows
    through the weights."""
    group, length, vocab = distributions.shape
    on = mask.bool().unsqueeze(-1).to(distributions.device)
    uniform = torch.full_like(distributions, -math.log(vocab))
    logp = torch.where(on, distributions, uniform)
    mean = logp.mean(dim=0, keepdim=True)
    d = (mean - logp).clamp(-clamp, clamp)
    score = (torch.exp(d) - d - 1).sum(-1).mean(0)  # (L,)
    low, high = score.min(), score.max()
    normalised = (score - low) / (high - low + 1e-8)
    weights = 1.0 + (alpha - 1.0) * normalised
    return weights.unsqueeze(0).expand(group, length)


def aggregate(
    values: torch.Tensor, mask: torch.Tensor, mode: str, totals: tuple[float, float]
) -> torch.Tensor:
    """Sum of this group's share of the batch loss: token-mean divides by all tokens of the
    batch, seq-mean-token-mean averages each response over its tokens, then over responses."""
    all_tokens, all_sequences = totals
    if mode == "token-mean":
        return (values * mask).sum() / all_tokens
    per_sequence = (values * mask).sum(-1) / mask.sum(-1).clamp(min=1)
    return per_sequence.sum() / all_sequences


# ---------------------------------------------------------------- 5. the step


def grpo_step(
    policy: Policy,
    reference: Any,
    optimizer: torch.optim.Optimizer,
    groups: Sequence[Group],
    config: Any,
) -> dict[str, float]:
    """Old and reference log-probs, then `ppo_epochs` passes over the groups in mini-batches of
    `mini_batch_size` prompts, one optimizer update each. Returns the step's loss metrics;
    `groups` come from `rollout` (and dynamic sampling, in the loop)."""
    device = policy.device
    timings: dict[str, float] = {}
    batches = _mini_batches(len(groups), config.mini_batch_size)
    several = config.ppo_epochs > 1 or len(batches) > 1
    tw = config.algorithm == "tw-grpo"
    started = time.perf_counter()
    old: list[torch.Tensor | None] = [None] * len(groups)  # one update: the ratio's base is logp itself
    weights: list[torch.Tensor | None] = [None] * len(groups)
    micro = 0 if config.algorithm == "reg-grpo" else config.response_micro_batch  # its loss couples rows
    with torch.no_grad():
        if several or tw:
            for i, g in enumerate(groups):
                parts = [
                    policy.log_probs(g.prompt, g.responses[rows], distributions=tw)
                    for rows in _row_slices(g.responses.shape[0], micro)
                ]
                old[i] = torch.cat([part[0] for part in parts]) if several else None
                if tw:
                    distributions = torch.cat([part[2] for part in parts])
                    weights[i] = divergence_weights(distributions, g.mask, config.tw_alpha)
        refs = [
            torch.cat(
                [
                    policy.log_probs(g.prompt, g.responses[rows], model=reference)[0]
                    for rows in _row_slices(g.responses.shape[0], micro)
                ]
            )
            if config.kl_coef > 0
            else None
            for g in groups
        ]
    _sync(device)
    timings["logprob_s"] = time.perf_counter() - started

    started = time.perf_counter()
    masks = [g.mask.to(device).float() for g in groups]
    advantages = [group_advantages(g.totals, scale=config.scale_rewards).to(device) for g in groups]
    sums = {"loss": 0.0, "kl": 0.0, "entropy": 0.0, "clip": 0.0, "tokens": 0.0, "ratio_dev": 0.0}
    norms, skipped, updates = [], 0, 0
    parameters = [p for p in policy.model.parameters() if p.requires_grad]
    for _ in range(config.ppo_epochs):
        for batch in batches:
            totals = (
                float(sum(masks[i].sum() for i in batch)),
                float(sum(masks[i].shape[0] for i in batch)),
            )
            optimizer.zero_grad(set_to_none=True)
            policy.model.train()  # gradient checkpointing acts only in training mode
            for i in batch:
                group = groups[i]
                for rows in _row_slices(group.responses.shape[0], micro):
                    mask = masks[i][rows]
                    logp, entropy = policy.log_probs(group.prompt, group.responses[rows], entropy=True)
                    base = old[i][rows] if old[i] is not None else logp.detach()
                    advantage = advantages[i][rows]
                    if config.algorithm == "reg-grpo":
                        per_token = regression_loss(logp, base, advantage, mask, beta=config.reg_beta)
                        clipped = torch.zeros_like(per_token)
                    else:
                        per_token, clipped = clipped_policy_loss(
                            logp, base, advantage, clip_low=config.clip_low, clip_high=config.clip_high
                        )
                    if weights[i] is not None:
                        per_token = per_token * weights[i][rows].to(device)
                    ref_logp = refs[i][rows] if refs[i] is not None else None
                    kl = k3_kl(logp, ref_logp) if ref_logp is not None else torch.zeros_like(logp)
                    loss = aggregate(per_token + config.kl_coef * kl, mask, config.loss_aggregation, totals)
                    loss.backward()
                    sums["loss"] += loss.item()
                    sums["kl"] += float((kl.detach() * mask).sum())
                    sums["entropy"] += float((entropy.detach() * mask).sum())
                    sums["clip"] += float((clipped * mask).sum())
                    sums["ratio_dev"] += float(((logp.detach() - base).exp() - 1).abs().mul(mask).sum())
                    sums["tokens"] += float(mask.sum())
            reduce_gradients(parameters, policy.sp)  # MR-SP: each rank's backward saw its shard
            policy.model.eval()
            grad_norm = torch.nn.utils.clip_grad_norm_(parameters, config.max_grad_norm)
            if not torch.isfinite(grad_norm):  # a NaN or inf gradient never reaches the weights
                optimizer.zero_grad(set_to_none=True)
                skipped += 1
                continue
            optimizer.step()
            norms.append(float(grad_norm))
            updates += 1
    _sync(device)
    timings["update_s"] = time.perf_counter() - started
    tokens = max(sums["tokens"], 1.0)
    return {
        "loss": sums["loss"] / max(config.ppo_epochs * len(batches), 1),
        "kl": sums["kl"] / tokens,
        "entropy": sums["entropy"] / tokens,
        "clip_fraction": sums["clip"] / tokens,
        "ratio_deviation": sums["ratio_dev"] / tokens,  # mean |ratio - 1| over the updates
        "grad_norm": sum(norms) / len(norms) if norms else float("nan"),
        "updates": updates,
        "skipped_updates": skipped,
        **({"replica_spread": replica_spread(parameters, policy.sp)} if policy.sp.size > 1 else {}),
        **timings,
    }


def _mini_batches(n: int, size: int) -> list[list[int]]:
    """Group indices in mini-batches of `size` (0: one batch of all)."""
    size = size if size > 0 else n
    return [list(range(start, min(start + size, n))) for start in range(0, n, size)]


def _row_slices(n: int, size: int) -> list[slice]:
    """A group's responses in forwards of `size` (0: all in one)."""
    return [slice(rows[0], rows[-1] + 1) for rows in _mini_batches(n, size)]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
