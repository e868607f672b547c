"""The embedded model's server as vdata starts it, against llama_cpp.server with its own defaults.

The requests are the longvideo-reason recipe's question requests on the bundled examples (each
prompt holds a video's clip captions: 1,200-1,700 tokens), with their reply schemas, sent one at
a time to each server in turn, twice over. Baseline: `python -m llama_cpp.server` with the same
model, context and threads and its defaults otherwise, which keep the logits of every prompt
token (`logits_all`, for prompt log-probs); vdata's server turns that off, since it never asks
for them. Both servers read each prompt from scratch: the first request of a video finds no
shared prefix in the KV cache of either.

Writes benchmarks/results/local_server.json.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import openai

from vdata.annotators.client import _response_format
from vdata.annotators.local_server import LOCAL_MODEL_NAME, LocalServer, free_port, local_model_path
from vdata.builders.longvideo_reason import caption_lines, generation_prompt, question_schema

ROOT = Path(__file__).resolve().parents[1]
RESULT = ROOT / "benchmarks" / "results" / "local_server.json"
MAX_TOKENS = 200
ROUNDS = 2


def requests() -> list[tuple[list[dict], dict]]:
    """One question request per example video: its messages and its reply schema."""
    clips: dict[str, list[dict]] = {}
    for line in (ROOT / "examples" / "captions.jsonl").read_text().splitlines():
        clip = json.loads(line)
        clips.setdefault(clip["video"], []).append(clip)
    out = []
    for _, items in sorted(clips.items()):
        row = {"category": "temporal", "attempt": 0, "captions": caption_lines(items)}
        out.append((generation_prompt(row), question_schema(len(items)).model_json_schema()))
    return out


def upstream_server(threads: int, n_ctx: int, log: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    command = [
        sys.executable, "-m", "llama_cpp.server", "--model", str(local_model_path()),
        "--model_alias", LOCAL_MODEL_NAME, "--host", "127.0.0.1", "--port", str(port),
        "--n_ctx", str(n_ctx), "--n_threads", str(threads), "--n_threads_batch", str(threads),
    ]  # fmt: skip
    with open(log, "wb") as sink:
        process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    base_url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            openai.OpenAI(base_url=base_url, api_key="none", max_retries=0, timeout=2).models.list()
            return process, base_url
        except openai.APIError:
            time.sleep(0.5)
    process.kill()
    raise RuntimeError(f"llama_cpp.server did not come up; see {log}")


def timed(base_url: str, asked: list[tuple[list[dict], dict]]) -> list[float]:
    """Seconds per request, one at a time; a short unrelated request between two empties the
    prefix the next one could reuse."""
    client = openai.OpenAI(base_url=base_url, api_key="none", max_retries=0, timeout=600)
    seconds = []
    for messages, schema in asked:
        client.chat.completions.create(
            model=LOCAL_MODEL_NAME, messages=[{"role": "user", "content": "Say hello."}], max_tokens=4
        )
        started = time.perf_counter()
        client.chat.completions.create(
            model=LOCAL_MODEL_NAME,
            messages=messages,
            max_tokens=MAX_TOKENS,
            temperature=0.6,
            seed=0,
            response_format=_response_format("json_object", schema),
        )
        seconds.append(round(time.perf_counter() - started, 2))
    return seconds


def main() -> None:
    asked = requests()
    work = Path(tempfile.mkdtemp(prefix="vdata-local-server-"))  # the two servers' logs
    rounds = []
    for _ in range(ROUNDS):
        with LocalServer(log_path=work / "vdata.log") as ours:
            vdata_seconds = timed(ours.base_url, asked)
            threads, n_ctx = ours.threads, ours.n_ctx
        process, base_url = upstream_server(threads, n_ctx, work / "upstream.log")
        try:
            upstream_seconds = timed(base_url, asked)
        finally:
            process.terminate()
            process.wait(30)
        rounds.append(
            {
                "vdata_seconds": vdata_seconds,
                "upstream_defaults_seconds": upstream_seconds,
                "speedup": round(sum(upstream_seconds) / sum(vdata_seconds), 2),
            }
        )
    result = {
        "benchmark": "local_server",
        "baseline": "python -m llama_cpp.server, its defaults (logits_all on), same model, context, threads",
        "what": f"{len(asked)} longvideo-reason question requests on examples/ (one per video), "
        f"max_tokens {MAX_TOKENS}, seed 0, one at a time, {ROUNDS} rounds",
        "threads": threads,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "rounds": rounds,
    }
    RESULT.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
