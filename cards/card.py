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
from vdata.recipe import recipe_of_run
from vdata.record import answer_letters
from vdata.report import counts, field_stats
from vdata.runstore import RunStore, atomic_write_bytes


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
            tally = f"{stage['rows_in']} in, {stage['rows_out']} kept, {stage['rejected']} rejected"
            lines.append(f"- `{stage['name']}`: {tally}" + (f" ({reasons})" if reasons else ""))
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
        origins = _field_origins(rows)
        if origins:
            lines += ["", "Where each field comes from (every row's `provenance` says so):", ""]
            lines += [f"- `{name}`: {origin}" for name, origin in origins.items()]
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
        config = {
            k: v
            for k, v in (run.get("config") or {}).items()
            if k not in ("models", "prompts", "prompts_overridden")
        }
        if "prompts_overridden" in (run.get("config") or {}):
            overridden = run["config"]["prompts_overridden"]
            lines += [
                "",
                "Prompts: "
                + (
                    "overridden: "
                    + ", ".join(f"`{name}` (sha256 {digest})" for name, digest in overridden.items())
                    + "; the others are vdata's. The texts are in run.json's config."
                    if overridden
                    else "vdata's own (none overridden)."
                ),
            ]
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
            f"- categories: {counts(numbers['category'])}",
            f"- problem types: {counts(numbers['problem_type'])}",
            f"- answer letters: {counts(numbers['answer_letters'])}",
            f"- options per question: {counts(numbers['options_per_question'])}",
            f"- question length (characters): {counts(numbers['problem_chars'])}",
            f"- reasoning length (characters): {counts(numbers['process_chars']) or 'none'}",
            f"- video duration (s): {counts(numbers['video_duration_s'])}",
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
        lines += [f"Difficulty (pass rate): {counts(Counter(round(d, 1) for d in difficulty))}.", ""]
    recipe = recipe_of_run(run)
    if recipe is not None and recipe.card is not None:
        lines += recipe.card(rows, run)
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
    lines += [f"- {line}" for line in (recipe.limitations if recipe else ())] or [
        "- Questions and answers come from the source named above; checks reject malformed rows, but a "
        "kept row can still be wrong."
    ]
    paper = recipe.paper if recipe else run.get("paper")
    lines += ["", "## Papers", "", f"- {paper}" if paper else "- see the recipe's documentation"]
    return strip_secrets("\n".join(lines)) + "\n"


def _field_origins(rows: list[dict[str, Any]]) -> dict[str, str]:
    """Field -> where it came from, in words, from the first row's provenance (a run gives every
    row the same map)."""
    provenance = (rows[0].get("provenance") or {}) if rows else {}
    try:
        fields = json.loads(provenance.get("params_json") or "{}").get("fields") or {}
    except (ValueError, AttributeError):
        return {}

    def said(origin: dict[str, Any]) -> str:
        if "source" in origin:
            return str(origin["source"])
        if not origin.get("ran", True):
            return f"the `{origin.get('stage')}` stage, which did not run"
        model = f"{origin.get('role')} ({origin.get('model')})" if origin.get("model") else "no model"
        digest = str(origin.get("prompt_sha256"))[:12]
        return f"the `{origin.get('stage')}` stage: {model}, prompt sha256 {digest}"

    return {
        name: "; or ".join(said(o) for o in (origin if isinstance(origin, list) else [origin]))
        for name, origin in fields.items()
    }


def _model_line(model: Any) -> str:
    """'Qwen/Qwen2.5-72B-Instruct (self-hosted)'; the endpoint itself only when it was kept."""
    if not isinstance(model, dict):
        return str(model)  # runs recorded before models were described per role
    where = model.get("hosting") or ""
    endpoint = model.get("endpoint") or ""
    if endpoint.startswith(("http://", "https://")):
        where += f", at {endpoint}"  # (already hidden to '<...>' unless --show-endpoints)
    return f"{model.get('model')} ({where})" if where else str(model.get("model"))


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
            letter
            for r in rows
            if (r.get("split") or "train") == split and r.get("options")
            for letter in answer_letters(r.get("solution"))
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
