"""`vdata filter difficulty` with the embedded SmolLM2-135M as the policy, on synthetic questions.

The synthetic world's questions carry their evidence as text (event phrases), which a text
policy gets in place of the video; SmolLM2-135M answers some right and some not, so the pass
rates are real numbers. Measured in one run:

  - requests per question and wall time at concurrency 1 and 4, each against a fresh cache
    (the embedded llama.cpp server decodes one request at a time; a vLLM server batches);
  - a rerun of the same command: requests paid (should be 0) and its time;
  - the pass-rate histogram;
  - the zero-variance group fraction a GRPO step would see (every sample scored the same),
    before filtering and, with fresh samples (other seeds) of the same policy, on the kept rows.

Baseline: the unfiltered set (what GRPO trains on without the filter). Not measured: asking
for n samples in one request (vdata asks one request per seed, which the cache keys on).

    python benchmarks/difficulty_filter.py [--questions 40] [--samples 4] [--max-tokens 96]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

RESULT = Path(__file__).parent / "results" / "difficulty_filter.json"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--questions", type=int, default=40)
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=96)
    parser.add_argument(
        "--free-format",
        action="store_true",
        help="do not hold answers to the option letters (SmolLM2 then never writes <answer>: all 0)",
    )
    args = parser.parse_args()

    import pyarrow.parquet as pq

    from vdata.annotators.endpoints import Endpoint, Endpoints
    from vdata.annotators.local_server import LocalServer
    from vdata.filters.run import filter_stage, run_filter
    from vdata.formats import load_rows
    from vdata.synth import SynthConfig, synthesize

    work = Path(tempfile.mkdtemp(prefix="vdata-bench-difficulty-"))
    synthesize(work / "synth", SynthConfig(n=max(8, args.questions // 4), minutes=0.5, seed=3), quiet=True)
    rows = pq.read_table(work / "synth" / "questions.parquet").to_pylist()[: args.questions]
    data = work / "questions.parquet"
    pq.write_table(pq.read_table(work / "synth" / "questions.parquet").slice(0, len(rows)), data)
    print(f"{len(rows)} synthetic questions", file=sys.stderr)

    result: dict = {
        "benchmark": "difficulty_filter",
        "policy": "SmolLM2-135M-Instruct (embedded, llama.cpp), text only: evidence notes for the video",
        "questions": len(rows),
        "samples": args.samples,
        "max_tokens": args.max_tokens,
        "answers": "free text in the trainer's format" if args.free_format else "held to the option letters",
        "machine": {"python": platform.python_version()},
    }
    with LocalServer() as server:
        # llama-cpp-python's server decodes one request at a time: 8 in flight measure the client
        for label, concurrency in (("concurrency_1", 1), ("concurrency_4", 4)):
            endpoint = Endpoint(base_url=server.base_url, model=server.model, max_concurrency=concurrency)
            endpoints = Endpoints(roles={"policy": endpoint})
            out = work / label
            stage = filter_stage(
                "difficulty",
                samples=args.samples,
                max_tokens=args.max_tokens,
                video=False,
                constrain=not args.free_format,
            )
            started = time.perf_counter()
            filtered = run_filter(stage, data, out, quiet=True, endpoints=endpoints)
            seconds = time.perf_counter() - started
            usage = json.loads((out / "run.json").read_text())["usage"]["difficulty"]
            requests = sum(m.get("requests", 0) for m in usage.values())
            started = time.perf_counter()
            run_filter(
                filter_stage(
                    "difficulty",
                    samples=args.samples,
                    max_tokens=args.max_tokens,
                    video=False,
                    constrain=not args.free_format,
                ),
                data,
                out,
                quiet=True,
                endpoints=endpoints,
            )
            rerun_s = time.perf_counter() - started
            again = json.loads((out / "run.json").read_text())["usage"]["difficulty"]
            result[label] = {
                "concurrency": concurrency,
                "seconds": round(seconds, 1),
                "requests": requests,
                "requests_per_question": round(requests / len(rows), 2),
                "kept": filtered.kept,
                "rejected": filtered.rejected,
                "rerun_seconds": round(rerun_s, 1),
                "rerun_requests": sum(m.get("requests", 0) for m in again.values()) - requests,
            }
            print(label, result[label], file=sys.stderr)
        # pass rates of every question: the first run's kept rows and its rejects
        out = work / "concurrency_4"
        kept_rows = load_rows(out / "dataset").rows
        rates = [r["difficulty"]["pass_rate"] for r in kept_rows]
        reasons = Counter(
            r["reason"] for r in pq.read_table(out / "rejects" / "difficulty.parquet").to_pylist()
        )
        rates_all = rates + [1.0] * reasons.get("too_easy", 0) + [0.0] * reasons.get("too_hard", 0)
        result["pass_rate_histogram"] = dict(sorted(Counter(round(r, 2) for r in rates_all).items()))
        result["rejects"] = dict(reasons)
        result["zero_variance_fraction"] = {
            "before_filtering": round(
                (reasons.get("too_easy", 0) + reasons.get("too_hard", 0)) / len(rows), 3
            )
        }
        # fresh samples of the same policy on the kept rows: what a GRPO step on them would see
        fresh = filter_stage(
            "difficulty",
            constrain=not args.free_format,
            samples=args.samples,
            max_tokens=args.max_tokens,
            video=False,
            band=(-0.01, 1.01),
            first_seed=1000,  # other samples than the filter's
        )
        if kept_rows:
            kept_data = work / "kept.parquet"
            pq.write_table(pq.read_table(out / "dataset" / "data").combine_chunks(), kept_data)
            endpoints = Endpoints(roles={"policy": Endpoint(base_url=server.base_url, model=server.model)})
            again = run_filter(fresh, kept_data, work / "fresh", quiet=True, endpoints=endpoints)
            fresh_rates = [r["difficulty"]["pass_rate"] for r in load_rows(again.dataset).rows]
            zero = sum(1 for r in fresh_rates if r in (0.0, 1.0))
            result["zero_variance_fraction"]["after_filtering_fresh_samples"] = round(
                zero / len(fresh_rates), 3
            )
            result["kept_mean_pass_rate"] = round(statistics.fmean(rates), 3)
    RESULT.parent.mkdir(parents=True, exist_ok=True)
    RESULT.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
