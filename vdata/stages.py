"""Stages and the local runner: a run is a plain list of small stages.

A stage turns rows into rows and rejects. `MapStage` calls a function per row,
`ShardStage` per shard of rows (for concurrent model calls), `DatasetStage`
once with every row (balance, split). The runner shards the work, writes each
shard atomically, skips finished shards when rerun, reruns a stage and every
stage after it when its configuration changes, and says so.
"""

from __future__ import annotations

import functools
import hashlib
import json
import platform
import random
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

import vdata
from vdata.codehash import code_hashes
from vdata.runstore import RunStore, concat_tables

STAGE_ERROR = "stage_error"
INVOCATION = ""  # the command line, when the run was started from the `vdata` command


def _no_progress(n: int) -> None:
    """The progress callback of a context that reports nowhere (picklable, unlike a lambda)."""


@dataclass(frozen=True)
class Reject:
    """A row or input that a stage did not keep, and why. `payload` keeps it whole."""

    reason: str
    detail: str
    input_ref: str = ""
    payload: Any = None
    failure: bool = False  # not a verdict on the row: the setup failed (a dead endpoint, a bug)

    @classmethod
    def of_row(cls, row: Mapping[str, Any], reason: str, detail: str) -> Reject:
        """A reject that keeps the whole row, for stages that see many rows at once."""
        return cls(reason, detail, row_ref(row, 0, 0), row)


@dataclass
class StageOutput:
    rows: list[dict[str, Any]] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)


@dataclass
class StageContext:
    """What a stage may know about where it runs; nothing about the engine."""

    stage: str
    shard: int
    seed: int
    run_dir: Path
    advance: Callable[[int], None] = _no_progress
    status: Callable[[str], None] = _no_progress  # a short live line next to the progress bar
    resources: Mapping[str, Any] = field(default_factory=dict)  # e.g. {"models": ModelPool}
    invocation: int = 0  # which invocation of the run this is (1 for the first)

    def rng(self, *key: Any) -> random.Random:
        """A random generator fixed by the run seed, the stage and `key`."""
        text = json.dumps([self.seed, self.stage, *key], default=str)
        return random.Random(int(hashlib.sha256(text.encode()).hexdigest()[:16], 16))


class StageFailed(RuntimeError):
    """A stage could not do its work for any row: a bug or a broken setup, not bad data."""


@dataclass
class Stage:
    """Base of all stages. `config` is what changes the output; it decides reruns."""

    name: str
    fn: Callable[..., Any]
    config: Mapping[str, Any] = field(default_factory=dict)
    schema: pa.Schema | None = None
    version: str = "1"
    seeded: bool = False
    whole_dataset = False

    def apply(self, rows: list[dict[str, Any]], ctx: StageContext) -> StageOutput:
        raise NotImplementedError

    @functools.cached_property
    def code(self) -> dict[str, str]:
        """What the stage's function depends on, hashed (vdata.codehash): editing any of it
        (the function, what it calls, a constant it reads) reruns the stage."""
        return code_hashes(self.fn)


@dataclass
class MapStage(Stage):
    """fn(row, ctx) returns a row, a list of rows, or a Reject. Exceptions become rejects.

    With workers > 1 the rows of a shard go through a process pool; fn must then be
    picklable (a module-level function, or functools.partial of one).
    """

    workers: int = 1

    def apply(self, rows: list[dict[str, Any]], ctx: StageContext) -> StageOutput:
        out = StageOutput()
        workers = min(self.workers, len(rows))
        if workers > 1:
            from vdata.orphans import worker_pool

            portable = replace(ctx, advance=_no_progress, status=_no_progress, resources={})
            with worker_pool(workers) as pool:
                futures = [pool.submit(_call_row, self.fn, row, portable) for row in rows]
                results = []
                for future in futures:
                    results.append(future.result())
                    ctx.advance(1)
        else:
            results = []
            for row in rows:
                results.append(_call_row(self.fn, row, ctx))
                ctx.advance(1)
        for index, (row, result) in enumerate(zip(rows, results, strict=True)):
            for item in result:
                if isinstance(item, Reject):
                    ref = item.input_ref or row_ref(row, ctx.shard, index)
                    payload = row if item.payload is None else item.payload
                    out.rejects.append(Reject(item.reason, item.detail, ref, payload))
                elif item is not None:
                    out.rows.append(item)
        return out


def _call_row(fn: Callable[..., Any], row: dict[str, Any], ctx: StageContext) -> list[Any]:
    """fn(row, ctx) as a list of rows and Rejects; an exception becomes a stage_error Reject."""
    try:
        result = fn(row, ctx)
    except Exception as exc:  # one bad row must not end the run
        last = traceback.extract_tb(exc.__traceback__)[-1]
        where = f"{Path(last.filename).name}:{last.lineno}"
        return [Reject(STAGE_ERROR, f"{type(exc).__name__}: {exc} (at {where})")]
    return result if isinstance(result, list) else [result]


@dataclass
class ShardStage(Stage):
    """fn(rows, ctx) -> StageOutput for one shard; for stages that batch or run concurrently."""

    def apply(self, rows: list[dict[str, Any]], ctx: StageContext) -> StageOutput:
        advanced = [0]  # a shard function may report progress row by row; the rest comes at its end

        def advance(n: int) -> None:
            advanced[0] += n
            ctx.advance(n)

        out = self.fn(rows, replace(ctx, advance=advance))
        if len(rows) > advanced[0]:
            ctx.advance(len(rows) - advanced[0])
        return out


@dataclass
class DatasetStage(ShardStage):
    """fn(rows, ctx) -> StageOutput with every row of the previous stage at once."""

    whole_dataset = True


def row_ref(row: Any, shard: int, index: int) -> str:
    if isinstance(row, Mapping):
        for key in ("id", "path", "video"):
            value = row.get(key)
            if isinstance(value, str) and value:
                return value
    return f"shard{shard}:row{index}"


def fingerprint(*parts: Any) -> str:
    text = json.dumps(parts, sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# ---------------------------------------------------------------- the runner


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
        last = self.out / "stages" / self.stages[-1].dir
        return concat_tables(RunStore.shards(last))

    def why_empty(self) -> str | None:
        """None when the last stage kept rows; else one line naming the first stage that kept
        none of its rows and its top reject reasons."""
        if self.stages and self.stages[-1].rows_out:
            return None
        for report in self.stages:
            if report.rows_in and not report.rows_out:
                reasons = RunStore(self.out).reject_reasons(report.name)
                top = ", ".join(f"{reason} {count}" for reason, count in reasons.most_common(3))
                return f"stage {report.name} kept none of its {report.rows_in} rows" + (
                    f" (rejected: {top})" if top else ""
                )
        return "the run had no inputs"


class RunError(Exception):
    """The run cannot start as asked; the message says what to do."""


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
) -> RunResult:
    """Runs `stages` over `inputs` in `out`, resuming whatever an earlier run finished."""
    console = console or log_console()
    store = RunStore(out)
    _check_stage_names(stages)
    with store.lock():
        return _run_locked(store, recipe, inputs, stages, dict(config or {}), seed, shard_rows, quiet,
                           console, dict(resources or {}))  # fmt: skip


def _run_locked(
    store: RunStore,
    recipe: str,
    inputs: Sequence[Mapping[str, Any]],
    stages: Sequence[Stage],
    config: dict[str, Any],
    seed: int,
    shard_rows: int,
    quiet: bool,
    console: Console,
    resources: dict[str, Any],
) -> RunResult:
    run = _open_run(store, recipe, config, seed)
    store.remove_stale_temp_files()

    input_fp = fingerprint("inputs", list(inputs))
    chain = [("inputs", input_fp, None)]
    previous = input_fp
    for stage in stages:
        fp = fingerprint(
            previous,
            stage.name,
            stage.version,
            dict(stage.config),
            seed if stage.seeded else None,
            stage.code,
        )
        chain.append((stage.name, fp, stage))
        previous = fp
    _invalidate_changed(store, chain, seed, console, quiet)

    started = time.monotonic()
    run["status"] = "running"
    reports: list[StageReport] = []
    try:
        input_dir = store.stage_dir(0, "inputs")
        _write_inputs(store, input_dir, list(inputs), input_fp, shard_rows)
        previous_dir = input_dir
        for index, stage in enumerate(stages, 1):
            stage_dir = store.stage_dir(index, stage.name)
            report = _run_stage(
                store, stage, stage_dir, previous_dir, chain[index][1], seed, shard_rows, quiet, console,
                resources, run["invocations"],
            )  # fmt: skip
            reports.append(report)
            _record_stage(run, report, chain[index][1])
            store.write_run(run)
            previous_dir = stage_dir
        run["status"] = "done"
    except BaseException:
        run["status"] = "failed"
        raise
    finally:
        run["timings"]["total_s"] = round(run["timings"].get("total_s", 0.0) + time.monotonic() - started, 3)
        run["updated"] = _now()
        run["usage"], run["usage_by_invocation"] = store.usage()
        store.write_run(run)
    if not quiet:
        print_summary(reports, console)
    return RunResult(store.root, reports)


def _check_stage_names(stages: Sequence[Stage]) -> None:
    names = [s.name for s in stages]
    if len(set(names)) != len(names) or "inputs" in names:
        raise RunError(f"stage names must be unique and not 'inputs': {names}")


def _open_run(store: RunStore, recipe: str, config: dict[str, Any], seed: int) -> dict[str, Any]:
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
    run.update(
        config=config,
        config_hash=fingerprint(config, seed)[:16],
        seed=seed,
        versions=_versions(),
    )
    run["invocations"] = run.get("invocations", 0) + 1
    if INVOCATION:
        run["command"] = INVOCATION
    run.setdefault("timings", {})
    store.write_run(run)
    return run


def _versions() -> dict[str, str]:
    import pyarrow

    return {"vdata": vdata.__version__, "python": platform.python_version(), "pyarrow": pyarrow.__version__}


def _invalidate_changed(
    store: RunStore, chain: list[tuple[str, str, Stage | None]], seed: int, console: Console, quiet: bool
) -> None:
    """Removes the first stage whose fingerprint changed and every stage after it."""
    wanted = {store.stage_dir(i, name).name: (i, fp, stage) for i, (name, fp, stage) in enumerate(chain)}
    first_changed: int | None = None
    reason = ""
    for stage_dir in store.stage_dirs():
        entry = wanted.get(stage_dir.name)
        manifest = store.read_manifest(stage_dir) or {}
        if entry is None:
            index = int(stage_dir.name.split("-", 1)[0]) if stage_dir.name[:2].isdigit() else 0
            why = f"stage {stage_dir.name} is no longer in the recipe"
        elif manifest.get("fingerprint") not in (None, entry[1]):
            index = entry[0]
            why = _describe_change(stage_dir.name, manifest, entry[2], seed)
        else:
            continue
        if first_changed is None or index < first_changed:
            first_changed, reason = index, why
    if first_changed is None:
        return
    doomed = [d for d in store.stage_dirs() if d.name[:2].isdigit() and int(d.name[:2]) >= first_changed]
    rerun = [name for name, (i, _, _) in wanted.items() if i >= max(first_changed, 1)]
    message = f"{reason}: rerunning {', '.join(sorted(rerun)) or 'nothing'}"
    console.print(f"[yellow]{message}[/yellow]" if not quiet else message, highlight=False, soft_wrap=True)
    for stage_dir in doomed:
        store.remove_stage(stage_dir)


def _describe_change(dir_name: str, manifest: Mapping[str, Any], stage: Stage | None, seed: int) -> str:
    if stage is None:
        return "the inputs changed"
    old = manifest.get("config") or {}
    new = json.loads(json.dumps(dict(stage.config), default=str))
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


def _run_stage(
    store: RunStore,
    stage: Stage,
    stage_dir: Path,
    input_dir: Path,
    fp: str,
    seed: int,
    shard_rows: int,
    quiet: bool,
    console: Console,
    resources: dict[str, Any],
    invocation: int,
) -> StageReport:
    manifest = store.read_manifest(stage_dir)
    if manifest and manifest.get("done") and manifest.get("fingerprint") == fp:
        report = StageReport(
            stage.name, stage_dir.name, "skipped", manifest["rows_in"], manifest["rows_out"],
            manifest["rejected"], manifest.get("seconds", 0.0),
        )  # fmt: skip
        _log_stage(report, quiet, console)
        return report
    input_shards = RunStore.shards(input_dir)
    if stage.whole_dataset:
        manifest = None  # one unit of work: start it over
        store.remove_stage(stage_dir)
    manifest = manifest or {
        "stage": stage.name, "version": stage.version, "config": dict(stage.config), "code": stage.code,
        "seed": seed if stage.seeded else None, "fingerprint": fp,
        "done": False, "shards": {}, "seconds": 0.0,
    }  # fmt: skip
    stage_dir.mkdir(parents=True, exist_ok=True)
    status = "resumed" if manifest["shards"] else "ran"
    total_in = sum(pq_rows(p) for p in input_shards)
    started = time.monotonic()
    with _progress(quiet, console) as progress:
        done_rows = sum(s["rows_in"] for s in manifest["shards"].values())
        task = progress.add_task(
            stage_dir.name, total=total_in, completed=done_rows, status="", resumed_at=done_rows
        )

        def context(shard: int) -> StageContext:
            return StageContext(
                stage.name,
                shard,
                seed,
                store.root,
                advance=lambda n: progress.advance(task, n),
                status=lambda text: progress.update(task, status=text),
                resources=resources,
                invocation=invocation,
            )

        if stage.whole_dataset:
            table = concat_tables(input_shards)
            rows = table.to_pylist() if table is not None else []
            out = stage.apply(rows, context(0))
            parts = [out.rows[i : i + shard_rows] for i in range(0, len(out.rows), shard_rows)] or [[]]
            for index, part in enumerate(parts):
                store.write_shard(stage_dir, index, part, stage.schema)
            store.write_rejects(stage_dir, 0, reject_rows(out.rejects, stage.name))
            manifest["shards"]["all"] = _shard_entry(len(rows), out)
        else:
            for index, shard_path in enumerate(input_shards):
                key = f"{index:05d}"
                if key in manifest["shards"]:
                    continue
                rows = _read_rows(shard_path)
                out = stage.apply(rows, context(index))
                store.write_rejects(stage_dir, index, reject_rows(out.rejects, stage.name))
                store.write_shard(stage_dir, index, out.rows, stage.schema)
                manifest["shards"][key] = _shard_entry(len(rows), out)
                manifest["seconds"] = round(manifest["seconds"] + time.monotonic() - started, 3)
                started = time.monotonic()
                store.write_manifest(stage_dir, manifest)
    manifest["seconds"] = round(manifest["seconds"] + time.monotonic() - started, 3)
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
    report = StageReport(
        stage.name, stage_dir.name, status, manifest["rows_in"], manifest["rows_out"],
        manifest["rejected"], manifest["seconds"],
    )  # fmt: skip
    _log_stage(report, quiet, console)
    return report


def _log_stage(report: StageReport, quiet: bool, console: Console) -> None:
    if quiet:
        console.print(
            f"{report.dir}: {report.status}, {report.rows_in} in, {report.rows_out} kept, "
            f"{report.rejected} rejected",
            highlight=False,
            soft_wrap=True,
        )


def _shard_entry(rows_in: int, out: StageOutput) -> dict[str, Any]:
    errors = sum(1 for r in out.rejects if r.reason == STAGE_ERROR or r.failure)
    return {"rows_in": rows_in, "rows_out": len(out.rows), "rejected": len(out.rejects), "errors": errors}


def reject_rows(rejects: list[Reject], stage: str) -> list[dict[str, Any]]:
    return [
        {
            "input_ref": r.input_ref,
            "stage": stage,
            "reason": r.reason,
            "detail": r.detail,
            "payload_json": json.dumps(r.payload, ensure_ascii=False, default=str),
        }
        for r in rejects
    ]


def _read_rows(path: Path) -> list[dict[str, Any]]:
    import pyarrow.parquet as pq

    return pq.read_table(path).to_pylist()


def pq_rows(path: Path) -> int:
    import pyarrow.parquet as pq

    return pq.ParquetFile(path).metadata.num_rows


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


def log_console(stderr: bool = True) -> Console:
    """Standard error (progress, summaries) or output; when it is a file or a pipe (a log),
    wide enough that tables and lines do not wrap mid-word."""
    console = Console(stderr=stderr)
    if not console.is_terminal:
        console = Console(stderr=stderr, width=max(console.width, 160))
    return console


def _progress(quiet: bool, console: Console) -> Progress | _LogProgress:
    """Bars on a terminal; in a log, a line every half minute; nothing with --quiet."""
    if not quiet and not console.is_terminal:
        return _LogProgress(console)
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        _RateColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[status]}"),
        console=console,
        disable=quiet,
        transient=False,
    )


class _RateColumn(ProgressColumn):
    """Rows per second since the stage started in this invocation (rows an earlier invocation
    did are left out; shards finish in bursts, so the rate is over the whole time)."""

    def render(self, task: Task) -> Text:
        return Text(_rate(task.completed - task.fields.get("resumed_at", 0), task.elapsed or 0.0))


def _rate(done: float, elapsed: float) -> str:
    if elapsed < 1 or done <= 0:
        return ""
    rate = done / elapsed
    return f"{rate:.1f} rows/s" if rate >= 1 else f"{elapsed / done:.1f} s/row"


class _LogProgress:
    """The progress interface for logs: a plain line per stage every `every_s` seconds."""

    def __init__(self, console: Console, every_s: float = 30.0):
        self.console = console
        self.every_s = every_s
        self.tasks: dict[int, dict[str, Any]] = {}

    def __enter__(self) -> _LogProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        for task in self.tasks.values():
            self._line(task)

    def add_task(self, description: str, total: float, completed: float = 0, **fields: Any) -> int:
        now = time.monotonic()
        task = {"name": description, "total": total, "completed": completed, "resumed_at": completed,
                "started": now, "printed": now, **fields}  # fmt: skip
        self.tasks[len(self.tasks)] = task
        return len(self.tasks) - 1

    def advance(self, task_id: int, amount: float) -> None:
        self.update(task_id, advance=amount)

    def update(self, task_id: int, advance: float = 0, **fields: Any) -> None:
        task = self.tasks[task_id]
        task["completed"] += advance
        task.update(fields)
        if time.monotonic() - task["printed"] >= self.every_s:
            self._line(task)

    def _line(self, task: dict[str, Any]) -> None:
        task["printed"] = now = time.monotonic()
        elapsed = now - task["started"]
        rate = _rate(task["completed"] - task["resumed_at"], elapsed)
        status = task.get("status") or ""
        parts = [f"{task['completed']:.0f}/{task['total']:.0f}", f"{elapsed:.0f}s", rate, status]
        self.console.print(f"{task['name']}: " + ", ".join(p for p in parts if p), highlight=False,
                           soft_wrap=True)  # fmt: skip


def print_summary(reports: Sequence[StageReport], console: Console) -> None:
    table = Table(title="run summary", show_lines=False)
    for column in ("stage", "status", "in", "kept", "rejected", "seconds"):
        table.add_column(column, justify="left" if column in ("stage", "status") else "right")
    for r in reports:
        table.add_row(r.dir, r.status, str(r.rows_in), str(r.rows_out), str(r.rejected), f"{r.seconds:.1f}")
    console.print(table)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
