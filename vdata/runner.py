"""The runner: a list of stages over a run directory, resumable, with the local engine.

`run_pipeline` shards the work, writes each shard atomically (through the run
store), skips finished shards when rerun, reruns a stage and every stage after
it when its configuration or code changes, and says so. The engine, the object
that applies a stage to a shard, is separate from the stages: the local one
sends a MapStage's rows through a process pool when the stage asks for workers.
"""

from __future__ import annotations

import hashlib
import json
import platform
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa
from rich.console import Console

import vdata
from vdata.engines import Engine
from vdata.engines.local import LocalEngine, shard_entry
from vdata.progress import log_console, print_summary, progress_display
from vdata.runstore import RunStore, concat_tables
from vdata.stages import (
    Reject,
    RunError,
    Stage,
    StageContext,
    StageFailed,
    reject_rows,
)


@dataclass
class StageReport:
    name: str
    dir: str
    status: str  # ran | resumed | skipped
    rows_in: int = 0
    rows_out: int = 0
    rejected: int = 0
    seconds: float = 0.0


@dataclass
class RunResult:
    out: Path
    stages: list[StageReport]

    def final_table(self) -> pa.Table | None:
        return RunStore(self.out).stage_table(self.stages[-1].dir)

    def why_empty(self) -> str | None:
        """None when the last stage kept rows; else one line naming the first stage that kept
        none of its rows and its top reject reasons."""
        if self.stages and self.stages[-1].rows_out:
            return None
        for report in self.stages:
            if report.rows_in and not report.rows_out:
                top = RunStore(self.out).top_reasons(report.name)
                return f"stage {report.name} kept none of its {report.rows_in} rows" + (
                    f" (rejected: {top})" if top else ""
                )
        return "the run had no inputs"


@dataclass
class _Run:
    """One invocation of a pipeline: where, with what, and how to report."""

    store: RunStore
    seed: int
    shard_rows: int
    quiet: bool
    console: Console
    resources: dict[str, Any]
    engine: Engine
    invocation: int = 0
    reports: list[StageReport] = field(default_factory=list)


def run_pipeline(
    out: str | Path,
    recipe: str,
    inputs: Sequence[Mapping[str, Any]],
    stages: Sequence[Stage],
    *,
    config: Mapping[str, Any] | None = None,
    seed: int = 0,
    shard_rows: int = 256,
    quiet: bool = False,
    console: Console | None = None,
    resources: Mapping[str, Any] | None = None,
    dataset_splits: Sequence[str] | None = None,
    command: str = "",
    engine: Engine | None = None,
    force: bool = False,
    paper: str = "",
) -> RunResult:
    """Runs `stages` over `inputs` in `out`, resuming whatever an earlier run finished. With
        `dataset_splits`, the final rows become the run's dataset (OUT/dataset, those splits
        always there). `command` is the command line that started the run, for run.json. `out`
        is new, empty or a run (`force`: a folder of other files, which stay untouched). `paper`: what
    the run implements, for run.json and the card of a run that no installed recipe made."""
    store = RunStore(out)
    _check_stage_names(stages)
    run = _Run(
        store,
        seed,
        shard_rows,
        quiet,
        console or log_console(),
        dict(resources or {}),
        engine or LocalEngine(),
    )
    with store.lock(force=force):
        result = _run_locked(run, recipe, inputs, stages, dict(config or {}), command, paper)
        if dataset_splits is not None:
            store.write_dataset(result.final_table(), dataset_splits)
    return result


def _run_locked(
    run: _Run,
    recipe: str,
    inputs: Sequence[Mapping[str, Any]],
    stages: Sequence[Stage],
    config: dict[str, Any],
    command: str,
    paper: str = "",
) -> RunResult:
    store = run.store
    record = _open_run(store, recipe, config, run.seed, command, paper)
    run.invocation = record["invocations"]
    store.remove_stale_temp_files()
    chain = _fingerprints(inputs, stages, run.seed, run.resources)
    _invalidate_changed(store, chain, run.seed, run.console, run.quiet)

    started = time.monotonic()
    record["status"] = "running"
    try:
        previous_dir = store.stage_dir(0, "inputs")
        _write_inputs(store, previous_dir, list(inputs), chain[0].fingerprint, run.shard_rows)
        for index, stage in enumerate(stages, 1):
            stage_dir = store.stage_dir(index, stage.name)
            report = _run_stage(run, stage, stage_dir, previous_dir, chain[index])
            run.reports.append(report)
            _record_stage(record, report, chain[index].fingerprint)
            store.write_run(record)
            previous_dir = stage_dir
        record["status"] = "done"
    except BaseException:
        record["status"] = "failed"
        raise
    finally:
        record["timings"]["total_s"] = round(
            record["timings"].get("total_s", 0.0) + time.monotonic() - started, 3
        )
        record["updated"] = _now()
        record["usage"], record["usage_by_invocation"] = store.usage()
        store.write_run(record)
    if not run.quiet:
        print_summary(_summary_rows(store, run.reports), run.console)
    return RunResult(store.root, run.reports)


def _summary_rows(store: RunStore, reports: Sequence[StageReport]) -> list[tuple[Any, ...]]:
    rows = []
    for r in reports:
        top = store.top_reasons(r.name) if r.rejected else ""
        rows.append((r.dir, r.status, r.rows_in, r.rows_out, r.rejected, top, f"{r.seconds:.1f}"))
    return rows


def fingerprint(*parts: Any) -> str:
    text = json.dumps(parts, sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _fingerprints(
    inputs: Sequence[Mapping[str, Any]], stages: Sequence[Stage], seed: int, resources: Mapping[str, Any]
) -> list[Link]:
    """(name, fingerprint, stage) for the inputs and each stage: a stage's fingerprint covers
    the one before it, its config and identity (the model it calls), version, seed when
    seeded, and its code."""
    previous = fingerprint("inputs", list(inputs))
    chain: list[Link] = [Link("inputs", previous, None, {})]
    for stage in stages:
        seeded = seed if stage.seeded else None
        settings = _settings(stage, resources)
        previous = fingerprint(previous, stage.name, stage.version, settings, seeded, stage.code)
        chain.append(Link(stage.name, previous, stage, settings))
    return chain


@dataclass(frozen=True)
class Link:
    """A stage's place in the run: its fingerprint (covering every stage before it) and the
    settings its manifest records."""

    name: str
    fingerprint: str
    stage: Stage | None
    settings: dict[str, Any]


def _settings(stage: Stage, resources: Mapping[str, Any]) -> dict[str, Any]:
    """The stage's config with its identity: what a manifest records and a rerun compares."""
    return json.loads(json.dumps({**dict(stage.config), **stage.identity(resources)}, default=str))


def _check_stage_names(stages: Sequence[Stage]) -> None:
    names = [s.name for s in stages]
    if len(set(names)) != len(names) or "inputs" in names:
        raise RunError(f"stage names must be unique and not 'inputs': {names}")


def _open_run(
    store: RunStore, recipe: str, config: dict[str, Any], seed: int, command: str, paper: str = ""
) -> dict[str, Any]:
    run = store.read_run()
    if run is not None and run.get("recipe") != recipe:
        raise RunError(
            f"{store.root} holds a run of recipe {run.get('recipe')!r}, not {recipe!r}; "
            "choose another --out directory or delete this one"
        )
    if run is None:
        run = {
            "recipe": recipe,
            "created": _now(),
            "stages": [],
            "usage": {},
            "timings": {},
            "invocations": 0,
        }
    run.update(config=config, config_hash=fingerprint(config, seed)[:16], seed=seed, versions=_versions())
    run["invocations"] = run.get("invocations", 0) + 1
    if command:
        run["command"] = command
    if paper:
        run["paper"] = paper
    run.setdefault("timings", {})
    store.write_run(run)
    return run


def _versions() -> dict[str, str]:
    return {"vdata": vdata.__version__, "python": platform.python_version(), "pyarrow": pa.__version__}


def _invalidate_changed(store: RunStore, chain: list[Link], seed: int, console: Console, quiet: bool) -> None:
    """Removes the first stage whose fingerprint changed and every stage after it."""
    wanted = {store.stage_dir(i, link.name).name: (i, link) for i, link in enumerate(chain)}
    first_changed: int | None = None
    reason = ""
    for stage_dir in store.stage_dirs():
        entry = wanted.get(stage_dir.name)
        manifest = store.read_manifest(stage_dir) or {}
        if entry is None:
            index = int(stage_dir.name.split("-", 1)[0]) if stage_dir.name[:2].isdigit() else 0
            why = f"stage {stage_dir.name} is no longer in the recipe"
        elif manifest.get("fingerprint") not in (None, entry[1].fingerprint):
            index = entry[0]
            why = _describe_change(stage_dir.name, manifest, entry[1], seed)
        else:
            continue
        if first_changed is None or index < first_changed:
            first_changed, reason = index, why
    if first_changed is None:
        return
    doomed = [d for d in store.stage_dirs() if d.name[:2].isdigit() and int(d.name[:2]) >= first_changed]
    rerun = [name for name, (i, _) in wanted.items() if i >= max(first_changed, 1)]
    message = f"{reason}: rerunning {', '.join(sorted(rerun)) or 'nothing'}"
    console.print(f"[yellow]{message}[/yellow]" if not quiet else message, highlight=False, soft_wrap=True)
    for stage_dir in doomed:
        store.remove_stage(stage_dir)


def _describe_change(dir_name: str, manifest: Mapping[str, Any], link: Link, seed: int) -> str:
    stage = link.stage
    if stage is None:
        return "the inputs changed"
    old = manifest.get("config") or {}
    new = link.settings
    keys = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    if keys:
        changes = ", ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in keys[:5])
        return f"stage {dir_name} config changed ({changes})"
    if manifest.get("version") != stage.version:
        return f"stage {dir_name} version changed ({manifest.get('version')} -> {stage.version})"
    if stage.seeded and manifest.get("seed") != seed:
        return f"stage {dir_name} seed changed ({manifest.get('seed')} -> {seed})"
    old_code = manifest.get("code") or {}
    edited = sorted(k for k in set(old_code) | set(stage.code) if old_code.get(k) != stage.code.get(k))
    if edited:
        names = ", ".join(name.rsplit(".", 1)[-1] for name in edited[:5])
        more = f" and {len(edited) - 5} more" if len(edited) > 5 else ""
        return f"stage {dir_name} code changed ({names}{more})"
    return f"stage {dir_name} changed upstream (the inputs or an earlier stage)"


def _write_inputs(
    store: RunStore, input_dir: Path, inputs: list[dict[str, Any]], fp: str, shard_rows: int
) -> None:
    manifest = store.read_manifest(input_dir)
    if manifest and manifest.get("done"):
        return
    chunks = [inputs[i : i + shard_rows] for i in range(0, len(inputs), shard_rows)] or [[]]
    for index, chunk in enumerate(chunks):
        store.write_shard(input_dir, index, chunk)
    store.write_manifest(
        input_dir,
        {"stage": "inputs", "fingerprint": fp, "done": True, "n_shards": len(chunks), "rows": len(inputs)},
    )


def _run_stage(run: _Run, stage: Stage, stage_dir: Path, input_dir: Path, link: Link) -> StageReport:
    """One stage over every shard of the stage before it, resuming finished shards."""
    store = run.store
    manifest = store.read_manifest(stage_dir)
    if manifest and manifest.get("done") and manifest.get("fingerprint") == link.fingerprint:
        return _report(run, stage, stage_dir, "skipped", manifest)
    if stage.whole_dataset:  # one unit of work: start it over
        manifest = None
        store.remove_stage(stage_dir)
    manifest = manifest or _new_manifest(stage, link, run.seed)
    stage_dir.mkdir(parents=True, exist_ok=True)
    status = "resumed" if manifest["shards"] else "ran"
    input_shards = RunStore.shards(input_dir)
    started = time.monotonic()
    with progress_display(run.quiet, run.console) as progress:
        done_rows = sum(s["rows_in"] for s in manifest["shards"].values())
        total = sum(store.shard_rows(p) for p in input_shards)
        task = progress.add_task(
            stage_dir.name, total=total, completed=done_rows, status="", resumed_at=done_rows
        )

        def context(shard: int) -> StageContext:
            return StageContext(
                stage.name,
                shard,
                run.seed,
                store.root,
                advance=lambda n: progress.advance(task, n),
                status=lambda text: progress.update(task, status=text),
                resources=run.resources,
                invocation=run.invocation,
            )

        if stage.whole_dataset:
            table = concat_tables(input_shards)
            rows = table.to_pylist() if table is not None else []
            out = run.engine.apply(stage, rows, context(0))
            parts = [out.rows[i : i + run.shard_rows] for i in range(0, len(out.rows), run.shard_rows)] or [
                []
            ]
            for index, part in enumerate(parts):
                store.write_shard(stage_dir, index, part, stage.schema)
            store.write_rejects(stage_dir, 0, reject_rows(out.rejects, stage.name))
            manifest["shards"]["all"] = shard_entry(len(rows), out)
        pending = [
            (index, shard_path)
            for index, shard_path in enumerate([] if stage.whole_dataset else input_shards)
            if f"{index:05d}" not in manifest["shards"]
        ]

        def done(index: int, entry: dict[str, Any]) -> None:
            nonlocal started
            manifest["shards"][f"{index:05d}"] = entry
            # in shard order whatever order the engine finished them in: the same bytes
            manifest["shards"] = dict(sorted(manifest["shards"].items()))
            manifest["seconds"] = round(manifest["seconds"] + time.monotonic() - started, 3)
            started = time.monotonic()
            store.write_manifest(stage_dir, manifest)

        run.engine.run_shards(stage, stage_dir, pending, context, done)
    manifest["seconds"] = round(manifest["seconds"] + time.monotonic() - started, 3)
    _finish(store, stage, stage_dir, manifest)
    return _report(run, stage, stage_dir, status, manifest)


def _new_manifest(stage: Stage, link: Link, seed: int) -> dict[str, Any]:
    return {
        "stage": stage.name,
        "version": stage.version,
        "config": link.settings,
        "code": stage.code,
        "seed": seed if stage.seeded else None,
        "fingerprint": link.fingerprint,
        "done": False,
        "shards": {},
        "seconds": 0.0,
    }


def _finish(store: RunStore, stage: Stage, stage_dir: Path, manifest: dict[str, Any]) -> None:
    """Totals, the stage's rejects joined, and done; or StageFailed when every row failed (a
    bug or a broken setup, not bad data), leaving the stage to be done again."""
    entries = manifest["shards"].values()
    manifest["rows_in"] = sum(e["rows_in"] for e in entries)
    manifest["rows_out"] = sum(e["rows_out"] for e in entries)
    manifest["rejected"] = store.collect_rejects(stage_dir, stage.name)
    errors = sum(e["errors"] for e in entries)
    if manifest["rows_in"] and errors == manifest["rows_in"]:
        first = store.first_reject(stage_dir)
        store.remove_stage(stage_dir)
        raise StageFailed(f"stage {stage_dir.name} failed on every one of its {errors} rows; first: {first}")
    manifest["done"] = True
    store.write_manifest(stage_dir, manifest)


def _report(
    run: _Run, stage: Stage, stage_dir: Path, status: str, manifest: Mapping[str, Any]
) -> StageReport:
    report = StageReport(
        stage.name,
        stage_dir.name,
        status,
        manifest["rows_in"],
        manifest["rows_out"],
        manifest["rejected"],
        manifest.get("seconds", 0.0),
    )
    if run.quiet:
        run.console.print(
            f"{report.dir}: {report.status}, {report.rows_in} in, {report.rows_out} kept, "
            f"{report.rejected} rejected",
            highlight=False,
            soft_wrap=True,
        )
    return report


def _record_stage(run: dict[str, Any], report: StageReport, fp: str) -> None:
    entry = {
        "name": report.name,
        "dir": report.dir,
        "fingerprint": fp[:16],
        "status": report.status,
        "rows_in": report.rows_in,
        "rows_out": report.rows_out,
        "rejected": report.rejected,
        "seconds": report.seconds,
    }
    run["stages"] = [s for s in run.get("stages", []) if s.get("dir") != report.dir] + [entry]
    run["stages"].sort(key=lambda s: s["dir"])


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


__all__ = [
    "Reject",
    "RunError",
    "RunResult",
    "StageFailed",
    "StageReport",
    "run_pipeline",
]
