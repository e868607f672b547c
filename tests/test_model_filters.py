"""Curation with models: difficulty by pass rate and the blind check.

A scripted OpenAI-compatible server (FaultProxy's stand-in with a reply function) gives the
specific answers a verdict needs: it stands in for a competent policy, which cannot run
here. The path through the real embedded model (SmolLM2-135M under llama.cpp) is tested
too, for what holds whatever it answers."""

from __future__ import annotations

import json
import socket

import pytest

from vdata.annotators.endpoints import Endpoint, Endpoints
from vdata.annotators.testing import FaultProxy
from vdata.filters.models import binomial_tail, chance_rate
from vdata.filters.run import filter_stage, run_filter
from vdata.formats import load_rows
from vdata.stages import StageFailed

from public_formats import write


def rows_of(kinds: list[str]) -> list[dict]:
    """Video-R1 rows whose question says how the scripted policy answers it."""
    return [
        {
            "problem_id": i,
            "problem": f"Question {i}, answered {kind}: which colour is the ball?",
            "data_type": "video",
            "problem_type": "multiple choice",
            "options": ["A. red", "B. blue", "C. green", "D. gray"],
            "solution": "<answer>B</answer>",
            "path": f"videos/v{i}.mp4",
        }
        for i, kind in enumerate(kinds)
    ]


def kind(row: dict) -> str:
    """'always', 'never' or 'sometimes': how the scripted policy answers this row."""
    return row["problem"].split("answered ")[1].split(":")[0]


def scripted(request: dict) -> str:
    """Right always, never, or on even seeds only, as the question says."""
    text = json.dumps(request["messages"])
    seed = request.get("seed", 0)
    right = "always" in text or ("sometimes" in text and seed % 2 == 0)
    return f"<think>looking</think><answer>{'B' if right else 'A'}</answer>"


def policy(proxy: FaultProxy) -> Endpoints:
    return Endpoints().with_role("policy", f"{proxy.base_url}@scripted")


def kept(result) -> list[dict]:
    return load_rows(result.dataset).rows


def rejects(out) -> dict[str, str]:
    import pyarrow.parquet as pq

    table = pq.read_table(out / "rejects" / "difficulty.parquet").to_pylist()
    return {kind(json.loads(r["payload_json"])): r["reason"] for r in table}


def test_difficulty_keeps_questions_answered_sometimes_and_caches_every_sample(tmp_path):
    data = write(tmp_path / "rows.json", rows_of(["always", "never", "sometimes"]))
    with FaultProxy(None, latency_s=0.0, reply_fn=scripted) as server:
        stage = filter_stage("difficulty", samples=8, video=False)
        result = run_filter(stage, data, tmp_path / "out", quiet=True, endpoints=policy(server))
        assert len(server.seen) == 24  # 3 questions x 8 samples, one request each
        (row,) = kept(result)
        assert row["difficulty"] == {"pass_rate": 0.5, "n_rollouts": 8, "model": "scripted"}
        assert rejects(tmp_path / "out") == {"always": "too_easy", "never": "too_hard"}
        # the same command again: the run is done, nothing is asked
        again = filter_stage("difficulty", samples=8, video=False)
        run_filter(again, data, tmp_path / "out", quiet=True, endpoints=policy(server))
        assert len(server.seen) == 24
        # 10 samples: the stage reruns, and only samples 8 and 9 of each question are new
        ten = filter_stage("difficulty", samples=10, video=False)
        more = run_filter(ten, data, tmp_path / "out", quiet=True, endpoints=policy(server))
        assert len(server.seen) == 24 + 3 * 2
        assert kept(more)[0]["difficulty"]["n_rollouts"] == 10


def test_the_band_is_a_choice(tmp_path):
    data = write(tmp_path / "rows.json", rows_of(["always", "never", "sometimes"]))
    with FaultProxy(None, latency_s=0.0, reply_fn=scripted) as server:
        stage = filter_stage("difficulty", samples=4, video=False, band=(0.0, 1.01))
        result = run_filter(stage, data, tmp_path / "out", quiet=True, endpoints=policy(server))
    assert sorted(r["difficulty"]["pass_rate"] for r in kept(result)) == [0.5, 1.0]


def test_an_unreachable_policy_is_never_a_pass_rate_of_zero(tmp_path):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    data = write(tmp_path / "rows.json", rows_of(["always", "never"]))
    # one retry, not the default six: the backoff between them is what a dead server costs
    dead = Endpoints(
        roles={"policy": Endpoint(base_url=f"http://127.0.0.1:{port}/v1", model="nobody", max_retries=1)}
    )
    with pytest.raises(StageFailed, match="policy_failed: 2 of 2 samples got no answer \\(connection"):
        run_filter(
            filter_stage("difficulty", samples=2, video=False),
            data,
            tmp_path / "out",
            quiet=True,
            endpoints=dead,
        )
    dataset = tmp_path / "out" / "dataset"
    assert not dataset.exists() or not load_rows(dataset).rows  # no row got a pass rate of 0


def test_blind_rejects_questions_the_text_answers(tmp_path):
    data = write(tmp_path / "rows.json", rows_of(["always", "sometimes", "never"]))
    with FaultProxy(None, latency_s=0.0, reply_fn=scripted, keep_bodies=True) as server:
        result = run_filter(
            filter_stage("blind", samples=8), data, tmp_path / "out", quiet=True, endpoints=policy(server)
        )
        assert all(isinstance(b["messages"][0]["content"], str) for b in server.bodies)  # no video sent
    assert [kind(r) for r in kept(result)] == ["sometimes", "never"]
    import pyarrow.parquet as pq

    (reject,) = pq.read_table(tmp_path / "out" / "rejects" / "blind.parquet").to_pylist()
    assert reject["reason"] == "answerable_without_video" and "8 of 8 right" in reject["detail"]


def test_chance_and_the_binomial_tail():
    assert (
        chance_rate({"problem_type": "multiple choice", "options": ["A. x", "B. y", "C. z", "D. w"]}) == 0.25
    )
    assert chance_rate({"problem_type": "yes/no"}) == 0.5
    assert binomial_tail(8, 8, 0.25) == pytest.approx(0.25**8)
    assert binomial_tail(0, 8, 0.25) == pytest.approx(1.0)
    assert binomial_tail(4, 8, 0.25) == pytest.approx(0.1138, abs=1e-4)


@pytest.mark.model
def test_difficulty_through_the_real_embedded_model(tmp_path, embedded):
    """SmolLM2-135M answers as it answers: every row gets a real pass rate or a too_easy /
    too_hard verdict from 4 samples, none fails, and the model is named."""
    data = write(tmp_path / "rows.json", rows_of(["x", "y"]))
    stage = filter_stage("difficulty", samples=4, video=False, max_tokens=48, band=(-0.01, 1.01))
    endpoints = Endpoints().with_role("policy", f"{embedded.base_url}@{embedded.model}")
    result = run_filter(stage, data, tmp_path / "out", quiet=True, endpoints=endpoints)
    rows = kept(result)
    assert len(rows) == 2 and result.rejected == 0
    for row in rows:
        assert row["difficulty"]["n_rollouts"] == 4 and 0.0 <= row["difficulty"]["pass_rate"] <= 1.0
        assert "smollm2" in row["difficulty"]["model"].lower()


def test_the_recipe_runs_difficulty_after_dedup_only_with_a_policy():
    from vdata.builders.longvideo_reason import LongVideoReasonConfig, stages
    from vdata.recipe import Prepared

    plain = LongVideoReasonConfig(videos=["v"], out="o")
    names = [s.name for s in stages(Prepared(plain, [], None, 1))]
    assert "difficulty" not in names
    with_policy = LongVideoReasonConfig(videos=["v"], out="o", difficulty=True)
    names = [s.name for s in stages(Prepared(with_policy, [], None, 1))]
    assert names[names.index("dedup") + 1] == "difficulty"
    (stage,) = [s for s in stages(Prepared(with_policy, [], None, 1)) if s.name == "difficulty"]
    assert stage.role == "policy" and stage.config["samples"] == 10  # upstream: 10 samples


def judged(request: dict) -> str:
    """A scripted judge: answers B from notes that name the blue ball; a verdict from the
    reasoning's own words (JSON when asked for it)."""
    text = json.dumps(request["messages"])
    if "Judge this reasoning" in text:
        supports = "so the answer is B" in text
        repetitive = "again and again" in text
        return json.dumps(
            {"supports_answer": supports, "repetitive": repetitive, "overlong": False, "reason": "scripted"}
        )
    return "<answer>B</answer>" if "blue ball" in text else "<answer>C</answer>"


def test_sufficiency_and_consistency_with_a_scripted_judge(tmp_path):
    import pyarrow.parquet as pq

    from vdata.record import Record, to_table

    rows = [{k: v for k, v in r.items() if k != "problem_id"} for r in rows_of(["x", "y", "z", "w"])]
    rows[0]["evidence"] = [{"start_s": 1.0, "end_s": 3.0, "text": "A child throws the blue ball."}]
    rows[1]["evidence"] = [{"start_s": 1.0, "end_s": 3.0, "text": "A dog sleeps."}]
    rows[2]["process"] = "<think>The ball is blue, so the answer is B.</think>"
    rows[3]["process"] = "<think>It is red again and again and again.</think>"
    records = [Record(recipe="test@1", meta_json=json.dumps({"n": i}), **r) for i, r in enumerate(rows)]
    data = tmp_path / "rows.parquet"
    pq.write_table(to_table(records), data)
    judge = FaultProxy(None, latency_s=0.0, reply_fn=judged)
    with judge as server:
        endpoints = Endpoints().with_role("judge", f"{server.base_url}@judge")
        enough = run_filter(
            filter_stage("sufficiency"), data, tmp_path / "s", quiet=True, endpoints=endpoints
        )
        sound = run_filter(filter_stage("consistency"), data, tmp_path / "c", quiet=True, endpoints=endpoints)
    assert [r["n"] for r in map(_meta, kept(enough))] == [0]
    reasons = {
        r["reason"] for r in pq.read_table(tmp_path / "s" / "rejects" / "sufficiency.parquet").to_pylist()
    }
    assert reasons == {"insufficient_evidence", "no_evidence"}
    assert [r["n"] for r in map(_meta, kept(sound))] == [2]
    reasons = [
        r["reason"] for r in pq.read_table(tmp_path / "c" / "rejects" / "consistency.parquet").to_pylist()
    ]
    assert sorted(reasons) == ["no_reasoning", "no_reasoning", "reasoning_inconsistent"]


def _meta(row: dict) -> dict:
    return json.loads(row["meta_json"])


@pytest.mark.model
def test_judged_filters_through_the_real_embedded_model(tmp_path, embedded):
    """SmolLM2-135M as the judge: whatever it concludes, every row is kept or rejected with
    one of the filter's own reasons (its Verdict schema compiles for llama.cpp: no
    schema_mismatch, no failed request)."""
    import pyarrow.parquet as pq

    from vdata.record import Record, to_table

    rows = [{k: v for k, v in r.items() if k != "problem_id"} for r in rows_of(["x", "y"])]
    for row in rows:
        row["evidence"] = [{"start_s": 1.0, "end_s": 3.0, "text": "A child throws the blue ball."}]
        row["process"] = "<think>The ball is blue, so the answer is B.</think>"
    pq.write_table(to_table([Record(recipe="test@1", **r) for r in rows]), tmp_path / "rows.parquet")
    allowed = {
        "sufficiency": {"insufficient_evidence"},
        "consistency": {"reasoning_inconsistent", "reasoning_repetitive", "reasoning_overlong"},
    }
    for name, reasons in allowed.items():
        endpoints = Endpoints().with_role("judge", f"{embedded.base_url}@{embedded.model}")
        result = run_filter(
            filter_stage(name), tmp_path / "rows.parquet", tmp_path / name, quiet=True, endpoints=endpoints
        )
        assert result.kept + result.rejected == 2
        if result.rejected:
            found = {
                r["reason"]
                for r in pq.read_table(tmp_path / name / "rejects" / f"{name}.parquet").to_pylist()
            }
            assert found <= reasons, found


def test_augment_hints_the_never_answered_and_noises_the_always_answered(tmp_path):
    import numpy as np

    from vdata.filters.models import augment_rows
    from vdata.stages import StageContext
    from vdata.synth.cuts import write_shots_video
    from vdata.trainers.config import GRPOConfig
    from vdata.trainers.train import frame_source

    base = {"id": "q", "path": "v.mp4", "problem": "Which ball?", "meta_json": "{}"}
    rows = [
        {
            **base,
            "id": "hard",
            "difficulty": {"pass_rate": 0.0},
            "evidence": [{"start_s": 0, "end_s": 1, "text": "the blue ball falls"}],
        },
        {**base, "id": "easy", "difficulty": {"pass_rate": 1.0}},
        {**base, "id": "fine", "difficulty": {"pass_rate": 0.5}},
        {**base, "id": "unmeasured"},
    ]
    out = augment_rows(rows, StageContext(stage="augment", shard=0, seed=0, run_dir=tmp_path))
    hinted, easy, fine = out.rows
    assert hinted["problem"].endswith("Hint: the blue ball falls") and hinted["id"] != "hard"
    assert json.loads(hinted["meta_json"])["augmented_from"] == "hard"
    assert json.loads(easy["meta_json"])["frame_noise"] == {"mask_fraction": 0.3} and fine is rows[2]
    assert [r.reason for r in out.rejects] == ["no_difficulty"]
    # the trainer honours the mark: the same share of frames blanked, the same ones every time
    write_shots_video(tmp_path / "v.mp4", [2.0], size=(56, 56), seed=2)
    frames = frame_source(GRPOConfig(model="x", frames=8, max_pixels=56 * 56), tmp_path)
    plain = np.asarray(frames({**easy, "meta_json": "{}"}).frames)
    noisy = np.asarray(frames(easy).frames)
    blank = [i for i in range(len(noisy)) if not noisy[i].any()]
    assert len(blank) == round(0.3 * len(plain)) and plain[blank[0]].any()
    assert np.array_equal(noisy, np.asarray(frames(easy).frames))


def moments(request: dict) -> str:
    """A scripted vision-language judge: the query that says 'twice' happens at two moments."""
    text = json.dumps(request["messages"])
    if "List every moment" not in text:
        return "<answer>B</answer>"
    found = [{"start_s": 1.0, "end_s": 2.0}] + ([{"start_s": 5.0, "end_s": 6.0}] if "twice" in text else [])
    return json.dumps({"moments": found})


def test_boundary_rejects_grounding_rows_whose_query_matches_elsewhere(tmp_path):
    import pyarrow.parquet as pq

    from vdata.record import Record, to_table
    from vdata.synth.cuts import write_shots_video

    write_shots_video(tmp_path / "v.mp4", [4.0, 4.0], size=(56, 56), seed=4)
    video = {"sha256": "x", "duration_s": 8.0, "fps": 25.0, "width": 56, "height": 56}
    rows = [
        Record(
            recipe="t@1",
            path="v.mp4",
            video=video,
            problem=query,
            problem_type="temporal grounding",
            solution="<answer>1.0, 2.0</answer>",
        )
        for query in ("the ball bounces", "the ball bounces twice")
    ] + [
        Record(
            recipe="t@1",
            path="v.mp4",
            problem="Which?",
            problem_type="multiple choice",
            options=["A. x", "B. y"],
            solution="<answer>B</answer>",
        )
    ]
    pq.write_table(to_table(rows), tmp_path / "rows.parquet")
    with FaultProxy(None, latency_s=0.0, reply_fn=moments, keep_bodies=True) as server:
        endpoints = Endpoints().with_role("judge", f"{server.base_url}@vlm")
        result = run_filter(
            filter_stage("boundary", media_root=str(tmp_path)),
            tmp_path / "rows.parquet",
            tmp_path / "out",
            quiet=True,
            endpoints=endpoints,
        )
        assert any(
            p.get("type") == "image_url"
            for b in server.bodies
            for p in b["messages"][0]["content"]
            if isinstance(b["messages"][0]["content"], list)
        )  # the judge watched frames
    assert sorted(r["problem"] for r in kept(result)) == ["Which?", "the ball bounces"]
    (reject,) = pq.read_table(tmp_path / "out" / "rejects" / "boundary.parquet").to_pylist()
    assert reject["reason"] == "partially_annotated" and "5.0-6.0s" in reject["detail"]
    with pytest.raises(Exception, match="cannot be the judge"):  # the embedded model watches nothing
        run_filter(filter_stage("boundary"), tmp_path / "rows.parquet", tmp_path / "local", quiet=True)


@pytest.mark.slow
def test_difficulty_killed_mid_run_resumes_without_paying_twice(tmp_path):
    """`vdata filter difficulty` killed (SIGKILL) while it waits on a slow scripted policy, then
    run again: the server sees each of the 48 samples once, plus at most the requests that
    were in flight at the kill (asked, never answered, so never paid)."""
    import signal
    import subprocess
    import sys
    import time

    import yaml

    from conftest import wait_for

    data = write(tmp_path / "rows.json", rows_of(["always", "never", "sometimes"] * 2))
    with FaultProxy(None, latency_s=0.3, reply_fn=scripted) as server:
        models = tmp_path / "models.yaml"
        models.write_text(
            yaml.safe_dump(
                {"policy": {"base_url": server.base_url, "model": "scripted", "max_concurrency": 2}}
            )
        )
        command = [
            sys.executable,
            "-m",
            "vdata",
            "filter",
            "difficulty",
            str(data),
            "--out",
            str(tmp_path / "out"),
            "--models",
            str(models),
            "--no-video",
            "--quiet",
        ]
        first = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: len(server.seen) >= 10, "10 requests to reach the policy", first)
        first.send_signal(signal.SIGKILL)
        first.wait()
        killed_at = len(server.seen)
        time.sleep(0.5)  # requests in flight reach the server before the rerun
        again = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
        assert again.returncode == 0, again.stderr
        assert killed_at < 48 and 48 <= len(server.seen) <= 48 + 2
    assert "kept 2" in again.stdout


def test_n_samples_in_one_request_give_the_statistics_of_one_request_each(tmp_path):
    data = write(tmp_path / "rows.json", rows_of(["always", "never", "sometimes"]))
    with FaultProxy(None, latency_s=0.0, reply_fn=scripted) as server:
        each = run_filter(
            filter_stage("difficulty", samples=8, video=False),
            data,
            tmp_path / "each",
            quiet=True,
            endpoints=policy(server),
        )
        asked_each = len(server.seen)
        blocks = run_filter(
            filter_stage("difficulty", samples=8, video=False, per_request=4),
            data,
            tmp_path / "blocks",
            quiet=True,
            endpoints=policy(server),
        )
        asked_blocks = len(server.seen) - asked_each
    assert (asked_each, asked_blocks) == (24, 6)  # 3 questions x 8, and 3 x 2 blocks of 4
    assert [r["difficulty"] for r in kept(each)] == [r["difficulty"] for r in kept(blocks)]
    assert rejects(tmp_path / "each") == rejects(tmp_path / "blocks")


def test_a_server_that_ignores_n_is_asked_one_sample_at_a_time(tmp_path):
    """The stand-in without a reply function answers any request with one choice, as
    llama.cpp's server does: the block comes back short, and the samples are asked one by one."""
    data = write(tmp_path / "rows.json", rows_of(["sometimes"]))
    with FaultProxy(None, latency_s=0.0, reply_text="<answer>B</answer>") as server:
        stage = filter_stage("difficulty", samples=4, video=False, per_request=4, band=(-0.1, 1.1))
        result = run_filter(stage, data, tmp_path / "out", quiet=True, endpoints=policy(server))
        assert len(server.seen) == 1 + 4  # the short block, then 4 single requests
    assert kept(result)[0]["difficulty"] == {"pass_rate": 1.0, "n_rollouts": 4, "model": "scripted"}


@pytest.mark.slow
def test_an_in_process_hugging_face_policy_is_sampled_and_cached(tmp_path):
    """`--policy hf:DIR`: the trainer's policy answers in this process (a tiny random-init LM
    here); every sample is cached, so the same run again generates nothing."""
    pytest.importorskip("torch", reason="an in-process policy needs the train extra")
    from test_grpo import text_lm

    model = text_lm(tmp_path)
    data = write(tmp_path / "rows.json", rows_of(["x", "y"]))
    endpoints = Endpoints().with_role("policy", f"hf:{model}")
    stage = filter_stage("difficulty", samples=3, video=False, max_tokens=4, band=(-0.01, 1.01))
    result = run_filter(stage, data, tmp_path / "out", quiet=True, endpoints=endpoints)
    rows = kept(result)
    assert len(rows) == 2 and all(r["difficulty"]["n_rollouts"] == 3 for r in rows)
    assert rows[0]["difficulty"]["model"] == str(model)
    usage = json.loads((tmp_path / "out" / "run.json").read_text())["usage"]["difficulty"][str(model)]
    assert usage["requests"] == 6
    more = filter_stage("difficulty", samples=4, video=False, max_tokens=4, band=(-0.01, 1.01))
    run_filter(more, data, tmp_path / "out", quiet=True, endpoints=endpoints)
    usage = json.loads((tmp_path / "out" / "run.json").read_text())["usage"]["difficulty"][str(model)]
    assert usage["requests"] == 6 + 2 and usage["cache_hits"] >= 6  # only the 4th sample of each is new


def test_a_grounding_rows_difficulty_is_the_policys_zero_shot_iou(tmp_path):
    import pyarrow.parquet as pq

    from vdata.record import Record, to_table

    row = Record(
        recipe="t@1",
        path="v.mp4",
        problem="the ball bounces",
        problem_type="temporal grounding",
        solution="<answer>1.0, 2.0</answer>",
    )
    pq.write_table(to_table([row]), tmp_path / "rows.parquet")
    with FaultProxy(None, latency_s=0.0, reply_text="<answer>1.0-3.0</answer>") as server:
        stage = filter_stage("difficulty", samples=2, video=False)
        result = run_filter(
            stage, tmp_path / "rows.parquet", tmp_path / "out", quiet=True, endpoints=policy(server)
        )
    assert kept(result)[0]["difficulty"]["pass_rate"] == pytest.approx(0.5)  # IoU of 1-3 with 1-2


def test_constrained_answers_are_held_to_the_letters_and_scored_as_the_trainer_reads_them(tmp_path):
    data = write(tmp_path / "rows.json", rows_of(["sometimes"]))

    def letters(request: dict) -> str:
        schema = json.dumps(request.get("response_format") or {})
        assert '"enum": ["A", "B", "C", "D"]' in schema or "LetterAnswer" not in schema
        return json.dumps({"answer": "B" if request.get("seed", 0) % 2 == 0 else "C"})

    with FaultProxy(None, latency_s=0.0, reply_fn=letters) as server:
        stage = filter_stage("difficulty", samples=4, video=False, constrain=True)
        result = run_filter(stage, data, tmp_path / "out", quiet=True, endpoints=policy(server))
    assert kept(result)[0]["difficulty"]["pass_rate"] == 0.5


def test_sufficiency_regenerates_before_it_rejects(tmp_path):
    """A builder's regenerate(row, attempt) writes new clues; the row is checked again up to
    `tries` times. Here the clues name the blue ball only from the second regeneration on."""
    import pyarrow.parquet as pq

    from vdata.filters.models import sufficiency_stage
    from vdata.record import Record, to_table

    base = {k: v for k, v in rows_of(["x"])[0].items() if k != "problem_id"}
    base["evidence"] = [{"start_s": 1.0, "end_s": 3.0, "text": "A dog sleeps."}]
    pq.write_table(to_table([Record(recipe="t@1", **base)]), tmp_path / "rows.parquet")
    attempts: list[int] = []

    async def regenerate(row: dict, attempt: int, client) -> dict:
        attempts.append(attempt)
        text = "A child throws the blue ball." if attempt >= 2 else f"Try {attempt}: a cat."
        return {**row, "evidence": [{"start_s": 1.0, "end_s": 3.0, "text": text}]}

    with FaultProxy(None, latency_s=0.0, reply_fn=judged) as server:
        endpoints = Endpoints().with_role("judge", f"{server.base_url}@judge")
        patient = sufficiency_stage(regenerate=regenerate, tries=2)
        kept_rows = kept(
            run_filter(patient, tmp_path / "rows.parquet", tmp_path / "two", quiet=True, endpoints=endpoints)
        )
        assert attempts == [1, 2] and kept_rows[0]["evidence"][0]["text"] == "A child throws the blue ball."
        attempts.clear()
        hasty = sufficiency_stage(regenerate=regenerate, tries=1)
        result = run_filter(
            hasty, tmp_path / "rows.parquet", tmp_path / "one", quiet=True, endpoints=endpoints
        )
    assert attempts == [1] and result.kept == 0
    (reject,) = pq.read_table(tmp_path / "one" / "rejects" / "sufficiency.parquet").to_pylist()
    assert reject["reason"] == "insufficient_evidence"
    assert "in 2 attempts; answers: attempt 1" in reject["detail"]


def test_a_response_prefix_opens_the_in_process_policys_answers_and_is_refused_over_http(tmp_path):
    """The trainer's response_prefix as a prefill: an in-process policy's every answer starts
    with it (as the trainer's rollouts do); a chat endpoint cannot continue one: a clear error."""
    pytest.importorskip("torch", reason="an in-process policy needs the train extra")
    import sqlite3

    from test_grpo import text_lm

    model = text_lm(tmp_path)
    data = write(tmp_path / "rows.json", rows_of(["x", "y"]))
    endpoints = Endpoints().with_role("policy", f"hf:{model}")
    stage = filter_stage(
        "difficulty", samples=2, max_tokens=2, band=(-0.01, 1.01), response_prefix="<answer>"
    )
    run_filter(stage, data, tmp_path / "out", quiet=True, endpoints=endpoints)
    with sqlite3.connect(tmp_path / "out" / "cache.sqlite") as db:
        texts = [json.loads(reply)["text"] for (reply,) in db.execute("select reply from replies")]
    assert len(texts) == 4 and all(t.startswith("<answer>") for t in texts)
    refused = pytest.raises(ValueError, match="response_prefix '<answer>' needs an in-process policy")
    with FaultProxy(None, latency_s=0.0, reply_fn=scripted) as proxy, refused:
        run_filter(stage, data, tmp_path / "http", quiet=True, endpoints=policy(proxy))
