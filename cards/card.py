"""`vdata card`: a dataset card a person can trust: how the data was made, and what is in it.

The YAML header is built with huggingface_hub's DatasetCardData, so the Hub reads
it as written: license, language, task categories, tags, size, the configs with
their data files per split, the features. The body says how the data was built
(recipe, stages, models per role, sampling, prompt hashes, the command and config
to reproduce it), what is in it (statistics, plots), two sample rows, how to load
it, its limitations and the papers behind it. Secrets never reach the card.
"""

from __future__ import annotations

import hashlib
import json
import statistics
from collections import Counter
from pathlib import Path
from typing import Any

import yaml

from vdata.formats import DatasetReadError, LoadedRows, load_rows
from vdata.publish import hide_endpoints, publishable, strip_secrets
from vdata.report import field_stats
from vdata.runstore import RunStore, atomic_write_bytes

PAPERS = {
    "longvideo-reason": "Scaling RL to Long Videos (LongVILA-R1, MR-SP), arXiv 2507.07966",
    "synth": "CLEVRER-style rendered scenes with known events",
    "video-r1": "Video-R1: Reinforcing Video Reasoning in MLLMs",
    "qa-inversion": "Reinforcing Video Reasoning with Focused Thinking (TW-GRPO; question-answer inversion)",
    "counterexample": "VideoHallu: Evaluating and Mitigating Multi-modal Hallucinations for Synthetic Videos",
    "streaming-cot": "Video Streaming Thinking: VideoLLMs Can Watch and Think Simultaneously (VST)",
}


def _size_category(n: int) -> str:
    for limit, label in (
        (1_000, "n<1K"),
        (10_000, "1K<n<10K"),
        (100_000, "10K<n<100K"),
        (1_000_000, "100K<n<1M"),
    ):
        if n < limit:
            return label
    return "1M<n<10M"


def write_card(
    dataset_dir: str | Path,
    *,
    license: str | None = None,
    language: tuple[str, ...] = ("en",),
    tags: tuple[str, ...] = (),
    title: str | None = None,
    show_endpoints: bool = False,
) -> list[str]:
    """Writes DATASET_DIR/README.md and DATASET_DIR/plots/*.png; returns warnings. Endpoints
    appear only as their hosting ('self-hosted', a public API's name) unless `show_endpoints`."""
    from huggingface_hub import DatasetCard, DatasetCardData

    dataset_dir = Path(dataset_dir)
    store = RunStore.of_dataset(dataset_dir)
    run = publishable(store.read_run(), show_endpoints) if store else {}
    try:
        loaded = load_rows(dataset_dir)
    except DatasetReadError:
        if not (dataset_dir / "data").is_dir():
            raise
        loaded = LoadedRows(shape="vdata")  # a dataset every row of which was rejected
    splits = sorted({row.get("split") or "train" for row in loaded.rows})
    warnings = []
    license = license or (run.get("config") or {}).get("license")
    if not license:
        warnings.append("no license set: pass --license (e.g. cc-by-4.0) before publishing")
    data = DatasetCardData(
        license=license or "other",
        language=list(language),
        task_categories=["video-text-to-text", "visual-question-answering"],
        tags=["video", "reasoning", "reinforcement-learning", "vdata", *tags],
        size_categories=[_size_category(len(loaded.rows))],
        configs=[
            {
                "config_name": "default",
                "data_files": [{"split": s, "path": f"data/{s}-*.parquet"} for s in splits],
            }
        ],
        dataset_info={"features": _features(), "splits": _split_sizes(loaded.rows, splits)},
    )
    stats = field_stats(loaded)
    plots = _plots(dataset_dir, loaded.rows, splits)
    body = _body(title or _title(run), run, store, loaded.rows, stats, plots)
    if not show_endpoints:
        body = hide_endpoints(body)
    card = DatasetCard(f"---\n{data.to_yaml()}\n---\n\n{body}")
    atomic_write_bytes(dataset_dir / "README.md", str(card).encode("utf-8"))
    return warnings


def _features() -> list[dict[str, Any]]:
    import datasets

    from vdata.record import SCHEMA

    return datasets.Features.from_arrow_schema(SCHEMA)._to_yaml_list()


def _split_sizes(rows: list[dict[str, Any]], splits: list[str]) -> list[dict[str, Any]]:
    counts = Counter(row.get("split") or "train" for row in rows)
    return [{"name": s, "num_examples": counts[s]} for s in splits]


def _title(run: dict[str, Any]) -> str:
    recipe = run.get("recipe") or "a vdata dataset"
    return f"{recipe.split('@')[0]} (vdata)"


def _body(
    title: str,
    run: dict[str, Any],
    store: RunStore | None,
    rows: list[dict[str, Any]],
    stats: dict[str, Any],
    plots: list[str],
) -> str:
    lines = [f"# {title}", ""]
    videos = {r["path"]: (r.get("video") or {}).get("duration_s") or 0 for r in rows}
    hours = sum(videos.values()) / 3600
    split_sizes = ", ".join(f"`{split}` ({numbers['rows']})" for split, numbers in stats.items())
    lines += [
        f"{len(rows)} questions about {len(videos)} videos ({hours:.2f} hours), in splits {split_sizes}.",
        "",
        "## How it was built",
        "",
    ]
    if run:
        lines += [
            f"Recipe `{run.get('recipe')}`, built with vdata {run.get('versions', {}).get('vdata', '?')}."
        ]
        if run.get("command"):
            lines += ["", "To reproduce it:", "", "```bash", run["command"], "```"]
        lines += ["", "Stages (rows in, kept, rejected, top reasons):", ""]
        for stage in run.get("stages", []):
            reasons = store.top_reasons(stage["name"]) if store else ""
            counts = f"{stage['rows_in']} in, {stage['rows_out']} kept, {stage['rejected']} rejected"
            lines.append(f"- `{stage['name']}`: {counts}" + (f" ({reasons})" if reasons else ""))
        models = (run.get("config") or {}).get("models") or {}
        if models:
            lines += ["", "Models per role:", ""] + [
                f"- {role}: {_model_line(model)}" for role, model in sorted(models.items())
            ]
        annotated = _annotation_settings(store) if store else {}
        if annotated:
            lines += ["", "Model calls (sampling, response schema, prompt code hash):", ""]
            for name, settings in annotated.items():
                lines.append(f"- `{name}`: `{json.dumps(settings, sort_keys=True)}`")
        usage = run.get("usage") or {}
        if usage:
            lines += ["", "Tokens and cost:", ""]
            for stage, models_used in usage.items():
                for model, counters in models_used.items():
                    cost = f", ${counters['cost_usd']:.4f}" if "cost_usd" in counters else ""
                    prompt, completion = (
                        counters.get("prompt_tokens", 0),
                        counters.get("completion_tokens", 0),
                    )
                    lines.append(
                        f"- `{stage}` ({model}): {counters.get('requests', 0)} requests, {prompt:,} prompt + "
                        f"{completion:,} completion tokens, {counters.get('cache_hits', 0)} cache hits{cost}"
                    )
        config = {k: v for k, v in (run.get("config") or {}).items() if k != "models"}
        lines += [
            "",
            "The configuration:",
            "",
            "```yaml",
            yaml.safe_dump(config, sort_keys=True).strip(),
            "```",
        ]
    else:
        lines += ["No run.json was found next to this dataset: its making is not recorded."]
    lines += ["", "## What is in it", ""]
    for split, numbers in stats.items():
        lines += [
            f"### `{split}`: {numbers['rows']} rows, {numbers['videos']} videos",
            "",
            f"- categories: {_counts(numbers['category'])}",
            f"- problem types: {_counts(numbers['problem_type'])}",
            f"- answer letters: {_counts(numbers['answer_letters'])}",
            f"- options per question: {_counts(numbers['options_per_question'])}",
            f"- question length (characters): {_counts(numbers['problem_chars'])}",
            f"- reasoning length (characters): {_counts(numbers['process_chars']) or 'none'}",
            f"- video duration (s): {_counts(numbers['video_duration_s'])}",
            "",
        ]
    clips = {}  # the clips a recipe read, per video (kept in meta_json)
    for row in rows:
        meta = json.loads(row.get("meta_json") or "{}")
        for start, end in meta.get("clips") or []:
            clips[(row["path"], start)] = end - start
    if clips:
        durations = list(clips.values())
        lines += [
            f"Clips: {len(durations)}, durations (s): median {statistics.median(durations):.1f}, "
            f"max {max(durations):.1f}.",
            "",
        ]
    segments = [r["segment"]["end_s"] - r["segment"]["start_s"] for r in rows if r.get("segment")]
    if segments:
        lines += [
            f"Segment durations (s): median {statistics.median(segments):.1f}, max {max(segments):.1f}.",
            "",
        ]
    difficulty = [r["difficulty"]["pass_rate"] for r in rows if r.get("difficulty")]
    if difficulty:
        lines += [f"Difficulty (pass rate): {_counts(Counter(round(d, 1) for d in difficulty))}.", ""]
    elif run and any(s["name"] == "check" for s in run.get("stages", [])):
        names = {s["name"] for s in run.get("stages", [])}
        if "difficulty" not in names:
            lines += [
                "Difficulty: not measured. The build ran without a policy model, so questions the model "
                "to be trained would always or never answer are still in (`--policy` runs that filter).",
                "",
            ]
    lines += _inversion_lines(rows, run)
    lines += thinker_lines(rows, run)
    lines += counterexample_lines(rows, run)
    lines += streaming_lines(rows, run)
    lines += [f"![{Path(p).stem}]({p})" for p in plots] + ([""] if plots else [])
    lines += ["## Sample rows", ""]
    for row in rows[:2]:
        sample = {
            k: row[k] for k in ("path", "problem", "options", "solution", "category", "process") if k in row
        }
        lines += ["```json", json.dumps(strip_secrets(sample), ensure_ascii=False, indent=2), "```", ""]
    lines += [
        "## Load it",
        "",
        "```python",
        "from datasets import load_dataset",
        "",
        'data = load_dataset("path/or/hub-id")  # splits: ' + ", ".join(stats),
        "```",
        "",
        "Each row's `path` is relative to the dataset's root (videos under `videos/`)."
        if store is not None and (store.dataset_dir / "videos").is_dir()
        else "Each row's `path` is as its source wrote it; the videos are not part of this dataset "
        f"(source: {(run.get('config') or {}).get('source') or 'the input rows'}).",
        "",
        "## Limitations",
        "",
    ]
    models = json.dumps((run.get("config") or {}).get("models") or {})
    if "smollm2" in models.lower() or not models.strip("{}"):
        lines.append("- Generated with the embedded SmolLM2-135M model: demo quality only.")
    if (run.get("recipe") or "").startswith("counterexample"):
        lines.append(
            "- Rendered videos are 2D shapes, not camera footage; answers come from the simulation's "
            "truth, the prior from a text-only model."
        )
    elif (run.get("recipe") or "").startswith("qa-inversion"):
        lines.append(
            "- Inverted rows assume that every distractor of the original question is wrong; the "
            "verifier checks that from text, without the video, so an ambiguous original can still "
            "give a wrong label."
        )
    else:
        lines.append(
            "- Questions and reasoning are written by models from captions; checks reject malformed rows, "
            "but a kept row can still be wrong."
        )
    lines += [
        "",
        "## Papers",
        "",
    ]
    recipe = (run.get("recipe") or "").split("@")[0]
    lines += [f"- {PAPERS[recipe]}" for recipe in [recipe] if recipe in PAPERS] or [
        "- see the recipe's documentation"
    ]
    return strip_secrets("\n".join(lines)) + "\n"


def inversion_counts(rows: list[Any]) -> dict[str, dict[str, int]]:
    """How a qa-inversion dataset's rows were made: inverted rows per negation method
    (`rule:<name>`, `model`), single-answer rows per reason (`not_chosen`, `not_negatable`)."""
    inverted: Counter[str] = Counter()
    single: Counter[str] = Counter()
    for row in rows:
        try:
            meta = json.loads(row.get("meta_json") or "{}")
        except ValueError:
            continue
        if isinstance(meta, dict) and meta.get("inverted"):
            inverted[str(meta.get("negation"))] += 1
        elif isinstance(meta, dict) and "single_answer" in meta:
            single[str(meta["single_answer"])] += 1
    return {"inverted": dict(sorted(inverted.items())), "single_answer": dict(sorted(single.items()))}


def _inversion_lines(rows: list[Any], run: dict[str, Any]) -> list[str]:
    counts = inversion_counts(rows)
    if not counts["inverted"] and not counts["single_answer"]:
        return []
    stages = {s["name"] for s in run.get("stages", [])} if run else set()
    made = ", ".join(f"{how} {n}" for how, n in counts["inverted"].items()) or "none"
    kept = ", ".join(f"{why} {n}" for why, n in counts["single_answer"].items()) or "none"
    lines = [
        f"Inversion: {sum(counts['inverted'].values())} multi-answer rows (negated by {made}); "
        f"{sum(counts['single_answer'].values())} single-answer rows ({kept}). Every inverted "
        "question carries a negation its original lacks; `meta_json` keeps the original question, "
        "its answer, and how the negation was made.",
        "",
    ]
    if run and "verify" not in stages:
        lines += [
            "Verification: not run (`--verifier none`). The inverted labels were checked by rule "
            "only: no model judged each option against the negated question.",
            "",
        ]
    return lines


def thinker_lines(rows: list[Any], run: dict[str, Any]) -> list[str]:
    """A video-thinker dataset: rows per source, traces written per kept row, the hindsight pass
    rate, and where captions and durations came from."""
    metas = [meta for _, meta in _row_metas(rows) if "attempts" in meta and "branch" in meta]
    if not metas:
        return []
    sources = Counter(f"{m['source']} ({m['branch']})" for m in metas)
    attempts = Counter(m["attempts"] for m in metas)
    stage = {s["name"]: s for s in (run or {}).get("stages", [])}.get("hindsight")
    lines = [
        f"Rows per source: {_counts(sources)}. Traces written per kept row: {_counts(attempts)}.",
        "",
    ]
    if stage and stage.get("rows_in"):
        first = attempts.get(1, 0)
        lines += [
            f"Hindsight: {stage['rows_out']} of {stage['rows_in']} rows reached the answer from their "
            f"trace's times and captions alone ({stage['rows_out'] / stage['rows_in']:.0%}; "
            f"{first / stage['rows_in']:.0%} at the first trace).",
            "",
        ]
    if any(m["captions_from"] == "synth-truth" for m in metas):
        lines += ["Captions of the QA rows' spans: the synthetic world's truth stood in for a captioner.", ""]
    if any(m["durations_from"] == "annotation" for m in metas):
        lines += [
            "Videos: not read (`--annotations-only`): durations come from the annotations and frame "
            "counts were not checked.",
            "",
        ]
    return lines


def counterexample_lines(rows: list[Any], run: dict[str, Any]) -> list[str]:
    """A counterexample dataset: rows per violation kind and question type, twin pairs, where
    the prior came from, the curriculum, and the leakage check."""
    metas = [(row, meta) for row, meta in _row_metas(rows) if "curriculum_stage" in meta]
    if not metas:
        return []
    synthetic = [m for _, m in metas if m.get("pair")]
    kinds = Counter(m["violation"] for m in synthetic if m["twin"] == "violation")
    types = Counter(m["question"] for m in synthetic if m["twin"] == "violation")
    pairs = {(m["pair"], m["question"]) for m in synthetic if m.get("twin_answer") is not None}
    priors = Counter(m.get("prior_from") for m in synthetic if m.get("prior_from"))
    stages = Counter(m["curriculum_stage"] for _, m in metas)
    lines = [
        f"Counterexamples: {len(synthetic)} rows about {len({m['pair'] for m in synthetic})} rendered "
        f"videos and their control twins; {len(pairs)} twin pairs of questions (the same question on "
        "both videos, each answered from its own truth, the answers differ). Violation questions per "
        f"kind: {_counts(kinds) or 'none'}; per question type: {_counts(types) or 'none'}.",
        "",
    ]
    if priors:
        lines += [
            f"Prior: {_counts(priors)}. A pair is kept only when the prior gives the control twin's answer, "
            "so answering from language alone gets exactly one twin right."
            + (
                " With `--writer none` the control twin's answer stands for the prior: no model was asked."
                if "control twin" in priors
                else ""
            ),
            "",
        ]
    imported = Counter(
        row.get("data_source") for row, m in metas if not m.get("pair") and m["curriculum_stage"]
    )
    if imported:
        lines += [f"Imported rows by source: {_counts(imported)}.", ""]
    lines += [
        f"Curriculum (`meta_json.curriculum_stage`): {_counts(stages)} (0: real physics rows from `--real`, "
        "read first with the trainer's `curriculum: true`; 1: counterexamples).",
        "",
    ]
    by_split: dict[str, set[str]] = {}
    for row, _ in metas:
        key = (row.get("video") or {}).get("sha256") or row.get("path")
        by_split.setdefault(row.get("split") or "", set()).add(key)
    shared = set.intersection(*by_split.values()) if len(by_split) > 1 else set()
    stage = {s["name"]: s for s in (run or {}).get("stages", [])}.get("split") or {}
    benchmark = (run.get("config") or {}).get("eval_path") if run else None
    lines += [
        f"Leakage check: {len(shared)} videos in more than one split (by content hash)"
        + (
            f"; against the benchmark {benchmark}: {stage.get('rejected', 0)} training rows rejected "
            "(`eval_video`)."
            if benchmark
            else "; no benchmark given (`--eval`)."
        ),
        "",
    ]
    return lines


def streaming_lines(rows: list[Any], run: dict[str, Any]) -> list[str]:
    """A streaming-cot dataset: thoughts and questions, evidence nodes per question, what the
    filters dropped, whether the thoughts saw the questions, where the graphs are."""
    metas = [(row, meta) for row, meta in _row_metas(rows) if "chain" in meta and "query_aware" in meta]
    if not metas:
        return []
    thoughts = [len((row.get("stream") or {}).get("text_stream") or []) for row, _ in metas]
    used = Counter(len(m["used"]) for _, m in metas)
    videos = {m["graph"]: m for _, m in metas}  # a video's bank and filter report, once
    dropped = Counter(d.split(" ")[0] for m in videos.values() for d in m["dropped"])
    merges = sum(len(m["clean"].get("merges", [])) for m in videos.values())
    overlapping = sum(m.get("chains_rejected_for_overlap", 0) for m in videos.values())
    aware = any(m["query_aware"] for _, m in metas)
    lines = [
        f"Streaming: {len(metas)} questions about {len(videos)} videos; thoughts "
        f"before each question: median {statistics.median(thoughts):.0f}; evidence nodes a question needs: "
        f"{_counts(used)}; entity merges {merges}; chain candidates rejected for sharing entities "
        f"{overlapping}; dropped by the filters: {_counts(dropped) or 'nothing'}.",
        "",
        "Thoughts: query-aware (`--query-aware`): each thought was written knowing the video's questions, as "
        "VST's released data was; a model at inference does not see them."
        if aware
        else "Thoughts: query-agnostic. Each was written from the events seen by its clip's end, never from "
        "the question, as the model meets the stream at inference.",
        "",
        "Leaks (questions answerable without the video): "
        + (
            "the judge's verdict, and filters' blind check (the policy answered each question "
            "without the video)."
            if "blind" in {s["name"] for s in (run or {}).get("stages", [])}
            else "the judge's verdict only (no `--policy`: the blind check did not run)."
        ),
        "",
        "Graphs: one node-link JSON per video in the run's `graphs/` folder (`meta_json.graph`).",
        "",
    ]
    return lines


def _row_metas(rows: list[Any]) -> list[tuple[Any, dict[str, Any]]]:
    """Each row with its `meta_json` read as a dict (rows whose meta is not one are left out)."""
    out = []
    for row in rows:
        try:
            meta = json.loads(row.get("meta_json") or "{}")
        except ValueError:
            continue
        if isinstance(meta, dict):
            out.append((row, meta))
    return out


def _model_line(model: Any) -> str:
    """'Qwen/Qwen2.5-72B-Instruct (self-hosted)'; the endpoint itself only when it was kept."""
    if not isinstance(model, dict):
        return str(model)  # runs recorded before models were described per role
    where = model.get("hosting") or ""
    endpoint = model.get("endpoint") or ""
    if endpoint.startswith(("http://", "https://")):
        where += f", at {endpoint}"  # (already hidden to '<...>' unless --show-endpoints)
    return f"{model.get('model')} ({where})" if where else str(model.get("model"))


def _counts(values: dict[Any, Any]) -> str:
    return ", ".join(f"{k}: {v}" for k, v in values.items())


def _annotation_settings(store: RunStore) -> dict[str, Any]:
    settings = {}
    for manifest in store.manifests():
        config = manifest.get("config") or {}
        if "sampling" in config:
            settings[manifest["stage"]] = strip_secrets(
                {
                    "sampling": config["sampling"],
                    "model": config.get("model"),
                    "prompt_code": hashlib.sha256(
                        json.dumps(manifest.get("code") or {}, sort_keys=True).encode()
                    ).hexdigest()[:12],
                    "schema": bool(config.get("schema")),
                }
            )
    return settings


def _plots(dataset_dir: Path, rows: list[dict[str, Any]], splits: list[str]) -> list[str]:
    """PNG plots under plots/, as paths relative to the card; none without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    folder = dataset_dir / "plots"
    folder.mkdir(exist_ok=True)
    written = []
    figure, axis = plt.subplots(figsize=(5, 3))
    width = 0.8 / max(1, len(splits))
    for i, split in enumerate(splits):
        letters = Counter(
            r["solution"][8] for r in rows if (r.get("split") or "train") == split and r.get("options")
        )
        axis.bar([x + i * width for x in range(4)], [letters.get(c, 0) for c in "ABCD"], width, label=split)
    axis.set_xticks([x + width * (len(splits) - 1) / 2 for x in range(4)], list("ABCD"))
    axis.set_title("answer letters per split")
    if splits:
        axis.legend()
    figure.tight_layout()
    figure.savefig(folder / "answer_letters.png", dpi=80)
    plt.close(figure)
    written.append("plots/answer_letters.png")
    figure, axis = plt.subplots(figsize=(5, 3))
    axis.hist([len(r["problem"] or "") for r in rows], bins=20)
    axis.set_title("question length (characters)")
    figure.tight_layout()
    figure.savefig(folder / "question_length.png", dpi=80)
    plt.close(figure)
    written.append("plots/question_length.png")
    return written
