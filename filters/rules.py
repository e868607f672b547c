"""Row rules: keep a row, or name why not. Each is a stage function (vdata.stages)."""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path
from typing import Any

from vdata.record import rebased_path, validate
from vdata.stages import Reject, StageContext, StageOutput


def validate_row(
    row: dict[str, Any], ctx: StageContext, *, media_root: str | None = None
) -> dict[str, Any] | Reject:
    """Keeps rows with no validation error; the reject's reason is the first error's code. With
    `media_root`, paths are rewritten relative to it (absolute ones too) and a row whose file is
    not there is rejected as missing_media."""
    if media_root and isinstance(row.get("path"), str):
        row = {**row, "path": rebased_path(row["path"], media_root)}
    errors = [p for p in validate(row) if p.severity == "error"]
    if errors:
        return Reject(errors[0].code, "; ".join(f"{p.code}: {p.message}" for p in errors))
    if media_root and isinstance(row.get("path"), str) and not (Path(media_root) / row["path"]).exists():
        return Reject("missing_media", f"{row['path']} is not under {media_root}")
    return row


def length_row(
    row: dict[str, Any],
    ctx: StageContext,
    *,
    min_question: int = 0,
    max_question: int | None = None,
    min_reasoning: int = 0,
    max_reasoning: int | None = None,
) -> dict[str, Any] | Reject:
    """Keeps rows whose question and reasoning (`process`, without its tags) have a length in
    characters within the bounds. A row with no reasoning has length 0."""
    question = row.get("problem") if isinstance(row.get("problem"), str) else ""
    reasoning = row.get("process") if isinstance(row.get("process"), str) else ""
    reasoning = reasoning.replace("<think>", "").replace("</think>", "").strip()
    for name, text, low, high in (
        ("question", question.strip(), min_question, max_question),
        ("reasoning", reasoning, min_reasoning, max_reasoning),
    ):
        if len(text) < low:
            return Reject(f"{name}_too_short", f"{name} has {len(text)} characters; the minimum is {low}")
        if high is not None and len(text) > high:
            return Reject(f"{name}_too_long", f"{name} has {len(text)} characters; the maximum is {high}")
    return row


def sample_rows(
    rows: list[dict[str, Any]],
    ctx: StageContext,
    *,
    n: int | None = None,
    fraction: float | None = None,
    by: tuple[str, ...] = ("split", "category"),
) -> StageOutput:
    """A seeded sample of n rows (or a fraction), stratified: each stratum (split x category)
    keeps its share, largest remainders first, so that small strata are not lost to rounding."""
    if (n is None) == (fraction is None):
        raise ValueError("give exactly one of n and fraction")
    total = len(rows)
    want = min(total, n) if n is not None else round(total * fraction)
    strata: dict[tuple[str, ...], list[int]] = defaultdict(list)
    for index, row in enumerate(rows):
        strata[tuple(str(row.get(key) or "") for key in by)].append(index)
    quotas = {key: want * len(members) / total if total else 0 for key, members in strata.items()}
    take = {key: math.floor(q) for key, q in quotas.items()}
    left = want - sum(take.values())
    for key in sorted(quotas, key=lambda k: (-(quotas[k] - take[k]), k))[:left]:
        take[key] += 1
    chosen: set[int] = set()
    for key, members in sorted(strata.items()):
        chosen.update(ctx.rng("sample", *key).sample(members, take[key]))
    out = StageOutput()
    for index, row in enumerate(rows):
        if index in chosen:
            out.rows.append(row)
        else:
            stratum = ", ".join(f"{k}={v or '-'}" for k, v in zip(by, _key(row, by), strict=True))
            out.rejects.append(Reject.of_row(row, "not_sampled", f"not in the sample of {want} ({stratum})"))
    return out


def _key(row: dict[str, Any], by: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(str(row.get(key) or "") for key in by)
