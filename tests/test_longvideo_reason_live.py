"""`vdata build longvideo-reason` end to end on examples/, with the real embedded model behind a
counting proxy: a broken video among the inputs, SIGKILL and resume, the dataset's promises."""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from vdata.annotators.testing import FaultProxy
from vdata.cards.exports import to_easyr1
from vdata.record import validate

from conftest import cached_replies, cmdline, dataset, descendants, models_file, wait_for

pytestmark = pytest.mark.model
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
PROBE = hashlib.sha256(
    json.dumps({"role": "user", "content": "Say hello."}, sort_keys=True).encode()
).hexdigest()


@pytest.fixture(scope="module")
def proxy(embedded):
    # memo: the real model's first answer to a request is its answer to every equal one, so
    # the reference and the killed-and-resumed run differ only by what vdata does (llama.cpp
    # alone answers a re-asked repair turn differently after other requests: KV-cache reuse)
    with FaultProxy(embedded.base_url.removesuffix("/v1"), memo=True) as running:
        running.model = embedded.model
        yield running


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    """The two example videos, their captions (shortened), a broken video, and a config for a small run
    (sampling is seeded, and the proxy answers equal requests alike, so runs repeat exactly)."""
    folder = tmp_path_factory.mktemp("in")
    (folder / "videos").mkdir()
    names = sorted(p.name for p in (EXAMPLES / "videos").glob("*.mp4"))[:2]
    for name in names:
        shutil.copy(EXAMPLES / "videos" / name, folder / "videos" / name)
    (folder / "videos" / "broken.mp4").write_bytes(b"")
    captions = [json.loads(line) for line in (EXAMPLES / "captions.jsonl").read_text().splitlines()]
    # each caption cut to its first two sentences: the model reads a video's captions in every
    # question's prompt, and these runs prove what vdata does with the replies, not their quality
    short = [
        {**c, "caption": ". ".join(c["caption"].split(". ")[:2]).rstrip(".") + "."}
        for c in captions
        if any(n in c["video"] for n in names)
    ]
    (folder / "captions.jsonl").write_text("".join(json.dumps(c) + "\n" for c in short))
    (folder / "config.yaml").write_text("questions_per_video: 1\nmax_tokens: 400\n")
    return folder


def build(folder: Path, out: Path, proxy: FaultProxy, engine: str = "local") -> list[str]:
    """The build command through the proxy, whose endpoint waits as long as a slow machine needs
    (a loaded 2-core machine makes the model slow, not the test red)."""
    models = models_file(
        out.parent / f"{out.name}-models.yaml", proxy.base_url, proxy.model, ["reasoner", "rewriter"]
    )
    return [
        sys.executable,
        "-m",
        "vdata",
        "build",
        "longvideo-reason",
        "--videos",
        str(folder / "videos"),
        "--captions",
        str(folder / "captions.jsonl"),
        "--config",
        str(folder / "config.yaml"),
        "--models",
        str(models),
        "--out",
        str(out),
        "--quiet",
        "--engine",
        engine,
    ]


def asked(proxy: FaultProxy, since: float, until: float = float("inf")) -> set[str]:
    """Items (first user messages) sent in a time window, leaving out structured-output probes."""
    return {s.item for s in proxy.seen if since <= s.at < until and s.item != PROBE}


@pytest.fixture(scope="module")
def reference(inputs, proxy, tmp_path_factory):
    """An uninterrupted run: its output folder, its process, the items it asked about."""
    out = tmp_path_factory.mktemp("reference")
    started = time.monotonic()
    result = subprocess.run(
        build(inputs, out, proxy), capture_output=True, text=True, timeout=900, check=False
    )
    assert result.returncode == 0, result.stderr
    return out, result, asked(proxy, started, time.monotonic())


def test_the_main_command_end_to_end(reference):
    out, result, _ = reference
    assert "answer letters" in result.stderr and "tokens" in result.stderr  # the summary
    ingest_rejects = pq.read_table(out / "rejects" / "ingest.parquet").to_pylist()
    assert [(Path(r["input_ref"]).name, r["reason"]) for r in ingest_rejects] == [
        ("broken.mp4", "empty_file")
    ]
    rows = [row for split in dataset(out).values() for row in split]
    run = json.loads((out / "run.json").read_text())
    stages = {s["name"]: s for s in run["stages"]}
    assert stages["ingest"]["rows_out"] == 2 and stages["generate"]["rows_in"] == 2
    rejected = sum(stages[name]["rejected"] for name in ("generate", "check", "rewrite"))
    assert rejected + len(rows) == 2  # every question is kept or rejected with a reason
    assert rows, "the seeded demo run keeps at least one question"
    assert run["usage"]["generate"]  # tokens and requests per model
    card = (out / "dataset" / "README.md").read_text()  # the recipe ends by writing the card
    assert "## How it was built" in card and "vdata build longvideo-reason" in card
    for row in rows:
        assert validate(row) == [], row
        easy = to_easyr1(row)
        assert (
            f"<answer>{easy['answer']}</answer>" == row["solution"] and row["options"][0] in easy["problem"]
        )
        assert (out / "dataset" / row["path"]).exists()  # the path resolves to the video
        assert row["process"].startswith("<think>") and row["evidence"]
    for video in {r["path"] for r in rows}:
        assert len({r["split"] for r in rows if r["path"] == video}) == 1


def test_sigkill_mid_run_then_resume_gives_the_same_dataset_and_repeats_no_request(
    inputs, tmp_path, proxy, reference
):
    reference_out, _, reference_items = reference
    out = tmp_path / "killed"
    began = time.monotonic()
    process = subprocess.Popen(build(inputs, out, proxy), stderr=subprocess.PIPE)
    wait_for(lambda: cached_replies(out / "cache.sqlite") >= 2, "two cached answers", process, every_s=0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    killed_at = time.monotonic()
    finished = cached_replies(out / "cache.sqlite")
    before = asked(proxy, began, killed_at)
    resumed = subprocess.run(
        build(inputs, out, proxy), capture_output=True, text=True, timeout=900, check=False
    )
    assert resumed.returncode == 0, resumed.stderr
    after = asked(proxy, killed_at)

    assert dataset(out) == dataset(reference_out)
    assert before | after == reference_items  # the same requests as an uninterrupted run
    assert len(after & before) == len(before) - finished  # only those in flight at the kill again
    # run.json counts what both invocations sent, the killed one included (a request is counted
    # as it leaves: one the kill stopped on its way, at most one per slot, never arrived)
    usage = json.loads((out / "run.json").read_text())["usage"]
    sent = sum(1 for s in proxy.seen if began <= s.at)
    recorded = sum(m["requests"] for stage in usage.values() for m in stage.values())
    assert sent <= recorded <= sent + 2


def test_clips_are_captioned_from_their_own_frames(tmp_path):
    # The captioner here is the stand-in server (no VLM runs on these machines): the test
    # checks what vdata sends it, one request per clip with that clip's frames and times.
    from vdata.annotators.endpoints import Endpoint, Endpoints
    from vdata.builders.longvideo_reason import CAPTION_PROMPT, LongVideoReasonConfig, build

    video = sorted((EXAMPLES / "videos").glob("*.mp4"))[0]
    caption = "A small object moves across a plain background and bounces off a wall."
    with FaultProxy(None, latency_s=0.01, reply_text=caption, keep_bodies=True) as stand_in:
        endpoint = Endpoint(base_url=stand_in.base_url, model="stand-in")
        endpoints = Endpoints(roles={"captioner": endpoint, "reasoner": endpoint, "rewriter": endpoint})
        config = LongVideoReasonConfig(
            videos=[str(video)], out=str(tmp_path / "run"), caption_frames=4, workers=1
        )
        result = build(config, endpoints, quiet=True)
    captioned = {s.name: s for s in result.stages}["caption"]
    assert captioned.rows_in == captioned.rows_out == 5  # 45 s: clips of 10, 10, 10, 10, 5 s
    requests = [b for b in stand_in.bodies if CAPTION_PROMPT in json.dumps(b)]
    assert len(requests) == 5
    for body in requests:
        parts = body["messages"][0]["content"]
        images = [p for p in parts if p["type"] == "image_url"]
        assert len(images) == len(frame_times(body)) >= 2 and frame_times(body) == sorted(frame_times(body))
        assert parts[-1]["text"] == CAPTION_PROMPT
    starts = sorted(frame_times(body)[0] for body in requests)
    assert [round(s) for s in starts] == [0, 10, 20, 30, 40]  # each clip's own frames, in seconds
    clips = pq.read_table(tmp_path / "run" / "stages" / "03-caption" / "part-00000.parquet").to_pylist()
    assert all(c["caption"] == caption for c in clips)


def frame_times(body: dict) -> list[float]:
    """The times of the frames in a request: the parts that read "Frame at 12.0s:"."""
    parts = body["messages"][0]["content"]
    return [
        float(p["text"].split()[2][:-2])
        for p in parts
        if p["type"] == "text" and p["text"].startswith("Frame")
    ]


def parquet_files(out: Path) -> dict[str, bytes]:
    """Every Parquet file of a run (stage shards, rejects), by path in the run; not those whose
    rows carry provenance (the provenance stage's, the dataset's), which name when their run
    began: `dataset()` compares those rows without it."""
    return {
        str(p.relative_to(out)): p.read_bytes()
        for p in sorted(out.rglob("*.parquet"))
        if "provenance" not in p.parent.name and p.parent.name != "data"
    }


# Ray's agents outlive a killed driver by a minute or two, then exit by themselves; they ask
# no model and write no cache
LINGERING = ("ray::DashboardAgent", "ray::RuntimeEnvAgent")


def still_working(pids: set[int]) -> set[int]:
    """Those of `pids` that still run (not exited, not a zombie) and are not Ray's agents."""
    running = set()
    for pid in pids:
        command = cmdline(pid).decode(errors="replace")
        if command and not command.startswith(LINGERING):
            running.add(pid)
    return running


ray_needed = pytest.mark.skipif(
    importlib.util.find_spec("ray") is None, reason="the ray extra is not installed"
)


@ray_needed
def test_sigkill_of_the_ray_driver_then_resume_on_ray_repeats_no_request(inputs, tmp_path, proxy, reference):
    """The driver of a Ray run is SIGKILLed once two requests reached the model; its local cluster
    dies with it (no task goes on asking); the rerun on Ray finishes with the reference's
    dataset, asking again only what was in flight: what the workers were answered is in the
    run's cache (counted at the proxy in front of the real embedded model). Every Parquet file
    of the run, the dataset's included, is the local run's, and the two Ray runs together asked
    about the local run's items: what an uninterrupted build on Ray must show, so no separate
    test runs one (test_ray_engine runs the toy recipe uninterrupted on Ray)."""
    reference_out, _, reference_items = reference
    out = tmp_path / "killed"
    began = time.monotonic()
    process = subprocess.Popen(build(inputs, out, proxy, engine="ray"), stderr=subprocess.DEVNULL)
    cluster: set[int] = set()
    try:
        # the proxy sees the Ray tasks' requests as they come (the cache file is written by
        # worker processes, and a read-only reader of it missed them once)
        wait_for(lambda: len(asked(proxy, began)) >= 2, "two requests at the model", process, every_s=0.02)
        cluster = descendants(process.pid)
        process.send_signal(signal.SIGKILL)
        process.wait()
        # the cluster's workers die with their driver: wait until none can still ask or cache
        wait_for(lambda: not still_working(cluster), "the killed driver's Ray workers to exit")
        killed_at = time.monotonic()
        finished = cached_replies(out / "cache.sqlite")
        before = asked(proxy, began, killed_at)
        resumed = subprocess.run(
            build(inputs, out, proxy, engine="ray"), capture_output=True, text=True, timeout=900, check=False
        )
        assert resumed.returncode == 0, resumed.stderr[-3000:]
        after = asked(proxy, killed_at)
    finally:
        for pid in descendants(process.pid) | cluster:  # what is left, ours to stop
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    assert dataset(out) == dataset(reference_out)
    assert parquet_files(out) == parquet_files(reference_out)
    assert before | after == reference_items
    assert len(after & before) == len(before) - finished  # only those in flight at the kill again
