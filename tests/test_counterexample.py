"""`vdata build counterexample`: violation videos with control twins, questions answered from each
twin's truth (checked here against the rendered pixels too), the prior's contrast, a VideoHallu
import with null questions, the leakage guard, the curriculum stage. A scripted server stands in
for a writer with a known prior; the path through the real embedded model is tested too."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pyarrow.parquet as pq
import pytest

from vdata.annotators.endpoints import Endpoint, Endpoints
from vdata.annotators.testing import FaultProxy
from vdata.builders.counterexample import NOTHING, PHRASES, CounterexampleConfig, build, gold_of
from vdata.synth.world import COLOURS, VIOLATIONS, WorldSpec, simulate

from public_formats import videohallu_rows, write


def rows_of(out: Path) -> list[dict]:
    return [
        row
        for p in sorted((out / "dataset" / "data").glob("*.parquet"))
        for row in pq.read_table(p).to_pylist()
    ]


def rejects_of(out: Path, stage: str) -> list[dict]:
    path = out / "rejects" / f"{stage}.parquet"
    return pq.read_table(path).to_pylist() if path.exists() else []


def meta(row: dict) -> dict:
    return json.loads(row["meta_json"])


def strip(row: dict) -> dict:
    """A row without what names the run's own folder (meta_json's source_video) or its start time
    (provenance's created)."""
    return {k: v for k, v in row.items() if k != "meta_json"} | {
        "meta": {k: v for k, v in meta(row).items() if k != "source_video"},
        "provenance": {**row["provenance"], "created": ""},
    }


@pytest.fixture(scope="module")
def seeded(tmp_path_factory) -> Path:
    """One video per violation kind with its twin, no writer (the control's answer is the prior)."""
    out = tmp_path_factory.mktemp("ce") / "run"
    build(
        CounterexampleConfig(out=str(out), synth=8, seconds=12, ask_writer=False, eval_fraction=0.25),
        quiet=True,
    )
    return out


@pytest.mark.parametrize("kind", VIOLATIONS)
def test_a_control_twin_is_the_same_world_until_the_violation_which_it_switches_off(kind):
    spec = WorldSpec(seconds=12, width=320, height=180, seed=3, violations=(kind,))
    shown, twin = simulate(spec), simulate(WorldSpec(**{**spec.__dict__, "control": True}))
    (violation,) = shown.violations
    assert twin.violations == [] and [(e.kind, e.start_s) for e in twin.switched_off] == [
        (kind, violation.start_s)
    ]
    at = round(violation.start_s * spec.fps)
    assert shown.frames[:at] == twin.frames[:at]  # the same until the impossible event
    assert shown.frames[at + spec.fps :] != twin.frames[at + spec.fps :]  # and different after it


@pytest.mark.slow
def test_every_gold_answer_follows_from_the_truth_and_the_twins_differ(seeded):
    rows = rows_of(seeded)
    kinds = {meta(r)["violation"] for r in rows}
    assert len(kinds) >= 6, kinds  # most kinds made it through (each video has one)
    pairs: dict[tuple[str, str], dict[str, dict]] = {}
    for row in rows:
        m = meta(row)
        truth = json.loads(Path(m["source_video"].replace("/videos/", "/truth/")[:-4] + ".json").read_text())
        assert truth["sha256"] == row["video"]["sha256"]
        assert (truth["violations"] != []) == (m["twin"] == "violation")
        pairs.setdefault((m["pair"], m["question"]), {})[m["twin"]] = row
        gold = gold_of(row)
        if m["question"] == "which":
            text = row["options"]["ABCD".index(gold)][3:]
            expected = PHRASES[m["violation"]] if m["twin"] == "violation" else NOTHING
            assert text == expected
        elif m["question"] == "when":
            start, end = (float(x) for x in gold.split(","))
            (event,) = truth["violations"]
            assert start <= event["start_s"] <= end and row["problem_type"] == "temporal grounding"
        elif m["question"] == "state" and m["violation"] in ("colour_change", "shape_change", "vanish"):
            assert gold == (
                "no" if m["twin"] == "violation" else "yes"
            )  # "still red?", "still in the frame?"
    for (_, question), twins in pairs.items():
        if question == "when":
            assert set(twins) == {"violation"}  # nothing impossible in the control: no span to ask for
            continue
        assert set(twins) == {"violation", "control"}
        violation, control = twins["violation"], twins["control"]
        assert violation["problem"] == control["problem"] and violation["options"] == control["options"]
        assert gold_of(violation) != gold_of(control) and violation["split"] == control["split"]
        assert meta(violation)["twin_answer"] == gold_of(control)
        assert meta(violation)["prior"] == gold_of(control)  # no writer: the control's answer is the prior


@pytest.mark.slow
def test_a_colour_question_s_answers_are_what_the_pixels_show(seeded):
    # Independent of the truth file: decode the frame the question asks about in each twin and
    # read the object's colour where its track puts it.
    rows = [
        r
        for r in rows_of(seeded)
        if meta(r)["violation"] == "colour_change" and meta(r)["question"] == "state"
    ]
    assert len(rows) == 2
    for row in rows:
        m = meta(row)
        t = float(re.match(r"At ([0-9.]+)s", row["problem"]).group(1))
        before = re.search(r"still (\w+)\?", row["problem"]).group(1)
        truth = json.loads(Path(m["source_video"].replace("/videos/", "/truth/")[:-4] + ".json").read_text())
        name = re.search(r"is (the \w+ \w+) still", row["problem"]).group(1)
        object_id = next(k for k, v in truth["objects"].items() if v["name"] == name)
        frame_index = round(t * truth["fps"])
        _, x, y, _ = next(p for p in truth["tracks"][object_id] if p[0] == frame_index)
        with av.open(m["source_video"]) as container:
            frame = next(f for i, f in enumerate(container.decode(video=0)) if i == frame_index)
        pixel = frame.to_ndarray(format="rgb24")[round(y), round(x)].astype(int)
        seen = min(COLOURS, key=lambda c: np.abs(np.array(COLOURS[c]) - pixel).sum())
        assert gold_of(row) == ("yes" if seen == before else "no"), (m["twin"], seen, before)


@pytest.mark.slow
def test_the_split_keeps_twins_together_and_no_video_in_two_splits(seeded):
    rows = rows_of(seeded)
    splits: dict[str, set[str]] = {}
    for row in rows:
        splits.setdefault(meta(row)["pair"], set()).add(row["split"])
    assert all(len(s) == 1 for s in splits.values()) and {"rl", "eval"} <= set().union(*splits.values())
    audited = subprocess.run(
        [sys.executable, "-m", "vdata", "audit", str(seeded / "dataset")], capture_output=True, text=True
    )
    assert audited.returncode == 0 and "no problems found" in audited.stdout, audited.stdout
    from vdata.cards.card import write_card

    write_card(seeded / "dataset")
    card = (seeded / "dataset" / "README.md").read_text()
    assert "Leakage check: 0 videos in more than one split" in card and "twin pairs of questions" in card
    assert "the control twin's answer stands for the prior" in card  # no writer, and the card says so


def scripted_writer(answer_for):
    """A stand-in writer (no competent model runs here) whose prior is `answer_for(prompt)`."""

    def reply(request: dict) -> str:
        text = request["messages"][0]["content"]
        if isinstance(text, list) or "Say hello" in text:
            return json.dumps({"answer": "yes"})
        return json.dumps({"answer": answer_for(text)})

    return reply


def physical_prior(prompt: str) -> str:
    """What everyday physics expects: objects keep their colour and shape, stay in the frame,
    bounce, fall down, the video plays forwards, nothing impossible happens, nothing appears."""
    question = prompt.split("Question: ", 1)[1]
    if "Answer with the option's letter" in question:
        return "D"
    if "Answer yes or no" in question:
        return "no" if "is there a" in question or "in the left half" in question else "yes"
    return "it keeps moving along its path as before"


@pytest.mark.slow
def test_the_prior_keeps_only_pairs_it_gets_half_right(tmp_path):
    with FaultProxy(
        None, latency_s=0.0, reply_fn=scripted_writer(physical_prior), keep_bodies=True
    ) as writer:
        endpoints = Endpoints(roles={"writer": Endpoint(base_url=writer.base_url, model="stand-in")})
        out = tmp_path / "run"
        build(CounterexampleConfig(out=str(out), synth=8, seconds=12, eval_fraction=0), endpoints, quiet=True)
    asked = [b["messages"][0]["content"] for b in writer.bodies if "Question:" in json.dumps(b)]
    assert asked and all(
        "impossible" not in a.split("Question:")[0] for a in asked
    )  # the scene has no violation
    rows = rows_of(out)
    paired = [r for r in rows if meta(r)["question"] != "when"]
    assert paired and all(meta(r)["prior_from"] == "writer" for r in paired)
    # the baseline that answers with the prior: every control right, every violation wrong
    right = {
        twin: [meta(r)["prior"] == gold_of(r) for r in paired if meta(r)["twin"] == twin]
        for twin in ("violation", "control")
    }
    if any(
        meta(r)["question"] == "what" for r in paired
    ):  # free-form: the prior is nearer the control's answer
        assert all(meta(r)["prior"] != gold_of(r) for r in paired if meta(r)["twin"] == "violation")
    assert not any(right["violation"]) and len(right["violation"]) == len(right["control"])
    choices = [r for r in paired if meta(r)["question"] in ("state", "which")]
    assert all(meta(r)["prior"] == gold_of(r) for r in choices if meta(r)["twin"] == "control")
    reasons = {r["reason"] for r in rejects_of(out, "contrast")}
    assert reasons <= {"prior_matches_violation", "prior_elsewhere"}
    from golden import check_golden

    check_golden(out / "dataset", "counterexample", writer.bodies)


@pytest.mark.slow
def test_the_prior_that_answers_like_the_violation_is_rejected(tmp_path):
    contrary = lambda prompt: "A" if "letter" in prompt else "no" if "yes or no" in prompt else "it vanishes"  # noqa: E731
    with FaultProxy(None, latency_s=0.0, reply_fn=scripted_writer(contrary)) as writer:
        endpoints = Endpoints(roles={"writer": Endpoint(base_url=writer.base_url, model="stand-in")})
        out = tmp_path / "run"
        build(
            CounterexampleConfig(out=str(out), synth=2, kinds=["vanish"], seconds=12, eval_fraction=0),
            endpoints,
            quiet=True,
        )
    rejected = rejects_of(out, "contrast")
    states = [r for r in rejected if "still in the frame" in r["payload_json"]]
    assert states and all(r["reason"] == "prior_matches_violation" for r in states)
    assert not [r for r in rows_of(out) if meta(r)["question"] == "state"]


@pytest.mark.slow
def test_videohallu_import_rejects_null_questions_and_the_benchmark_s_videos(tmp_path):
    media = tmp_path / "media"
    media.mkdir()
    rows = videohallu_rows(8, null_questions=3)
    for i, row in enumerate(rows):
        row["generator"] = "sora" if i % 2 else "veo2"
        (media / row["video_name"]).write_bytes(f"video {i}".encode())
    write(tmp_path / "hallu.csv", rows)
    # the benchmark holds hallu5's content under another name, and a name it has no file for
    bench = tmp_path / "bench"
    bench.mkdir()
    (bench / "b1.mp4").write_bytes(b"video 5")
    write(bench / "bench.json", [
        {"video_name": "b1.mp4", "question": "Is it real?", "answer": "no"},
        {"video_name": "hallu7.mp4", "question": "Is it real?", "answer": "no"},
    ])  # fmt: skip
    out = tmp_path / "run"
    config = CounterexampleConfig(
        out=str(out),
        synth=0,
        import_path=str(tmp_path / "hallu.csv"),
        media_root=str(media),
        eval_path=str(bench / "bench.json"),
        ask_writer=False,
        eval_fraction=0,
    )
    build(config, quiet=True)
    empty = rejects_of(out, "record")
    assert sorted(r["reason"] for r in empty) == ["empty_question"] * 3
    leaked = rejects_of(out, "split")
    assert sorted(Path(json.loads(r["payload_json"])["path"]).name for r in leaked) == [
        "hallu5.mp4",
        "hallu7.mp4",
    ]
    kept = rows_of(out)
    assert len(kept) == 3 and all(r["problem"] for r in kept)
    assert {r["data_source"] for r in kept} <= {"videohallu:sora", "videohallu:veo2"}
    assert all((out / "dataset" / r["path"]).exists() for r in kept)  # linked into the dataset


@pytest.mark.slow
def test_real_rows_come_first_in_the_curriculum(seeded, tmp_path):
    real = tmp_path / "real.json"
    write(real, [
        {"problem": f"Does the ball {i} fall down?", "problem_type": "yes/no", "solution": "<answer>yes</answer>",
         "path": f"r{i}.mp4", "data_type": "video"}
        for i in range(3)
    ])  # fmt: skip
    out = tmp_path / "run"
    build(
        CounterexampleConfig(out=str(out), synth=1, seconds=12, real=str(real), ask_writer=False), quiet=True
    )
    stages = {meta(r)["curriculum_stage"] for r in rows_of(out) if r["path"].startswith("r")}
    assert stages == {0}
    assert {meta(r)["curriculum_stage"] for r in rows_of(out) if meta(r).get("pair")} == {1}


def test_bad_inputs_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown violation kinds \\['levitate'\\]"):
        build(CounterexampleConfig(out=str(tmp_path / "a"), kinds=["levitate"], ask_writer=False), quiet=True)
    with pytest.raises(ValueError, match="--import .*missing.csv: no such file"):
        build(
            CounterexampleConfig(out=str(tmp_path / "b"), import_path=str(tmp_path / "missing.csv")),
            quiet=True,
        )
    with pytest.raises(ValueError, match="no run.json"):
        build(CounterexampleConfig(out=str(tmp_path / "c"), synth=0, from_synth=str(tmp_path)), quiet=True)


@pytest.mark.model
def test_end_to_end_with_the_embedded_model_killed_and_resumed(tmp_path, embedded):
    """The command with the real embedded writer behind a counting proxy (memo: llama.cpp's answer
    to a re-asked request depends on what it served before, see the longvideo-reason test), an
    uninterrupted run, then one killed with SIGKILL after its first answers and rerun."""
    import signal
    import time

    from conftest import cached_replies, models_file, wait_for

    server = embedded  # the session's (behind a memo proxy: the runs must agree)
    with FaultProxy(server.base_url.removesuffix("/v1"), memo=True) as proxy:
        models = models_file(tmp_path / "models.yaml", proxy.base_url, server.model, ["writer"])

        def command(out: Path) -> list[str]:
            return [sys.executable, "-m", "vdata", "build", "counterexample", "--synth", "2", "--kinds",
                    "colour_change,vanish,teleport,pass_through", "--seconds", "12", "--models", str(models),
                    "--out", str(out), "--quiet"]  # fmt: skip

        reference = subprocess.run(command(tmp_path / "ref"), capture_output=True, text=True, timeout=1200)
        assert reference.returncode == 0, reference.stderr[-3000:]
        assert "Counterexamples:" in reference.stderr and "Leakage check: 0 videos" in reference.stderr
        rows = rows_of(tmp_path / "ref")
        assert rows and all(meta(r)["prior_from"] == "writer" for r in rows if meta(r)["question"] != "when")
        card = (tmp_path / "ref" / "dataset" / "README.md").read_text()
        assert "VideoHallu" in card and "twin pairs of questions" in card

        out = tmp_path / "killed"
        began = time.monotonic()
        process = subprocess.Popen(command(out), stderr=subprocess.PIPE)
        wait_for(
            lambda: cached_replies(out / "cache.sqlite") >= 2, "two cached answers", process, every_s=0.05
        )
        process.send_signal(signal.SIGKILL)
        process.wait()
        killed_at = time.monotonic()
        finished = cached_replies(out / "cache.sqlite")
        probe = hashlib.sha256(
            json.dumps({"role": "user", "content": "Say hello."}, sort_keys=True).encode()
        ).hexdigest()
        before = {s.prompt for s in proxy.seen if began <= s.at < killed_at and s.item != probe}
        resumed = subprocess.run(command(out), capture_output=True, text=True, timeout=1200)
        assert resumed.returncode == 0, resumed.stderr[-3000:]
        after = {s.prompt for s in proxy.seen if s.at >= killed_at and s.item != probe}
        assert [strip(r) for r in rows_of(out)] == [strip(r) for r in rows_of(tmp_path / "ref")]
        assert len(before & after) == len(before) - finished  # only those in flight at the kill again
