"""The question a policy is asked: the row's question, its options, and the answer format its
reward reads (for a policy that reads no video, after the row's evidence notes). One text for
training rollouts and for curation with models (difficulty, blind checks), so that a pass
rate measured before training is the rate of the prompt trained on.
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


NOTES_HEADER = "You cannot see the video. These notes describe it:"


def evidence_notes(row: Mapping[str, Any]) -> list[str] | None:
    """The row's evidence as timestamped lines ("[1.0s-3.0s] a child throws the ball"); None
    when it has no evidence text."""
    items = [
        e for e in row.get("evidence") or [] if isinstance(e, Mapping) and str(e.get("text") or "").strip()
    ]
    if not items:
        return None
    return [
        f"[{e.get('start_s') or 0:.1f}s-{e.get('end_s') or 0:.1f}s] {str(e['text']).strip()}" for e in items
    ]


def described_question(row: Mapping[str, Any]) -> str:
    """The question for a policy that reads no video: the row's evidence notes (the synthetic
    world's event phrases, a recipe's clues) in the video's place, then the question; the bare
    question when the row has no evidence text. The difficulty filter's `describe` and the
    trainer's text-only rollouts both ask this, so a pass rate is the rate of the trained prompt."""
    notes = evidence_notes(row)
    if not notes:
        return question_text(row)
    return "\n".join([NOTES_HEADER, *notes, "", question_text(row)])
