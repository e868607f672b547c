"""Annotator parts that need no model: endpoints, cache keys, limits, JSON extraction,
message building, offline vLLM requests, accounting."""

from __future__ import annotations

import asyncio
import base64
import sqlite3
import time

import numpy as np
import pytest
from pydantic import BaseModel

from vdata.annotators.cache import RequestCache, request_key
from vdata.annotators.client import ModelClient, extract_json
from vdata.annotators.endpoints import Endpoint, EndpointError, Endpoints, parse_endpoint
from vdata.annotators.limits import TokenBucket, backoff_seconds, parse_retry_after
from vdata.annotators.messages import frames_content, jpeg_data_url, video_url_content
from vdata.annotators.testing import FaultProxy
from vdata.annotators.vllm_offline import ChatRequest, OfflineVLLM, VLLMMissing, sampling_arguments
from vdata.usage import Usage, UsageLedger, ledger_totals
from vdata.video import probe, sample_frames

from videos import make_video


class Answer(BaseModel):
    letter: str


def test_endpoints_from_flags_and_yaml(tmp_path, monkeypatch):
    assert parse_endpoint("local").is_local
    remote = parse_endpoint("http://gpu-1:8000/v1@Qwen/Qwen2.5-VL-7B-Instruct")
    assert (remote.base_url, remote.model) == ("http://gpu-1:8000/v1", "Qwen/Qwen2.5-VL-7B-Instruct")
    assert parse_endpoint("http://gpu-1:8000/v1/").model == ""
    config = tmp_path / "models.yaml"
    config.write_text(
        "models:\n"
        "  endpoints:\n"
        "    big: {base_url: 'http://h:8000/v1', model: m, api_key_env: MY_KEY,\n"
        "          max_concurrency: 64, rpm: 600}\n"
        "  reasoner: big\n"
        "  captioner: {base_url: 'http://v:8001/v1', model: vl,\n"
        "              video_input: video_url}\n"
    )
    endpoints = Endpoints.from_yaml(config)
    assert endpoints.for_role("reasoner").max_concurrency == 64
    assert endpoints.for_role("captioner").video_input == "video_url"
    assert endpoints.for_role("judge").is_local  # roles not given use the local model
    monkeypatch.delenv("MY_KEY", raising=False)
    with pytest.raises(EndpointError, match="MY_KEY is not set"):
        endpoints.for_role("reasoner").api_key()
    monkeypatch.setenv("MY_KEY", "secret")
    assert endpoints.for_role("reasoner").api_key() == "secret"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"painter": "local"}, "unknown role 'painter'"),
        ({"reasoner": "gpu-box"}, "neither 'local', a URL"),
        ({"reasoner": {"base_url": "http://h/v1", "max_concurrency": 0}}, "max_concurrency: Input should be"),
        ({"reasoner": {"base_url": "http://h/v1", "temprature": 0.2}}, "'temprature' \\(did you mean"),
        # a secret where it does not belong is refused without being repeated
        ({"reasoner": {"base_url": "http://h/v1", "api_key": "sk-PLANTED"}}, r"^(?!.*PLANTED).*api_key_env"),
    ],
)
def test_bad_endpoint_settings_say_what_is_wrong(data, message):
    with pytest.raises(EndpointError, match=message):
        Endpoints.load(data)


def test_extract_json_from_plain_fenced_and_chatty_replies():
    assert extract_json('{"a": 1}') == '{"a": 1}'
    assert extract_json('Here:\n```json\n{"a": 1}\n```') == '{"a": 1}'
    assert extract_json('Sure! {"a": "x } y", "b": {"c": 2}} Done.') == '{"a": "x } y", "b": {"c": 2}}'
    with pytest.raises(ValueError, match="no JSON object"):
        extract_json("no json here")
    with pytest.raises(ValueError, match="cut off"):
        extract_json('Reply: {"a": [1, 2')


def test_cache_keys_hash_media_and_cover_everything_that_changes_the_reply(tmp_path):
    red, blue = np.zeros((8, 8, 3), np.uint8), np.full((8, 8, 3), 200, np.uint8)

    def messages(frame):
        return [
            {"role": "user", "content": [{"type": "image_url", "image_url": {"url": jpeg_data_url(frame)}}]}
        ]

    base = request_key("m", messages(red), {"temperature": 0}, None)
    assert base == request_key("m", messages(red), {"temperature": 0}, None)
    assert base != request_key("m", messages(blue), {"temperature": 0}, None)
    assert base != request_key("m2", messages(red), {"temperature": 0}, None)
    assert base != request_key("m", messages(red), {"temperature": 0.6}, None)
    assert base != request_key("m", messages(red), {"temperature": 0}, Answer.model_json_schema())

    cache = RequestCache(tmp_path / "cache.sqlite")
    cache.put(base, "m", {"text": "hi"})
    assert cache.get(base) == {"text": "hi"} and cache.get("other") is None
    assert cache._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    cache.close()
    assert RequestCache(tmp_path / "cache.sqlite").get(base) == {"text": "hi"}  # it persists


def test_many_openers_of_one_new_cache_file_all_get_it(tmp_path):
    """Eight connections opening the same new cache file at once (a node's Ray tasks creating
    its node cache): each one opens it and writes, none is told "database is locked" (SQLite
    refuses the losers of the switch to WAL at once; a CI run failed on it)."""
    import threading

    errors: list[str] = []
    for trial in range(120):
        path = tmp_path / f"c{trial}.sqlite"
        start = threading.Barrier(8)

        def open_and_write(path=path, start=start) -> None:
            start.wait()
            try:
                cache = RequestCache(path)
                cache.put(threading.current_thread().name, "m", {"text": "hi"})
                cache.close()
            except sqlite3.OperationalError as exc:
                errors.append(str(exc))

        threads = [threading.Thread(target=open_and_write) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert RequestCache(path).count() == 8
    assert errors == []


def test_a_pools_portable_spec_keeps_its_empty_cache_as_an_absolute_path(tmp_path, monkeypatch):
    """What travels to a Ray task names the run's cache even while it is empty (an empty cache
    once read as no cache, so Ray workers cached nothing and a resumed run paid again), and
    names it absolutely (a worker on another node has another working directory)."""
    from vdata.annotators.pool import ModelPool

    monkeypatch.chdir(tmp_path)
    with ModelPool(cache_path="run/cache.sqlite", log_dir="run") as pool:
        spec = pool.portable()
    assert spec.cache_path == str(tmp_path / "run" / "cache.sqlite")
    assert spec.log_dir == str(tmp_path / "run")
    with spec.open() as worker_pool:
        worker_pool.cache.put("k", "m", {"text": "hi"})
    assert RequestCache(tmp_path / "run" / "cache.sqlite").count() == 1
    with ModelPool(cache_path=None).portable().open() as uncached:
        assert uncached.cache is None


def test_a_node_cache_writes_its_own_file_reads_the_runs_and_is_gathered_back(tmp_path):
    """A cluster node's view of the request cache (the Ray engine on several machines): answers
    go to the node's own file; the run's cache, opened immutable, answers what the node lacks;
    the driver's gathering copies the nodes' answers into the run's cache, once."""
    from vdata.annotators.cache import NodeCache
    from vdata.annotators.pool import ModelPool, node_cache_files

    run_cache = tmp_path / "cache.sqlite"
    with ModelPool(cache_path=run_cache) as driver:
        driver.cache.put("old", "m", {"text": "from an earlier run"})
        driver.cache.set_note("mode", "json_schema")
        spec = driver.portable().per_node()
        assert driver.gather_node_caches() == 0  # the engine's call before a stage's tasks
        with pytest.raises(ValueError, match="node id"):
            spec.open()
        with spec.open(node="a1b2c3d4e5f6a7b8") as worker:
            assert isinstance(worker.cache, NodeCache)
            assert worker.cache.get("old") == {"text": "from an earlier run"}  # the run's, read-through
            assert worker.cache.note("mode") == "json_schema"
            worker.cache.put("new", "m", {"text": "asked on the node"})
            worker.cache.set_note("other", "x")
        assert [p.name for p in node_cache_files(run_cache)] == ["a1b2c3d4e5f6.sqlite"]
        assert driver.cache.get("new") is None  # not in the run's file until gathered
        assert driver.gather_node_caches() == 1
        assert driver.gather_node_caches() == 0  # gathering again adds nothing
        assert driver.cache.get("new") == {"text": "asked on the node"} and driver.cache.note("other") == "x"
        assert driver.cache.count() == 2
    alone = NodeCache(tmp_path / "n" / "x.sqlite", tmp_path / "no-run-cache-yet.sqlite")
    assert alone.get("old") is None and alone.note("mode") is None
    alone.close()


def test_token_bucket_holds_the_rate():
    # On a clock of its own: a loaded machine must not decide this test.
    clock = [100.0]

    async def sleep(seconds):
        clock[0] += seconds

    async def take(n):
        bucket = TokenBucket(per_minute=120, clock=lambda: clock[0], sleep=sleep)  # 2 a second, bursts of 20
        started = clock[0]
        for _ in range(n):
            await bucket.take()
        return clock[0] - started

    assert asyncio.run(take(20)) == 0.0  # the burst
    assert asyncio.run(take(24)) == pytest.approx(2.0)  # then 2 a second


def test_retry_after_and_backoff():
    assert parse_retry_after({"retry-after": "3"}) == 3.0
    assert parse_retry_after({"retry-after-ms": "250"}) == 0.25
    assert 9 < parse_retry_after({"retry-after": _http_date(10)}) <= 10.5
    assert parse_retry_after({}) is None
    assert backoff_seconds(0, retry_after=2.0) >= 2.0
    assert all(backoff_seconds(10, None, cap=5.0) <= 5.0 for _ in range(50))


@pytest.mark.parametrize("value", ["soon", "inf", "-inf", "nan", "Mon, 99 Foo 2026", "1e999", " "])
def test_a_retry_after_that_is_no_number_nor_date_counts_as_absent(value):
    assert parse_retry_after({"retry-after": value}) is None
    assert parse_retry_after({"retry-after-ms": value}) is None


def test_a_long_retry_after_is_capped():
    assert parse_retry_after({"retry-after": "3600"}) == 3600.0
    assert parse_retry_after({"retry-after": "-5"}) == 0.0
    assert backoff_seconds(0, retry_after=3600.0) == 60.0  # the default cap
    assert backoff_seconds(0, retry_after=3600.0, max_retry_after=2.0) == 2.0


@pytest.mark.parametrize(("header", "waited"), [("soon", None), ("3600", 0.3)])
def test_rate_limited_requests_retry_whatever_retry_after_says(header, waited):
    # The stand-in server answers half its requests with 429 and this Retry-After header.
    with FaultProxy(None, rates={"rate_limit": 0.5}, retry_after_s=header, latency_s=0.0) as stand_in:
        endpoint = Endpoint(
            base_url=stand_in.base_url, model="stand-in", max_retries=8, max_retry_after_s=0.3
        )
        waits: list[str] = []

        async def run():
            client = ModelClient(
                endpoint, base_url=stand_in.base_url, model="stand-in", usage=Usage(), on_wait=waits.append
            )
            try:
                return await asyncio.gather(
                    *(client.chat([{"role": "user", "content": f"q{i}"}]) for i in range(6))
                )
            finally:
                await client.close()

        replies = asyncio.run(run())
    assert all(r.ok for r in replies) and stand_in.faults["rate_limit"] > 0
    assert len(waits) == stand_in.faults["rate_limit"]  # each wait shows on the progress line
    if waited is None:  # "soon" is no number: the usual backoff, and no word of what the server asked
        assert not any("server asked" in w for w in waits)
    else:  # an hour asked: the wait is the cap (or the backoff's jitter, when that is longer)
        assert all("asked for 3600s" in w for w in waits)
        seconds = [float(w.split("waiting ")[1].split("s ")[0]) for w in waits]
        assert all(waited <= s <= 30 for s in seconds), waits


def _http_date(seconds_ahead: float) -> str:
    import email.utils

    return email.utils.formatdate(time.time() + seconds_ahead, usegmt=True)


def test_frames_become_timestamped_jpeg_parts(tmp_path):
    path = tmp_path / "v.mp4"
    make_video(path, [3.0])
    sampled = sample_frames(path, 0.0, 3.0, nframes=4, max_pixels=64 * 28 * 28)
    parts = frames_content(sampled, "Describe the video.")
    assert [p["type"] for p in parts] == ["text", "image_url"] * 4 + ["text"]
    assert parts[0]["text"] == f"Frame at {sampled.timestamps[0]:.1f}s:"
    url = parts[1]["image_url"]["url"]
    assert url.startswith("data:image/jpeg;base64,")
    import cv2

    image = cv2.imdecode(np.frombuffer(base64.b64decode(url.split(",", 1)[1]), np.uint8), cv2.IMREAD_COLOR)
    assert image.shape[:2] == (sampled.height, sampled.width)


def test_a_clip_becomes_one_video_url(tmp_path):
    path = tmp_path / "v.mp4"
    make_video(path, [6.0])
    parts = video_url_content(path, 2.0, 4.0, "What happens?")
    url = parts[0]["video_url"]["url"]
    assert parts[0]["type"] == "video_url" and url.startswith("data:video/mp4;base64,")
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(base64.b64decode(url.split(",", 1)[1]))
    assert probe(clip).duration_s == pytest.approx(2.0, abs=0.05)


def test_offline_vllm_requests_are_built_without_vllm():
    # vLLM needs a CUDA GPU and cannot run on these machines: only request building is tested here.
    request = ChatRequest(
        [{"role": "user", "content": "Pick"}], Answer, {"temperature": 0.6, "max_tokens": 64}
    )
    arguments = sampling_arguments(request)
    assert arguments["json_schema"] == Answer.model_json_schema()
    assert (arguments["temperature"], arguments["max_tokens"]) == (0.6, 64)
    with pytest.raises(ValueError, match="does not take"):
        sampling_arguments(ChatRequest([], None, {"temprature": 1}))
    try:
        import vllm  # noqa: F401
    except ImportError:
        with pytest.raises(VLLMMissing, match=r'pip install "vdata\[vllm\]"'):
            OfflineVLLM("Qwen/Qwen2.5-0.5B-Instruct")


def test_usage_is_recorded_as_it_happens_and_summed_over_invocations(tmp_path):
    ledger = tmp_path / "usage.jsonl"
    for invocation, requests in ((1, 3), (2, 2)):  # a killed invocation, then its resume
        usage = Usage(UsageLedger(ledger, invocation=invocation, stage="generate"))
        usage.set_price("m", 1.0, 2.0)
        for latency in (0.1, 0.2, 0.3)[:requests]:
            usage.add("m", requests=1)
            usage.add("m", latency_s=latency, prompt_tokens=1000, completion_tokens=500)
        usage.add("m", cache_hits=1)
    with ledger.open("a") as handle:
        handle.write('{"invocation": 3, "stage": "gen')  # the torn last line of a kill -9
    by_stage, by_invocation = ledger_totals(ledger)
    total = by_stage["generate"]["m"]
    assert total["requests"] == 5 and total["prompt_tokens"] == 5000 and total["completion_tokens"] == 2500
    assert total["cache_hits"] == 2 and total["cost_usd"] == pytest.approx(5 * 0.002)
    assert total["latency_s"]["p50"] == pytest.approx(0.2)
    assert by_invocation["1"]["generate"]["m"]["requests"] == 3
    assert by_invocation["2"]["generate"]["m"]["requests"] == 2
    assert "tok" in usage.line()


class _Colour(BaseModel):
    colour: str


def test_every_answered_turn_is_cached_so_a_rerun_pays_for_no_repair_again(tmp_path):
    # The stand-in answers every JSON request with {"answer": "yes"}, which never fits _Colour:
    # the first turn and both repairs are paid for, and the call fails. A second client with
    # the same cache replays the whole conversation and sends nothing.
    cache = RequestCache(tmp_path / "cache.sqlite")
    with FaultProxy(None, latency_s=0.0) as stand_in:
        endpoint = Endpoint(base_url=stand_in.base_url, model="stand-in", max_repairs=2)

        async def once() -> tuple:
            usage = Usage()
            client = ModelClient(
                endpoint, base_url=stand_in.base_url, model="stand-in", usage=usage, cache=cache
            )
            try:
                reply = await client.chat([{"role": "user", "content": "A colour?"}], response_model=_Colour)
            finally:
                await client.close()
            return reply, usage.of("stand-in")

        first, paid = asyncio.run(once())
        sent = len(stand_in.seen)
        second, replayed = asyncio.run(once())
    assert not first.ok and first.reason == "schema_mismatch" and second.reason == first.reason
    assert paid.repairs == 2 and paid.requests == sent >= 3  # the probe of the structured mode, 3 turns
    assert len(stand_in.seen) == sent  # the rerun reached the server zero times
    assert replayed.requests == 0 and replayed.cache_hits == 3 and replayed.failures == 1


def test_the_proxy_counts_no_request_whose_client_died_while_sending_it():
    # A run killed while it writes a request has asked nothing; counting it (as an empty
    # request) made the kill-and-resume test see an item that no run had asked for.
    import socket

    body = b'{"model": "stand-in", "messages": [{"role": "user", "content": "cut off"}]}'
    head = f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n"
    head += "Content-Type: application/json\r\n\r\n"
    with FaultProxy(None, latency_s=0.0) as stand_in:
        for cut in (0, 20):  # killed after the headers; killed in the body
            with socket.create_connection(("127.0.0.1", stand_in.port)) as sock:
                sock.sendall(head.encode() + body[:cut])
                time.sleep(0.2)  # the proxy has what was sent, then the disconnect
        with socket.create_connection(("127.0.0.1", stand_in.port)) as sock:  # a whole one
            sock.sendall(head.encode() + body)
            assert sock.recv(4096).startswith(b"HTTP/1.1 200")
    assert len(stand_in.seen) == 1
