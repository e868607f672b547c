"""Rows of other trainers' formats, made from canonical records."""

from __future__ import annotations

from typing import Any


def to_easyr1(record: dict[str, Any]) -> dict[str, Any]:
    """The EasyR1 / Long-RL video row: options inline in `problem`, `answer` as <answer>X</answer>,
    `videos` a list of paths relative to the dataset root."""
    problem = record["problem"]
    if record.get("options"):
        problem = problem + "\n" + "\n".join(record["options"])
    return {
        "problem": problem,
        "answer": record["solution"],
        "videos": [record["path"]],
        "problem_type": record["problem_type"],
        "category": record.get("category", ""),
        "data_type": record.get("data_type", "video"),
    }
