"""The question a policy is asked: the row's question, its options, and the answer format its
reward reads. One text for training rollouts and for curation with models (difficulty, blind
checks), so that a pass rate measured before training is the rate of the prompt trained on.
Imports nothing heavy: filters read it without torch."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

INSTRUCTIONS = {
    "multiple choice": "Give only the option letter (A, B, C, ...) inside <answer> </answer>.",
    "multi-answer": "Give every correct option letter, separated by commas (A,C), inside <answer> </answer>.",
    "yes/no": "Give yes or no inside <answer> </answer>.",
    "numerical": "Give the number inside <answer> </answer>.",
    "regression": "Give the number inside <answer> </answer>.",
    "OCR": "Give the text inside <answer> </answer>.",
    "free-form": "Give your answer inside <answer> </answer>.",
    "temporal grounding": "Give the start and end in seconds, as start-end, inside <answer> </answer>.",
}


def question_text(row: Mapping[str, Any]) -> str:
    """The question, its options, and the answer format its reward reads."""
    lines = [str(row.get("problem") or "")]
    lines += list(row.get("options") or [])
    lines.append("Think inside <think> </think> first.")
    lines.append(INSTRUCTIONS.get(str(row.get("problem_type")), INSTRUCTIONS["free-form"]))
    return "\n".join(lines)
