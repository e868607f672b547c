"""One GRPO step, in order: rollout, reward, advantage, old and reference log-probs, loss, update.

The objective's pieces are small functions the step calls; the variants are
flags on them: DAPO (clip-higher, dynamic sampling in the training loop),
TW-GRPO (token weights from the group's disagreement), Reg-GRPO (regress the
log-ratio onto the advantage). Read this file top to bottom.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

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
    """G responses to each row's prompt, sampled in one batch, then scored."""
    started = time.perf_counter()
    prompts = [policy.prompt(row, row_frames) for row, row_frames in zip(rows, frames, strict=True)]
    sampled = policy.sample(
        prompts,
        config.group_size,
        max_new_tokens=config.max_new_tokens,
        temperature=config.temperature,
        top_p=config.top_p,
    )
    texts = [policy.decode(responses, mask) for responses, mask in sampled]
    generate_s = (time.perf_counter() - started) / len(rows)
    groups = []
    for row, prompt, (responses, mask), row_texts in zip(rows, prompts, sampled, texts, strict=True):
        started = time.perf_counter()
        rewards = [score(text, row) for text in row_texts]
        score_s = time.perf_counter() - started
        groups.append(Group(row, prompt, responses, mask, row_texts, rewards, generate_s, score_s))
    return groups


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


def disagreement_weights(responses: torch.Tensor, mask: torch.Tensor, alpha: float) -> torch.Tensor:
    """TW-GRPO: weight each position by how much the group's sampled tokens disagree there,
    scaled to [1, alpha]; positions where all responses agree keep weight 1."""
    group, length = responses.shape
    weights = torch.ones(length)
    disagreement = torch.zeros(length)
    for t in range(length):
        active = responses[mask[:, t].bool(), t]
        if len(active) > 1:
            most = torch.bincount(active).max().item()
            disagreement[t] = 1 - most / len(active)
    if disagreement.max() > 0:
        weights = 1 + (alpha - 1) * disagreement / disagreement.max()
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
    """Old and reference log-probs, the loss over all groups, one optimizer update. Returns the
    step's loss metrics; `groups` come from `rollout` (and dynamic sampling, in the loop)."""
    device = policy.device
    timings: dict[str, float] = {}
    started = time.perf_counter()
    with torch.no_grad():
        old = [policy.log_probs(g.prompt, g.responses)[0] for g in groups]
        refs = [
            policy.log_probs(g.prompt, g.responses, model=reference)[0] if config.kl_coef > 0 else None
            for g in groups
        ]
    _sync(device)
    timings["logprob_s"] = time.perf_counter() - started

    started = time.perf_counter()
    masks = [g.mask.to(device).float() for g in groups]
    totals = (float(sum(m.sum() for m in masks)), float(sum(m.shape[0] for m in masks)))
    optimizer.zero_grad(set_to_none=True)
    sums = {"loss": 0.0, "kl": 0.0, "entropy": 0.0, "clip": 0.0}
    for group, mask, old_logp, ref_logp in zip(groups, masks, old, refs, strict=True):
        advantages = group_advantages(group.totals, scale=config.scale_rewards).to(device)
        logp, entropy = policy.log_probs(group.prompt, group.responses, entropy=True)
        if config.algorithm == "reg-grpo":
            per_token = regression_loss(logp, old_logp, advantages, mask, beta=config.kl_coef)
            clipped = torch.zeros_like(per_token)
        else:
            per_token, clipped = clipped_policy_loss(
                logp, old_logp, advantages, clip_low=config.clip_low, clip_high=config.clip_high
            )
        if config.algorithm == "tw-grpo":
            per_token = per_token * disagreement_weights(group.responses, group.mask, config.tw_alpha).to(
                device
            )
        kl = k3_kl(logp, ref_logp) if ref_logp is not None else torch.zeros_like(logp)
        loss = aggregate(per_token + config.kl_coef * kl, mask, config.loss_aggregation, totals)
        loss.backward()
        sums["loss"] += loss.item()
        sums["kl"] += float((kl.detach() * mask).sum())
        sums["entropy"] += float((entropy.detach() * mask).sum())
        sums["clip"] += float((clipped * mask).sum())
    parameters = [p for p in policy.model.parameters() if p.requires_grad]
    grad_norm = torch.nn.utils.clip_grad_norm_(parameters, config.max_grad_norm)
    optimizer.step()
    _sync(device)
    timings["update_s"] = time.perf_counter() - started
    return {
        "loss": sums["loss"],
        "kl": sums["kl"] / totals[0],
        "entropy": sums["entropy"] / totals[0],
        "clip_fraction": sums["clip"] / totals[0],
        "grad_norm": float(grad_norm),
        **timings,
    }


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
