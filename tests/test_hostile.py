"""What a careless and a hostile user did to the commands, each case as they met it: the CLI in
a subprocess, and crafted HTTP requests against a live `vdata view`. Nothing of the user's is
lost, nothing outside the dataset is served, no value fails a page, and every mistake is one
line that names the input and what to do (exit 2), never a traceback.

Every command here stays on this machine: the only address anything connects to is 127.0.0.1.
"""

from __future__ import annotations

import http.client
import json
import math
import os
import sqlite3
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import quote

import pyarrow.parquet as pq
import pytest
import yaml

from vdata.record import SCHEMA
from vdata.runner import run_pipeline
from vdata.runstore import RunStore
from vdata.stages import MapStage, Reject

from conftest import running_view
from videos import make_video

pytestmark = pytest.mark.slow  # every test runs commands in subprocesses
OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1"}


def vdata(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "vdata", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=cwd,
        env={**os.environ, **OFFLINE},
    )


def all_of(*commands: tuple) -> list[subprocess.CompletedProcess]:
    """Several independent commands at once (each is mostly interpreter start-up)."""
    with ThreadPoolExecutor(4) as pool:
        return list(pool.map(lambda command: vdata(*command), commands))


def refused(result: subprocess.CompletedProcess, *words: str) -> str:
    """The one-line error of a command that refused (exit 2): no traceback, the words said."""
    said = " ".join(result.stderr.split())
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
    assert "Traceback" not in result.stderr and "error:" in said, result.stderr[-2000:]
    for word in words:
        assert word in said, (word, said)
    return said


def unreadable(path: Path) -> Path:
    """A file no one can read: mode 000, or, for root (who reads anything), a link to a file that
    answers every read with an I/O error."""
    if os.geteuid() == 0:
        path.symlink_to("/proc/self/mem")
    else:
        path.write_text("[]")
        path.chmod(0)
    return path


QUESTIONS = [
    {
        "video": f"v{i % 4}.mp4",
        "question": f"what does the man do after he sits down {i}?",
        "options": ["(A) eat", "(B) run", "(C) jump", "(D) sleep", "(E) sing"],
        "answer": f"({'ABCDE'[i % 5]})",
        "glue": [[1.0, 2.0]],
        "duration": 10,
        "type": "TN",
    }
    for i in range(12)
]


@pytest.fixture(scope="module")
def qa_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("qa") / "qa.json"
    path.write_text(json.dumps(QUESTIONS))
    return path


def inversion(source: Path, out: Path, *more: str) -> subprocess.CompletedProcess:
    return vdata("build", "qa-inversion", "--from", source, "--out", out, "--negator", "none",
                 "--verifier", "none", "--quiet", *more)  # fmt: skip


# ---------------------------------------------------------------- 1, 2: nothing lost


def test_an_out_folder_of_the_users_is_refused_and_force_never_touches_its_files(qa_file, tmp_path):
    x = tmp_path / "X"
    (x / "dataset" / "plots").mkdir(parents=True)
    (x / "dataset" / "notes.md").write_text("mine")
    (x / "dataset" / "plots" / "mine.png").write_bytes(b"mine")
    (x / "dataset" / "data").mkdir()
    (x / "dataset" / "data" / "rl-00000-of-00001.parquet").write_bytes(b"my own rows")
    said = refused(inversion(qa_file, x), str(x), "not a vdata run", "--force")
    assert "never overwrites or deletes" in said
    said = refused(inversion(qa_file, x, "--force"), "already holds dataset")  # a name vdata writes
    assert (x / "dataset" / "notes.md").read_text() == "mine"
    assert (x / "dataset" / "plots" / "mine.png").read_bytes() == b"mine"
    assert (x / "dataset" / "data" / "rl-00000-of-00001.parquet").read_bytes() == b"my own rows"
    assert sorted(p.name for p in x.iterdir()) == ["dataset"]  # not even a lock file was left
    for name in ("rejects", "stages"):  # the run's other folders, held by the user
        y = tmp_path / f"with-{name}"
        (y / name).mkdir(parents=True)
        (y / name / "load.parquet").write_bytes(b"mine")
        refused(inversion(qa_file, y), str(y), "--force")
        assert (y / name / "load.parquet").read_bytes() == b"mine"
    beside = tmp_path / "beside"  # --force: a run beside the user's files, which stay as they are
    beside.mkdir()
    (beside / "notes.md").write_text("mine")
    made = inversion(qa_file, beside, "--force")
    assert made.returncode == 0, made.stderr[-2000:]
    assert (beside / "notes.md").read_text() == "mine" and (beside / "dataset" / "data").is_dir()
    again = inversion(qa_file, beside)  # now a vdata run: a rerun resumes, no --force needed
    assert again.returncode == 0 and (beside / "notes.md").read_text() == "mine"


def test_an_input_that_is_or_holds_or_lies_in_the_output_is_refused(qa_file, tmp_path):
    run = tmp_path / "R"
    assert inversion(qa_file, run).returncode == 0
    rows = pq.read_table(run / "dataset" / "data" / "rl-00000-of-00001.parquet").num_rows
    made = (run / "run.json").read_text()
    filtered = tmp_path / "D"
    assert vdata("filter", "validate", run / "dataset", "--out", filtered).returncode == 0
    rejects = (filtered / "rejects" / "validate.parquet").read_bytes()
    exported = tmp_path / "F.parquet"
    assert vdata("export", run / "dataset", "--format", "verl", "--out", exported).returncode == 0
    before = exported.read_bytes()
    results = all_of(
        ("build", "qa-inversion", "--from", run, "--out", run, "--negator", "none", "--verifier", "none"),
        ("build", "qa-inversion", "--from", run / "dataset", "--out", run, "--negator", "none"),
        ("build", "qa-inversion", "--from", tmp_path, "--out", run, "--negator", "none"),
        ("filter", "validate", filtered, "--out", filtered),
        ("export", exported, "--format", "verl", "--out", exported),
        ("export", run / "dataset", "--format", "verl", "--out", run / "dataset" / "verl.parquet"),
        ("export", run / "dataset", "--format", "verl", "--out", exported),  # a file it did not write now
        ("split", tmp_path, "--out", tmp_path / "clips"),
        ("audit", exported, "--report", exported),
    )
    refused(results[0], "--from", "is the output")
    refused(results[1], "lies inside the output")
    refused(results[2], "contains the output")
    refused(results[3], "is the output")
    refused(results[4], "is the output")
    refused(results[5], "contains the output")
    refused(results[6], "exists", "--force")
    refused(results[7], "contains the output")
    refused(results[8], "is the output", "--report")
    assert (run / "run.json").read_text() == made
    assert pq.read_table(run / "dataset" / "data" / "rl-00000-of-00001.parquet").num_rows == rows
    assert (filtered / "rejects" / "validate.parquet").read_bytes() == rejects
    assert exported.read_bytes() == before and not (run / "dataset" / "verl.parquet").exists()
    replaced = vdata("export", run / "dataset", "--format", "easyr1", "--out", exported, "--force")
    assert replaced.returncode == 0 and exported.read_bytes() != before


# ---------------------------------------------------------------- 7, 8: settings read strictly


def test_config_files_and_flags_are_read_strictly(qa_file, tmp_path):
    def config(name: str, **values) -> Path:
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(values))
        return path

    results = all_of(
        ("build", "qa-inversion", "--from", qa_file, "--out", tmp_path / "a", "--negator", "none",
         "--config", config("typo", invert_fration=1.0)),
        ("build", "streaming-cot", "--videos", tmp_path, "--out", tmp_path / "b",
         "--config", config("window", windoww=3)),
        ("build", "qa-inversion", "--from", qa_file, "--out", tmp_path / "c",
         "--config", config("seed", seed="abc")),
        ("build", "qa-inversion", "--from", qa_file, "--out", tmp_path / "d",
         "--config", config("on", seed=True)),
        ("build", "qa-inversion", "--from", qa_file, "--out", tmp_path / "e",
         "--config", config("nan", invert_fraction=float("nan"))),
        ("build", "counterexample", "--out", tmp_path / "f", "--seconds", "inf"),
        ("synth", "--out", tmp_path / "g", "--minutes", "nan"),
        ("filter", "sample", qa_file, "--out", tmp_path / "h", "--fraction", "-inf"),
    )  # fmt: skip
    refused(results[0], "unknown setting 'invert_fration'", "(did you mean 'invert_fraction'?)")
    refused(results[1], "unknown setting 'windoww'", "(did you mean 'window'?)")
    refused(results[2], "setting seed", "'abc'")
    refused(results[3], "setting seed", "true/false")
    refused(results[4], "setting invert_fraction", "finite")
    refused(results[5], "--seconds inf", "finite number")
    refused(results[6], "--minutes nan", "finite number")
    refused(results[7], "--fraction -inf", "finite number")
    assert not any((tmp_path / name).exists() for name in "abcdefgh")  # nothing started


def test_train_settings_are_read_strictly(tmp_path):
    run = tmp_path / "run.yaml"
    run.write_text(yaml.safe_dump({"model": "m", "data": "d", "steps": [1, 2]}))
    results = all_of(
        ("train", "grpo", "--config", run),
        ("train", "grpo", "--config", run, "steps=3", "stpes=4"),
        ("train", "grpo", "--config", run, "steps=3", "lr=.nan"),
        ("train", "grpo", "--config", run, "steps=3", "seed=true"),
    )
    refused(results[0], "steps", "valid integer")
    refused(results[1], "unknown setting 'stpes'", "did you mean 'steps'")
    refused(results[2], "lr", "finite number")
    refused(results[3], "seed", "true/false")


# ---------------------------------------------------------------- 9, 10: odd values, no tracebacks


def test_validate_refuses_nan_and_nul_where_no_source_means_them(tmp_path):
    from vdata.record import to_table

    from conftest import VALID_ROW

    nan_row = {**VALID_ROW, "difficulty": {"pass_rate": math.nan, "n_rollouts": 8, "model": "p"}}
    nul_row = {**VALID_ROW, "id": "nul", "path": "videos/a\x00.mp4"}
    pq.write_table(to_table([nan_row, nul_row]), tmp_path / "odd.parquet")
    result = vdata("validate", tmp_path / "odd.parquet", "--json")
    assert result.returncode == 1, result.stderr
    codes = {p["code"]: p["count"] for p in json.loads(result.stdout)["problems"]}
    assert codes["not_finite"] == 1 and codes["nul_character"] == 1


def test_bad_inputs_are_one_line_and_exit_2_never_a_traceback(qa_file, tmp_path):
    from vdata.record import to_table

    from conftest import VALID_ROW

    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    sources = tmp_path / "sources"
    sources.mkdir()
    (sources / "empty.json").write_text("")
    (sources / "object.json").write_text('{"a": 1}')
    (sources / "folder").mkdir()
    mixed = [dict(QUESTIONS[0]), {**QUESTIONS[1], "video": 3, "question": ["not", "text"]}]
    (sources / "mixed.json").write_text(json.dumps(mixed))
    unreadable(sources / "unreadable.json")
    folder = tmp_path / "dataset-folder"
    folder.mkdir()
    (folder / "good.json").write_text(json.dumps(QUESTIONS[:2]))
    unreadable(folder / "bad.json")
    a_file = tmp_path / "a-file"
    a_file.write_text("not a folder")
    records = tmp_path / "records"
    records.mkdir()
    pq.write_table(to_table([VALID_ROW]), records / "rows.parquet")  # vdata records, to export
    (tmp_path / "exports").mkdir()
    no_write = Path("/proc/vdata-cannot-write-here")
    commands = [
        *(("build", "video-thinker", "--source", f"s={sources / name}", "--out", tmp_path / f"vt-{name}")
          for name in ("empty.json", "object.json", "folder", "mixed.json", "unreadable.json")),
        ("validate", deep), ("inspect", deep), ("filter", "validate", deep, "--out", tmp_path / "f1"),
        ("build", "qa-inversion", "--from", deep, "--out", tmp_path / "q1", "--negator", "none"),
        ("view", deep), ("validate", folder), ("audit", folder), ("view", folder),
        ("filter", "validate", qa_file, "--out", no_write / "out"),
        ("export", records, "--format", "verl", "--out", no_write / "x.parquet"),
        ("synth", "--out", a_file, "--n", "1"),
        ("build", "qa-inversion", "--from", qa_file, "--out", a_file, "--negator", "none"),
        ("filter", "validate", qa_file, "--out", a_file),
        ("export", records, "--format", "verl", "--out", tmp_path / "exports"),
        ("card", qa_file),
        ("view", qa_file, "--port", "-1"), ("view", qa_file, "--port", "70000"),
        ("filter", "validate", qa_file, "--out", tmp_path / "f2", "--engine", "ray",
         "--ray-address", "not an address"),
    ]  # fmt: skip
    results = all_of(*commands)
    for command, result in zip(commands, results, strict=True):
        assert result.returncode == 2, (command, result.stderr[-1500:])
        assert "Traceback" not in result.stderr, (command, result.stderr[-3000:])
    said = [" ".join(r.stderr.split()) for r in results]
    assert "empty.json: not valid JSON" in said[0] and "no shape vdata knows" in said[1]
    assert "folder: no .json" in said[2] and "--source s: row 1: its path is a int" in said[3]
    assert "unreadable.json: cannot be read" in said[4]
    assert all("deep.json: not valid JSON (nested too deeply" in s for s in said[5:10])
    assert all("bad.json: cannot be read" in s for s in said[10:13])
    assert f"cannot create the folder {no_write / 'out'}" in said[13] and "cannot write" in said[14]
    assert all(f"{a_file} is a file, not a folder" in s for s in said[15:18])
    assert "is a folder; --out names the file to write" in said[18] and "is not a folder" in said[19]
    assert "--port" in said[20] and "--port" in said[21]
    assert "is not a cluster address" in said[22]


def test_mixed_types_are_rejects_that_name_their_field(tmp_path):
    source = tmp_path / "mixed.json"
    source.write_text(json.dumps([dict(q) for q in QUESTIONS[:3]] + [{**QUESTIONS[3], "video": 3}]))
    result = inversion(source, tmp_path / "out", "--allow-empty")
    assert result.returncode == 0 and "cannot mix" not in result.stderr, result.stderr[-2000:]
    reasons = pq.read_table(tmp_path / "out" / "rejects" / "load.parquet").to_pylist()
    assert any("field 'path' holds a int" in r["detail"] and "row 3" in r["input_ref"] for r in reasons)


def test_messages_say_what_was_wrong_with_which_input(tmp_path, qa_file):
    models = tmp_path / "models.yaml"
    models.write_text(
        yaml.safe_dump({"reasoner": {"base_url": "http://127.0.0.1:9/v1", "api_key": "sk-PLANTED"}})
    )
    results = all_of(
        ("view", qa_file, "--host", "not-an-address"),
        ("annotate", qa_file, "--out", tmp_path / "a", "--prompt", "{question}", "--models", models),
        ("filter", "validate", qa_file, "--out", tmp_path / "r", "--engine", "ray",
         "--ray-address", "127.0.0.1:1"),
        ("annotate", qa_file, "--out", tmp_path / "b", "--prompt", "{question}",
         "--reasoner", "http://user:pw@not a host:80/v1"),
    )  # fmt: skip
    said = refused(results[0], "--host 'not-an-address' is not an IP address")
    assert "--port" not in said
    said = " ".join(results[1].stderr.split())
    assert results[1].returncode != 0 and "PLANTED" not in results[1].stdout + results[1].stderr
    assert "api_key_env" in said and "Traceback" not in said
    refused(results[2], "--ray-address 127.0.0.1:1: nothing answers there")
    assert not (tmp_path / "r").exists()
    said = refused(results[3], "base_url: not an address: not a host is not a host name")
    assert ":pw@" not in said and not (tmp_path / "b").exists()


def test_an_ablation_fails_on_its_model_and_its_empty_variant_before_training(tmp_path):
    from vdata.filters.variants import build_variants
    from vdata.trainers.ablation import AblationConfig, AblationError

    rows = [
        {"problem": f"Which letter {i}?", "problem_type": "multiple choice", "options": ["A. a", "B. b"],
         "solution": "<answer>A</answer>", "path": f"videos/v{i}.mp4", "data_type": "video"}
        for i in range(6)
    ]  # fmt: skip
    (tmp_path / "train.json").write_text(json.dumps(rows[:4]))
    (tmp_path / "eval.json").write_text(json.dumps(rows[4:]))
    settings = {
        "base": str(tmp_path / "train.json"),
        "eval": str(tmp_path / "eval.json"),
        "variants": {"all": {}, "none-left": {"filters": [{"length": {"min_question": 1000}}]}},
        "train": {"model": str(tmp_path / "no-such-model"), "split": ""},
    }
    path = tmp_path / "ablation.yaml"
    path.write_text(yaml.safe_dump(settings))
    result = vdata("ablate", "--config", path, "--out", tmp_path / "out", "--gpus", "0")
    refused(result, "train.model", "no-such-model", "cannot be loaded")
    assert not (tmp_path / "out" / "variants").exists()  # checked before anything was built
    config = AblationConfig.load(path, out=str(tmp_path / "out"))
    with pytest.raises(
        AblationError, match=r"variant 'none-left' kept no rows: filter length rejected all 4"
    ):
        build_variants(config, quiet=True, log=lambda line: None)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.md").write_text("mine")
    refused(vdata("ablate", "--config", path, "--out", mine), "not an ablation's folder")
    refused(vdata("ablate", "--config", path, "--out", tmp_path), "base", "lies inside the output")


# ---------------------------------------------------------------- 4, 5, 9: the viewer, attacked

SECRET = "s3cr3t-PLANTED"


def _check(row: dict, ctx) -> dict | Reject:
    if "vague" in row["problem"]:
        payload = {"video": "videos/a\x00.mp4", "score": math.nan, "problem": row["problem"]}
        return Reject("too_vague", "the question names nothing", row["problem"], payload)
    return row


@pytest.fixture(scope="module")
def attacked(tmp_path_factory) -> Path:
    """A run whose rows reach outside the dataset (a video, by '..' and by an absolute path; a text
    file named .mp4 through a link), carry NaN and NUL, and whose run.json, cache and usage log
    hold secrets."""
    base = tmp_path_factory.mktemp("attacked")
    (base / "outside").mkdir()
    (base / "outside" / "hostname.mp4").write_text("a text file named like a video")
    (base / "sources").mkdir()
    make_video(base / "sources" / "real.mp4", [2.0], seed=0, faststart=True)
    (base / "outside" / "private.mp4").write_bytes((base / "sources" / "real.mp4").read_bytes())
    out = base / "run"

    def row(i: int, path: str, **fields) -> dict:
        return {
            "id": f"row{i}",
            "recipe": "attack@1",
            "data_type": "video",
            "path": path,
            "video": {"sha256": "0" * 64, "duration_s": 2.0, "fps": 25.0, "width": 160, "height": 96},
            "problem": f"Question {i}?",
            "problem_type": "multiple choice",
            "options": ["A. a", "B. b"],
            "solution": "<answer>A</answer>",
            "split": "rl",
            "difficulty": {"pass_rate": 0.5, "n_rollouts": 8, "model": "p"},
            "meta_json": "{}",
            "evidence": [],
            **fields,
        }

    rows = [
        row(0, "videos/real.mp4", meta_json=json.dumps({"source_video": str(base / "sources" / "real.mp4")})),
        row(1, "../../outside/private.mp4"),  # a real video, outside the dataset
        row(2, str(base / "outside" / "private.mp4")),
        row(3, "videos/linked.mp4"),
        row(4, "videos/a\x00.mp4"),
        row(5, "videos/real.mp4", difficulty={"pass_rate": math.nan, "n_rollouts": 8, "model": "p"},
            segment={"start_s": math.nan, "end_s": math.inf}),
        row(6, "videos/real.mp4", problem="A vague one?"),
    ]  # fmt: skip
    result = run_pipeline(out, "attack@1", rows, [MapStage("check", _check, schema=SCHEMA)], quiet=True)
    RunStore(out).write_dataset(result.final_table(), splits=("rl",))
    (out / "dataset" / "videos" / "linked.mp4").symlink_to(base / "outside" / "hostname.mp4")
    run = json.loads((out / "run.json").read_text())
    run["config"]["models"] = {"reasoner": {"endpoint": f"http://user:{SECRET}@gpu-box/v1"}}
    (out / "run.json").write_text(json.dumps(run))
    with sqlite3.connect(out / "cache.sqlite") as db:
        db.execute("CREATE TABLE replies (key TEXT, reply TEXT)")
        db.execute("INSERT INTO replies VALUES ('prompt', ?)", (SECRET,))
    (out / "usage.jsonl").write_text(json.dumps({"prompt": SECRET}) + "\n")
    return out


@pytest.fixture(scope="module")
def viewer(attacked):
    with running_view(str(attacked)) as url:
        yield int(url.rstrip("/").rsplit(":", 1)[1])


def request(port: int, path: str, host: str | None = None) -> tuple[int, bytes]:
    """A GET sent as written (no client normalizes '..', escapes or NUL away), to 127.0.0.1."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    connection.putrequest("GET", path, skip_host=True, skip_accept_encoding=True)
    connection.putheader("Host", f"127.0.0.1:{port}" if host is None else host)
    connection.endheaders()
    response = connection.getresponse()
    body = response.read()
    connection.close()
    return response.status, body


def test_the_viewer_answers_only_its_own_host_names(viewer):
    for host in (f"127.0.0.1:{viewer}", f"localhost:{viewer}", "localhost"):
        assert request(viewer, "/api/summary", host)[0] == 200, host
    for host in ("evil.example", f"evil.example:{viewer}", "127.0.0.1.evil.example", "", "[::2]"):
        for path in ("/", "/api/summary", "/api/rows", "/media/row/0", "/files/dataset/README.md"):
            status, body = request(viewer, path, host)
            assert status == 400 and b"Question" not in body, (host, path, status)


def test_the_viewer_never_serves_a_runs_own_files_nor_what_rows_reach_outside(viewer, attacked):
    data = json.loads(request(viewer, "/api/rows?limit=200")[1])
    number = {row["id"]: row["number"] for row in data["rows"]}
    assert request(viewer, f"/media/row/{number['row0']}")[0] == 200  # the dataset's own video
    for row in ("row1", "row2", "row3", "row4"):  # '..', absolute, a link to text, a NUL
        status, body = request(viewer, f"/media/row/{number[row]}")
        assert status == 404 and b"text file" not in body, (row, status)
    said = json.loads(request(viewer, f"/api/row/{number['row1']}")[1])["video_missing"]
    assert "outside" in said and "--media-root" in said
    own = ["run.json", "cache.sqlite", "usage.jsonl", ".lock", "stages/01-check/manifest.json"]
    for name in [*own, "rejects/check.parquet", "dataset/videos/real.mp4", "dataset/videos/linked.mp4"]:
        status, body = request(viewer, f"/files/{quote(name)}")
        assert status == 404 and SECRET.encode() not in body, (name, status)
    assert request(viewer, "/files/dataset/README.md")[0] in (200, 404)  # the card, when written


CRAFTED = [
    "..", "%2e%2e", "..%2f..%2frun.json", "%00", "x%00", "-1", "9223372036854775808",
    "99999999999999999999999999", "1e9", "NaN", "%C0%AE%C0%AE", "%ff", "%2Fetc%2Fpasswd",
]  # fmt: skip


def test_crafted_requests_get_no_500_and_no_file_outside_the_allowed_set(viewer, attacked):
    data = json.loads(request(viewer, "/api/rows?limit=200")[1])
    allowed_media = {
        f"/media/row/{row['number']}" for row in data["rows"] if row["id"] in ("row0", "row5", "row6")
    }
    paths = ["/", "/api/summary", "/api/rows", "/api/rejects", "/api/audit"]
    for value in CRAFTED:
        paths += [
            f"/files/{value}", f"/files/dataset/{value}", f"/media/row/{value}", f"/media/reject/{value}",
            f"/api/row/{value}", f"/api/find?id={value}", f"/assets/{value}",
            f"/api/rows?offset={value}&limit={value}", f"/api/rows?difficulty_min={value}&q={value}",
            f"/api/rows?split={value}&category={value}", f"/api/rejects?offset={value}&limit={value}",
            f"/api/rejects?stage={value}&reason={value}",
        ]  # fmt: skip
    for path in paths:
        status, body = request(viewer, path)
        assert status < 500, (path, status, body[:300])
        if status == 200 and path.startswith(("/files/", "/media/")):
            assert path in allowed_media, path
        assert SECRET.encode() not in body and b"a text file named like a video" not in body, path
    for number in range(10):  # every row and reject, the odd ones included, renders
        assert request(viewer, f"/api/row/{number}")[0] in (200, 404)
    rows = json.loads(request(viewer, "/api/rows?offset=0&limit=200")[1])
    odd = next(row for row in rows["rows"] if row["id"] == "row5")
    assert odd["pass_rate"] == "nan"  # shown as what it is, not a failed page
    shown = json.loads(request(viewer, f"/api/row/{odd['number']}")[1])
    assert shown["window"] == {"start_s": 0.0, "end_s": 2.0}  # times that are no number: the whole video
    rejects = json.loads(request(viewer, "/api/rejects?offset=9223372036854775808")[1])
    assert rejects["rejects"] == [] and rejects["total"] == 1
    page = json.loads(request(viewer, "/api/rejects")[1])["rejects"][0]
    assert page["payload"]["score"] == "nan" and page["video"] is None
    assert json.loads(request(viewer, "/api/rows?offset=9223372036854775808")[1])["rows"] == []
