"""The annotator client against the real embedded model (SmolLM2-135M on llama.cpp), through a
real HTTP proxy on loopback that counts requests and injects faults."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Literal

import pyarrow.parquet as pq
import pytest
from annotate_recipe import WORDS, build
from pydantic import BaseModel

from vdata.annotators.endpoints import Endpoint, Endpoints
from vdata.annotators.local_server import LocalServer
from vdata.annotators.pool import ModelPool
from vdata.annotators.testing import FaultProxy
from vdata.usage import Usage

from conftest import cached_replies, wait_for

pytestmark = pytest.mark.model
RECIPE = Path(__file__).with_name("annotate_recipe.py")


class Quiz(BaseModel):
    question: str
    answer: Literal["A", "B", "C", "D"]


@pytest.fixture(scope="module")
def server(embedded):
    return embedded  # the session's embedded server


def upstream(server: LocalServer) -> str:
    return server.base_url.removesuffix("/v1")


def chat_all(endpoint: Endpoint, prompts: list[str], response=None, cache=None, **sampling):
    """Every prompt through one client, concurrently; returns (replies, usage, pool modes)."""
    usage = Usage()
    with ModelPool(Endpoints(roles={"reasoner": endpoint}), cache_path=cache) as pool:

        async def run():
            client = pool.client("reasoner", usage)
            try:
                messages = [[{"role": "user", "content": p}] for p in prompts]
                return await asyncio.wait_for(
                    asyncio.gather(*(client.chat(m, response_model=response, **sampling) for m in messages)),
                    timeout=1800,  # a cap against a hang, not a deadline
                )
            finally:
                await client.close()

        replies = asyncio.run(run())
        return replies, usage, dict(pool.modes)


def test_structured_json_from_the_real_model(server):
    with FaultProxy(upstream(server)) as proxy:
        endpoint = Endpoint(base_url=proxy.base_url, model=server.model)
        replies, usage, modes = chat_all(
            endpoint, ["Write a quiz question about the sun."], Quiz, max_tokens=120
        )
    assert replies[0].ok, replies[0].error
    assert isinstance(replies[0].value, Quiz) and replies[0].value.answer in "ABCD"
    assert list(modes.values()) in (["json_schema"], ["json_object"])  # found once, by a probe
    counters = usage.of(server.model)
    assert counters.successes == 1 and counters.prompt_tokens > 0 and counters.completion_tokens > 0


def test_concurrency_is_bounded_and_used():
    # A stand-in server with a fixed 200 ms latency (it models a remote GPU server).
    with FaultProxy(None, latency_s=0.2) as stand_in:
        endpoint = Endpoint(base_url=stand_in.base_url, model="stand-in", max_concurrency=4)
        started = time.monotonic()
        replies, usage, _ = chat_all(endpoint, [f"prompt {i}" for i in range(12)])
        elapsed = time.monotonic() - started
    assert all(r.ok for r in replies)
    assert stand_in.max_in_flight == 4
    assert elapsed > 0.55  # three waves of 200 ms at the least (a slow machine only adds to it)


def test_a_request_that_fails_for_good_is_a_reject_and_the_batch_goes_on(server, tmp_path):
    with FaultProxy(upstream(server), fail_prompts={"coal"}) as proxy:
        endpoint = Endpoint(
            base_url=proxy.base_url, max_retries=2, structured="json_object", max_concurrency=2
        )
        result = build(tmp_path / "run", endpoint, words=["sky", "coal", "snow", "broken", "refused"])
    rejects = {
        r["input_ref"]: r for r in pq.read_table(tmp_path / "run" / "rejects" / "colour.parquet").to_pylist()
    }
    assert rejects["w1"]["reason"] == "server_error" and "HTTP 500" in rejects["w1"]["detail"]
    assert "after 3 attempts" in rejects["w1"]["detail"]
    assert rejects["w3"]["reason"] == "prompt_error" and "KeyError" in rejects["w3"]["detail"]
    assert rejects["w4"]["reason"] == "refused"
    assert result.stages[0].rows_out + len(rejects) == 5
    usage = json.loads((tmp_path / "run" / "run.json").read_text())["usage"]["colour"]
    (counters,) = usage.values()
    assert counters["failures"] == 1 and counters["retries"] >= 2 and counters["prompt_tokens"] > 0


def test_a_new_run_with_the_same_cache_sends_no_request(server, tmp_path):
    cache = tmp_path / "shared-cache.sqlite"
    words = WORDS[:6]
    with FaultProxy(upstream(server)) as proxy:
        endpoint = Endpoint(base_url=proxy.base_url, structured="json_object", max_concurrency=3)
        first = build(tmp_path / "one", endpoint, words=words, cache=cache)
        sent = len(proxy.seen)
        second = build(tmp_path / "two", endpoint, words=words, cache=cache)
        assert len(proxy.seen) == sent == 6  # the rerun reached the server zero times
    assert first.final_table().equals(second.final_table())
    usage = json.loads((tmp_path / "two" / "run.json").read_text())["usage"]["colour"]
    (counters,) = usage.values()
    assert counters["cache_hits"] == 6 and counters["requests"] == 0


def test_sigkill_mid_batch_then_resume_repeats_no_finished_request(server, tmp_path):
    out = tmp_path / "run"
    with FaultProxy(upstream(server)) as proxy:
        command = [sys.executable, str(RECIPE), "--out", str(out), "--endpoint", proxy.base_url]
        process = subprocess.Popen(command, stderr=subprocess.PIPE)
        wait_for(lambda: cached_replies(out / "cache.sqlite") >= 4, "four cached answers", process)
        process.send_signal(signal.SIGKILL)
        process.wait()
        killed_at = time.monotonic()
        finished = cached_replies(out / "cache.sqlite")  # answers paid for before the kill
        asked_before = {s.item for s in proxy.seen if s.at < killed_at}
        rerun = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
        assert rerun.returncode == 0, rerun.stderr
        asked_after = {s.item for s in proxy.seen if s.at >= killed_at}
    assert finished >= 4
    # The resumed run asks only for the answers it lacks: the ones in flight at the kill and
    # the ones never asked; nothing it had already paid for. A loaded machine can kill the run
    # between two turns of one conversation (the structured-output probe, a repair turn): a
    # turn of it is cached while the item still needs its next one, so it counts among the
    # finished turns and is asked again; at most the two requests in flight are such items.
    lacking = len(WORDS) - finished
    assert lacking <= len(asked_after) <= lacking + 2
    assert len(asked_before) - finished <= len(asked_after & asked_before) <= len(asked_before) - finished + 2
    table = pq.read_table(out / "stages" / "01-colour" / "part-00000.parquet")
    rejects = pq.read_table(out / "rejects" / "colour.parquet")
    assert table.num_rows + rejects.num_rows == len(WORDS)


def test_injected_faults_end_as_successes_or_rejects_and_the_counters_add_up(server, tmp_path):
    rates = {"rate_limit": 0.1, "server_error": 0.1, "timeout": 0.05, "truncated": 0.1, "invalid_json": 0.15}
    prompts = [f"Which colour is the word number {i}? Answer in JSON." for i in range(20)]
    with FaultProxy(upstream(server), rates=rates, seed=3, hang_s=4.0, retry_after_s=0.3) as proxy:
        endpoint = Endpoint(
            base_url=proxy.base_url,
            max_concurrency=4,
            timeout_s=2.0,
            max_retries=4,
            max_repairs=2,
            structured="json_object",
        )
        replies, usage, _ = chat_all(endpoint, prompts, response=_Colour, max_tokens=32)
    counters = usage.of(next(iter(usage.models)))
    assert len(replies) == 20
    assert all(
        r.ok
        or r.reason
        in {
            "rate_limited",
            "server_error",
            "timeout",
            "bad_response",
            "invalid_json",
            "schema_mismatch",
            "connection",
        }
        for r in replies
    )
    assert all(r.error for r in replies if not r.ok)
    assert counters.successes + counters.failures == 20
    assert counters.successes == sum(r.ok for r in replies) and counters.successes >= 10
    assert counters.requests == len(proxy.seen)  # every request that left the client arrived
    assert counters.retries == counters.requests - counters.repairs - 20
    assert all(proxy.faults[f] > 0 for f in rates), proxy.faults
    # After a 429 the same prompt did not come back before its Retry-After.
    for index, seen in enumerate(proxy.seen):
        if seen.fault == "rate_limit":
            later = [s.at for s in proxy.seen[index + 1 :] if s.prompt == seen.prompt]
            assert not later or later[0] - seen.at >= 0.29


class _Colour(BaseModel):
    colour: str


def vdata_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "vdata", *args], capture_output=True, text=True, timeout=300, check=False
    )


def test_vdata_annotate_caches_refreshes_and_rejects(server, tmp_path):
    data = tmp_path / "rows.jsonl"
    data.write_text('{"word": "sky"}\n{"word": "grass"}\n{"noun": "snow"}\n')
    out = tmp_path / "run"
    with FaultProxy(upstream(server)) as proxy:
        endpoint = f"{proxy.base_url}@{server.model}"
        common = [
            "annotate",
            str(data),
            "--out",
            str(out),
            "--prompt",
            "Which colour is {word}?",
            "--reasoner",
            endpoint,
            "--max-tokens",
            "16",
            "--quiet",
        ]
        first = vdata_cli(*common)
        assert first.returncode == 0, first.stderr
        assert len(proxy.seen) == 2  # the third row has no {word}
        rows = pq.read_table(out / "annotated.parquet").to_pylist()
        assert [r["word"] for r in rows] == ["sky", "grass"] and all(r["reply"] for r in rows)
        reject = pq.read_table(out / "rejects" / "annotate.parquet").to_pylist()[0]
        assert reject["reason"] == "prompt_error" and "'word' is missing or null" in reject["detail"]
        assert json.loads(reject["payload_json"])["noun"] == "snow"  # the row is kept whole

        again = vdata_cli(*common)
        assert again.returncode == 0 and len(proxy.seen) == 2  # finished: nothing is sent
        refreshed = vdata_cli(*common, "--refresh")
        assert refreshed.returncode == 0 and len(proxy.seen) == 4  # asked again
        plain = vdata_cli(*common)  # reruns (the config changed back) from the refreshed cache
        assert plain.returncode == 0 and len(proxy.seen) == 4
        no_cache = vdata_cli(*common[:3], str(tmp_path / "nocache"), *common[4:], "--no-cache")
        assert no_cache.returncode == 0 and not (tmp_path / "nocache" / "cache.sqlite").exists()


def test_vdata_annotate_names_a_bad_endpoint(tmp_path):
    data = tmp_path / "rows.jsonl"
    data.write_text('{"word": "sky"}\n')
    result = vdata_cli(
        "annotate", str(data), "--out", str(tmp_path / "o"), "--prompt", "{word}", "--reasoner", "gpu"
    )
    assert result.returncode == 2 and "neither 'local', a URL" in result.stderr
