"""Answer letters: how skewed they are, and a filter that makes them uniform.

A model learns the prior of a skewed answer key: in LongVideo-Reason's test set
the answer is B 44.1% of the time, so always answering B scores 44.1%
(METHODS.md). `letter_stats` measures it per split with a chi-square test
against the uniform letter of each row's option count; `balance_letters`
permutes each row's options so that its answer lands on an assigned letter.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import polars as pl

from vdata.record import CHOICE_TYPES, answer_letters, solution_of, validate
from vdata.stages import Reject, StageContext, StageOutput

# a split is skewed when the letters are unlikely under uniform answers (p below this) ...
SKEW_P = 1e-3
# ... and the most common letter beats its uniform share by at least this much
SKEW_MARGIN = 0.02


@dataclass
class LetterStats:
    split: str
    rows: int  # single-answer choice rows counted
    counts: dict[str, int]
    expected: dict[str, float]
    chi2: float
    p_value: float
    always_letter: str
    always_accuracy: float  # the score of always answering `always_letter`
    uniform_accuracy: float  # what always answering that letter scores when letters are uniform

    @property
    def skewed(self) -> bool:
        return self.p_value < SKEW_P and self.always_accuracy - self.uniform_accuracy >= SKEW_MARGIN


def letter_stats(frame: pl.DataFrame) -> list[LetterStats]:
    """Per split, letters of single-answer choice rows with readable options and answer."""
    single = frame.filter(
        (pl.col("problem_type") == "multiple choice")
        & (pl.col("n_options") >= 2)
        & pl.col("answer").str.contains(r"^[A-Z]$")
    ).select("split", "answer", "n_options")
    stats = []
    for (split,), part in sorted(single.group_by("split"), key=lambda item: item[0][0]):
        counts = dict(part.group_by("answer").len().sort("answer").iter_rows())
        per_count = dict(part.group_by("n_options").len().iter_rows())
        expected: dict[str, float] = defaultdict(float)
        for k, rows in per_count.items():
            for i in range(k):
                expected[chr(65 + i)] += rows / k
        letters = sorted(set(expected) | set(counts))
        chi2 = sum(
            (counts.get(letter, 0) - expected[letter]) ** 2 / expected[letter]
            for letter in letters
            if expected.get(letter, 0) > 0
        )
        always = max(letters, key=lambda letter: (counts.get(letter, 0), -ord(letter)))
        n = part.height
        stats.append(
            LetterStats(
                split=split,
                rows=n,
                counts={letter: counts.get(letter, 0) for letter in letters},
                expected={letter: round(expected.get(letter, 0.0), 2) for letter in letters},
                chi2=round(chi2, 3),
                p_value=chi2_sf(chi2, max(len([e for e in expected.values() if e > 0]) - 1, 1)),
                always_letter=always,
                always_accuracy=counts.get(always, 0) / n,
                uniform_accuracy=expected.get(always, 0.0) / n,
            )
        )
    return stats


def chi2_sf(x: float, df: int) -> float:
    """P(X >= x) for a chi-square variable with integer `df` degrees of freedom (closed form)."""
    if x <= 0:
        return 1.0
    half = x / 2
    if df % 2 == 0:
        terms = (math.exp(-half + i * math.log(half) - math.lgamma(i + 1)) for i in range(df // 2))
        return min(1.0, sum(terms))
    tail = math.erfc(math.sqrt(half))
    terms = (
        math.exp(-half + (i - 0.5) * math.log(half) - math.lgamma(i + 0.5)) for i in range(1, df // 2 + 1)
    )
    return min(1.0, tail + sum(terms))


# ---------------------------------------------------------------- the filter

_CHOICE_CODES = {
    "too_few_options",
    "option_format",
    "option_letters",
    "duplicate_options",
    "solution_format",
    "empty_answer",
    "answer_not_in_options",
    "duplicate_answer_letters",
    "single_answer_expected",
    "wrong_type",
    "missing_field",
}
_LETTER_REFERENCE = re.compile(
    r"(?P<lead>\b(?i:option|answer|choice)(?:\s+is)?\s+\(?)(?P<letter>[A-Z])(?=\)?(?:\W|$))"
    r"|(?P<paren>\()(?P<pletter>[A-Z])(?=\))"
    r"|(?P<tag><answer>)(?P<set>[A-Z](?:\s*,\s*[A-Z])*)(?=</answer>)"
)


def balance_letters(rows: list[dict[str, Any]], ctx: StageContext) -> StageOutput:
    """Within each split, single answers spread evenly over the letters (per option count);
    multi-answer rows get their options shuffled. Seeded: the same seed, the same dataset.
    Letter references in the reasoning ("option B", "(B)", <answer>B</answer>) follow the move."""
    out = StageOutput()
    groups: dict[tuple[str, int], list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        problem_type = row.get("problem_type")
        if problem_type not in CHOICE_TYPES:
            out.rows.append(row)
            continue
        problems = [p for p in validate(row) if p.code in _CHOICE_CODES]
        if problems:
            detail = "; ".join(p.message for p in problems)
            out.rejects.append(Reject.of_row(row, "invalid_choice", f"cannot move the answer: {detail}"))
            continue
        if problem_type == "multi-answer":
            order = list(range(len(row["options"])))
            ctx.rng("options", row["id"]).shuffle(order)
            out.rows.append(permute_options(row, order))
            continue
        groups[(row.get("split") or "", len(row["options"]))].append(row)
    for (split, k), items in sorted(groups.items()):
        items.sort(key=lambda r: r["id"])
        letters = [chr(65 + i) for i in range(k)]
        targets = [letters[i % k] for i in range(len(items))]
        ctx.rng("letters", split, k).shuffle(targets)
        for row, target in zip(items, targets, strict=True):
            out.rows.append(move_answer(row, target, ctx.rng("options", row["id"])))
    return out


def move_answer(row: dict[str, Any], target: str, rng: Any) -> dict[str, Any]:
    """The row with its options permuted so that the correct one has letter `target`;
    the other options in random order."""
    answer = answer_letters(row["solution"])[0]
    k = len(row["options"])
    old = ord(answer) - 65
    others = [i for i in range(k) if i != old]
    rng.shuffle(others)
    position = ord(target) - 65
    return permute_options(row, others[:position] + [old] + others[position:])


def permute_options(row: dict[str, Any], order: list[int]) -> dict[str, Any]:
    """The row with option order[j] placed at letter j; answer and reasoning relabelled."""
    texts = [option.split(".", 1)[1].strip() for option in row["options"]]
    new_letter = {chr(65 + old): chr(65 + new) for new, old in enumerate(order)}
    picked = sorted(new_letter[letter] for letter in answer_letters(row["solution"]))
    moved = {
        **row,
        "options": [f"{chr(65 + j)}. {texts[old]}" for j, old in enumerate(order)],
        "solution": solution_of(picked),
    }
    if isinstance(row.get("process"), str):
        moved["process"] = relabel_letters(row["process"], new_letter)
    return moved


def relabel_letters(text: str, new_letter: dict[str, str]) -> str:
    """Letter references ("option B", "answer is (C)", "(B)", <answer>A,C</answer>) renamed."""

    def rename(match: re.Match[str]) -> str:
        if match.group("tag"):
            letters = sorted(new_letter.get(x.strip(), x.strip()) for x in match.group("set").split(","))
            return match.group("tag") + ",".join(letters)
        if match.group("lead"):
            return match.group("lead") + new_letter.get(match.group("letter"), match.group("letter"))
        return match.group("paren") + new_letter.get(match.group("pletter"), match.group("pletter"))

    return _LETTER_REFERENCE.sub(rename, text)
