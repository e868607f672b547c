"""The datasets of a data ablation (`vdata ablate`), built and checked before any training.

Every variant starts from the base's training rows (the train config's split; every row when
the base names no split), with each video path made absolute so that variants written
elsewhere still find their media. A variant with `filters` runs them as the normal filter
stages (`vdata filter NAME`), one resumable run each under OUT/variants/NAME/, so a rerun
pays nothing twice; `sample_like: OTHER` draws a seeded random subset of the base of OTHER's
size (the control of a filter: as much data, not chosen); `add` appends other datasets.

The checks stop the ablation before training: a variant with no rows, and any variant that
shares a video with the eval set (by path, file name or content, as `vdata filter
decontaminate` matches them). Letter balance is recorded for the report.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vdata.filters.columns import rows_frame
from vdata.filters.contamination import EvalSet, video_overlaps
from vdata.filters.letters import letter_stats
from vdata.filters.run import filter_stage, run_filter
from vdata.formats import DatasetReadError, load_rows, media_root_of
from vdata.record import conform_table
from vdata.runstore import atomic_write_json, rows_to_table, write_dataset
from vdata.trainers.ablation import AblationConfig, AblationError, Variant, build_order

MODEL_FILTERS = ("difficulty", "blind")  # sample the policy: they default to the trained one


@dataclass
class VariantData:
    name: str
    dataset: Path
    rows: list[dict[str, Any]]
    digest: str  # the rows' content: a run on changed data starts over
    made_by: str
    letters: dict[str, int]
    eval_overlap: int
    letters_skewed: bool = False  # always answering one letter beats guessing (vdata audit's test)

    def described(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "rows": len(self.rows),
            "made_by": self.made_by,
            "letters": self.letters,
            "letters_skewed": self.letters_skewed,
            "eval_overlap": self.eval_overlap,
            "dataset": str(self.dataset),
            "digest": self.digest,
        }


def training_rows(path: str | Path, split: str, written_as: str) -> list[dict[str, Any]]:
    """The rows of `split` in a dataset (all of them when it names no split, or `split` is ""),
    with absolute video paths and split `written_as`; an unreadable dataset or row is an
    AblationError."""
    from vdata.trainers.config import ConfigError
    from vdata.trainers.train import split_rows

    try:
        chosen = split_rows(Path(path), split)
    except ConfigError as exc:
        raise AblationError(f"{exc} (train.split of the ablation)") from exc
    root = media_root_of(path)
    rows = []
    for row in chosen:
        row = {**row, "split": written_as}
        if row.get("path") and not os.path.isabs(str(row["path"])):
            row["path"] = os.path.abspath(root / str(row["path"]))
        rows.append(row)
    return rows


def eval_set(config: AblationConfig) -> EvalSet:
    """The held-out rows the runs evaluate on (its eval_split, or all of it)."""
    try:
        loaded = load_rows(config.eval)
    except DatasetReadError as exc:
        raise AblationError(f"eval {config.eval}: {exc}") from exc
    keep = [i for i, s in enumerate(loaded.splits) if not config.eval_split or s in (config.eval_split, "")]
    if not keep:
        raise AblationError(f"eval {config.eval} has no rows of split {config.eval_split!r}")
    frame = rows_frame(
        [loaded.rows[i] for i in keep],
        [loaded.splits[i] for i in keep],
        refs=[loaded.refs[i] for i in keep] if loaded.refs else None,
    )
    return EvalSet(config.eval, frame, media_root_of(config.eval))


def build_variants(config: AblationConfig, *, quiet: bool = False, log: Any = print) -> list[VariantData]:
    """Every variant's dataset under OUT/variants/NAME/dataset, checked; stops (AblationError)
    on an empty variant or one that shares a video with the eval set."""
    out = Path(config.out)
    split = config.split
    base_rows = training_rows(config.base, str(config.train.get("split", "rl")), split)
    if not base_rows:
        raise AblationError(f"base {config.base}: no rows of split {split!r}")
    base_dir = out / "variants" / "_base" / "dataset"
    _write(base_dir, base_rows, split)
    evals = [eval_set(config)]
    built: dict[str, VariantData] = {}
    for variant in build_order(config.variants, config.source):  # a sampled-like variant first
        rows, made_by = _rows_of(variant, config, base_rows, base_dir, built, quiet, split)
        dataset = out / "variants" / variant.name / "dataset"
        _write(dataset, rows, split)
        stats = letter_stats(rows_frame(rows)) if rows else []
        overlaps = video_overlaps(rows_frame(rows), evals, Path("/")) if rows else None
        built[variant.name] = VariantData(
            variant.name,
            dataset,
            rows,
            _digest(rows),
            made_by,
            stats[0].counts if stats else {},
            overlaps.height if overlaps is not None else 0,
            bool(stats and stats[0].skewed),
        )
        if overlaps is not None and overlaps.height:
            examples = "; ".join(
                f"{rows[idx].get('path')} = {ref} (by {how})"
                for idx, ref, how, _ in overlaps.head(3).iter_rows()
            )
            raise AblationError(
                f"variant {variant.name!r} shares videos with the eval set {config.eval}: "
                f"{overlaps.height} of its {len(rows)} rows ({examples}). An eval set must be held out: "
                f"drop those rows from the base (vdata filter decontaminate BASE --eval {config.eval}) "
                "or choose an eval set of other videos. Nothing was trained."
            )
        log(f"variant {variant.name}: {len(rows)} rows ({made_by})")
        if stats and stats[0].skewed:
            top = stats[0]
            log(
                f"  warning: variant {variant.name}'s answers are skewed: always answering "
                f"{top.always_letter} scores {top.always_accuracy:.0%} (even letters: "
                f"{top.uniform_accuracy:.0%}); a policy can gain reward by the letter alone "
                "(vdata filter balance-letters evens them)"
            )
    variants = [built[v.name] for v in config.variants]
    empty = [v.name for v in variants if not v.rows]
    if empty:
        raise AblationError(
            f"variants {empty} have no rows (their filters kept nothing; see {out / 'variants'}/NAME/"
            "*/rejects); nothing was trained"
        )
    atomic_write_json(
        out / "ablation.json",
        {
            "base": config.base,
            "eval": config.eval,
            "metric": config.metric,
            "seeds": config.seeds,
            "train": config.train,
            "variants": [v.described() for v in variants],
        },
    )
    return variants


def _rows_of(
    variant: Variant,
    config: AblationConfig,
    base_rows: list[dict[str, Any]],
    base_dir: Path,
    built: dict[str, VariantData],
    quiet: bool,
    split: str,
) -> tuple[list[dict[str, Any]], str]:
    rows, made_by = base_rows, "the base"
    if variant.sample_like:
        size = len(built[variant.sample_like].rows)
        if size > len(base_rows):
            raise AblationError(
                f"variant {variant.name!r}: sample_like {variant.sample_like!r} has {size} rows, more "
                f"than the base's {len(base_rows)}"
            )
        chosen = sorted(random.Random(config.sample_seed).sample(range(len(base_rows)), size))
        rows = [base_rows[i] for i in chosen]
        made_by = f"a random {size} of the base (seed {config.sample_seed}), as many as {variant.sample_like}"
    source = base_dir
    steps = []
    for index, (name, options) in enumerate(variant.filters):
        folder = Path(config.out) / "variants" / variant.name / f"{index:02d}-{name}"
        result = _run_one_filter(name, options, config, source, folder, quiet)
        if not result.kept:
            raise AblationError(
                f"variant {variant.name!r} kept no rows: filter {name} rejected all {result.rejected} "
                f"(see {folder / 'rejects'}); nothing was trained"
            )
        steps.append(f"{name} kept {result.kept} of {result.kept + result.rejected}")
        source = result.dataset
    if variant.filters:
        rows = training_rows(source, split, split)
        made_by = "the base, then " + ", then ".join(steps)
    for extra in variant.add:
        added = training_rows(extra, str(config.train.get("split", "rl")), split)
        rows = rows + added
        made_by += f", plus {len(added)} rows of {extra}"
    if variant.curriculum:
        made_by += "; trained in curriculum order"
    return rows, made_by


def _run_one_filter(
    name: str, options: dict[str, Any], config: AblationConfig, source: Path, folder: Path, quiet: bool
) -> Any:
    from vdata.annotators.endpoints import EndpointError, Endpoints
    from vdata.runner import RunError

    options = dict(options)
    train = config.train
    endpoint = options.pop("policy", None)
    if name in MODEL_FILTERS:
        # the trained policy's sampling, unless the filter says otherwise
        defaults = {
            "samples": train.get("group_size", 8),
            "temperature": train.get("temperature", 1.0),
            "max_tokens": train.get("max_new_tokens", 256),
            "tolerant_letters": train.get("tolerant_letters", False),
            "response_prefix": train.get("response_prefix", ""),
            "describe": train.get("describe", True),
        }
        options = {**defaults, **options}
        if "band" in options:
            options["band"] = tuple(options["band"])
        options.setdefault("media_root", str(media_root_of(source)))
        if endpoint is None:
            endpoint = f"hf:{train['model']}" if train.get("model") else "local"
    try:
        stage = filter_stage(name, **options)
        endpoints = Endpoints.from_yaml(config.models) if config.models else Endpoints()
        role = getattr(stage, "role", "")
        if role and endpoint:
            endpoints = endpoints.with_role(role, str(endpoint))
        return run_filter(stage, source, folder, quiet=quiet, seed=config.sample_seed, endpoints=endpoints)
    except (TypeError, ValueError, EndpointError, RunError, DatasetReadError) as exc:
        raise AblationError(f"filter {name} ({folder}): {exc}") from exc


def _write(dataset: Path, rows: list[dict[str, Any]], split: str) -> None:
    """The rows as a vdata dataset, the way a run writes its own: read releases' rows keep the
    nulls the record's validation would refuse (a TW-GRPO video has no sha256)."""
    write_dataset(conform_table(rows_to_table(rows)), dataset, [split])


def _digest(rows: list[dict[str, Any]]) -> str:
    text = json.dumps(rows, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
