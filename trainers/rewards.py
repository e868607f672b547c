"""Rewards: pure functions of a response and a row (METHODS.md, "Video-R1 rewards and row").

`reward(response, row)` picks the accuracy rule by the row's `problem_type` and
adds the format reward: 0.9 x accuracy + 0.1 x format by default. Malformed
responses score 0, never raise.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from vdata import thinker
from vdata.record import ANSWER_TAG, solution_answer

PROBLEM_TYPES_WITH_REWARDS = (
    "multiple choice",
    "multi-answer",
    "yes/no",
    "numerical",
    "regression",
    "OCR",
    "free-form",
    "temporal grounding",
)
_ANSWER = re.compile(ANSWER_TAG, re.DOTALL)  # a response's answer: its first tag, anywhere
_THINK_FORMAT = re.compile(rf"<think>.*?</think>\s*{ANSWER_TAG}", re.DOTALL)
_LETTER = re.compile(r"^\s*(?:option\s+)?\(?([A-Z])\)?(?=[.):,\s]|$)", re.IGNORECASE)
# a number, with thousands separators ("1,500") read as one number, not "1" then "500"
_NUMBER = re.compile(r"[-+]?(?:\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d*\.?\d+)(?:[eE][-+]?\d+)?")


def extract_answer(response: str, *, tolerant: bool = False) -> str | None:
    """The text inside the first <answer>...</answer>; with `tolerant`, what follows an <answer>
    that is never closed (a response that stopped inside it), else the whole response when it
    has no tags. None when there is nothing to read."""
    match = _ANSWER.search(response)
    if match:
        return match.group(1).strip()
    if not tolerant:
        return None
    opened = response.find("<answer>")
    text = response[opened + len("<answer>") :] if opened >= 0 else response
    return text.strip() or None


def option_letter(answer: str, *, tolerant: bool = False) -> str | None:
    """'B' from 'B'; with `tolerant` also from 'B.', '(B)', 'B. text', 'option B'."""
    text = answer.strip()
    if re.fullmatch(r"[A-Z]", text):
        return text
    if not tolerant:
        return None
    match = _LETTER.match(text)
    return match.group(1).upper() if match else None


def letters_of(answer: str) -> set[str] | None:
    """{'A', 'C'} from 'A,C' or 'A, C'; None when a part is not a single letter."""
    parts = [p.strip() for p in answer.split(",") if p.strip()]
    if not parts or not all(re.fullmatch(r"[A-Z]", p) for p in parts):
        return None
    return set(parts)


def gold_answer(row: Mapping[str, Any]) -> str:
    """The row's answer: inside its <answer> tag, or the whole solution when it has none."""
    solution = str(row.get("solution") or "")
    tagged = solution_answer(solution)
    return tagged if tagged is not None else solution.strip()


# ---------------------------------------------------------------- accuracy by type


def multiple_choice(response: str, gold: str, *, tolerant: bool = False) -> float:
    answer = extract_answer(response, tolerant=tolerant)
    return float(answer is not None and option_letter(answer, tolerant=tolerant) == gold.strip())


def multi_answer(response: str, gold: str, *, strict: bool = False) -> float:
    """Soft: |pred| / |gold| when pred is a non-empty subset of gold, else 0. Strict: 1 iff equal."""
    answer = extract_answer(response)
    predicted, wanted = letters_of(answer or ""), letters_of(gold)
    if predicted is None or wanted is None:
        return 0.0
    if strict:
        return float(predicted == wanted)
    return len(predicted) / len(wanted) if predicted <= wanted else 0.0


def yes_no(response: str, gold: str) -> float:
    answer = extract_answer(response)
    if answer is None:
        return 0.0
    first = re.findall(r"[a-z]+", answer.lower())[:1]
    wanted = re.findall(r"[a-z]+", gold.lower())[:1]
    return float(bool(first) and bool(wanted) and first == wanted)


def numerical(response: str, gold: str) -> float:
    """Equal after rounding both to 2 decimals."""
    predicted, wanted = _number(extract_answer(response)), _number(gold)
    return float(predicted is not None and wanted is not None and round(predicted, 2) == round(wanted, 2))


def regression(response: str, gold: str) -> float:
    """1 - relative error, clipped to [0, 1]."""
    predicted, wanted = _number(extract_answer(response)), _number(gold)
    if predicted is None or wanted is None:
        return 0.0
    if wanted == 0:
        return float(predicted == 0)
    return min(1.0, max(0.0, 1.0 - abs(predicted - wanted) / abs(wanted)))


def ocr(response: str, gold: str) -> float:
    """1 - word error rate, clipped at 0."""
    answer = extract_answer(response)
    if answer is None:
        return 0.0
    reference, hypothesis = gold.lower().split(), answer.lower().split()
    if not reference:
        return float(not hypothesis)
    return max(0.0, 1.0 - _edit_distance(reference, hypothesis) / len(reference))


def free_form(response: str, gold: str) -> float:
    """Mean of ROUGE-1, ROUGE-2 and ROUGE-L F-measures; ROUGE-2 only for a reference of two
    words or more (a one-word reference has no bigram, and its exact answer must score 1, not
    the 2/3 that counting an impossible bigram gives)."""
    answer = extract_answer(response)
    if answer is None:
        return 0.0
    reference, hypothesis = _words(gold), _words(answer)
    scores = [_ngram_f(reference, hypothesis, 1), _lcs_f(reference, hypothesis)]
    if len(reference) >= 2:
        scores.append(_ngram_f(reference, hypothesis, 2))
    return sum(scores) / len(scores)


def free_form_meaning(response: str, gold: str) -> float:
    """Cosine similarity of the answer's and the reference's sentence embeddings (the packaged
    all-MiniLM-L6-v2), clipped at 0: "it vanishes" and "the ball disappears" agree, which ROUGE,
    counting shared words, does not see (VideoHallu scored free-form answers by meaning too)."""
    from vdata.embeddings import similarity

    answer = extract_answer(response)
    if answer is None or not answer.strip():
        return 0.0
    return max(0.0, similarity(answer, gold))


def temporal_iou(response: str, gold: str) -> float:
    """IoU of the predicted and gold [start, end] spans (seconds)."""
    predicted, wanted = _span(extract_answer(response)), _span(gold)
    if predicted is None or wanted is None:
        return 0.0
    return span_iou(predicted, wanted)


def span_iou(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Intersection over union of two [start, end] spans; 0 when the union is empty."""
    inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    union = max(a[1], b[1]) - min(a[0], b[0])
    return inter / union if union > 0 else 0.0


def format_reward(response: str, style: str = "think") -> float:
    """1 when the whole response is `<think>..</think> <answer>..</answer>` (style 'think') or
    Video-Thinker's `<time>..</time> <caption>..</caption> <think>..</think>` blocks then the
    answer (style 'thinker')."""
    if style == "thinker":  # the blocks parsed and checked by the rules the recipe writes them by
        return float(not isinstance(thinker.parse(response), str))
    return float(_THINK_FORMAT.fullmatch(response.strip()) is not None)


# ---------------------------------------------------------------- the total


@dataclass(frozen=True)
class RewardConfig:
    accuracy_weight: float = 0.9
    format_weight: float = 0.1
    format_style: str = "think"  # think | thinker
    tolerant_letters: bool = False  # Video-R1's strict rule by default
    multi_answer_strict: bool = False
    free_form: str = "rouge"  # rouge | embedding (free_form_meaning)


FREE_FORM_RULES = ("rouge", "embedding")


@dataclass(frozen=True)
class Reward:
    accuracy: float
    format: float
    total: float


def accuracy(response: str, row: Mapping[str, Any], config: RewardConfig = RewardConfig()) -> float:
    gold = gold_answer(row)
    kind = row.get("problem_type")
    if kind == "multiple choice":
        return multiple_choice(response, gold, tolerant=config.tolerant_letters)
    if kind == "multi-answer":
        return multi_answer(response, gold, strict=config.multi_answer_strict)
    rules = {
        "yes/no": yes_no,
        "numerical": numerical,
        "regression": regression,
        "OCR": ocr,
        "free-form": free_form_meaning if config.free_form == "embedding" else free_form,
        "temporal grounding": temporal_iou,
    }
    if kind not in rules:
        raise ValueError(
            f"no reward for problem_type {kind!r}; known: multiple choice, multi-answer, {', '.join(rules)}"
        )
    return rules[kind](response, gold)


def reward(response: str, row: Mapping[str, Any], config: RewardConfig = RewardConfig()) -> Reward:
    acc = accuracy(response, row, config)
    fmt = format_reward(response, config.format_style)
    return Reward(acc, fmt, config.accuracy_weight * acc + config.format_weight * fmt)


# ---------------------------------------------------------------- helpers


def _number(text: str | None) -> float | None:
    match = _NUMBER.search(text or "")
    return float(match.group(0).replace(",", "")) if match else None


def _span(text: str | None) -> tuple[float, float] | None:
    numbers = [float(n) for n in re.findall(r"\d*\.?\d+", text or "")]
    if len(numbers) < 2 or numbers[1] < numbers[0]:
        return None
    return numbers[0], numbers[1]


def _words(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


def _ngram_f(reference: list[str], hypothesis: list[str], n: int) -> float:
    ref = Counter(tuple(reference[i : i + n]) for i in range(len(reference) - n + 1))
    hyp = Counter(tuple(hypothesis[i : i + n]) for i in range(len(hypothesis) - n + 1))
    overlap = sum((ref & hyp).values())
    if not overlap:
        return 0.0
    precision, recall = overlap / sum(hyp.values()), overlap / sum(ref.values())
    return 2 * precision * recall / (precision + recall)


def _lcs_f(reference: list[str], hypothesis: list[str]) -> float:
    if not reference or not hypothesis:
        return 0.0
    previous = [0] * (len(hypothesis) + 1)
    for word in reference:
        current = [0]
        for j, other in enumerate(hypothesis):
            current.append(previous[j] + 1 if word == other else max(previous[j + 1], current[j]))
        previous = current
    lcs = previous[-1]
    if not lcs:
        return 0.0
    precision, recall = lcs / len(hypothesis), lcs / len(reference)
    return 2 * precision * recall / (precision + recall)


def _edit_distance(a: list[str], b: list[str]) -> int:
    previous = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        current = [i]
        for j, y in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (x != y)))
        previous = current
    return previous[-1]


# ---------------------------------------------------------------- for other trainers


def verl_compute_score(
    data_source: str, solution_str: str, ground_truth: str, extra_info: Mapping[str, Any] | None = None
) -> dict[str, float]:
    """vdata's reward in verl's custom-reward signature, for `vdata export --format verl` rows
    (verl has no built-in reward for their data sources): the rule by `extra_info.problem_type`
    against `ground_truth`, the bare answer. Run verl with
    reward.custom_reward_function.path=pkg://vdata.trainers.rewards
    reward.custom_reward_function.name=verl_compute_score."""
    kind = (extra_info or {}).get("problem_type") or "multiple choice"
    scored = reward(solution_str, {"solution": f"<answer>{ground_truth}</answer>", "problem_type": kind})
    return {"score": scored.total, "acc": scored.accuracy, "format": scored.format}
