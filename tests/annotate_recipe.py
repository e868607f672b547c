"""A one-stage annotation run for tests: the reasoner names a colour for each word.

Run as a script so that a test can kill it: python tests/annotate_recipe.py --out DIR --endpoint URL
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel

from vdata.annotators.endpoints import Endpoint, Endpoints
from vdata.annotators.pool import ModelPool
from vdata.annotators.stage import annotate_stage
from vdata.runner import RunResult, run_pipeline
from vdata.stages import Reject

WORDS = ["sky", "grass", "snow", "coal", "blood", "sun", "sea", "leaf", "milk", "night", "fire", "lemon"]


class Colour(BaseModel):
    colour: Literal["red", "green", "blue", "white", "black", "yellow"]


def prompt(row: dict[str, Any]) -> list[dict[str, Any]]:
    if row["word"] == "broken":
        raise KeyError("no prompt for this row")
    return [{"role": "user", "content": f"Which colour is {row['word']}? Answer in JSON."}]


def parse(row: dict[str, Any], reply: Colour) -> dict[str, Any] | Reject:
    if row["word"] == "refused":
        return Reject("refused", "the parse function refuses this row")
    return {**row, "colour": reply.colour}


def build(
    out: str | Path,
    endpoint: Endpoint,
    words: list[str] = WORDS,
    cache: str | Path | None = None,
    shard_rows: int = 64,
    engine=None,
) -> RunResult:
    stage = annotate_stage(
        "colour",
        role="reasoner",
        prompt=prompt,
        parse=parse,
        response=Colour,
        sampling={"temperature": 0.0, "max_tokens": 32},
    )
    inputs = [{"id": f"w{i}", "word": w} for i, w in enumerate(words)]
    with ModelPool(
        Endpoints(roles={"reasoner": endpoint}), cache_path=cache or Path(out) / "cache.sqlite"
    ) as pool:
        return run_pipeline(
            out,
            "colours@1",
            inputs,
            [stage],
            shard_rows=shard_rows,
            quiet=True,
            resources={"models": pool},
            engine=engine,
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--concurrency", type=int, default=2)
    args = parser.parse_args()
    build(
        args.out, Endpoint(base_url=args.endpoint, max_concurrency=args.concurrency, structured="json_object")
    )
