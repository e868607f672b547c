"""`vdata filter NAME DATASET --out DIR`: one filter as a resumable one-stage run.

The dataset is read in any known format and mapped onto the record; the kept
rows go to DIR/dataset (Parquet per split), every dropped row to
DIR/rejects/NAME.parquet with its reason. Rows that cannot even be stored as a
record (a string where a list belongs, an unparseable line) are rejected by
the load step, into DIR/rejects/load.parquet: nothing is lost in silence.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vdata.filters.contamination import decontaminate_rows, load_eval_sets
from vdata.filters.dedup import dedup_rows
from vdata.filters.letters import balance_letters
from vdata.filters.rules import length_row, sample_rows, validate_row
from vdata.formats import load_rows
from vdata.record import SPLITS, row_ref, schema_mismatch
from vdata.runner import RunResult, run_pipeline
from vdata.runstore import RunStore, refuse_overlap
from vdata.stages import DatasetStage, MapStage, Reject, Stage, reject_rows

FILTERS = (
    "validate",
    "balance-letters",
    "dedup",
    "decontaminate",
    "length",
    "sample",
    "difficulty",
    "blind",
    "sufficiency",
    "consistency",
    "augment",
    "boundary",
)


def filter_stage(name: str, **options: Any) -> Stage:
    """The stage of filter `name` with its options (those that change the output are its config)."""
    if name == "validate":
        root = options.get("media_root")
        return MapStage("validate", functools.partial(validate_row, media_root=root), config=options)
    if name == "balance-letters":
        return DatasetStage("balance-letters", balance_letters, seeded=True)
    if name == "dedup":
        return DatasetStage("dedup", functools.partial(dedup_rows, **options), config=options)
    if name == "length":
        return MapStage("length", functools.partial(length_row, **options), config=options)
    if name == "sample":
        return DatasetStage("sample", functools.partial(sample_rows, **options), config=options, seeded=True)
    if name == "decontaminate":
        paths = [Path(p) for p in options["evals"]]
        media_root = options.get("media_root")
        fn = functools.partial(
            decontaminate_rows,
            evals=load_eval_sets(paths),
            media_root=Path(media_root) if media_root else None,
            ngram=options.get("ngram", 8),
            across_videos=options.get("across_videos", False),
        )
        config = {**options, "evals": [_describe(p) for p in paths], "media_root": str(media_root or "")}
        return DatasetStage("decontaminate", fn, config=config)
    if name == "augment":
        from vdata.filters.models import augment_rows

        return DatasetStage("augment", augment_rows)
    if name == "boundary":
        from vdata.filters.models import boundary_stage

        return boundary_stage(**options)
    if name == "sufficiency":
        from vdata.filters.models import sufficiency_stage

        return sufficiency_stage(**options)
    if name == "consistency":
        from vdata.filters.models import consistency_stage

        return consistency_stage(**options)
    if name in ("difficulty", "blind"):
        from vdata.filters.models import Sampling, blind_stage, difficulty_stage

        alpha = options.pop("alpha", None)
        sampling = Sampling(**options)
        return difficulty_stage(sampling) if name == "difficulty" else blind_stage(sampling, alpha or 0.01)
    raise ValueError(f"unknown filter {name!r}; filters: {', '.join(FILTERS)}")


def _describe(path: Path) -> dict[str, Any]:
    """An eval set's identity for the run's fingerprint: its path, size and change time."""
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return {"path": str(path), "files": [(str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in files]}


VISION_FILTERS = ("boundary",)  # filters whose model must watch the video


def _models(role: str, endpoints: Any, out: Path, no_cache: bool, *, vision: bool = False) -> Any:
    """The run's models for a filter that calls one (else nothing to open); a filter that must
    watch the video refuses the text-only embedded model up front."""
    if not role:
        return contextlib.nullcontext(None)
    from vdata.annotators.pool import RunModels

    return RunModels(endpoints, out, roles=[role], vision_roles=(role,) if vision else (), no_cache=no_cache)


@dataclass
class FilterResult:
    run: RunResult
    kept: int
    rejected: int
    load_rejected: int
    dataset: Path


def run_filter(
    stage: Stage,
    dataset: str | Path,
    out: str | Path,
    *,
    shape: str = "auto",
    seed: int = 0,
    quiet: bool = False,
    command: str = "",
    endpoints: Any = None,
    no_cache: bool = False,
    force: bool = False,
    inputs: Sequence[tuple[str, Any]] = (),
    engine: Any = None,
) -> FilterResult:
    """Runs one filter stage over `dataset` into `out`. A filter that calls a model (its stage
    has a role) gets the run's models: `endpoints` (default: the embedded local model). `out`
    is an empty folder or a run of this filter (`force`: a folder of other files, untouched);
    neither `dataset` nor `inputs` ((flag, path) pairs of other files read) may overlap it.
    `engine`: where the stage runs (vdata.engines; default local)."""
    out = Path(out)
    refuse_overlap(out, [("the dataset", dataset), *inputs])
    loaded = load_rows(dataset, shape)
    rows, load_rejects = [], [Reject("unreadable_row", why, where) for where, why in loaded.unreadable]
    for index, (row, split) in enumerate(zip(loaded.rows, loaded.splits, strict=True)):
        ref = row_ref(row, f"#{index}")
        if not isinstance(row, Mapping):
            load_rejects.append(Reject("not_a_row", f"a {type(row).__name__}, not a row of fields", ref, row))
            continue
        field = schema_mismatch(row)
        if field is not None:
            detail = f"field {field!r} holds a {type(row.get(field)).__name__} the record cannot store"
            load_rejects.append(Reject("wrong_type", detail, ref, row))
            continue
        if not row.get("split") and split in SPLITS:
            row = {**row, "split": split}
        rows.append(dict(row))
    store = RunStore(out)
    role = getattr(stage, "role", "")
    with (
        store.lock(force=force),
        _models(role, endpoints, out, no_cache, vision=stage.name in VISION_FILTERS) as models,
    ):
        config: dict[str, Any] = {"dataset": str(dataset), "shape": loaded.shape}
        if models is not None:
            config["models"] = models.described
        result = run_pipeline(
            out,
            f"filter-{stage.name}",
            rows,
            [stage],
            config=config,
            seed=seed,
            quiet=quiet,
            shard_rows=256 if role else 4096,  # model calls: smaller shards resume sooner
            dataset_splits=sorted({row.get("split") or "" for row in rows}),  # emptied splits stay
            command=command,
            resources=models.resources if models is not None else None,
            engine=engine,
        )
        store.write_load_rejects(reject_rows(load_rejects, "load"))
    report = result.stages[-1]
    return FilterResult(result, report.rows_out, report.rejected, len(load_rejects), store.dataset_dir)
