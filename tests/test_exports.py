"""Each export, read back as its consumer reads it; a vdata -> Video-R1 -> vdata round trip."""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys

import datasets
import pyarrow.parquet as pq
import pytest

from vdata.cards.exports import export
from vdata.formats import load_rows
from vdata.record import Record, to_table
from vdata.runstore import write_dataset
from vdata.synth import SynthConfig, synthesize

from conftest import VALID_ROW

ANSWER = re.compile(r"<answer>(.*?)</answer>")


@pytest.fixture(scope="module")
def records(tmp_path_factory) -> tuple[list[dict], object]:
    """Real questions about real synthetic videos, plus a multi-answer, a numerical and a
    streaming row; with process on some."""
    root = tmp_path_factory.mktemp("set")
    synthesize(
        root,
        SynthConfig(n=1, minutes=0.3, violations=1.0, seed=2, width=320, height=240, workers=1),
        quiet=True,
    )
    rows = pq.read_table(root / "questions.parquet").to_pylist()
    rows[0]["process"] = "<think>The square hits the wall first.</think>"
    base = copy.deepcopy(rows[0])
    multi = {
        **copy.deepcopy(base),
        "problem_type": "multi-answer",
        "solution": "<answer>A,C</answer>",
        "id": "",
    }
    numeric = {
        **copy.deepcopy(base),
        "problem_type": "numerical",
        "options": [],
        "solution": "<answer>3</answer>",
    }
    numeric["id"] = ""
    stream = {**copy.deepcopy(base), "id": ""}
    stream["stream"] = {
        "text_stream": [{"start_s": 0.0, "end_s": 2.0, "text": "A square moves right."}],
        "qa_stream": [{"start_s": 2.0, "end_s": 4.0, "question": "Which way?", "answer": "right"}],
    }
    rows += [Record(**multi).to_row(), Record(**numeric).to_row(), Record(**stream).to_row()]
    return rows, root


def test_video_r1_reads_it_and_the_round_trip_keeps_every_field(records, tmp_path):
    rows, root = records
    out = tmp_path / "video_r1.json"
    report = export(rows, "video-r1", out)
    assert [r["reason"] for r in report.not_expressed] == [  # Video-R1's trainer has no prompt for it
        "Video-R1's trainer prompts and rewards multiple choice, numerical, OCR, free-form, regression "
        "only; this row is multi-answer"
    ]
    rows = [r for r in rows if r["problem_type"] != "multi-answer"]
    assert report.written == len(rows)
    for item in json.loads(out.read_text()):  # as Video-R1's training script reads a row
        assert (root / item["path"]).exists() and item["path"].startswith("./")
        answer = ANSWER.search(item["solution"]).group(1)
        if item["problem_type"] == "multiple choice":
            assert any(o.startswith(f"{answer}. ") for o in item["options"])
    back = load_rows(out)
    assert back.shape == "video-r1"
    fields = ("problem", "problem_type", "options", "solution", "path", "data_type", "data_source", "process")
    for original, again in zip(rows, back.rows, strict=True):
        assert {f: again[f] for f in fields} == {f: original[f] for f in fields}


def test_easyr1_and_long_rl_write_what_their_loaders_read(records, tmp_path):
    """The layouts; tests/test_interop.py drives the loaders' own code and rewards over them."""
    rows, root = records
    out = tmp_path / "easyr1.jsonl"
    report = export(rows, "easyr1", out)
    assert "r1v" in report.reward
    loaded = datasets.load_dataset("json", data_files=str(out), split="train")  # EasyR1 loads it like this
    for item, original in zip(loaded, rows, strict=True):
        assert all(option in item["problem"] for option in original["options"])  # options inline
        assert item["problem"].count("<video>") == len(item["videos"]) == 1  # where the video goes
        assert item["answer"] == ANSWER.search(original["solution"]).group(1)  # the bare answer
        assert [(root / v).exists() for v in item["videos"]] == [True]
    back = load_rows(out)  # vdata reads its own EasyR1 export (the placeholder is no question text)
    assert [(r["problem"], r["options"], r["solution"]) for r in back.rows] == [
        (r["problem"], r["options"], r["solution"]) for r in rows
    ]
    long_rl = tmp_path / "long_rl.jsonl"
    export(rows, "long-rl", long_rl)
    for item, original in zip(map(json.loads, long_rl.read_text().splitlines()), rows, strict=True):
        assert item["videos"] == original["path"] and "<video>" not in item["problem"]


def test_verl_reads_it(records, tmp_path):
    rows, _ = records
    out = tmp_path / "verl.parquet"
    export(rows, "verl", out)
    loaded = datasets.load_dataset("parquet", data_files=str(out), split="train")
    for item, original in zip(loaded, rows, strict=True):
        content = item["prompt"][0]["content"]
        assert item["prompt"][0]["role"] == "user" and content.count("<video>") == len(item["videos"]) == 1
        assert item["videos"][0]["video"] == original["path"] and item["videos"][0]["fps"] > 0
        assert item["reward_model"]["ground_truth"] == ANSWER.search(original["solution"]).group(1)
        assert item["extra_info"]["id"] == original["id"]


def test_tw_grpo_writes_the_releases_layout_and_reads_back_with_the_same_labels(records, tmp_path):
    """The layout of TW-GRPO's nextgqa_val_raw.json (../shared/real-data): question, options
    "(A) text", answer "(A),(C)", problem with "A text" lines, solution, is_negated."""
    rows, _ = records
    out = tmp_path / "tw.json"
    report = export(rows, "tw-grpo", out)
    assert [r["reason"] for r in report.not_expressed] == [
        "TW-GRPO rows are choice questions; this one is numerical"
    ]
    items = json.loads(out.read_text())
    assert len(items) == len(rows) - 1
    keys = ["id", "video", "question", "options", "duration", "glue", "type", "answer", "problem"]
    assert all(list(item) == [*keys, "solution", "is_negated"] for item in items)
    multi = next(i for i in items if i["solution"] == "<answer>A,C</answer>")
    assert multi["answer"] == "(A),(C)" and multi["is_negated"] is False
    for item in items:
        assert all(re.fullmatch(r"\([A-H]\) \S.*", o) for o in item["options"])
        lines = item["problem"].splitlines()
        assert lines[0] == item["question"] and all(re.fullmatch(r"[A-H] \S.*", x) for x in lines[1:])
    back = load_rows(out)
    assert back.shape == "tw-grpo"
    choice = [r for r in rows if r["problem_type"] != "numerical"]
    assert [(r["problem"], r["options"], r["solution"]) for r in back.rows] == [
        (r["problem"], r["options"], r["solution"]) for r in choice
    ]


def test_vst_takes_streaming_rows_only(records, tmp_path):
    rows, _ = records
    out = tmp_path / "vst.jsonl"
    report = export(rows, "vst", out)
    items = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(items) == 1 and len(report.not_expressed) == len(rows) - 1
    user, assistant = items[0]
    assert user["content"][0]["video"] == rows[-1]["path"] and user["content"][0]["video_start"] == 0.0
    assert assistant["content"][0]["text_stream"] == [[0.0, 2.0, "A square moves right."]]
    assert assistant["content"][0]["qa_stream"] == [[2.0, 4.0, "Which way?", "right"]]
    assert json.loads((tmp_path / "vst_seeks.jsonl").read_text()) == [0]
    assert report.also == [str(tmp_path / "vst-rl.parquet"), str(tmp_path / "vst_seeks.jsonl")]


def test_llamafactory_reads_it(records, tmp_path):
    rows, _ = records
    out = tmp_path / "sft.json"
    export(rows, "llamafactory", out)
    for item in json.loads(out.read_text()):
        roles = [m["role"] for m in item["messages"]]
        assert roles == ["user", "assistant"]
        # LLaMA-Factory's multimodal plugin needs one <video> token per video
        assert sum(m["content"].count("<video>") for m in item["messages"]) == len(item["videos"])
    first = json.loads(out.read_text())[0]
    assert first["messages"][1]["content"].startswith("<think>")


@pytest.mark.slow
def test_vdata_export_command(tmp_path):
    rows = [copy.deepcopy(VALID_ROW)]
    write_dataset(to_table(rows), tmp_path / "ds")
    command = [sys.executable, "-m", "vdata", "export", str(tmp_path / "ds"), "--format"]
    done = subprocess.run(
        [*command, "vst", "--out", str(tmp_path / "v")], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0 and "1 rows not expressible in vst" in done.stderr
    bad = subprocess.run([*command, "sharegpt", "--out", "x"], capture_output=True, text=True, check=False)
    assert bad.returncode == 2 and "unknown format 'sharegpt'" in bad.stderr


@pytest.mark.slow
def test_export_refuses_defective_rows_and_says_so(tmp_path):
    good = copy.deepcopy(VALID_ROW)
    string_options = {**copy.deepcopy(VALID_ROW), "id": "s1", "options": "A. Closes it B. Takes out milk"}
    climbing = {**copy.deepcopy(VALID_ROW), "id": "p1", "path": "../../../../etc/passwd"}
    absolute = {**copy.deepcopy(VALID_ROW), "id": "p2", "path": "/etc/passwd"}
    data = tmp_path / "rows.jsonl"
    lines = [json.dumps(r) for r in (good, string_options, climbing, absolute)]
    data.write_text("\n".join([*lines[:2], '{"id": "cut off', *lines[2:]]) + "\n")
    command = [sys.executable, "-m", "vdata", "export", str(data)]
    for fmt, out in (("video-r1", "v.json"), ("easyr1", "e.jsonl"), ("llamafactory", "l.json")):
        done = subprocess.run(
            [*command, "--format", fmt, "--out", str(tmp_path / out)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 1, done.stderr  # rows were left out for defects: a script must notice
        assert "1 rows written" in done.stderr and "4 rows refused" in done.stderr
        for said in ("unreadable", "wrong_type", "unsafe_path"):
            assert said in done.stderr, done.stderr
        text = (tmp_path / out).read_text()
        assert "passwd" not in text and "Closes it B. Takes" not in text  # the refused rows are absent
    allowed = subprocess.run(
        [*command, "--format", "easyr1", "--out", str(tmp_path / "a.jsonl"), "--allow-unsafe-paths"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert "3 rows written" in allowed.stderr and "2 rows refused" in allowed.stderr
    assert "etc/passwd" in (tmp_path / "a.jsonl").read_text()
