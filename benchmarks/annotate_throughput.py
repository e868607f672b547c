"""vdata's annotator client against the plain OpenAI client, in one run.

(1) Client overhead: the same prompts against the real embedded server
    (SmolLM2-135M on llama.cpp) through a plain `AsyncOpenAI` loop bounded at
    concurrency C, and through vdata's client at C (cache off: every request is
    sent). Target: vdata >= 0.95x the plain client's rate.
(2) Concurrency: against a stand-in server with a fixed 200 ms latency, run in
    its own process (it models a remote GPU server; it is not one), a sequential
    plain-client loop as the upstream scripts do, and vdata at concurrency 64.
    Target: vdata >= 0.9 of the ideal rate C / latency; the ratio to the
    sequential loop is reported.

Writes benchmarks/results/annotate_throughput.json.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import openai

from vdata.annotators.client import ModelClient
from vdata.annotators.endpoints import Endpoint
from vdata.annotators.local_server import LocalServer
from vdata.usage import Usage

RESULT = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "annotate_throughput.json"


def messages_for(i: int) -> list[dict]:
    return [{"role": "user", "content": f"Name one colour. Request {i}."}]


async def plain(base_url: str, model: str, n: int, concurrency: int, max_tokens: int) -> float:
    client = openai.AsyncOpenAI(base_url=base_url, api_key="none", max_retries=0, timeout=120)
    slots = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        async with slots:
            await client.chat.completions.create(
                model=model, messages=messages_for(i), max_tokens=max_tokens, temperature=0
            )

    started = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(n)))
    elapsed = time.perf_counter() - started
    await client.close()
    return n / elapsed


async def sequential(base_url: str, model: str, n: int, max_tokens: int) -> float:
    client = openai.AsyncOpenAI(base_url=base_url, api_key="none", max_retries=0, timeout=120)
    started = time.perf_counter()
    for i in range(n):
        await client.chat.completions.create(model=model, messages=messages_for(i), max_tokens=max_tokens)
    elapsed = time.perf_counter() - started
    await client.close()
    return n / elapsed


async def vdata_client(base_url: str, model: str, n: int, concurrency: int, max_tokens: int) -> float:
    endpoint = Endpoint(base_url=base_url, model=model, max_concurrency=concurrency)
    client = ModelClient(endpoint, base_url=base_url, model=model, usage=Usage())
    started = time.perf_counter()
    replies = await asyncio.gather(
        *(client.chat(messages_for(i), temperature=0, max_tokens=max_tokens) for i in range(n))
    )
    elapsed = time.perf_counter() - started
    await client.close()
    failed = [r for r in replies if not r.ok]
    if failed:
        raise RuntimeError(f"{len(failed)} requests failed, first: {failed[0].error}")
    return n / elapsed


def overhead(n: int = 60, concurrency: int = 4) -> dict:
    with LocalServer() as server:
        asyncio.run(plain(server.base_url, server.model, 4, concurrency, 8))  # warm the server up
        rates = {"plain": [], "vdata": []}
        for _ in range(3):  # interleaved, so drift in the machine hits both alike
            rates["plain"].append(asyncio.run(plain(server.base_url, server.model, n, concurrency, 8)))
            rates["vdata"].append(asyncio.run(vdata_client(server.base_url, server.model, n, concurrency, 8)))
    plain_rate, vdata_rate = max(rates["plain"]), max(rates["vdata"])
    return {
        "server": f"llama.cpp (llama-cpp-python) serving {server.model}, one request at a time",
        "requests": n,
        "concurrency": concurrency,
        "plain_asyncopenai_req_per_s": round(plain_rate, 2),
        "vdata_req_per_s": round(vdata_rate, 2),
        "ratio_vdata_to_plain": round(vdata_rate / plain_rate, 3),
        "target_ratio": 0.95,
    }


def concurrency_efficiency(n: int = 1280, concurrency: int = 64, latency_s: float = 0.2) -> dict:
    stand_in = subprocess.Popen(
        [sys.executable, "-m", "vdata.annotators.testing", "--latency", str(latency_s)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        base_url = stand_in.stdout.readline().strip()
        sequential_rate = asyncio.run(sequential(base_url, "stand-in", 20, 8))
        asyncio.run(vdata_client(base_url, "stand-in", concurrency, concurrency, 8))  # warm up
        rates: dict[str, list[float]] = {"plain": [], "vdata": []}
        for _ in range(3):  # interleaved, so drift in the machine hits both alike
            rates["vdata"].append(asyncio.run(vdata_client(base_url, "stand-in", n, concurrency, 8)))
            rates["plain"].append(asyncio.run(plain(base_url, "stand-in", n, concurrency, 8)))
        vdata_rate, plain_rate = max(rates["vdata"]), max(rates["plain"])
    finally:
        stand_in.terminate()
        stand_in.wait(10)
    ideal = concurrency / latency_s
    return {
        "server": f"stand-in HTTP server in its own process, fixed {latency_s * 1000:.0f} ms latency "
        "(models a remote GPU server; it is not one)",
        "requests": n,
        "concurrency": concurrency,
        "ideal_req_per_s": ideal,
        "sequential_plain_loop_req_per_s": round(sequential_rate, 2),
        "plain_asyncopenai_at_concurrency_req_per_s": round(plain_rate, 2),
        "vdata_req_per_s": round(vdata_rate, 2),
        "vdata_fraction_of_ideal": round(vdata_rate / ideal, 3),
        "plain_fraction_of_ideal": round(plain_rate / ideal, 3),
        "vdata_speedup_vs_sequential": round(vdata_rate / sequential_rate, 1),
        "target_fraction_of_ideal": 0.9,
    }


def main() -> None:
    result = {
        "benchmark": "annotate_throughput",
        "baseline": f"plain openai.AsyncOpenAI (openai {openai.__version__})",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "client_overhead": overhead(),
        "concurrency": concurrency_efficiency(),
    }
    RESULT.parent.mkdir(parents=True, exist_ok=True)
    RESULT.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
