from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from vdata.record import CODES, SCHEMA, Record, RecordTypeError, record_id, to_table, validate

from conftest import VALID_ROW


def codes(row: Any) -> set[str]:
    return {p.code for p in validate(row)}


def test_valid_row_has_no_problems(row):
    assert validate(row) == []


def test_record_model_matches_the_arrow_schema():
    assert list(Record.model_fields) == SCHEMA.names


def test_record_round_trips_through_arrow(row):
    table = to_table([row, Record(**row)])
    assert table.schema == SCHEMA
    back = table.to_pylist()
    assert back[0] == row
    assert Record(**back[1]).to_row() == row


def test_to_table_rejects_a_row_of_the_wrong_shape(row):
    row["options"] = "A. yes"  # Arrow alone would store ["A", ".", " ", "y", "e", "s"]
    with pytest.raises(RecordTypeError, match="options"):
        to_table([row])


def test_record_id_is_a_stable_content_hash():
    a = record_id("r@1", "sha", "Q?", ["A. x", "B. y"])
    assert a == record_id("r@1", "sha", "Q?", ["A. x", "B. y"])
    assert a != record_id("r@1", "sha", "Q?", ["A. y", "B. x"])
    assert a != record_id("r@1", "other", "Q?", ["A. x", "B. y"])
    segment = VALID_ROW["segment"]
    assert Record(**{**VALID_ROW, "id": ""}).id == record_id(
        VALID_ROW["recipe"],
        VALID_ROW["video"]["sha256"],
        VALID_ROW["problem"],
        VALID_ROW["options"],
        (segment["start_s"], segment["end_s"]),
    )
    # the same question about another clip of the video is another row
    assert a != record_id("r@1", "sha", "Q?", ["A. x", "B. y"], (0.0, 10.0))


def _set(**changes: Any) -> Callable[[dict], None]:
    def change(row: dict) -> None:
        row.update(changes)

    return change


def _option(index: int, text: str) -> Callable[[dict], None]:
    def change(row: dict) -> None:
        row["options"][index] = text

    return change


# code -> (change that breaks the row, change that is close but valid)
CASES: dict[str, tuple[Callable[[dict], None], Callable[[dict], None]]] = {
    "missing_field": (_set(problem=None), _set(problem="What happens first?")),
    "wrong_type": (_set(solution=3), _set(solution="<answer>C</answer>")),
    "empty_problem": (_set(problem="   "), _set(problem="Why?")),
    "unknown_problem_type": (_set(problem_type="mcq"), _set(problem_type="multi-answer")),
    "unknown_data_type": (_set(data_type="audio"), _set(data_type="image")),
    "unknown_split": (_set(split="train"), _set(split="eval")),
    "too_few_options": (
        _set(options=["A. Closes it"], solution="<answer>A</answer>"),
        _set(options=["A. x", "B. y"]),
    ),
    "option_format": (_option(1, "B) Takes out milk"), _option(1, "B. Takes out milk (slowly)")),
    "option_letters": (_option(1, "C. Takes out milk"), _option(1, "B. Takes out juice")),
    "duplicate_options": (_option(2, "C. takes out  MILK"), _option(2, "C. Takes out eggs")),
    "option_leak": (_option(3, "D. Turns on the stove\nANSWER: B"), _option(3, "D. Answers the phone")),
    "option_too_long": (
        _option(3, "D. " + "The person then goes on to reason about the steps in detail " * 4),
        _option(3, "D. Turns on the stove and puts a pan on it"),
    ),
    "solution_format": (_set(solution="B"), _set(solution=" <answer>B</answer>\n")),
    "empty_answer": (_set(solution="<answer> </answer>"), _set(solution="<answer>A</answer>")),
    "answer_not_in_options": (_set(solution="<answer>E</answer>"), _set(solution="<answer>D</answer>")),
    "duplicate_answer_letters": (
        _set(problem_type="multi-answer", solution="<answer>A,A</answer>"),
        _set(problem_type="multi-answer", solution="<answer>A, C</answer>"),
    ),
    "single_answer_expected": (_set(solution="<answer>A,B</answer>"), _set(solution="<answer>A</answer>")),
    "empty_path": (_set(path=""), _set(path="a.mp4")),
    "absolute_path": (_set(path="/data/videos/a.mp4"), _set(path="data/videos/a.mp4")),
    "parent_path": (_set(path="../videos/a.mp4"), _set(path="videos/a..b.mp4")),
    "non_posix_path": (_set(path="videos\\a.mp4"), _set(path="videos/a.mp4")),
    "bad_video_info": (
        _set(video={"sha256": "x", "duration_s": 0.0, "fps": 30.0, "width": 640, "height": 360}),
        _set(video={"sha256": "x", "duration_s": 31.0, "fps": 30.0, "width": 640, "height": 360}),
    ),
    "segment_order": (
        _set(segment={"start_s": 30.0, "end_s": 30.0}),
        _set(segment={"start_s": 29.0, "end_s": 30.0}),
    ),
    "segment_outside_video": (
        _set(segment={"start_s": 50.0, "end_s": 75.0}),
        _set(segment={"start_s": 50.0, "end_s": 60.0}),
    ),
    "evidence_order": (
        _set(evidence=[{"start_s": 5.0, "end_s": 4.0, "text": "x"}]),
        _set(evidence=[{"start_s": 5.0, "end_s": 5.0, "text": "an instant"}]),
    ),
    "evidence_outside_video": (
        _set(evidence=[{"start_s": 100.0, "end_s": 120.0, "text": "x"}]),
        _set(evidence=[{"start_s": 0.0, "end_s": 60.0, "text": "the whole video"}]),
    ),
    "process_format": (_set(process="I think B."), _set(process="<think>I think B.</think>")),
    "not_finite": (
        _set(difficulty={"pass_rate": float("nan"), "n_rollouts": 8, "model": "policy"}),
        _set(difficulty={"pass_rate": 0.5, "n_rollouts": 8, "model": "policy"}),
    ),
    "nul_character": (_set(path="videos/a\x00.mp4"), _set(path="videos/a0.mp4")),
    "bad_difficulty": (
        _set(difficulty={"pass_rate": 1.5, "n_rollouts": 8, "model": "policy"}),
        _set(difficulty={"pass_rate": 1.0, "n_rollouts": 8, "model": "policy"}),
    ),
}


def test_nan_and_nul_are_refused_wherever_they_sit():
    row = copy.deepcopy(VALID_ROW)
    row["evidence"][0]["end_s"] = float("inf")
    row["problem"] = "What happens\x00 first?"
    found = {(p.code, p.message) for p in validate(row)}
    assert ("not_finite", "evidence[0].end_s is inf, not a finite number") in found
    assert ("nul_character", "problem holds a NUL character (\\x00)") in found


def test_every_code_has_a_failing_and_a_passing_case():
    assert set(CASES) | {"not_a_row"} == set(CODES)


@pytest.mark.parametrize("code", sorted(CASES))
def test_code_fails_the_broken_row_and_passes_the_fixed_one(code):
    broken, fixed = copy.deepcopy(VALID_ROW), copy.deepcopy(VALID_ROW)
    CASES[code][0](broken)
    CASES[code][1](fixed)
    assert code in codes(broken), validate(broken)
    assert code not in codes(fixed), validate(fixed)
    assert all(p.message for p in validate(broken))


def test_not_a_row():
    assert codes(["problem", "solution"]) == {"not_a_row"}
    assert "not_a_row" not in codes(VALID_ROW)


def test_process_format_is_a_warning_and_the_rest_are_errors(row):
    row["process"] = "no tags"
    assert [p.severity for p in validate(row)] == ["warning"]


def test_validate_does_not_change_the_row(row):
    row["options"][1] = "B) bad"
    before = copy.deepcopy(row)
    validate(row)
    assert row == before


def test_non_choice_rows_need_no_options(row):
    row.update(problem_type="numerical", options=[], solution="<answer>3.5</answer>")
    assert validate(row) == []


def test_upstream_longvideo_reason_defects_are_caught(row):
    # METHODS.md: options dropped from the question, and scratchpad leaked into an option.
    dropped = {**row, "options": []}
    assert "too_few_options" in codes(dropped)
    leaked = copy.deepcopy(row)
    leaked["options"][3] = "D. The stove\nREASONS: From 10s to 20s, the man ..."
    assert "option_leak" in codes(leaked)
