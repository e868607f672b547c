"""The `vdata` command, run as a user runs it: a real subprocess on real files."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import datasets
import pyarrow.parquet as pq
import pytest

import vdata
from vdata.formats import DatasetReadError, load_rows
from vdata.record import to_table

from conftest import VALID_ROW
from toy_recipe import build

VIDEO_R1_ROWS = [
    {
        "problem_id": 1,
        "problem": "Which object moves first?",
        "data_type": "video",
        "problem_type": "multiple choice",
        "options": ["A. cube", "B. ball", "C. cone", "D. ring"],
        "process": "<think>The ball starts rolling at 2s.</think>",
        "solution": "<answer>B</answer>",
        "path": "./LLaVA-Video-178K/liwei_youtube_videos/videos/a.mp4",
        "data_source": "LLaVA-Video-178K",
    },
    {
        "problem_id": 2,
        "problem": "How many balls are there?",
        "data_type": "video",
        "problem_type": "numerical",
        "options": [],
        "solution": "<answer>3</answer>",
        "path": "CLEVRER/video_10000.mp4",
        "data_source": "CLEVRER",
    },
]


def vdata_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "vdata", *args], capture_output=True, text=True, timeout=120, check=False
    )


def test_version():
    result = vdata_cli("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"vdata {vdata.__version__}"


def test_help_teaches_the_commands():
    result = vdata_cli("--help")
    assert result.returncode == 0
    for word in ("validate", "inspect", "serve", "resume"):
        assert word in result.stdout


def test_validate_a_clean_video_r1_file(tmp_path):
    path = tmp_path / "train.json"
    path.write_text(json.dumps(VIDEO_R1_ROWS))
    result = vdata_cli("validate", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 rows, read as video-r1: keys" in result.stdout and "no problems found" in result.stdout


def test_validate_groups_problems_by_code_with_counts_and_ids(tmp_path):
    rows = [copy.deepcopy(r) for r in VIDEO_R1_ROWS * 3]
    for i, row in enumerate(rows):
        row["problem_id"] = 100 + i
    rows[0]["problem"] = None
    rows[2]["problem"] = None
    rows[4]["solution"] = "<answer>F</answer>"
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n{not json\n")

    result = vdata_cli("validate", str(path), "--json")
    assert result.returncode == 1
    report = json.loads(result.stdout)
    by_code = {p["code"]: p for p in report["problems"]}
    assert by_code["missing_field"]["count"] == 2
    assert [e["row"] for e in by_code["missing_field"]["examples"]] == [
        "problem_id 100 (line 1)",
        "problem_id 102 (line 3)",
    ]
    assert by_code["answer_not_in_options"]["count"] == 1
    assert by_code["unreadable_row"]["count"] == 1
    assert by_code["unreadable_row"]["examples"][0]["row"].endswith("bad.jsonl:7")
    assert report["rows"] == 7 and report["rows_with_errors"] == 4

    table = vdata_cli("validate", str(path))
    assert table.returncode == 1
    assert "missing_field" in table.stdout and "4 of 7 rows have errors" in table.stdout


@pytest.mark.slow
def test_validate_reads_vdata_parquet_and_saved_hf_datasets(tmp_path):
    good, bad = copy.deepcopy(VALID_ROW), copy.deepcopy(VALID_ROW)
    bad["path"] = "../outside/video.mp4"
    bad["id"] = "bad-row"
    pq.write_table(to_table([good, bad]), tmp_path / "rows.parquet")
    result = vdata_cli("validate", str(tmp_path / "rows.parquet"))
    assert result.returncode == 1 and "parent_path" in result.stdout and "bad-row" in result.stdout

    saved = tmp_path / "saved"
    datasets.DatasetDict({"rl": datasets.Dataset.from_list([good])}).save_to_disk(str(saved))
    loaded = load_rows(saved)
    assert loaded.splits == ["rl"] and loaded.rows[0]["id"] == good["id"]
    assert vdata_cli("validate", str(saved)).returncode == 0


@pytest.mark.slow
def test_validate_names_the_input_when_it_cannot_be_read(tmp_path):
    missing = vdata_cli("validate", str(tmp_path / "nope.jsonl"))
    assert missing.returncode == 2 and "nope.jsonl: no such file or directory" in missing.stderr
    (tmp_path / "notes.txt").write_text("hello")
    odd = vdata_cli("validate", str(tmp_path / "notes.txt"))
    assert odd.returncode == 2 and "unknown file type" in odd.stderr
    (tmp_path / "other.json").write_text(json.dumps([{"text": "x", "label": 1}]))
    shape = vdata_cli("validate", str(tmp_path / "other.json"))
    assert shape.returncode == 2 and "have no shape vdata knows" in shape.stderr


def test_video_r1_rows_map_onto_the_record_without_repair():
    row = load_rows_from(VIDEO_R1_ROWS)[0]
    assert row["recipe"] == "video-r1-import@1"
    assert row["path"] == VIDEO_R1_ROWS[0]["path"].removeprefix("./")
    assert row["process"] == VIDEO_R1_ROWS[0]["process"]
    assert json.loads(row["meta_json"]) == {"problem_id": 1}
    assert to_table([row]).num_rows == 1


def load_rows_from(rows, tmp=None):
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "rows.json"
        path.write_text(json.dumps(rows))
        return load_rows(path).rows


def test_an_empty_directory_is_a_clear_error(tmp_path):
    with pytest.raises(DatasetReadError, match="no .json, .jsonl, .csv, .parquet files"):
        load_rows(tmp_path)


@pytest.mark.slow
def test_inspect_a_run_directory(tmp_path):
    build(tmp_path / "run")
    result = vdata_cli("inspect", str(tmp_path / "run"), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert set(report["splits"]) <= {"eval", "sft", "rl"}
    assert sum(s["rows"] for s in report["splits"].values()) == 35
    assert report["run"]["recipe"] == "toy@1" and report["bytes"] > 0
    one = next(iter(report["splits"].values()))
    assert one["options_per_question"] == {"4": one["rows"]}
    assert sum(one["answer_letters"].values()) == one["rows"]

    table = vdata_cli("inspect", str(tmp_path / "run"))
    assert table.returncode == 0 and "answer_letters" in table.stdout and "02-annotate" in table.stdout


@pytest.mark.slow
def test_validate_and_inspect_read_what_a_synth_or_split_run_made(tmp_path):
    from vdata.synth import SynthConfig, synthesize

    synthesize(tmp_path / "synth", SynthConfig(n=1, minutes=0.2, width=160, height=96, workers=1), quiet=True)
    checked = vdata_cli("validate", str(tmp_path / "synth"), "--json")
    assert checked.returncode == 0, checked.stdout + checked.stderr  # its questions, not its events or videos
    questions = pq.read_table(tmp_path / "synth" / "questions.parquet").num_rows
    assert json.loads(checked.stdout)["rows"] == questions > 0
    split = vdata_cli(
        "split", str(tmp_path / "synth" / "videos"), "--out", str(tmp_path / "clips"), "--quiet"
    )
    assert split.returncode == 0, split.stderr
    shown = vdata_cli("inspect", str(tmp_path / "clips"))
    assert shown.returncode == 0, shown.stderr
    clips = pq.read_table(tmp_path / "clips" / "clips.parquet").num_rows
    assert "no question rows" in shown.stdout and f"clips.parquet: {clips} rows" in shown.stdout
    assert "01-probe" in shown.stdout and "02-segment" in shown.stdout  # the run's stages
    refused = vdata_cli("validate", str(tmp_path / "clips"))
    assert refused.returncode == 2 and "makes no question rows" in refused.stderr


@pytest.mark.slow
def test_annotate_rejects_rows_arrow_cannot_store_beside_the_others(tmp_path):
    from vdata.annotators.testing import FaultProxy

    data = tmp_path / "rows.jsonl"
    rows = [{"problem_id": i, "problem": f"What colour is thing {i}?"} for i in range(4)]
    rows[1]["problem_id"] = "ten"  # a word among numbers
    rows[2]["problem"] = {"text": "a question inside an object"}  # an object where text belongs
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with FaultProxy(None, latency_s=0.0, reply_text="blue") as stand_in:
        result = vdata_cli(
            "annotate",
            str(data),
            "--out",
            str(tmp_path / "run"),
            "--prompt",
            "{problem}",
            "--reasoner",
            f"{stand_in.base_url}@stand-in",
            "--quiet",
        )
    assert result.returncode == 0, result.stderr
    said = " ".join(result.stderr.split())  # the console wraps a line that holds a long tmp path
    assert "Traceback" not in said and "2 unreadable (rejects/load.parquet)" in said
    kept = pq.read_table(tmp_path / "run" / "annotated.parquet").to_pylist()
    assert [r["problem_id"] for r in kept] == [0, 3] and all(r["reply"] == "blue" for r in kept)
    load = pq.read_table(tmp_path / "run" / "rejects" / "load.parquet").to_pylist()
    assert [json.loads(r["payload_json"]) for r in load] == [rows[1], rows[2]]  # kept whole
    assert (
        "'problem_id' holds string 'ten'" in load[0]["detail"]
        and "'problem' holds object" in load[1]["detail"]
    )
