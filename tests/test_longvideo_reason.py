"""The LongVideo-Reason recipe's parts: captions, times, checks, split and letter balance."""

from __future__ import annotations

import copy
import json
import random
from collections import Counter

import pytest
from pydantic import ValidationError

from vdata.builders.longvideo_reason import (
    GeneratedQuestion,
    Reasoning,
    balance_letters,
    caption_lines,
    check_question,
    generation_schema,
    keep_reasoning,
    question_record,
    question_schema,
    split_by_video,
)
from vdata.captions import CaptionsError, load_captions
from vdata.cards.exports import to_easyr1
from vdata.record import validate
from vdata.stages import Reject, StageContext

from conftest import VALID_ROW


def ctx(seed: int = 0) -> StageContext:
    return StageContext("test", 0, seed, run_dir=None)  # type: ignore[arg-type]


CLIPS = [
    {"start_s": 0.0, "end_s": 10.0, "caption": "a red ball rolls in"},
    {"start_s": 10.0, "end_s": 20.0, "caption": "it hits the wall"},
    {"start_s": 20.0, "end_s": 30.0, "caption": "it stops"},
]
GROUP_ROW = {
    "video": "/data/v.mp4",
    "path": "videos/v-abcdef12.mp4",
    "sha256": "ab" * 32,
    "video_duration_s": 30.0,
    "fps": 30.0,
    "width": 640,
    "height": 360,
    "category": "temporal",
    "attempt": 0,
    "captions": caption_lines(CLIPS),
    "clips": json.dumps([[c["start_s"], c["end_s"]] for c in CLIPS]),
}


def test_clip_times_are_seconds_not_tenths_of_seconds():
    # Upstream wrote clip times ten times too large; a clip starting at 20 s must say 20 s.
    lines = caption_lines(CLIPS).splitlines()
    assert lines[2] == "[3] From 20s to 30s, it stops"
    reply = GeneratedQuestion(
        question="What happens after the ball hits the wall?",
        options=["A. It stops", "B) It bounces", "It flies", "(D) It melts"],
        answer="A",
        reasons=[{"clip": 3, "reason": "It stops at the end."}, {"clip": 2, "reason": "It hits the wall."}],
    )
    record = question_record(GROUP_ROW, reply)
    assert [(e["start_s"], e["end_s"]) for e in record["evidence"]] == [(10.0, 20.0), (20.0, 30.0)]
    assert record["options"] == ["A. It stops", "B. It bounces", "C. It flies", "D. It melts"]
    assert validate(record) == [] and record["path"] == "videos/v-abcdef12.mp4"


def test_a_reason_citing_a_part_the_video_lacks_is_rejected():
    reply = GeneratedQuestion(
        question="Why does it stop?",
        options=["a", "b", "c", "d"],
        answer="B",
        reasons=[{"clip": 9, "reason": "x"}],
    )
    result = question_record(GROUP_ROW, reply)
    assert isinstance(result, Reject) and result.reason == "reason_clip_unknown"


def test_the_reply_schema_is_built_for_the_row_and_compiles_to_a_grammar():
    schema = generation_schema(GROUP_ROW)  # a video of 3 parts
    good = {
        "question": "What happens after the ball hits the wall?",
        "options": ["It stops", "It bounces", "It flies", "It melts"],
        "answer": "A",
        "reasons": [{"clip": 3, "reason": "It stops at the end."}],
    }
    assert schema.model_validate(good).reasons[0].clip == 3
    for bad in (
        {"reasons": [{"clip": 4, "reason": "a part the video does not have"}]},
        {"question": "The ball hits the wall and stops."},  # no question mark
        {"options": ["It stops", "It bounces", "It flies"]},
        {"question": "What happens after the ball hits the wall? " * 10},  # too long: max_tokens would cut it
        {
            "options": ['It "stops"', "It bounces", "It flies", "It melts"]
        },  # a quote a grammar would not close
    ):
        with pytest.raises(ValidationError):
            schema.model_validate({**good, **bad})
    assert question_schema(3) is schema  # built once per part count


def test_every_reply_schema_compiles_in_llama_cpp():
    # llama.cpp's own grammar parser, with the embedded model's vocabulary (a schema it cannot
    # parse leaves the request unconstrained, or the server down)
    llama_cpp = pytest.importorskip("llama_cpp", reason="the local extra is not installed")
    from llama_cpp.llama_grammar import json_schema_to_gbnf

    from vdata.annotators.local_server import local_model_path

    vocab = llama_cpp.Llama(model_path=str(local_model_path()), vocab_only=True, verbose=False)
    for model in [question_schema(n) for n in (1, 2, 5, 12)] + [Reasoning]:
        grammar = json_schema_to_gbnf(json.dumps(model.model_json_schema()))
        assert llama_cpp.llama_sampler_init_grammar(vocab._model.vocab, grammar.encode(), b"root"), grammar
    grammar = json_schema_to_gbnf(json.dumps(question_schema(3).model_json_schema()))
    assert '"1" | "2" | "3"' in grammar and '"?"' in grammar  # the parts, and the question mark


def _question(**changes):
    row = copy.deepcopy(VALID_ROW)
    row.update(changes)
    return row


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"problem": "What does the caption say happens first?"}, "mentions_captions"),
        ({"problem": "Right after he takes out milk, what happens?"}, "answer_in_question"),
        ({"problem": "The person opens the fridge."}, "not_a_question"),
        ({"evidence": [{"start_s": 50.0, "end_s": 70.0, "text": "x"}]}, "reason_outside_video"),
        ({"options": ["A. Closes it", "B. Closes it", "C. x", "D. y"]}, "duplicate_options"),
    ],
)
def test_check_rejects_flawed_questions(changes, reason):
    result = check_question(_question(**changes), ctx())
    assert isinstance(result, Reject) and result.reason == reason, result
    assert isinstance(check_question(_question(), ctx()), dict)


@pytest.mark.parametrize(
    "text",
    [
        "The caption says the ball stops.",
        "At 12.5s the ball stops, so the answer follows.",
        "Step 1: look. Step 2: answer is clear now.",
        "Option B is right because the ball stops there.",
    ],
)
def test_the_rewritten_reasoning_must_not_leak(text):
    # the checks hold whatever a server let through the schema
    result = keep_reasoning(_question(), Reasoning.model_construct(reasoning=text))
    assert isinstance(result, Reject) and result.reason == "reasoning_leak"


def test_good_reasoning_becomes_the_process():
    text = "Checking the video, the ball first rolls in, then hits the wall and finally stops."
    assert keep_reasoning(_question(), Reasoning(reasoning=text))["process"] == f"<think>{text}</think>"


def _many_rows(videos: int, per_video: int) -> list[dict]:
    rows = []
    for v in range(videos):
        for q in range(per_video):
            row = _question(problem=f"Question {q} about video {v}?", split="")
            row["video"] = {**row["video"], "sha256": f"{v:064x}"}
            row["id"] = f"v{v}q{q}"
            rows.append(row)
    return rows


def test_split_keeps_every_video_in_one_split_and_is_seeded():
    rows = _many_rows(videos=12, per_video=3)
    out = split_by_video(rows, ctx(1), eval_fraction=0.25).rows
    split_of: dict[str, set[str]] = {}
    for row in out:
        split_of.setdefault(row["video"]["sha256"], set()).add(row["split"])
    assert all(len(s) == 1 for s in split_of.values())
    counts = Counter(next(iter(s)) for s in split_of.values())
    assert counts == {"eval": 3, "sft": 3, "rl": 6}  # eval first, then 1/3 sft and 2/3 rl
    again = split_by_video(rows, ctx(1), eval_fraction=0.25).rows
    assert [r["split"] for r in again] == [r["split"] for r in out]
    other = split_by_video(rows, ctx(2), eval_fraction=0.25).rows
    assert [r["split"] for r in other] != [r["split"] for r in out]


def test_balance_makes_letters_uniform_within_each_split_and_keeps_answers():
    rows = split_by_video(_many_rows(videos=9, per_video=5), ctx(3), eval_fraction=0.0).rows
    assert all(r["solution"] == "<answer>B</answer>" for r in rows)  # skewed, as upstream's test set
    balanced = balance_letters(rows, ctx(3)).rows
    assert len(balanced) == len(rows)
    before = {r["id"]: r["options"][1][3:] for r in rows}
    for split in {r["split"] for r in balanced}:
        letters = Counter(r["solution"][8] for r in balanced if r["split"] == split)
        assert max(letters.values()) - min(letters.get(x, 0) for x in "ABCD") <= 1, letters
    for row in balanced:
        letter = row["solution"][8]
        assert row["options"]["ABCD".index(letter)][3:] == before[row["id"]]  # the same answer
        assert validate(row) == []


def test_captions_that_do_not_fit_name_their_lines(tmp_path):
    videos = {str(tmp_path / "a.mp4"): {"duration_s": 30.0}}
    path = tmp_path / "captions.jsonl"
    path.write_text(
        '{"video": "a.mp4", "start_s": 0, "end_s": 10, "caption": "fine"}\n'
        '{"video": "missing.mp4", "start_s": 0, "end_s": 10, "caption": "x"}\n'
        '{"video": "a.mp4", "start_s": 25, "end_s": 40, "caption": "too long"}\n'
        "not json\n"
    )
    with pytest.raises(CaptionsError) as caught:
        load_captions(path, videos)
    message = str(caught.value)
    assert "3 line(s)" in message and "line 2: video 'missing.mp4'" in message
    assert "line 3: 25s..40s is outside" in message and "line 4: not a caption object" in message


def test_every_record_converts_to_the_easyr1_row():
    row = _question()
    easy = to_easyr1(row)
    assert easy["problem"].splitlines()[0] == "<video>" + row["problem"]  # where EasyR1 puts the video
    assert easy["problem"].splitlines()[1:] == row["options"]
    assert easy["answer"] == "B" and easy["videos"] == [row["path"]]  # the bare answer r1v grades
    random.seed(0)
