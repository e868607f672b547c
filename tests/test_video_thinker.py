"""`vdata build video-thinker`: traces with <time>, <caption>, <think> blocks, hindsight-checked.

A scripted OpenAI-compatible server stands in for the competent reasoner, captioner, tracer and
checker that cannot run here: it writes a trace whose captions carry a clue to the answer only
from a chosen attempt on, and a checker that answers only from such a clue. The path through
the real embedded model is tested too (slow)."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from vdata import thinker
from vdata.annotators.endpoints import Endpoints
from vdata.annotators.testing import FaultProxy
from vdata.builders.video_thinker import Source, VideoThinkerConfig, build
from vdata.formats import load_rows
from vdata.trainers.rewards import format_reward

from videos import make_video

SEGMENTS = [(0.0, 2.5, "a red ball rolls in"), (2.5, 5.0, "a blue cube falls"), (5.0, 8.0, "the ball stops")]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    """Three 8 s videos (200 frames), one of 1 s (25 frames), one that is not a video; a
    captions JSONL over all of them and one absent video; NExT-GQA-style questions with spans."""
    root = tmp_path_factory.mktemp("thinker")
    for i in range(3):
        make_video(root / f"v{i}.mp4", [4.0, 4.0], seed=i)
    make_video(root / "short.mp4", [1.0])
    (root / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 not a video")
    lines = [
        {"video": f"{name}.mp4", "start_s": s, "end_s": e, "caption": f"{text} in {name}"}
        for name in ("v0", "v1", "v2", "short", "broken", "missing")
        for s, e, text in SEGMENTS
    ]
    (root / "captions.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    questions = [
        {
            "id": f"q{i}",
            "video": f"v{i}.mp4",
            "question": f"what does the ball do after the cube falls in video {i}",
            "options": ["(A) it bounces", "(B) it stops", "(C) it turns blue", "(D) it vanishes"],
            "duration": 8,
            "glue": [[2.5, 5.0], [5.0, 8.0]],
            "type": "TN",
            "answer": "(B)",
        }
        for i in range(3)
    ]
    (root / "qa.json").write_text(json.dumps(questions))
    return root


class Script:
    """The scripted models. The tracer's captions carry 'clue X' (X the gold letter) from
    attempt `clue_from` on (attempt = the request's seed; the recipe's seed is 0); the checker
    answers X when a note says 'clue X', else a letter no question has."""

    def __init__(self, clue_from: int = 0):
        self.clue_from = clue_from

    def __call__(self, request: dict) -> str:
        content = request["messages"][-1]["content"]
        text = content if isinstance(content, str) else content[-1]["text"]
        if text == "Say hello.":
            return json.dumps({"answer": "yes"})
        if "Write one multiple-choice question" in text:
            options = ["it rolls away", "it stops", "it turns blue", "it vanishes"]
            return json.dumps(
                {
                    "question": "What does the ball do after the cube falls?",
                    "options": options,
                    "answer": "B",
                    "segments": [2, 3],
                }
            )
        if text.startswith("Question:") and "For each of the" in text:
            n = int(re.search(r"For each of the (\d+) clips", text).group(1))
            return json.dumps({"captions": [f"the ball is seen, clip {k}" for k in range(n)]})
        if "Write the reasoning of someone watching" in text:
            gold = re.search(r"Correct answer: ([A-F])", text).group(1)
            caption = f"clue {gold}" if request.get("seed", 0) >= self.clue_from else "a plain view"
            blocks = [
                {"segment": 1, "caption": "the scene opens", "think": "nothing decisive yet"},
                {"segment": 2, "caption": caption, "think": "this settles it"},
            ]
            return json.dumps({"blocks": blocks, "answer": gold})
        clue = re.search(r"clue ([A-F])", text)
        return f"<answer>{clue.group(1) if clue else 'Z'}</answer>"


def roles(server: FaultProxy) -> Endpoints:
    endpoints = Endpoints()
    for role in ("reasoner", "captioner", "tracer", "checker"):
        endpoints = endpoints.with_role(role, f"{server.base_url}@scripted")
    return endpoints


def run(inputs: Path, out: Path, script: Script, **settings):
    sources = settings.pop("sources", None) or [
        Source(name="captions", path=str(inputs / "captions.jsonl"), kind="caption"),
        Source(name="nextgqa", path=str(inputs / "qa.json"), kind="qa"),
    ]
    with FaultProxy(None, latency_s=0.0, reply_fn=script, keep_bodies=True) as server:
        config = VideoThinkerConfig(sources=sources, out=str(out), eval_fraction=0.0, **settings)
        result = build(config, roles(server), quiet=True)
        return result, server


def rejects(out: Path) -> dict[str, list[tuple[str, str]]]:
    found: dict[str, list[tuple[str, str]]] = {}
    for path in sorted((out / "rejects").glob("*.parquet")):
        found[path.stem] = [(r["reason"], r["detail"]) for r in pq.read_table(path).to_pylist()]
    return found


def traces_asked(server: FaultProxy) -> dict[str, int]:
    """How many traces the tracer was asked for, per row (its prompt)."""
    counts: dict[str, int] = {}
    for body in server.bodies:
        text = body["messages"][-1]["content"]
        if isinstance(text, str) and "Write the reasoning of someone watching" in text:
            counts[text] = counts.get(text, 0) + 1  # regenerations differ only in the seed
    return counts


def test_sources_are_named_and_typed():
    assert Source.parse("anet=data/val_2.json:caption") == Source(
        name="anet", path="data/val_2.json", kind="caption"
    )
    assert Source.parse("synth=runs/synth:qa").kind == "qa"
    assert Source.parse("c=runs/synth/captions.jsonl").kind == "caption"
    with pytest.raises(ValueError, match="NAME=PATH"):
        Source.parse("no-name")


@pytest.mark.slow
def test_a_trace_that_passes_hindsight_at_the_third_attempt_is_kept_after_exactly_three(inputs, tmp_path):
    result, server = run(inputs, tmp_path / "out", Script(clue_from=2))
    from golden import check_golden

    check_golden(tmp_path / "out" / "dataset", "video-thinker", server.bodies)
    rows = load_rows(result.out / "dataset").rows
    assert len(rows) == 6  # 3 caption-branch videos + 3 questions
    assert all(json.loads(r["meta_json"])["attempts"] == 3 for r in rows)
    assert set(traces_asked(server).values()) == {3}
    for row in rows:
        assert format_reward(row["process"] + row["solution"], "thinker") == 1.0
        trace = thinker.parse(row["process"] + row["solution"], row["video"]["duration_s"])
        assert trace.answer == row["solution"][8:-9]
        assert "clue" in trace.blocks[1].caption and row["evidence"][1]["text"] == trace.blocks[1].caption
    branches = {json.loads(r["meta_json"])["branch"] for r in rows}
    assert branches == {"caption", "qa"}
    qa = next(r for r in rows if json.loads(r["meta_json"])["branch"] == "qa")
    assert (
        qa["problem"].startswith("what does the ball do")
        and json.loads(qa["meta_json"])["captions_from"] == "captioner"
    )
    found = rejects(result.out)
    assert sorted(reason for reason, _ in found["ingest"]) == ["bad_video", "missing_media", "too_few_frames"]


@pytest.mark.slow
def test_a_trace_that_always_fails_hindsight_is_rejected_with_its_three_attempts(inputs, tmp_path):
    result, server = run(inputs, tmp_path / "out", Script(clue_from=99))
    assert load_rows(result.out / "dataset").rows == []
    failed = rejects(result.out)["hindsight"]
    assert len(failed) == 6 and {reason for reason, _ in failed} == {"hindsight_failed"}
    for _, detail in failed:
        assert "in 3 attempts" in detail and detail.count("attempt ") == 3
    assert set(traces_asked(server).values()) == {3}


def test_a_question_one_segment_answers_is_rejected(inputs, tmp_path):
    """The checker answers from the second segment alone: the question does not need several."""

    class OneSegment(Script):
        def __call__(self, request: dict) -> str:
            text = request["messages"][-1]["content"]
            one = isinstance(text, str) and text.startswith("You cannot see") and text.count("\n[") == 1
            if one and "a blue cube falls" in text:
                return "<answer>B</answer>"
            return super().__call__(request)

    sources = [Source(name="captions", path=str(inputs / "captions.jsonl"), kind="caption")]
    result, _ = run(inputs, tmp_path / "out", OneSegment(), sources=sources)
    assert {reason for reason, _ in rejects(result.out)["check"]} == {"answerable_from_one_segment"}


@pytest.mark.slow
def test_annotations_only_takes_durations_from_the_annotations_and_the_card_says_so(inputs, tmp_path):
    from vdata.cards.card import write_card

    result, _ = run(inputs, tmp_path / "out", Script(), annotations_only=True)
    rows = load_rows(result.out / "dataset").rows
    assert len(rows) == 9  # every video of the captions, the absent and broken ones too, + 3 questions
    assert {json.loads(r["meta_json"])["durations_from"] for r in rows} == {"annotation"}
    write_card(result.out / "dataset")
    card = (result.out / "dataset" / "README.md").read_text()
    assert "durations come from the annotations" in card and "Hindsight: 9 of 9" in card


@pytest.mark.slow
def test_exports_write_sft_rows_with_the_trace_and_rl_rows(inputs, tmp_path):
    from vdata.cards.exports import export

    result, _ = run(inputs, tmp_path / "out", Script())
    rows = load_rows(result.out / "dataset").rows
    export(rows, "llamafactory", tmp_path / "sft.json")
    export(rows, "video-r1", tmp_path / "rl.json")
    sft = json.loads((tmp_path / "sft.json").read_text())
    assert len(sft) == len(rows) and all(item["messages"][1]["content"].startswith("<time>") for item in sft)
    assert all(format_reward(item["messages"][1]["content"], "thinker") == 1.0 for item in sft)
    rl = json.loads((tmp_path / "rl.json").read_text())
    assert [r["solution"] for r in rl] == [r["solution"] for r in rows] and all(r["process"] for r in rl)


@pytest.mark.slow
def test_sigkill_then_resume_pays_no_request_twice(inputs, tmp_path):
    """`vdata build video-thinker` killed (SIGKILL) while the scripted models are slow, then run
    again: every request the uninterrupted run makes is made once, plus at most the two in flight."""
    import signal
    import subprocess
    import sys
    import time

    import yaml

    from conftest import wait_for

    def asked(server: FaultProxy) -> list[str]:
        return [
            json.dumps(b["messages"]) + str(b.get("seed"))
            for b in server.bodies
            if "Say hello." not in json.dumps(b["messages"])
        ]

    def command(server: FaultProxy, out: str) -> list[str]:
        endpoint = {"base_url": server.base_url, "model": "scripted", "max_concurrency": 2}
        models = tmp_path / f"{out}.yaml"
        models.write_text(
            yaml.safe_dump({role: endpoint for role in ("reasoner", "captioner", "tracer", "checker")})
        )
        return [
            sys.executable, "-m", "vdata", "build", "video-thinker",
            "--source", f"captions={inputs / 'captions.jsonl'}:caption",
            "--source", f"qa={inputs / 'qa.json'}:qa",
            "--out", str(tmp_path / out), "--models", str(models), "--eval-fraction", "0", "--quiet",
        ]  # fmt: skip

    with FaultProxy(None, latency_s=0.0, reply_fn=Script(clue_from=1), keep_bodies=True) as server:
        done = subprocess.run(command(server, "reference"), capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stderr
        expected = len(asked(server))
    with FaultProxy(None, latency_s=0.3, reply_fn=Script(clue_from=1), keep_bodies=True) as server:
        first = subprocess.Popen(command(server, "out"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: len(asked(server)) >= expected // 2, "half the requests", first)
        first.send_signal(signal.SIGKILL)
        first.wait()
        killed_at = len(asked(server))
        time.sleep(0.6)
        again = subprocess.run(
            command(server, "out"), capture_output=True, text=True, timeout=600, check=False
        )
        assert again.returncode == 0, again.stderr
        # in flight at the kill: at most 2 per role's client (hindsight holds a checker's and a tracer's)
        assert killed_at < expected <= len(asked(server)) <= expected + 4
    same = ("id", "problem", "options", "solution", "process", "split")
    rows = [{k: r[k] for k in same} for r in load_rows(tmp_path / "out" / "dataset").rows]
    assert rows == [{k: r[k] for k in same} for r in load_rows(tmp_path / "reference" / "dataset").rows]


REAL = Path(os.environ.get("VDATA_REAL_DATA") or Path(__file__).resolve().parents[2] / "shared" / "real-data")


@pytest.mark.skipif(not REAL.is_dir(), reason=f"{REAL} is absent (a user's clone has no ../shared)")
@pytest.mark.slow
def test_the_real_activitynet_annotations_with_annotations_only(tmp_path):
    """The caption branch on VideoChat-R1's ActivityNet file (video -> duration, timestamps,
    sentences), 5 videos sampled: durations come from the file, every kept trace stays inside it."""
    sources = [Source(name="anet", path=str(REAL / "videochatr1_activitynet_val_2.json"), kind="caption")]
    result, _ = run(REAL, tmp_path / "out", Script(), sources=sources, annotations_only=True, max_videos=5)
    rows = load_rows(result.out / "dataset").rows
    annotations = json.loads((REAL / "videochatr1_activitynet_val_2.json").read_text())
    assert 0 < len(rows) <= 5
    for row in rows:
        assert row["video"]["duration_s"] == annotations[row["path"]]["duration"]
        trace = thinker.parse(row["process"] + row["solution"], row["video"]["duration_s"])
        assert trace.answer == row["solution"][8:-9]


@pytest.mark.model
def test_the_real_embedded_model_end_to_end_on_synth(tmp_path, embedded):
    """SmolLM2-135M as reasoner, tracer and checker on a `vdata synth` set (caption branch from
    its clip captions, QA branch from its questions with --captioner synth-truth): whatever it
    writes, every row ends kept (a trace the thinker format scores 1) or rejected with a reason."""
    from vdata.synth import SynthConfig, synthesize

    synthesize(
        tmp_path / "synth",
        SynthConfig(n=1, minutes=0.5, seed=1, width=320, height=240, workers=1),
        quiet=True,
    )
    # one question of the set's five (a temporal one, whose spans ground a trace): a row of each
    # branch is what the property needs
    questions = pq.read_table(tmp_path / "synth" / "questions.parquet").to_pylist()
    one = [next(q for q in questions if q["category"] == "temporal")]
    pq.write_table(pa.Table.from_pylist(one), tmp_path / "synth" / "one-question.parquet")
    sources = [
        Source(name="synth-captions", path=str(tmp_path / "synth" / "captions.jsonl"), kind="caption"),
        Source(name="synth-qa", path=str(tmp_path / "synth" / "one-question.parquet"), kind="qa"),
    ]
    # one trace per row and a short one: the property is that whatever the model writes ends
    # kept or rejected, not how many tries it gets
    config = VideoThinkerConfig(
        sources=sources,
        out=str(tmp_path / "out"),
        captions_from_truth=True,
        eval_fraction=0.0,
        attempts=1,
        max_tokens=300,
    )
    endpoints = Endpoints()
    for role in ("reasoner", "tracer", "checker"):
        endpoints = endpoints.with_role(role, f"{embedded.base_url}@{embedded.model}")
    result = build(config, endpoints, quiet=True)
    kept = load_rows(result.out / "dataset").rows
    assert all(format_reward(r["process"] + r["solution"], "thinker") == 1.0 for r in kept)
    assert {s.name: s for s in result.stages}["ingest"].rows_out == 2  # the video and the question
    found = rejects(result.out)
    assert len(kept) + sum(len(rows) for stage, rows in found.items() if stage != "ingest") == 2
    reasons = {reason for rows in found.values() for reason, _ in rows}
    assert reasons <= {
        "no_spans", "too_few_segments", "repeated_options", "answer_not_in_options", "single_segment",
        "answerable_from_one_segment", "bad_trace", "wrong_answer", "hindsight_failed", "over_target",
    }, reasons  # fmt: skip


@pytest.mark.slow
def test_the_command_line_with_a_yaml_config(inputs, tmp_path):
    import subprocess
    import sys

    import yaml

    with FaultProxy(None, latency_s=0.0, reply_fn=Script(), keep_bodies=True) as server:
        endpoint = {"base_url": server.base_url, "model": "scripted"}
        models = tmp_path / "models.yaml"
        models.write_text(yaml.safe_dump({role: endpoint for role in ("reasoner", "tracer", "checker")}))
        config = tmp_path / "thinker.yaml"
        sources = [f"captions={inputs / 'captions.jsonl'}"]  # a captions file: the caption branch
        config.write_text(yaml.safe_dump({"sources": sources, "eval_fraction": 0.0, "target": 2}))
        command = [sys.executable, "-m", "vdata", "build", "video-thinker", "--config", str(config)]
        command += ["--models", str(models), "--out", str(tmp_path / "out")]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert "Rows per source: captions (caption): 2." in done.stderr  # --target 2 of the 3
    assert "over_target" in done.stderr
    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "vdata",
            "build",
            "video-thinker",
            "--source",
            "nameless",
            "--out",
            str(tmp_path / "x"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert bad.returncode == 2 and "write NAME=PATH[:caption|:qa]" in bad.stderr


def test_a_longvideo_reason_runs_clip_captions_are_a_caption_source(inputs, tmp_path):
    """The clips a LongVideo-Reason run captioned (here its ingest and segment stages with
    imported captions, run for real) feed the caption branch; the videos are the ones it read."""
    from vdata.builders import longvideo_reason as lvr
    from vdata.recipe import Prepared
    from vdata.runner import run_pipeline
    from vdata.segment import discover_videos

    videos = [str(inputs / f"v{i}.mp4") for i in range(3)]
    captions = tmp_path / "captions.jsonl"
    captions.write_text(
        "".join(
            json.dumps({"video": v, "start_s": s, "end_s": e, "caption": f"{text} ({Path(v).stem})"}) + "\n"
            for v in videos
            for s, e, text in SEGMENTS
        )
    )
    config = lvr.LongVideoReasonConfig(videos=videos, out=str(tmp_path / "lvr"), captions=str(captions))
    found = discover_videos(videos)
    first_two = lvr.stages(Prepared(config, found, None, 1))[:2]
    run_pipeline(tmp_path / "lvr", lvr.RECIPE.id, found, first_two, quiet=True)
    source = Source.parse(f"lvr={tmp_path / 'lvr'}")
    assert source.kind == "caption"
    result, _ = run(inputs, tmp_path / "out", Script(), sources=[source])
    rows = load_rows(result.out / "dataset").rows
    assert sorted(json.loads(r["meta_json"])["source_video"] for r in rows) == sorted(
        str(Path(v).resolve()) for v in videos
    )


def test_a_source_with_lines_that_cannot_be_read_is_an_error_naming_them(inputs, tmp_path):
    """Nothing is built from a source that would lose rows unseen: a captions line that is not
    a caption, a QA file with a line that is not JSON."""
    from vdata.captions import CaptionsError

    captions = tmp_path / "captions.jsonl"
    good = {"video": "v0.mp4", "start_s": 0.0, "end_s": 2.0, "caption": "a ball"}
    captions.write_text(json.dumps(good) + "\n" + json.dumps({**good, "end_s": "soon"}) + "\n{broken\n")
    with pytest.raises(CaptionsError, match=r"2 line\(s\) are not captions:\n  line 2: .*\n  line 3"):
        run(inputs, tmp_path / "a", Script(), sources=[Source(name="c", path=str(captions), kind="caption")])
    qa = tmp_path / "qa.jsonl"
    qa.write_text(json.dumps(json.loads((inputs / "qa.json").read_text())[0]) + "\n{broken\n")
    with pytest.raises(ValueError, match="--source q: 1 row\\(s\\) cannot be read"):
        run(inputs, tmp_path / "b", Script(), sources=[Source(name="q", path=str(qa), kind="qa")])
