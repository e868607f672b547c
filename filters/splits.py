"""Splits by video: no video's questions in two splits, so that eval never sees a training video."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from vdata.stages import StageContext, StageOutput


def video_key(row: Mapping[str, Any]) -> str:
    """What makes two rows the same video: its content hash when known, else its path."""
    video = row.get("video")
    if isinstance(video, Mapping) and video.get("sha256"):
        return str(video["sha256"])
    return str(row.get("path") or "")


def split_by_video(
    rows: list[dict[str, Any]], ctx: StageContext, *, eval_fraction: float, sft_share: float = 1 / 3
) -> StageOutput:
    """Seeded: `eval_fraction` of the videos to eval first (at least one when asked for and there
    are two), then `sft_share` of the rest to sft, the rest to rl."""
    videos = sorted({video_key(r) for r in rows})
    order = ctx.rng("videos").sample(videos, len(videos))
    n_eval = round(len(order) * eval_fraction) if eval_fraction else 0
    if eval_fraction and n_eval == 0 and len(order) > 1:
        n_eval = 1
    rest = order[n_eval:]
    n_sft = round(len(rest) * sft_share)
    split_of = {v: "eval" for v in order[:n_eval]}
    split_of |= {v: "sft" for v in rest[:n_sft]} | {v: "rl" for v in rest[n_sft:]}
    return StageOutput(rows=[{**r, "split": split_of[video_key(r)]} for r in rows])
