"""`vdata filter difficulty`: the cost of asking, and what the pass rates look like.

Part 1, cost (a stand-in server): a scripted OpenAI-compatible server with a fixed latency per
request (annotators.testing.FaultProxy; it models a remote GPU server that honours `n`, and is
named so in the JSON) answers --questions questions x --samples samples. Measured: requests per
question and wall time at concurrency 1 and 32, one request per sample versus all samples in
one request (`--per-request`), and a rerun (requests paid, seconds).

Part 2, pass rates (the real embedded model): SmolLM2-135M (llama.cpp) answers the synthetic
world's questions from their evidence notes, answers held to the option letters
(`--constrain`; without it the model never writes <answer> and every rate is 0). Measured: the
pass-rate histogram, and the zero-variance group fraction a GRPO step would see, before
filtering and on the kept rows with fresh samples (other seeds) of the same policy. Baseline:
the unfiltered set.

    python benchmarks/difficulty_filter.py [--questions 200] [--samples 8] [--latency 0.05]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
import zlib
from collections import Counter
from pathlib import Path

RESULT = Path(__file__).parent / "results" / "difficulty_filter.json"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--questions", type=int, default=200)
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument(
        "--latency", type=float, default=0.05, help="the stand-in server's seconds per request"
    )
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--cost-only", action="store_true", help="part 1 only (to see how stable it is)")
    args = parser.parse_args()

    import pyarrow.parquet as pq

    from vdata.synth import SynthConfig, synthesize

    work = Path(tempfile.mkdtemp(prefix="vdata-bench-difficulty-"))
    synthesize(work / "synth", SynthConfig(n=max(8, args.questions // 5), minutes=0.5, seed=3), quiet=True)
    table = pq.read_table(work / "synth" / "questions.parquet")
    table = table.slice(0, min(args.questions, table.num_rows))
    data = work / "questions.parquet"
    pq.write_table(table, data)
    print(f"{table.num_rows} synthetic questions", file=sys.stderr)
    result = {
        "benchmark": "difficulty_filter",
        "questions": table.num_rows,
        "samples": args.samples,
        "machine": {"python": platform.python_version()},
        "cost_stand_in": cost(data, work, args),
    }
    if args.cost_only:
        print(json.dumps(result, indent=2))
        return
    result["pass_rates_smollm2"] = pass_rates(data, work, args)
    RESULT.parent.mkdir(parents=True, exist_ok=True)
    RESULT.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


def _requests(out: Path) -> int:
    usage = json.loads((out / "run.json").read_text())["usage"]["difficulty"]
    return sum(m.get("requests", 0) for m in usage.values())


def cost(data: Path, work: Path, args) -> dict:
    from vdata.annotators.endpoints import Endpoint, Endpoints
    from vdata.annotators.testing import FaultProxy
    from vdata.filters.run import filter_stage, run_filter

    def answer(request: dict) -> str:  # a seeded policy: right on some seeds, per question
        text = json.dumps(request["messages"])
        right = (zlib.crc32(text.encode()) + int(request.get("seed") or 0)) % 3 == 0
        return "<answer>A</answer>" if right else "<answer>B</answer>"

    rows = {"server": f"stand-in: fixed {args.latency}s per request, honours n (a remote GPU server's shape)"}
    with FaultProxy(None, latency_s=args.latency, reply_fn=answer) as server:
        for concurrency in (1, 32):
            for per_request in (1, args.samples):
                endpoint = Endpoint(base_url=server.base_url, model="stand-in", max_concurrency=concurrency)
                endpoints = Endpoints(roles={"policy": endpoint})
                out = work / f"cost-{concurrency}-{per_request}"

                def stage(per_request: int = per_request):
                    return filter_stage(
                        "difficulty",
                        samples=args.samples,
                        video=False,
                        per_request=per_request,
                        band=(-0.01, 1.01),
                    )

                started = time.perf_counter()
                run_filter(stage(), data, out, quiet=True, endpoints=endpoints)
                seconds = time.perf_counter() - started
                paid = _requests(out)
                started = time.perf_counter()
                run_filter(stage(), data, out, quiet=True, endpoints=endpoints)
                label = f"concurrency_{concurrency}_" + (
                    "one_request_per_sample" if per_request == 1 else f"n_{per_request}"
                )
                rows[label] = {
                    "seconds": round(seconds, 2),
                    "requests": paid,
                    "requests_per_question": round(paid / _rows(data), 2),
                    "rerun_seconds": round(time.perf_counter() - started, 2),
                    "rerun_requests": _requests(out) - paid,
                }
                print(label, rows[label], file=sys.stderr)
    return rows


def _rows(data: Path) -> int:
    import pyarrow.parquet as pq

    return pq.read_metadata(data).num_rows


def pass_rates(data: Path, work: Path, args) -> dict:
    import pyarrow.parquet as pq

    from vdata.annotators.endpoints import Endpoint, Endpoints
    from vdata.annotators.local_server import LocalServer
    from vdata.filters.run import filter_stage, run_filter
    from vdata.formats import load_rows

    with LocalServer() as server:
        endpoints = Endpoints(
            roles={"policy": Endpoint(base_url=server.base_url, model=server.model, max_concurrency=2)}
        )
        out = work / "smollm2"
        stage = filter_stage(
            "difficulty", samples=args.samples, max_tokens=args.max_tokens, video=False, constrain=True
        )
        started = time.perf_counter()
        filtered = run_filter(stage, data, out, quiet=True, endpoints=endpoints)
        seconds = time.perf_counter() - started
        kept = load_rows(out / "dataset").rows
        reasons = Counter(
            r["reason"] for r in pq.read_table(out / "rejects" / "difficulty.parquet").to_pylist()
        )
        rates = [r["difficulty"]["pass_rate"] for r in kept]
        rates_all = rates + [1.0] * reasons.get("too_easy", 0) + [0.0] * reasons.get("too_hard", 0)
        result = {
            "policy": "SmolLM2-135M-Instruct (embedded, llama.cpp), evidence notes for the video, "
            "answers held to the letters",
            "seconds": round(seconds, 1),
            "requests": _requests(out),
            "kept": filtered.kept,
            "rejects": dict(reasons),
            "pass_rate_histogram": dict(sorted(Counter(round(r, 3) for r in rates_all).items())),
            "zero_variance_fraction_before": round(
                (reasons.get("too_easy", 0) + reasons.get("too_hard", 0)) / max(len(rates_all), 1), 3
            ),
        }
        if kept:
            kept_data = work / "kept.parquet"
            pq.write_table(pq.read_table(out / "dataset" / "data").combine_chunks(), kept_data)
            fresh = filter_stage(
                "difficulty",
                samples=args.samples,
                max_tokens=args.max_tokens,
                video=False,
                constrain=True,
                band=(-0.01, 1.01),
                first_seed=1000,  # other samples than the filter's
            )
            again = run_filter(fresh, kept_data, work / "fresh", quiet=True, endpoints=endpoints)
            fresh_rates = [r["difficulty"]["pass_rate"] for r in load_rows(again.dataset).rows]
            result["zero_variance_fraction_after_fresh_samples"] = round(
                sum(1 for r in fresh_rates if r in (0.0, 1.0)) / len(fresh_rates), 3
            )
            result["kept_mean_pass_rate"] = round(statistics.fmean(rates), 3)
    return result


if __name__ == "__main__":
    main()
