"""`vdata build streaming-cot` on `vdata synth` videos, the extraction scored against the truth.

Two annotators on the same videos and captions, the embedded SmolLM2 writing questions and
thoughts and judging in both: the oracle (`--annotator synth-truth`: the world's recorded events,
the rest of the pipeline at its best) and the embedded model reading the clips' captions. For
each, the extracted bank is scored against the truth graph: an extracted event matches a true
one when their subjects name the same object (colour and shape words), their relations fall in
the same class (enter, exit, collide, bounce, stop, colour, split, merge, occlusion, ...) and
their times overlap; event precision and recall, and entity merges that join two names of one
object. Also chain diversity (entity overlap between a video's chains), the share of questions
that need 2+ nodes, thoughts dropped per rule, seconds. Writes benchmarks/results/streaming_cot.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from itertools import combinations
from pathlib import Path

import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
RESULT = ROOT / "benchmarks" / "results" / "streaming_cot.json"
CLASSES = {
    "enter": ("enter", "appear", "come", "arriv"),
    "exit": ("leave", "exit", "disappear", "vanish", "out of"),
    "collide": ("collid", "hit", "bump", "crash", "touch"),
    "bounce": ("bounce", "rebound"),
    "stop": ("stop", "rest", "halt"),
    "colour": ("turn", "colour", "color", "change"),
    "split": ("split", "break", "piece"),
    "merge": ("merge", "join", "combine"),
    "occlusion": ("behind", "hidden", "hide", "occlu"),
    "pass": ("pass", "through"),
    "move": ("move", "roll", "slide", "glide", "fall", "drift", "travel", "fly"),
}
COLOURS = ("red", "green", "blue", "yellow", "purple", "orange", "white", "cyan")
SHAPES = ("circle", "square", "triangle", "diamond", "hexagon")


def relation_class(text: str) -> str:
    text = text.lower()
    return next((name for name, words in CLASSES.items() if any(w in text for w in words)), "other")


def object_key(name: str) -> tuple[str, str] | None:
    """(colour, shape) a name points at, when it names both."""
    words = re.findall(r"[a-z]+", name.lower())
    colour = next((w for w in words if w in COLOURS), None)
    shape = next((w for w in words if w in SHAPES), None)
    return (colour, shape) if colour and shape else None


def score_bank(bank: dict, truth: dict, done_until: float) -> dict:
    from vdata.synth.truth import relation
    from vdata.synth.world import Event

    true_events = []
    for event in truth["events"] + truth["violations"]:
        if event["start_s"] < done_until:
            subject, verb, obj, start, end = relation(Event(**event))
            true_events.append((object_key(subject), relation_class(verb), start, end))
    matched_true: set[int] = set()
    matched = 0
    for event in bank["events"]:  # one to one: each true event matches at most one extracted event
        key, kind = object_key(event["subject"]), relation_class(event["relation"])
        if kind == "other":
            kind = relation_class(event["description"])
        hit = next(
            (
                i
                for i, (k, c, start, end) in enumerate(true_events)
                if i not in matched_true
                and k == key
                and c == kind
                and start < event["end_s"] + 0.5
                and event["start_s"] - 0.5 <= end
            ),
            None,
        )
        if key is not None and hit is not None:
            matched += 1
            matched_true.add(hit)
    return {
        "extracted": len(bank["events"]),
        "true": len(true_events),
        "precision": round(matched / len(bank["events"]), 3) if bank["events"] else None,
        "recall": round(len(matched_true) / len(true_events), 3) if true_events else None,
    }


def run(command: list[str]) -> float:
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode not in (0, 1):
        raise SystemExit(done.stderr[-2000:])
    return time.perf_counter() - started


def measure(folder: Path, synth: Path, annotator: str) -> dict:
    out = folder / annotator
    command = [
        sys.executable,
        "-m",
        "vdata",
        "build",
        "streaming-cot",
        "--videos",
        str(synth / "videos"),
        "--captions",
    ]
    command += [str(synth / "captions.jsonl"), "--annotator", annotator, "--out", str(out), "--quiet"]
    seconds = run(command + ["--allow-empty"])
    banks = [json.loads(p.read_text()) for p in sorted((out / "banks").glob("*/*.json"))]
    run_info = json.loads((out / "run.json").read_text())
    scores = []
    merges = {"total": 0, "same_object": 0}
    for bank_file in sorted((out / "banks").glob("*/*.json")):
        bank = json.loads(bank_file.read_text())
        for truth_file in (synth / "truth").glob("*.json"):
            truth = json.loads(truth_file.read_text())
            if truth["sha256"] == bank["sha256"]:
                clips = sorted({(e["start_s"], e["end_s"]) for e in bank["events"]})
                scores.append(score_bank(bank, truth, clips[-1][1] if clips else 0.0))
    clean = []
    for part in sorted((out / "stages").glob("*-clean/part-*.parquet")):
        clean += pq.read_table(part).to_pylist()
    for row in clean:
        for a, b, _ in json.loads(row["clean"])["merges"]:
            merges["total"] += 1
            merges["same_object"] += int(object_key(a) is not None and object_key(a) == object_key(b))
    rows = [
        r for p in sorted((out / "dataset" / "data").glob("*.parquet")) for r in pq.read_table(p).to_pylist()
    ]
    overlaps, nodes, dropped = [], Counter(), Counter()
    chains: dict[str, list[set[str]]] = {}
    for row in rows:
        meta = json.loads(row["meta_json"])
        graph = json.loads((out / meta["graph"]).read_text())
        by_id = {n["id"]: n for n in graph["nodes"]}
        names = {x for i in meta["chain"] for x in (by_id[i]["subject"], by_id[i]["object"]) if x}
        chains.setdefault(meta["graph"], []).append(names)
        nodes[len(meta["used"])] += 1
        for reason in meta["dropped"]:
            dropped[reason.split(" ")[0]] += 1
    for sets in chains.values():
        overlaps += [round(len(a & b) / len(a | b), 3) for a, b in combinations(sets, 2)]
    return {
        "annotator": annotator,
        "seconds": round(seconds, 1),
        "stages": {s["name"]: [s["rows_in"], s["rows_out"], s["rejected"]] for s in run_info["stages"]},
        "banks": len(banks),
        "extraction_vs_truth": scores,
        "entity_merges": merges,
        "questions": len(rows),
        "questions_by_nodes_needed": dict(nodes),
        "share_needing_2_or_more": round(sum(v for k, v in nodes.items() if k >= 2) / len(rows), 3)
        if rows
        else None,
        "chain_entity_overlaps": sorted(overlaps),
        "dropped_by_rule_or_judge": dict(dropped),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--videos", type=int, default=2)
    parser.add_argument("--minutes", type=float, default=0.75)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="stream-bench-"))
    try:
        synth = folder / "synth"
        command = [
            sys.executable,
            "-m",
            "vdata",
            "synth",
            "--n",
            str(args.videos),
            "--minutes",
            str(args.minutes),
        ]
        run(command + ["--seed", "3", "--out", str(synth), "--quiet"])
        results = {"machine": platform.platform(), "videos": args.videos, "minutes": args.minutes, "runs": []}
        for repeat in (1, 2):
            for annotator in ("synth-truth", "local"):
                shutil.rmtree(folder / annotator, ignore_errors=True)
                results["runs"].append({"repeat": repeat, **measure(folder, synth, annotator)})
                print(json.dumps(results["runs"][-1]), flush=True)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    RESULT.write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {RESULT}")


if __name__ == "__main__":
    main()
