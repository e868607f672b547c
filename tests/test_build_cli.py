"""`vdata build longvideo-reason` as a script sees it: exit codes and one-line reasons when a build
yields nothing or cannot run, a model that repeats itself, the card and the Hub files of what was
built, the run directory's lock, a stream that breaks midway.

The reasoner here is a scripted stand-in server on loopback: these tests need particular verdicts
(always the same question, never a valid reply) that the real embedded model cannot be told to
give; the path through the real model is tests/test_longvideo_reason_live.py.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from vdata.annotators.testing import FaultProxy
from vdata.runstore import RunStore

from videos import make_video

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
VIDEO = sorted((EXAMPLES / "videos").glob("*.mp4"))[0]
QUESTION = {
    "question": "What does the red shape do after it enters?",
    "options": ["It stops", "It bounces", "It turns blue", "It leaves"],
    "answer": "B",
    "reasons": [{"clip": 1, "reason": "It bounces off the wall."}],
    "reasoning": "Checking the video, the red shape enters and then bounces off the wall.",  # the rewriter's
}


def vdata(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "vdata", *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def inputs(folder: Path, video: Path = VIDEO) -> Path:
    """One video and its captions, in `folder`."""
    (folder / "videos").mkdir(parents=True)
    shutil.copy(video, folder / "videos" / video.name)
    lines = [line for line in (EXAMPLES / "captions.jsonl").read_text().splitlines() if video.name in line]
    (folder / "captions.jsonl").write_text("\n".join(lines) + "\n")
    return folder


def models(folder: Path, url: str, **settings) -> Path:
    endpoint = {"base_url": url, "model": "stand-in", "structured": "json_object", **settings}
    path = folder / "models.yaml"
    path.write_text(yaml.safe_dump({"reasoner": endpoint, "rewriter": endpoint}))
    return path


def build(
    folder: Path, out: Path, models_file: Path, *extra: str, quiet: bool = True
) -> subprocess.CompletedProcess:
    return vdata(
        "build",
        "longvideo-reason",
        "--videos",
        str(folder / "videos"),
        "--captions",
        str(folder / "captions.jsonl"),
        "--models",
        str(models_file),
        "--out",
        str(out),
        *(["--quiet"] if quiet else []),
        *extra,
    )


@pytest.fixture
def repeating(tmp_path):
    """A reasoner that gives the same question to every request."""
    with FaultProxy(None, latency_s=0.0, reply_json=QUESTION) as stand_in:
        yield stand_in, models(tmp_path, stand_in.base_url)


@pytest.mark.slow
def test_a_model_that_repeats_itself_yields_each_question_once(tmp_path, repeating):
    stand_in, models_file = repeating
    out = tmp_path / "run"
    result = build(inputs(tmp_path / "in"), out, models_file)
    assert result.returncode == 0, result.stderr
    rows = [
        row
        for path in (out / "dataset" / "data").glob("*.parquet")
        for row in pq.read_table(path).to_pylist()
    ]
    assert len(rows) == 1 and len({r["id"] for r in rows}) == 1  # 4 requests, one question
    dropped = pq.read_table(out / "rejects" / "dedup.parquet").to_pylist()
    assert [r["reason"] for r in dropped] == ["duplicate"] * 3
    # validate catches repeated ids in a dataset made elsewhere
    copies = tmp_path / "copies.jsonl"
    copies.write_text("".join(json.dumps(rows[0]) + "\n" for _ in range(2)))
    checked = vdata("validate", str(copies), "--json")
    assert checked.returncode == 1
    (problem,) = json.loads(checked.stdout)["problems"]
    assert problem["code"] == "duplicate_id" and problem["count"] == 1


@pytest.mark.slow
def test_the_card_and_the_hub_files_show_tokens_and_hide_endpoints(tmp_path, repeating):
    stand_in, models_file = repeating
    out = tmp_path / "run"
    assert build(inputs(tmp_path / "in"), out, models_file).returncode == 0
    card = (out / "dataset" / "README.md").read_text()
    host = stand_in.base_url.split("//")[1].split("/")[0]
    assert host not in card and "self-hosted" in card
    usage = json.loads((out / "run.json").read_text())["usage"]
    assert usage["generate"]["stand-in"]["prompt_tokens"] == 10 * usage["generate"]["stand-in"]["requests"]
    assert f"{usage['generate']['stand-in']['prompt_tokens']:,} prompt" in card  # not 0: real counts
    assert "captioner" not in card  # --captions: nothing was captioned
    dry = vdata("push", str(out / "dataset"), "me/lvr", "--dry-run", str(tmp_path / "dry"))
    assert dry.returncode == 0, dry.stderr
    pushed = (tmp_path / "dry" / "run.json").read_text()
    assert host not in pushed and json.loads(pushed)["usage"]["generate"]["stand-in"]["completion_tokens"] > 0
    shown = vdata("card", str(out / "dataset"), "--show-endpoints")
    assert shown.returncode == 0 and host in (out / "dataset" / "README.md").read_text()


@pytest.mark.slow
def test_a_build_that_keeps_nothing_fails_and_still_leaves_a_readable_dataset(tmp_path):
    # The stand-in's reply never fits the question schema: every question is rejected.
    with FaultProxy(None, latency_s=0.0) as stand_in:
        models_file = models(tmp_path, stand_in.base_url)
        folder = inputs(tmp_path / "in")
        failed = build(folder, tmp_path / "run", models_file)
        allowed = build(folder, tmp_path / "allowed", models_file, "--allow-empty")
    assert failed.returncode == 1
    last = failed.stderr.strip().splitlines()[-1]
    assert "stage generate kept none of its 4 rows (rejected: schema_mismatch 4)" in last
    assert allowed.returncode == 0 and "the dataset is empty" in allowed.stderr
    dataset = tmp_path / "run" / "dataset"
    assert sorted(p.name for p in (dataset / "data").glob("*.parquet")) == [
        "rl-00000-of-00001.parquet",
        "sft-00000-of-00001.parquet",
    ]
    assert vdata("inspect", str(dataset)).returncode == 0
    exported = vdata("export", str(dataset), "--format", "easyr1", "--out", str(tmp_path / "e.jsonl"))
    assert exported.returncode == 0 and (tmp_path / "e.jsonl").read_text() == ""
    assert "0 questions about 0 videos" in (dataset / "README.md").read_text()


@pytest.mark.slow
def test_a_build_against_a_dead_endpoint_fails_with_one_line(tmp_path):
    import socket

    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    models_file = models(tmp_path, f"http://127.0.0.1:{port}/v1", max_retries=1)
    result = build(inputs(tmp_path / "in"), tmp_path / "run", models_file)
    assert result.returncode == 1
    error = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(error) == 1 and "generate" in error[0] and "connection" in error[0], result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "run" / "stages" / "05-generate" / "manifest.json").exists()  # a rerun asks again


@pytest.mark.slow
def test_a_second_build_on_one_run_directory_is_refused_or_waits(tmp_path, repeating):
    _, models_file = repeating
    folder, out = inputs(tmp_path / "in"), tmp_path / "run"
    holder = subprocess.Popen(  # holds the run directory until told to let go
        [
            sys.executable,
            "-c",
            "import sys; from vdata.runstore import RunStore\n"
            "with RunStore(sys.argv[1]).lock():\n"
            "    print('held', flush=True); sys.stdin.readline()",
            str(out),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "held"
    refused = build(folder, out, models_file)
    assert refused.returncode == 2 and f"in use by process {holder.pid}" in refused.stderr
    command = [sys.executable, "-m", "vdata", "build", "longvideo-reason", "--videos", str(folder / "videos"),
               "--captions", str(folder / "captions.jsonl"), "--models", str(models_file), "--out", str(out),
               "--quiet", "--wait"]  # fmt: skip
    waiting = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    said = waiting.stderr.readline()  # it says whom it waits for, then waits
    assert f"waiting for process {holder.pid}" in said, said
    holder.communicate("go\n")  # let go: the waiting build takes the directory
    _, stderr = waiting.communicate(timeout=1800)
    assert waiting.returncode == 0, stderr
    assert RunStore(out).read_run()["status"] == "done"


def test_the_lock_is_reentrant_within_a_process_and_released(tmp_path):
    store = RunStore(tmp_path / "run")
    with store.lock(), store.lock():
        pass
    with store.lock():  # released: takes it again
        pass


@pytest.mark.slow
def test_a_stream_that_breaks_midway_is_said_at_ingest_and_its_lost_captions_rejected(tmp_path, repeating):
    _, models_file = repeating
    folder = tmp_path / "in"
    (folder / "videos").mkdir(parents=True)
    make_video(tmp_path / "whole.mp4", [12.0], faststart=True)
    whole = (tmp_path / "whole.mp4").read_bytes()
    (folder / "videos" / "midway.mp4").write_bytes(whole[: int(len(whole) * 0.6)])  # breaks near 6.6 s
    captions = [(0, 3, "A red square slides in."), (3, 6, "It bounces off the wall."), (6, 12, "It stops.")]
    (folder / "captions.jsonl").write_text(
        "".join(
            json.dumps({"video": "videos/midway.mp4", "start_s": s, "end_s": e, "caption": c}) + "\n"
            for s, e, c in captions
        )
    )
    out = tmp_path / "run"
    result = build(folder, out, models_file)
    assert result.returncode == 0, result.stderr
    (broken,) = pq.read_table(out / "rejects" / "ingest.parquet").to_pylist()
    assert broken["reason"] == "broken_stream"
    lost = broken["detail"].rsplit("; ", 1)[1]
    assert lost.startswith("6.") and lost.endswith("..12.00s is lost"), broken["detail"]  # not 6.60..6.63
    (past,) = pq.read_table(out / "rejects" / "segment.parquet").to_pylist()
    assert past["reason"] == "broken_stream" and "6s..12s lies past the break" in past["detail"]
    assert pq.read_table(out / "stages" / "02-segment" / "part-00000.parquet").num_rows == 2


@pytest.mark.slow
def test_build_errors_name_the_input(tmp_path):
    missing = vdata(
        "build",
        "longvideo-reason",
        "--videos",
        str(tmp_path / "nonexistent"),
        "--captions",
        str(EXAMPLES / "captions.jsonl"),
        "--out",
        str(tmp_path / "run"),
    )
    assert missing.returncode == 2 and f"no such file or folder: {tmp_path / 'nonexistent'}" in missing.stderr


def test_without_the_local_extra_the_build_stops_before_its_first_stage(tmp_path, monkeypatch, capsys):
    import importlib.util

    import vdata.cli

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "llama_cpp" else real(name, *a)
    )
    out = tmp_path / "run"
    monkeypatch.setattr(
        sys,
        "argv",
        [
            "vdata",
            "build",
            "longvideo-reason",
            "--videos",
            str(VIDEO),
            "--captions",
            str(EXAMPLES / "captions.jsonl"),
            "--out",
            str(out),
        ],
    )
    with pytest.raises(SystemExit) as stopped:
        vdata.cli.main()
    assert stopped.value.code == 1
    error = capsys.readouterr().err
    assert 'pip install "vdata[local]"' in error and "Traceback" not in error
    assert not (out / "stages").exists()


@pytest.mark.slow
def test_in_a_log_progress_is_lines_and_tables_do_not_break_words(tmp_path):
    # stderr is a pipe here, as in a CI log: no bars, sane rates, reasons unbroken
    with FaultProxy(None, latency_s=0.0) as stand_in:
        folder = inputs(tmp_path / "in")
        result = build(
            folder, tmp_path / "r", models(tmp_path, stand_in.base_url), "--allow-empty", quiet=False
        )
    assert result.returncode == 0, result.stderr
    assert "0:00:0" not in result.stderr  # no progress bars (their elapsed-time column)
    assert "01-ingest: " in result.stderr  # but a line per stage
    rates = [float(p.split(" rows/s")[0].split()[-1]) for p in result.stderr.split(", ") if "rows/s" in p]
    assert all(rate < 10_000 for rate in rates)
    assert "schema_mismatch 4" in result.stderr  # the top reason, whole on one line
    # the test's own folder (longer under pytest-xdist) is not the console's doing
    lines = result.stderr.replace(str(tmp_path), "TMP").splitlines()
    assert max(len(line) for line in lines) <= 160


@pytest.mark.slow
def test_pytest_collects_without_the_train_extra(tmp_path):
    # A stand-in torch that is not there: the GRPO tests skip with the reason, nothing errors.
    for name in ("torch", "transformers"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text(
            f"raise ModuleNotFoundError('no {name}', name='{name}')\n"
        )
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    root = Path(__file__).resolve().parents[1]
    collected = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-m", "not slow", "-p", "no:cacheprovider"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert collected.returncode == 0, collected.stdout[-2000:]
    assert "the GRPO tests need the train extra" in collected.stdout


def test_elapsed_rates_are_per_second_of_work():
    from vdata.progress import rate_text as _rate

    assert _rate(64, 0.0005) == ""  # a shard done in a burst: no rate rather than 128000 rows/s
    assert _rate(10, 20.0) == "2.0 s/row" and _rate(30, 10.0) == "3.0 rows/s"


def scripted_reasoner(request: dict) -> str:
    """A question per category the prompt asks for, citing the first and last parts; the rewriter's
    reasoning names the category. Replies differ by request, so a change in what is asked shows."""
    text = request["messages"][-1]["content"]
    if text == "Say hello.":
        return json.dumps({"answer": "yes"})
    if "reasoning" in json.dumps(request.get("response_format")):  # the rewriter's
        question = re.search(r"(?:Question: |answers )(.*?\?)", text).group(1)
        return json.dumps({"reasoning": f"Watching closely, {question.lower()} The clue is in the motion."})
    parts = len(re.findall(r"^\[\d+\]", text, re.M))
    kind = re.search(r"Write one challenging (.*?) question", text).group(1)
    return json.dumps(
        {
            "question": f"Which {kind.lower()} change follows the first collision in this clip?",
            "options": [f"The {c} shape speeds up" for c in ("red", "blue", "green", "grey")],
            "answer": "ABCD"[len(kind) % 4],
            "reasons": [{"clip": 1, "reason": f"The {kind} cue starts early."}]
            + [{"clip": parts, "reason": "It ends near the close of the clip."}],
        }
    )


@pytest.fixture(scope="module")
def golden_run(tmp_path_factory):
    """The golden run: the command's flags (comma lists, counts, fractions, the seed) over the
    bundled examples with a scripted reasoner and rewriter; the server stays up for a rerun."""
    folder = tmp_path_factory.mktemp("golden")
    with FaultProxy(None, latency_s=0.0, reply_fn=scripted_reasoner, keep_bodies=True) as server:
        models_file = models(folder, server.base_url)
        out = folder / "run"
        command = [
            "build", "longvideo-reason", "--videos", str(EXAMPLES / "videos"),
            "--captions", str(EXAMPLES / "captions.jsonl"), "--models", str(models_file),
            "--categories", "temporal,goal,plot", "--questions-per-video", "3", "--eval-fraction", "0.5",
            "--seed", "3", "--out", str(out), "--quiet",
        ]  # fmt: skip
        result = vdata(*command)
        assert result.returncode == 0, result.stderr
        yield out, command, server, list(server.bodies)


@pytest.mark.slow
def test_the_recipe_s_rows_stay_the_same_from_the_command_line(golden_run):
    """The rows and the requests equal the stored digests (tests/golden.py)."""
    from golden import check_golden

    out, _, _, bodies = golden_run
    check_golden(out / "dataset", "longvideo-reason", bodies)


@pytest.mark.slow
def test_a_prompt_overridden_from_yaml_reruns_its_stage_and_the_card_names_it(golden_run, tmp_path):
    """prompts: {rewrite: FILE} in --config on the golden run: the stages before rewrite are
    reused, rewrite and what follows it run again, the rewriter's requests carry the new text, the
    card names the override and says where `process` came from; a prompt that names a value it is
    not given is refused, naming it."""
    out, command, server, _ = golden_run
    assert "Prompts: vdata's own" in (out / "dataset" / "README.md").read_text()
    mine = "Explain why {answer} answers {question} from these notes:\n{notes}"
    (tmp_path / "rewrite.txt").write_text(mine)
    (tmp_path / "run.yaml").write_text(
        yaml.safe_dump({"prompts": {"rewrite": str(tmp_path / "rewrite.txt")}})
    )
    asked_before = len(server.bodies)
    second = vdata(*command, "--config", str(tmp_path / "run.yaml"))
    assert second.returncode == 0, second.stderr
    new = server.bodies[asked_before:]
    status = dict(re.findall(r"^\d+-(\w+): (\w+),", second.stderr, re.M))
    before = list(status)[: list(status).index("rewrite")]
    assert before and all(status[name] == "skipped" for name in before), status
    assert all(status[name] == "ran" for name in list(status)[len(before) :]), status
    rewrites = [b["messages"][-1]["content"] for b in new]
    assert rewrites and all(r.startswith("Explain why ") and "Rewrite the notes" not in r for r in rewrites)
    card = (out / "dataset" / "README.md").read_text()
    digest = hashlib.sha256(mine.encode()).hexdigest()[:12]
    assert f"overridden: `rewrite` (sha256 {digest})" in card
    assert f"- `process`: the `rewrite` stage: rewriter (stand-in), prompt sha256 {digest}" in card
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump({"prompts": {"rewrite": "Why is {answr} right?"}}))
    bad = [
        *command[: command.index("--out")],
        "--out",
        str(tmp_path / "bad"),
        "--config",
        str(tmp_path / "bad.yaml"),
    ]
    refused = vdata(*bad)
    assert refused.returncode == 2 and "{answr}" in refused.stderr and "{answer}" in refused.stderr


OLD_FLAGS = {  # every flag the recipes' hand-written commands took before they were generated
    "longvideo-reason": "--videos --out --captions --captioner --reasoner --rewriter --policy "
    "--difficulty-samples --clip-seconds --scenes --categories --questions-per-video --eval-fraction --seed",
    "qa-inversion": "--from --out --negator --verifier --invert-fraction --eval-fraction --media-root --seed",
    "video-thinker": "--source --out --media-root --annotations-only --reasoner --captioner --tracer "
    "--checker --target --max-videos --eval-fraction --seed",
    "counterexample": "--out --synth --from --kinds --seconds --import --media-root --eval --real "
    "--writer --eval-fraction --seed",
    "streaming-cot": "--videos --out --captions --annotator --writer --judge --policy --window "
    "--chains-per-video --max-overlap --query-aware --clip-seconds --eval-fraction --seed",
}
COMMON_FLAGS = (
    "--config --models --no-cache --refresh --quiet --push-to-hub --allow-empty --wait --force --engine"
)


@pytest.mark.parametrize("recipe", sorted(OLD_FLAGS))
def test_every_old_flag_still_works(recipe):
    """The generated commands keep every spelling the hand-written ones had (a renamed setting keeps
    its old flag as an alias: --from for source and from_synth, --import, --eval, --source)."""
    from typer.testing import CliRunner

    from vdata.cli import app

    shown = CliRunner().invoke(app, ["build", recipe, "--help"], terminal_width=400)
    assert shown.exit_code == 0, shown.output
    flags = set(re.findall(r"(--[a-z][a-z-]*)", shown.output))
    missing = [f for f in (OLD_FLAGS[recipe] + " " + COMMON_FLAGS).split() if f not in flags]
    assert not missing, f"{recipe} lost {missing}"


def test_a_comma_list_a_bad_value_and_an_unknown_key_are_one_line_each(tmp_path):
    from typer.testing import CliRunner

    from vdata.cli import app

    runner = CliRunner()
    bad = runner.invoke(app, ["build", "counterexample", "--out", str(tmp_path / "a"), "--kinds", "levitate"])
    assert bad.exit_code == 2 and "levitate" in bad.output and "known" in bad.output
    typo = runner.invoke(
        app, ["build", "longvideo-reason", "--videos", "v", "--out", "o", "questions_per_vidoe=2"]
    )
    assert typo.exit_code == 2 and "questions_per_video" in typo.output  # the closest known key
    worse = runner.invoke(
        app, ["build", "longvideo-reason", "--videos", "v", "--out", "o", "--categories", "temporal,x"]
    )
    assert worse.exit_code == 2 and "categories" in worse.output
