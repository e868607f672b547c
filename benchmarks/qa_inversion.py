"""`vdata build qa-inversion` on TW-GRPO's NExT-GQA validation file (the questions it inverted).

Baseline, in the same run: the inversion as METHODS.md describes TW-GRPO's public script (a
string rewrite keyed on the question's second word; when no rule matches, the question is left
unchanged and the labels are inverted anyway), written here from that description, on the same
seeded draw of rows. Measured for both: rows inverted, rows inverted under an unchanged
question (silently wrong labels), why/how and yes/no questions inverted without a check, and
the seconds (two runs each). vdata runs twice: rules only (`--negator none --verifier none`),
and, with `--model-run DIR`, with the embedded model as negator and verifier (resumable in DIR;
slow on a CPU). Each output is audited. Writes benchmarks/results/qa_inversion.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REAL = Path(os.environ.get("VDATA_REAL_DATA") or ROOT.parent / "shared" / "real-data")
SOURCE = REAL / "twgrpo_nextgqa_val.json"
RESULT = ROOT / "benchmarks" / "results" / "qa_inversion.json"
# the baseline's rewrite of the second word (METHODS.md: "keyed on the second word")
SECOND_WORD = {
    "did": "didn't",
    "does": "doesn't",
    "do": "don't",
    "is": "isn't",
    "are": "aren't",
    "was": "wasn't",
    "were": "weren't",
    "happened": "didn't happen",
    "happens": "doesn't happen",
}
DOUBTFUL = re.compile(r"^\W*(why|how|is|are|was|were|do|does|did|can|could|will|would)\b", re.I)


def baseline(rows: list[dict], fraction: float, seed: int) -> dict:
    """The upstream-style inversion: negate by the second word or leave the question as it is,
    and invert the labels of every drawn row either way."""
    started = time.perf_counter()
    drawn = random.Random(seed).sample(range(len(rows)), round(len(rows) * fraction))
    unchanged, doubtful, out = 0, 0, []
    for index in drawn:
        row = rows[index]
        words = row["question"].split(" ")
        if len(words) > 1 and words[1] in SECOND_WORD:
            words[1] = SECOND_WORD[words[1]]
        question = " ".join(words)
        unchanged += question == row["question"]
        doubtful += bool(DOUBTFUL.match(row["question"]))
        correct = [o for o in row["options"] if o[:3] != row["answer"]]
        out.append({**row, "question": question, "answer": ",".join(o[:3] for o in correct)})
    seconds = time.perf_counter() - started
    return {
        "seconds": round(seconds, 4),
        "inverted": len(out),
        "inverted_with_unchanged_question": unchanged,
        "wrong_label_share_of_file": round(unchanged / len(rows), 4),
        "why_how_or_yes_no_inverted_unchecked": doubtful,
        "audit_findings_of_its_output": audit_baseline(out),
    }


def audit_baseline(rows: list[dict]) -> dict:
    """vdata audit on the baseline's rows in TW-GRPO's layout (is_negated set, as upstream does)."""
    from vdata.filters.audit import audit

    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "baseline.json"
        items = []
        for row in rows:
            letters = re.findall(r"[A-Z]", row["answer"])
            texts = [o[4:] for o in row["options"]]
            problem = "\n".join([row["question"], *(f"{chr(65 + i)} {t}" for i, t in enumerate(texts))])
            solution = f"<answer>{','.join(letters)}</answer>"
            items.append({**row, "problem": problem, "solution": solution, "is_negated": True})
        path.write_text(json.dumps(items))
        return {f.code: f.count for f in audit(path).findings}


def vdata_build(out: Path, *flags: str) -> tuple[float, dict]:
    started = time.perf_counter()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "vdata",
            "build",
            "qa-inversion",
            "--from",
            str(SOURCE),
            "--out",
            str(out),
            *flags,
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"vdata build failed:\n{done.stderr[-3000:]}")
    return seconds, summarize(out)


def summarize(out: Path) -> dict:
    from vdata.cards.card import inversion_counts
    from vdata.filters.audit import audit
    from vdata.filters.columns import negations
    from vdata.formats import load_rows
    from vdata.runstore import RunStore

    rows = load_rows(out / "dataset").rows
    inverted = [r for r in rows if json.loads(r["meta_json"]).get("inverted")]
    without = sum(
        negations(r["problem"]) <= negations(json.loads(r["meta_json"])["original_question"])
        for r in inverted
    )
    store = RunStore(out)
    run = store.read_run() or {}
    rejected = Counter()
    for stage in run.get("stages", []):
        rejected.update(store.reject_reasons(stage["name"]))
    findings = {f.code: f.count for f in audit(out / "dataset").findings}
    kinds = {
        "verifier: makes no sense": "makes no sense",
        "verifier: other labels (why/how, yes/no)": "the verifier says",
        "negative already": "negative already",
        "answered yes/no": "a yes/no answer",
        "negator refused or wrote no negation": "the negator",
        "no rule, no negator": "no rule negates",
        "doubtful, no verifier": "needs the verifier",
    }
    why = Counter()
    for row in rows:
        meta = json.loads(row["meta_json"])
        if meta.get("single_answer") == "not_negatable":
            why[next((k for k, text in kinds.items() if text in meta["why"]), "other")] += 1
    return {
        "rows_kept": len(rows),
        "counts": inversion_counts(rows),
        "rejected": dict(rejected),
        "inverted_without_a_new_negation": without,
        "audit_findings": findings,
        "not_negatable_why": dict(why.most_common()),
        "requests_sent": {
            stage: sum(m["requests"] for m in u.values()) for stage, u in run.get("usage", {}).items()
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--model-run", type=Path, help="run (or resume) the embedded-model build in this directory"
    )
    args = parser.parse_args()
    if not SOURCE.is_file():
        sys.exit(f"{SOURCE} is absent: this benchmark reads the real release file kept there")
    rows = json.loads(SOURCE.read_text())
    result: dict = {
        "source": SOURCE.name,
        "rows": len(rows),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "baseline": "TW-GRPO-style inversion as METHODS.md describes it (second-word rewrite, labels inverted"
        " when no rule matches), written from that description",
        "baseline_runs": [baseline(rows, 0.5, seed) for seed in (0, 0)],
        "vdata_rules_only_runs": [],
    }
    for _ in range(2):
        scratch = Path(tempfile.mkdtemp(prefix="qa-inv-"))
        seconds, summary = vdata_build(scratch / "run", "--negator", "none", "--verifier", "none", "--quiet")
        result["vdata_rules_only_runs"].append({"seconds_command": round(seconds, 2), **summary})
        shutil.rmtree(scratch)
    if args.model_run:
        seconds, summary = vdata_build(args.model_run, "--quiet")
        run = json.loads((args.model_run / "run.json").read_text())
        result["vdata_embedded_model"] = {
            "seconds_this_invocation": round(seconds, 1),
            "seconds_first_invocation": run.get("timings", {}).get("total_s"),
            **summary,
        }
    RESULT.parent.mkdir(parents=True, exist_ok=True)
    RESULT.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
