"""`vdata view` on a large dataset: how long a page of rows takes, over HTTP, from the real
server (uvicorn, in a thread of this process), against the notebook way as the baseline.

The dataset is N rows (default 1,000,000) in the record's schema, in 10 Parquet files per
split (rl, sft), with questions, four options, a category among 12, a problem type, a pass
rate. Each query is asked `--repeats` times; the figure is the median, with the slowest.

- vdata view: GET /api/rows with the query, the server filtering with polars and sending
  the page (50 rows) and the counts per facet value among the matches.
- baseline, "pandas in a notebook": the same dataset already in a pandas DataFrame (read
  once, its load timed apart), the same filters with pandas (boolean masks,
  `str.contains(regex=False)` on question + options), the same page and the same counts
  (`value_counts`). No HTTP: the baseline is given every advantage but polars.

Writes benchmarks/results/view.json.

    python benchmarks/view.py [--rows 1000000] [--repeats 7]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

CATEGORIES = [f"category-{i}" for i in range(12)]
TYPES = ["multiple choice", "multi-answer", "yes/no", "numerical"]
QUERIES = {
    "first page": {},
    "deep page (offset 900,000 of all)": {"offset": "900000"},
    "split and category": {"split": "rl", "category": "category-7"},
    "text search (rare word)": {"q": "zebra-4242"},
    "text search (common word)": {"q": "square"},
    "pass rate range + split": {"split": "sft", "difficulty_min": "0.2", "difficulty_max": "0.4"},
}


def write_dataset(folder: Path, n: int) -> None:
    """N rows of the record, written with pyarrow column by column (fast to make)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from vdata.record import SCHEMA

    rng = np.random.default_rng(0)
    data = folder / "data"
    data.mkdir(parents=True)
    words = np.array(["red", "blue", "square", "circle", "moves", "left", "right", "stops", "first", "then"])
    per_file = -(-n // 20)
    for f in range(20):
        start, stop = f * per_file, min(n, (f + 1) * per_file)
        if start >= stop:
            break
        count = stop - start
        picks = rng.integers(0, len(words), size=(count, 6))
        problems = [
            f"Question {start + i}: what happens when the {' '.join(words[p])}?" for i, p in enumerate(picks)
        ]
        if start <= 4242 < stop:
            problems[4242 - start] = "Where does the zebra-4242 go?"
        columns = {
            "id": [f"r{start + i:07d}" for i in range(count)],
            "recipe": ["bench@1"] * count,
            "data_type": ["video"] * count,
            "path": [f"videos/v{(start + i) % 997}.mp4" for i in range(count)],
            "problem": problems,
            "problem_type": [TYPES[i % 4] for i in range(count)],
            "options": [["A. red", "B. blue", "C. green", "D. none"]] * count,
            "solution": [f"<answer>{'ABCD'[i % 4]}</answer>" for i in range(count)],
            "category": [CATEGORIES[int(c)] for c in rng.integers(0, 12, count)],
            "split": ["rl" if f < 10 else "sft"] * count,
            "difficulty": [
                {"pass_rate": float(p), "n_rollouts": 8, "model": "policy"}
                for p in rng.random(count).round(3)
            ],
        }
        table = pa.table(
            {
                field.name: pa.array(columns[field.name], type=field.type)
                if field.name in columns
                else pa.nulls(count, type=field.type)
                for field in SCHEMA
            },
            schema=SCHEMA,
        )
        split = "rl" if f < 10 else "sft"
        pq.write_table(table, data / f"{split}-{f:05d}-of-00020.parquet")


def serve_in_thread(folder: Path) -> tuple[str, object, float]:
    import socket

    import uvicorn

    from vdata.view import ViewData, make_app

    started = time.perf_counter()
    data = ViewData(folder)
    load_s = time.perf_counter() - started
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    server = uvicorn.Server(uvicorn.Config(make_app(data), log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    return f"http://127.0.0.1:{sock.getsockname()[1]}", server, load_s


def time_vdata(url: str, query: dict, repeats: int) -> tuple[list[float], int]:
    params = urllib.parse.urlencode({**query, "limit": 50})
    seconds, total = [], 0
    for _ in range(repeats):
        started = time.perf_counter()
        with urllib.request.urlopen(f"{url}/api/rows?{params}") as response:
            body = json.loads(response.read())
        seconds.append(time.perf_counter() - started)
        total = body["total"]
        assert len(body["rows"]) == min(50, max(0, total - int(query.get("offset", 0))))
    return seconds, total


def time_pandas(frame, query: dict, repeats: int) -> tuple[list[float], int]:
    seconds, total = [], 0
    for _ in range(repeats):
        started = time.perf_counter()
        mask = None

        def both(m, mask=None):
            return m if mask is None else mask & m

        for name in ("split", "category", "problem_type", "recipe"):
            if query.get(name):
                mask = both(frame[name] == query[name], mask)
        if query.get("difficulty_min"):
            mask = both(frame["pass_rate"] >= float(query["difficulty_min"]), mask)
        if query.get("difficulty_max"):
            mask = both(frame["pass_rate"] <= float(query["difficulty_max"]), mask)
        if query.get("q"):
            mask = both(frame["text"].str.contains(query["q"].lower(), regex=False), mask)
        chosen = frame if mask is None else frame[mask]
        offset = int(query.get("offset", 0))
        page = chosen.iloc[offset : offset + 50][["id", "split", "category", "problem", "solution"]]
        page.to_dict("records")
        facets = ("split", "category", "problem_type", "recipe")
        {name: chosen[name].value_counts(dropna=False).to_dict() for name in facets}
        seconds.append(time.perf_counter() - started)
        total = len(chosen)
    return seconds, total


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "view.json")
    args = parser.parse_args()

    import pandas as pd
    import pyarrow.parquet as pq

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        started = time.perf_counter()
        write_dataset(folder, args.rows)
        make_s = time.perf_counter() - started
        url, server, load_s = serve_in_thread(folder)
        started = time.perf_counter()
        table = pq.read_table(sorted((folder / "data").glob("*.parquet")))
        frame = table.select(
            ["id", "split", "category", "problem_type", "recipe", "problem", "solution"]
        ).to_pandas()
        frame["pass_rate"] = table.column("difficulty").combine_chunks().field("pass_rate").to_pandas()
        options = table.column("options").to_pylist()
        frame["text"] = (frame["problem"] + " " + pd.Series([" ".join(o) for o in options])).str.lower()
        pandas_load_s = time.perf_counter() - started
        results = {}
        try:
            for name, query in QUERIES.items():
                ours, total = time_vdata(url, query, args.repeats)
                theirs, their_total = time_pandas(frame, query, args.repeats)
                assert total == their_total, (name, total, their_total)
                results[name] = {
                    "query": query,
                    "matches": total,
                    "vdata_view_ms": {"median": 1000 * statistics.median(ours), "max": 1000 * max(ours)},
                    "pandas_ms": {"median": 1000 * statistics.median(theirs), "max": 1000 * max(theirs)},
                    "ratio_vdata_over_pandas": statistics.median(ours) / statistics.median(theirs),
                    "under_200_ms": statistics.median(ours) < 0.2,
                }
                ours_ms, theirs_ms = (results[name][k]["median"] for k in ("vdata_view_ms", "pandas_ms"))
                print(f"{name:40s} {total:>9,} matches  vdata {ours_ms:7.1f} ms  pandas {theirs_ms:7.1f} ms")
        finally:
            server.should_exit = True
    report = {
        "benchmark": "vdata view: one page of rows over HTTP vs pandas in memory",
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "rows": args.rows,
        "repeats": args.repeats,
        "make_dataset_s": make_s,
        "vdata_view_startup_s": load_s,
        "pandas_load_s": pandas_load_s,
        "queries": results,
        "all_under_200_ms": all(r["under_200_ms"] for r in results.values()),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"startup {load_s:.1f} s (pandas load {pandas_load_s:.1f} s); wrote {args.out}")


if __name__ == "__main__":
    main()
