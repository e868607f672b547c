"""`vdata build streaming-cot` on `vdata synth` videos, whose truth gives every event's time.

A scripted OpenAI-compatible server stands in for a competent writer, judge and annotator (none
runs here); one writer cheats on purpose, naming what happens next by reading the truth file, to
show that the time rule removes such thoughts. The path through the real embedded model is
tested too (slow)."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from vdata.annotators.endpoints import Endpoint, Endpoints
from vdata.annotators.testing import FaultProxy
from vdata.builders.streaming_cot import StreamingCoTConfig, build, entities_of, jaccard, sample_chains
from vdata.cards.exports import export
from vdata.formats import load_rows
from vdata.synth import SynthConfig, synthesize

from conftest import models_file, wait_for

pytestmark = pytest.mark.slow  # every test renders or reads a synthetic video set


def oracle_config(synth, out, **options) -> StreamingCoTConfig:
    """A build of the synth videos with their captions, the truth as the annotator."""
    return StreamingCoTConfig(
        videos=[str(synth / "videos")],
        out=str(out),
        captions=str(synth / "captions.jsonl"),
        annotator_from_truth=True,
        **options,
    )


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("synth")
    synthesize(folder, SynthConfig(n=2, minutes=0.75, seed=3, width=320, height=180), quiet=True)
    return folder


def rows_of(out: Path) -> list[dict]:
    return [
        r for p in sorted((out / "dataset" / "data").glob("*.parquet")) for r in pq.read_table(p).to_pylist()
    ]


def truth_of(synth: Path, row: dict) -> dict:
    return json.loads((synth / "truth" / f"{Path(row['path']).stem}.json").read_text())


def events_in(prompt: str, marker: str) -> list[str]:
    part = prompt.split(marker, 1)[1].split("\n", 1)[0] if marker in prompt else ""
    return [e.strip() for e in part.strip(" .").split(";") if e.strip() and e.strip() != "nothing new"]


def scripted(cheat_with: Path | None = None, leaky: bool = False):
    """Replies for every role, by the prompt. With `cheat_with` (a synth folder), the thought
    names the subject of the video's next event, which the prompt never showed."""

    def reply(request: dict) -> str:
        text = request["messages"][0]["content"]
        text = text if isinstance(text, str) else " ".join(p.get("text", "") for p in text)
        if "Say hello" in text:
            return json.dumps({"answer": "yes"})
        if "List the events of the newest clip" in text:
            start = float(re.search(r"newest clip runs from ([0-9.]+)s", text).group(1))
            k = int(start // 10)
            events = [
                {
                    "subject": "the red ball",
                    "relation": "rolls past",
                    "object": f"marker {k}",
                    "description": "",
                },
                {
                    "subject": f"marker {k}",
                    "relation": "stands beside",
                    "object": f"marker {k + 1}",
                    "description": "",
                },
            ]
            return json.dumps({"events": events})
        if "Write one question about the video" in text:
            lines = re.findall(r"^(\d+)\. (.+)$", text, re.M)
            first, last = lines[0][1].split(" (")[0], lines[-1][1].split(" (")[0]
            if leaky:  # a question general knowledge answers
                return json.dumps({"question": "Do balls fall down?", "answer": "yes", "nodes_used": [1, 2]})
            return json.dumps(
                {"question": f"What happens after {first}?", "answer": last, "nodes_used": [1, len(lines)]}
            )
        if "You are thinking while you watch" in text:
            now = events_in(text, "Just now: ")
            thought = f"Now {now[0]}." if now else "Nothing new happens; the scene goes on."
            if cheat_with is not None:
                # a writer that peeks: the object the first video's truth shows last of all
                truth = json.loads(sorted((cheat_with / "truth").glob("*.json"))[0].read_text())
                first: dict[str, float] = {}
                for event in truth["events"]:
                    first.setdefault(event["subject"], event["start_s"])
                latest = max(first, key=first.get)
                thought += f" Soon {latest} will show up."
            return json.dumps({"thought": thought})
        if "Could someone answer" in text:
            return json.dumps({"answerable_without_video": False, "answer_follows_from_events": True})
        return "<think>Balls fall.</think><answer>yes</answer>"  # the policy, asked without the video

    return reply


def endpoints_for(proxy: FaultProxy) -> Endpoints:
    endpoint = Endpoint(base_url=proxy.base_url, model="stand-in")
    return Endpoints(roles={"writer": endpoint, "judge": endpoint, "annotator": endpoint})


@pytest.fixture(scope="module")
def oracle_run(synth, tmp_path_factory) -> tuple[Path, FaultProxy]:
    """The synth world's events as the annotator, a scripted writer and judge."""
    out = tmp_path_factory.mktemp("run") / "oracle"
    with FaultProxy(None, latency_s=0.0, reply_fn=scripted(), keep_bodies=True) as proxy:
        config = oracle_config(synth, out, chains_per_video=3)
        build(config, endpoints_for(proxy), quiet=True)
    return out, proxy


def test_the_oracle_run_s_rows_stay_the_same(oracle_run):
    from golden import check_golden

    out, proxy = oracle_run
    check_golden(out / "dataset", "streaming-cot", proxy.bodies)


def test_chains_are_long_enough_in_time_order_and_overlap_under_the_bound(synth):
    import random

    from vdata.builders.streaming_cot import add_events, truth_events

    truth_files = sorted((synth / "truth").glob("*.json"))
    video = synth / "videos" / f"{truth_files[0].stem}.mp4"
    bank = {"entities": [], "events": []}
    for index, start in enumerate(range(0, 45, 10)):
        clip = {"start_s": float(start), "end_s": float(start + 10), "clip_index": index}
        add_events(bank, clip, truth_events(str(video), start, start + 10))
    chains, rejected = sample_chains(
        bank["events"], random.Random(0), count=4, min_nodes=3, max_nodes=6, max_overlap=0.5
    )
    assert chains and rejected >= 0
    for chain in chains:
        assert 3 <= len(chain) <= 6
        assert [n["start_s"] for n in chain] == sorted(n["start_s"] for n in chain)
        for a, b in zip(chain, chain[1:], strict=False):  # each step shares an entity
            assert entities_of([a]) & entities_of([b])
    for i, a in enumerate(chains):
        for b in chains[:i]:
            assert jaccard(entities_of(a), entities_of(b)) < 0.5


def test_the_oracle_run_keeps_questions_whose_times_lie_in_their_chains(oracle_run, synth):
    out, _ = oracle_run
    rows = rows_of(out)
    assert rows
    for row in rows:
        meta = json.loads(row["meta_json"])
        graph = json.loads((out / meta["graph"]).read_text())
        nodes = {n["id"]: n for n in graph["nodes"]}
        chain = [nodes[i] for i in meta["chain"]]
        (qa,) = row["stream"]["qa_stream"]
        assert min(n["start_s"] for n in chain) <= qa["start_s"] <= max(n["end_s"] for n in chain)
        assert qa["start_s"] == max(nodes[i]["end_s"] for i in meta["used"])  # when the evidence is in
        assert len(meta["used"]) >= 2 and row["problem"].endswith("?")
        assert all(t["end_s"] <= qa["start_s"] for t in row["stream"]["text_stream"])
    by_video: dict[str, list] = {}
    for row in rows:
        meta = json.loads(row["meta_json"])
        by_video.setdefault(meta["graph"], []).append(meta["chain"])
    for graph_file, chains in by_video.items():
        nodes = {n["id"]: n for n in json.loads((out / graph_file).read_text())["nodes"]}
        named = [entities_of([nodes[i] for i in c]) for c in chains]
        for i, a in enumerate(named):
            assert all(jaccard(a, b) < 0.1 for b in named[:i])


def test_thoughts_never_saw_the_question_nor_the_future(oracle_run):
    _, proxy = oracle_run
    thoughts = [b for b in proxy.bodies if "You are thinking while you watch" in json.dumps(b)]
    questions = [b for b in proxy.bodies if "Write one question" in json.dumps(b)]
    assert thoughts and questions
    assert not any("Questions you will be asked" in json.dumps(b) for b in thoughts)


def test_a_writer_that_names_what_comes_next_is_filtered_by_the_truth_s_times(synth, tmp_path):
    out = tmp_path / "cheat"
    with FaultProxy(None, latency_s=0.0, reply_fn=scripted(cheat_with=synth)) as proxy:
        config = StreamingCoTConfig(
            videos=[str(synth / "videos")],
            out=str(out),
            captions=str(synth / "captions.jsonl"),
            annotator_from_truth=True,
        )
        build(config, endpoints_for(proxy), quiet=True)
    rows = rows_of(out)
    dropped = [
        d for r in rows for d in json.loads(r["meta_json"])["dropped"] if d.startswith("future_information")
    ]
    assert dropped  # the peeking thoughts were caught
    for row in rows:  # over the output, with the truth's times: no thought names a later first sighting
        truth = truth_of(synth, row)
        first_seen: dict[str, float] = {}
        for event in truth["events"]:
            for name in (event["subject"], event["object"]):
                if name.startswith("the "):
                    first_seen[name] = min(first_seen.get(name, event["start_s"]), event["start_s"])
        for thought in row["stream"]["text_stream"]:
            late = [
                n for n, t in first_seen.items() if t >= thought["end_s"] and n in thought["text"].lower()
            ]
            assert not late, (thought, late)


def test_query_aware_shows_the_questions_and_says_so(synth, tmp_path):
    out = tmp_path / "aware"
    with FaultProxy(None, latency_s=0.0, reply_fn=scripted(), keep_bodies=True) as proxy:
        config = StreamingCoTConfig(
            videos=[str(synth / "videos")],
            out=str(out),
            captions=str(synth / "captions.jsonl"),
            annotator_from_truth=True,
            query_aware=True,
        )
        build(config, endpoints_for(proxy), quiet=True)
    thoughts = [b for b in proxy.bodies if "You are thinking while you watch" in json.dumps(b)]
    assert thoughts and all("Questions you will be asked" in json.dumps(b) for b in thoughts)
    from vdata.cards.card import write_card

    write_card(out / "dataset")
    assert "query-aware (`--query-aware`)" in (out / "dataset" / "README.md").read_text()


def test_vst_export_reads_back_by_the_sft_rules_and_the_rl_parquet_has_the_trainer_s_columns(
    oracle_run, tmp_path
):
    out, _ = oracle_run
    loaded = load_rows(out / "dataset")
    target = tmp_path / "vst.jsonl"
    report = export(loaded.rows, "vst", target)
    assert report.written == len(loaded.rows)
    assert report.also == [str(tmp_path / "vst-rl.parquet"), str(tmp_path / "vst_seeks.jsonl")]
    # The SFT reader's rules (VST's conversation layout, tests/test_interop.py reads it as VST
    # does): a user turn of the video (resolving under the dataset) and a text part; the
    # assistant's text_stream [[start, end, thought], ...] in time order with 0 <= start < end,
    # qa_stream [[start, end, question, answer], ...]; a thought comes no later than the question.
    for line in target.read_text().splitlines():
        user, assistant = json.loads(line)
        video, _ = user["content"]
        streams = assistant["content"][0]
        assert (out / "dataset" / video["video"]).exists() and video["video_end"] > 0
        starts = []
        for start, end, thought in streams["text_stream"]:
            assert 0 <= start < end and isinstance(thought, str) and thought
            starts.append(start)
        assert starts == sorted(starts)
        for start, end, question, answer in streams["qa_stream"]:
            assert start <= end and question.endswith("?") and answer
            assert all(t[1] <= start for t in streams["text_stream"])
    rl = pq.read_table(tmp_path / "vst-rl.parquet").to_pylist()
    assert len(rl) == len(loaded.rows)
    for row in rl:  # the columns VST-RL's video memory dataset reads
        assert row["prompt"].endswith("?") and row["question"] == row["prompt"]
        assert row["reward_model"]["ground_truth"] and row["extra_info"]["id"]
        assert row["video_context"].startswith("videos/") and row["extra_info"]["duration"] > 0


def test_sigkill_during_extract_resumes_the_stream_with_the_same_bank(synth, tmp_path):
    with FaultProxy(None, latency_s=0.4, reply_fn=scripted(), keep_bodies=True) as proxy:
        models = tmp_path / "models.yaml"
        endpoint = {"base_url": proxy.base_url, "model": "stand-in", "max_concurrency": 1}
        models.write_text(
            yaml.safe_dump({"endpoints": {"s": endpoint}, "annotator": "s", "writer": "s", "judge": "s"})
        )

        def command(out: Path) -> list[str]:
            return [sys.executable, "-m", "vdata", "build", "streaming-cot", "--videos", str(synth / "videos"),
                    "--captions", str(synth / "captions.jsonl"), "--models", str(models), "--out", str(out),
                    "--quiet"]  # fmt: skip

        proxy.latency_s = 0.0  # the latency only gives the kill below its moment
        reference = subprocess.run(command(tmp_path / "ref"), capture_output=True, text=True, timeout=600)
        assert reference.returncode == 0, reference.stderr[-2000:]
        proxy.latency_s = 0.4
        out = tmp_path / "killed"

        def banked() -> int:
            return sum(json.loads(p.read_text())["done"] for p in (out / "banks").glob("*/*.json"))

        # --no-cache: the bank saved after every clip is then the only way not to ask again
        began = time.monotonic()
        process = subprocess.Popen([*command(out), "--no-cache"], stderr=subprocess.PIPE)
        wait_for(lambda: (out / "banks").exists() and banked() >= 2, "two clips in the bank", process)
        process.send_signal(signal.SIGKILL)
        process.wait()
        killed_at = time.monotonic()
        proxy.latency_s = 0.0
        resumed = subprocess.run([*command(out), "--no-cache"], capture_output=True, text=True, timeout=600)
        assert resumed.returncode == 0, resumed.stderr[-2000:]
        extracting = [  # the extraction requests (seen and bodies are kept in step)
            (seen.at, seen.prompt)
            for seen, body in zip(proxy.seen, proxy.bodies, strict=True)
            if "List the events of the newest clip" in json.dumps(body) and seen.at >= began
        ]
        before = {p for at, p in extracting if at < killed_at}
        after = {p for at, p in extracting if at >= killed_at}
    banks = {p.name: json.loads(p.read_text()) for p in (out / "banks").glob("*/*.json")}
    reference_banks = {
        p.name: json.loads(p.read_text()) for p in (tmp_path / "ref" / "banks").glob("*/*.json")
    }
    assert banks == reference_banks
    assert before and after and len(before & after) <= 1  # only the clip in flight at the kill again

    def strip(row: dict) -> dict:  # the run's own folder and start time aside
        return {k: v for k, v in row.items() if k != "meta_json"} | {
            "provenance": {**row["provenance"], "created": ""}
        }

    assert [strip(r) for r in rows_of(out)] == [strip(r) for r in rows_of(tmp_path / "ref")]


def test_the_blind_check_rejects_what_the_policy_answers_without_the_video(synth, tmp_path):
    runs = {}
    for leaky in (False, True):
        out = tmp_path / f"leaky-{leaky}"
        with FaultProxy(None, latency_s=0.0, reply_fn=scripted(leaky=leaky)) as proxy:
            endpoints = endpoints_for(proxy)
            endpoints = Endpoints(roles={**endpoints.roles, "policy": endpoints.roles["writer"]})
            config = oracle_config(synth, out, blind_samples=4)
            runs[leaky] = build(config, endpoints, quiet=True)
    blind = {leaky: {s.name: s for s in run.stages}["blind"] for leaky, run in runs.items()}
    assert blind[False].rejected == 0 and blind[False].rows_out > 0  # "yes" answers none of those
    assert blind[True].rows_out == 0 and blind[True].rejected == blind[True].rows_in > 0
    reasons = (
        pq.read_table(tmp_path / "leaky-True" / "rejects" / "blind.parquet").column("reason").to_pylist()
    )
    assert set(reasons) == {"answerable_without_video"}


def test_a_video_without_truth_is_a_reject_and_a_copy_streams_on_its_own(synth, tmp_path):
    import shutil

    other = tmp_path / "other" / "videos"
    other.mkdir(parents=True)
    first = sorted((synth / "videos").glob("*.mp4"))[0]
    shutil.copy(first, other / first.name)  # the same bytes, no truth beside it
    out = tmp_path / "run"
    with FaultProxy(None, latency_s=0.0, reply_fn=scripted()) as proxy:
        config = StreamingCoTConfig(
            videos=[str(synth / "videos"), str(other)], out=str(out), annotator_from_truth=True
        )
        result = build(config, endpoints_for(proxy), quiet=True)
    extract = {s.name: s for s in result.stages}["extract"]
    assert (extract.rows_in, extract.rows_out, extract.rejected) == (3, 2, 1)
    (reject,) = pq.read_table(out / "rejects" / "extract.parquet").to_pylist()
    assert reject["reason"] == "stage_error" and "no synth truth" in reject["detail"]
    banked = {json.loads(p.read_text())["video"] for p in (out / "banks").glob("*/*.json")}
    assert banked == {
        str(p) for p in (synth / "videos").glob("*.mp4")
    }  # the copy never used the original's bank


def test_bad_inputs_are_clear_errors(tmp_path, synth):
    with pytest.raises(ValueError, match="no videos found"):
        build(StreamingCoTConfig(videos=[str(tmp_path)], out=str(tmp_path / "o"), annotator_from_truth=True))
    with pytest.raises(ValueError, match="min_nodes 5 > max_nodes 3"):
        build(
            StreamingCoTConfig(
                videos=[str(synth / "videos")], out=str(tmp_path / "p"), min_nodes=5, max_nodes=3
            )
        )
    done = subprocess.run(
        [sys.executable, "-m", "vdata", "build", "streaming-cot", "--videos", str(synth / "videos"), "--out",
         str(tmp_path / "q"), "--window", "0"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 2 and "window" in done.stderr


@pytest.mark.model
def test_end_to_end_with_the_embedded_model(tmp_path, embedded):
    """The command with the embedded SmolLM2 as annotator (reading the clips' captions), writer
    and judge: the run completes and every video ends as rows or rejects with reasons; what it
    keeps is valid and its thoughts never name an object before the truth shows it."""
    from vdata.record import validate

    synth = tmp_path / "synth"
    synthesize(synth, SynthConfig(n=1, minutes=0.5, seed=5, width=320, height=180), quiet=True)
    out = tmp_path / "run"
    # the session's embedded server in every role (the command would start the same model)
    roles = ["writer", "annotator", "judge", "policy"]
    models = models_file(tmp_path / "models.yaml", embedded.base_url, embedded.model, roles)
    done = subprocess.run(
        [sys.executable, "-m", "vdata", "build", "streaming-cot", "--videos", str(synth / "videos"),
         "--captions", str(synth / "captions.jsonl"), "--chains-per-video", "2", "--out", str(out),
         "--quiet", "--allow-empty", "--models", str(models)],
        capture_output=True, text=True, timeout=1800,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    run = json.loads((out / "run.json").read_text())
    stages = {s["name"]: s for s in run["stages"]}
    assert stages["extract"]["rows_in"] == 1 and run["usage"]["extract"]  # the model was asked
    rows = rows_of(out)
    rejected = sum(
        s["rejected"] for s in run["stages"] if s["name"] in ("extract", "clean", "chains", "write", "filter")
    )
    assert rejected + len({r["path"] for r in rows}) == 1  # the video is kept or rejected with a reason
    for row in rows:
        assert validate(row) == [], row
        truth = truth_of(synth, row)
        first_seen: dict[str, float] = {}  # each object's first visible frame, in seconds
        for object_id, track in truth["tracks"].items():
            name = truth["objects"][object_id]["name"]
            shown = [frame for frame, _, _, visible in track if visible]
            if shown:
                first_seen[name] = min(first_seen.get(name, shown[0] / truth["fps"]), shown[0] / truth["fps"])
        for thought in row["stream"]["text_stream"]:
            assert not [
                n for n, t in first_seen.items() if t >= thought["end_s"] and n in thought["text"].lower()
            ]


def test_without_captions_the_annotator_sees_the_window_s_frames(synth, tmp_path):
    # the annotator is a stand-in for a VLM (none runs here): what vdata sends it is checked,
    # the frames of each clip of the window, newest last, with the bank's names in the text
    with FaultProxy(None, latency_s=0.0, reply_fn=scripted(), keep_bodies=True) as proxy:
        config = StreamingCoTConfig(
            videos=[str(synth / "videos" / sorted(p.name for p in (synth / "videos").glob("*.mp4"))[0])],
            out=str(tmp_path / "run"),
            scenes=False,
            clip_seconds=10,
            window=2,
        )
        build(config, endpoints_for(proxy), quiet=True)
    asked = [b for b in proxy.bodies if "List the events of the newest clip" in json.dumps(b)]
    assert len(asked) == 5  # 45 s in clips of 10 s
    for index, body in enumerate(asked):
        parts = body["messages"][0]["content"]
        labels = [p["text"] for p in parts if p["type"] == "text" and p["text"].startswith("Clip ")]
        assert len(labels) == min(index + 1, 2)  # the window: this clip and the one before
        assert labels[-1].startswith(f"Clip {index * 10:.1f}s")
        assert any(p["type"] == "image_url" for p in parts)
        if index:
            assert "red ball" in parts[-1]["text"]  # the bank so far is shown
