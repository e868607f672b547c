"""On-disk layout of a run: run.json, stage shards with manifests, rejects.

Every file is written atomically (temp file in the same directory, fsync,
rename), so a run killed at any instant leaves either the old file or the new
one, never half of one. A shard exists only once it is complete.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

REJECT_SCHEMA = pa.schema(
    [
        ("input_ref", pa.string()),
        ("stage", pa.string()),
        ("reason", pa.string()),
        ("detail", pa.string()),
        ("payload_json", pa.string()),
    ]
)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def atomic_write_json(path: Path, obj: Any) -> None:
    text = json.dumps(obj, indent=2, ensure_ascii=False, sort_keys=False, default=str)
    atomic_write_bytes(path, (text + "\n").encode("utf-8"))


def atomic_write_table(path: Path, table: pa.Table) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    pq.write_table(table, tmp)
    with open(tmp, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class RunStoreError(RuntimeError):
    """A run directory whose files were damaged from outside; the message says what to do."""


def read_json(path: Path) -> Any | None:
    """The parsed file, or None when it does not exist."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RunStoreError(
            f"{path} is not valid JSON ({exc}); vdata writes it atomically, so it was changed "
            "from outside: restore it, or delete it to redo that part of the run"
        ) from exc


def concat_tables(paths: Iterable[Path]) -> pa.Table | None:
    """All non-empty shards as one table (schemas unified); None when there are none."""
    tables = [t for t in (pq.read_table(p) for p in paths) if t.num_rows]
    if not tables:
        return None
    return pa.concat_tables(tables, promote_options="permissive")


class RunLocked(RuntimeError):
    """Another process is working in this run directory; the message names it."""


class OutputRefused(RuntimeError):
    """An output folder vdata will not write into (it holds files vdata did not write, or it
    overlaps an input); the message names the folder and the way out."""


# Every name a run writes at the top of its folder: the run's own files, then the outputs the
# recipes and commands leave (question rows, tables, rendered worlds, graphs, clips). With
# --force vdata writes beside other files, never over one of these that it did not write.
RUN_ENTRIES = (
    ".lock",
    "run.json",
    "stages",
    "rejects",
    "cache.sqlite",
    "cache.sqlite-wal",
    "cache.sqlite-shm",
    "usage.jsonl",
    "node-caches",
    "dataset",
    ".dataset.tmp",
    ".dataset.old",
    "questions.parquet",
    "clips.parquet",
    "annotated.parquet",
    "videos.parquet",
    "events.parquet",
    "captions.jsonl",
    "videos",
    "truth",
    "clips",
    "world",
    "banks",
    "graphs",
)


# what a run writes before its run.json (the lock, the models' cache and usage): a folder that
# holds nothing else is one vdata began, not the user's
RUN_PRIVATE = (".lock", "cache.sqlite", "cache.sqlite-wal", "cache.sqlite-shm", "usage.jsonl", "node-caches")


def run_began(root: Path) -> bool:
    """A folder vdata ran in: it has run.json, or holds nothing but what a run writes first."""
    return (root / "run.json").is_file() or all(entry.name in RUN_PRIVATE for entry in root.iterdir())


def claim_output(
    root: Path,
    *,
    force: bool = False,
    ours: Callable[[Path], bool] = run_began,
    owns: Iterable[str] = RUN_ENTRIES,
    kind: str = "a vdata run (it has no run.json)",
    where: str = "--out",
    force_flag: str | None = "--force",
) -> None:
    """Refuses an output folder vdata must not write into (OutputRefused): one that is a file,
    cannot be made, or holds files while it is not `ours` (`kind` says what it should be).
    With `force`, a folder of other files is used as long as none of them has a name vdata
    writes there (`owns`), so nothing of the user's is ever overwritten or deleted."""
    if root.exists() and not root.is_dir():
        raise OutputRefused(f"{root} is a file, not a folder; give {where} a new or empty folder")
    if not root.is_dir():
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputRefused(
                f"cannot create the folder {root} ({exc.strerror or exc}); give {where} a folder you can "
                "write"
            ) from None
        return
    try:
        present = sorted(entry.name for entry in root.iterdir())
    except OSError as exc:
        raise OutputRefused(f"cannot read the folder {root} ({exc.strerror or exc})") from None
    if not present or ours(root):
        return
    if not force:
        shown = ", ".join(present[:3]) + (f" and {len(present) - 3} more" if len(present) > 3 else "")
        beside = f", or pass {force_flag} to write beside them" if force_flag else ""
        raise OutputRefused(
            f"{root} holds files that vdata did not write ({shown}) and is not {kind}; give {where} a new "
            f"or empty folder{beside} (vdata never overwrites or deletes files it did not write)"
        )
    taken = [name for name in present if name in set(owns)]
    if taken:
        raise OutputRefused(
            f"{root} already holds {', '.join(taken)}, which vdata would write but did not; move them "
            f"away or give {where} another folder ({force_flag} never overwrites them)"
        )


def refuse_overlap(out: Path, inputs: Iterable[tuple[str, str | Path | None]], flag: str = "--out") -> None:
    """Refuses inputs that are the output (a folder or a file), lie inside it or contain it: a
    command that reads what it writes loses the user's rows. `inputs` are (what to call it,
    path)."""
    where = Path(out).resolve()
    for label, path in inputs:
        if path is None or str(path) == "":
            continue
        given = Path(path).resolve()
        if given == where:
            relation = "is the output"
        elif given.is_relative_to(where):
            relation = "lies inside the output"
        elif where.is_relative_to(given):
            relation = "contains the output"
        else:
            continue
        raise OutputRefused(
            f"{label} {path} {relation} {out}: a command never writes where it reads; "
            f"give {flag} a place apart from its inputs"
        )


_HELD: dict[Path, list[Any]] = {}  # run directories this process holds: [lock file, depth]
RUNTIME_STATE = ("_HELD", "_HELD_GUARD")  # where a run happens, not what it computes (codehash)
_HELD_GUARD = threading.Lock()


class RunStore:
    """Paths and atomic writes under one run directory."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.stages_dir = self.root / "stages"
        self.rejects_dir = self.root / "rejects"
        self.run_json = self.root / "run.json"
        self.usage_log = self.root / "usage.jsonl"  # every request's usage, as it happens
        self.lock_file = self.root / ".lock"
        self.cache_path = self.root / "cache.sqlite"  # the annotators' request cache
        self.dataset_dir = self.root / "dataset"  # the final rows, Parquet per split, and the card

    @classmethod
    def of_dataset(cls, dataset_dir: str | Path) -> RunStore | None:
        """The run that made a dataset directory (its parent, with run.json), if any."""
        store = cls(Path(dataset_dir).parent)
        return (
            store if store.is_run() and store.dataset_dir.resolve() == Path(dataset_dir).resolve() else None
        )

    def stage_table(self, stage_dir_name: str) -> pa.Table | None:
        """All rows a stage wrote (None when it wrote none)."""
        return concat_tables(self.shards(self.stages_dir / stage_dir_name))

    def manifests(self) -> list[dict[str, Any]]:
        """The manifest of every stage of the run, in order."""
        return [m for m in (self.read_manifest(d) for d in self.stage_dirs()) if m]

    def write_dataset(self, table: pa.Table | None, splits: Iterable[str] = ()) -> dict[str, int]:
        """The run's final rows as its dataset: Parquet per split (each of `splits` even when
        empty), in the record's schema, and dataset/videos/ links to the videos the rows name
        (a recipe records each row's source in meta_json `source_video`), so paths resolve."""
        from vdata.record import SCHEMA, conform_table

        table = conform_table(table) if table is not None else SCHEMA.empty_table()
        counts = write_dataset(table, self.dataset_dir, splits)
        link_media(self.dataset_dir, table.select(["path", "meta_json"]).to_pylist())
        return counts

    def write_output(self, name: str, table: pa.Table) -> Path:
        """A named table a run leaves beside its stages (clips.parquet, annotated.parquet)."""
        path = self.root / name
        atomic_write_table(path, table)
        return path

    # What a finished run leaves for people, by recipe family: the question rows (a dataset
    # directory, or synth's questions.parquet), and other tables (split's clips).
    ROW_OUTPUTS = ("dataset", "questions.parquet")
    OTHER_OUTPUTS = ("clips.parquet", "annotated.parquet", "videos.parquet", "events.parquet")

    def media_root(self) -> Path:
        """Where the rows' relative media paths resolve: the dataset directory, or the run."""
        return self.dataset_dir if (self.dataset_dir / "data").is_dir() else self.root

    def is_run(self) -> bool:
        return self.run_json.is_file()

    def rows_path(self) -> Path | None:
        """Where a run's question rows are, or None when it makes none (split, annotate)."""
        for name in self.ROW_OUTPUTS:
            candidate = self.root / name
            if (candidate / "data").is_dir() or candidate.is_file():
                return candidate
        return None

    def other_outputs(self) -> dict[str, int]:
        """Tables a run wrote besides question rows, with their row counts."""
        return {
            name: pq.ParquetFile(self.root / name).metadata.num_rows
            for name in self.OTHER_OUTPUTS
            if (self.root / name).is_file()
        }

    @contextlib.contextmanager
    def lock(
        self, wait: bool = False, *, force: bool = False, inputs: Iterable[tuple[str, Any]] = ()
    ) -> Iterator[None]:
        """Holds the run directory for this process, so two invocations never work in it at
        once. Re-entrant within a process (a recipe holds it around its run_pipeline); a
        second process gets RunLocked naming the holder, or waits when `wait`. The first hold
        claims the folder (`claim_output`: only an empty folder or a vdata run, unless `force`)
        and refuses `inputs` ((flag, path) pairs) that overlap it: OutputRefused."""
        refuse_overlap(self.root, inputs)
        key = self.root.resolve()
        with _HELD_GUARD:
            held = _HELD.get(key)
            if held is not None:
                held[1] += 1
        if held is None:
            claim_output(self.root, force=force)
            handle = open(self.lock_file, "a+")  # noqa: SIM115 - held until released below
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.seek(0)
                holder = handle.read().strip() or "another process"
                if not wait:
                    handle.close()
                    raise RunLocked(
                        f"{self.root} is in use by {holder}; wait for it to finish (or pass --wait), "
                        "or use another --out directory"
                    ) from None
                print(f"waiting for {holder} to finish with {self.root}", file=sys.stderr, flush=True)
                fcntl.flock(handle, fcntl.LOCK_EX)
            handle.seek(0)
            handle.truncate()
            handle.write(f"process {os.getpid()} (since {time.strftime('%Y-%m-%d %H:%M:%S')})")
            handle.flush()
            with _HELD_GUARD:
                _HELD[key] = held = [handle, 1]
        try:
            yield
        finally:
            with _HELD_GUARD:
                held[1] -= 1
                release = held[1] == 0
                if release:
                    del _HELD[key]
            if release:
                held[0].close()  # closing the file releases the lock

    def usage(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """(usage per stage summed over every invocation, usage per invocation and stage)."""
        from vdata.usage import ledger_totals

        return ledger_totals(self.usage_log)

    def reject_reasons(self, stage_name: str) -> Counter:
        """How many rows a finished stage rejected, per reason."""
        path = self.rejects_dir / f"{stage_name}.parquet"
        if not path.exists():
            return Counter()
        return Counter(pq.read_table(path, columns=["reason"]).column("reason").to_pylist())

    def top_reasons(self, stage_name: str, n: int = 3) -> str:
        """'schema_mismatch 12, invalid_json 2': a stage's most frequent reject reasons."""
        return ", ".join(
            f"{reason} {count}" for reason, count in self.reject_reasons(stage_name).most_common(n)
        )

    @staticmethod
    def first_reject(stage_dir: Path) -> str:
        """'reason: detail' of the first reject a stage wrote, for one-line errors."""
        table = concat_tables(sorted(stage_dir.glob("rejects-*.parquet")))
        if table is None:
            return "unknown"
        first = table.slice(0, 1).to_pylist()[0]
        return f"{first['reason']}: {first['detail']}"

    def read_run(self) -> dict[str, Any] | None:
        return read_json(self.run_json)

    def write_run(self, run: dict[str, Any]) -> None:
        atomic_write_json(self.run_json, run)

    def remove_stale_temp_files(self) -> int:
        """Deletes temp files that a killed run left half-written; returns how many."""
        # only vdata's own: a user's file beside a run (--force) is never touched
        stale = [p for p in self.root.glob(".*.tmp-*") if p.name[1:].split(".tmp-")[0] in RUN_ENTRIES]
        folders = [self.root / name for name in RUN_ENTRIES if (self.root / name).is_dir()]
        stale = [p for p in stale + [p for d in folders for p in d.rglob(".*.tmp-*")] if p.is_file()]
        for path in stale:
            path.unlink(missing_ok=True)
        return len(stale)

    def stage_dir(self, index: int, name: str) -> Path:
        return self.stages_dir / f"{index:02d}-{name}"

    def stage_dirs(self) -> list[Path]:
        if not self.stages_dir.exists():
            return []
        return sorted(p for p in self.stages_dir.iterdir() if p.is_dir())

    @staticmethod
    def shard_path(stage_dir: Path, index: int) -> Path:
        return stage_dir / f"part-{index:05d}.parquet"

    @staticmethod
    def reject_shard_path(stage_dir: Path, index: int) -> Path:
        return stage_dir / f"rejects-{index:05d}.parquet"

    @staticmethod
    def shards(stage_dir: Path) -> list[Path]:
        return sorted(stage_dir.glob("part-*.parquet"))

    @staticmethod
    def read_rows(shard: Path) -> list[dict[str, Any]]:
        return pq.read_table(shard).to_pylist()

    @staticmethod
    def shard_rows(shard: Path) -> int:
        return pq.ParquetFile(shard).metadata.num_rows

    @staticmethod
    def read_manifest(stage_dir: Path) -> dict[str, Any] | None:
        """A stage's manifest; a damaged one counts as none, so the stage is done again."""
        try:
            return read_json(stage_dir / "manifest.json")
        except RunStoreError:
            return None

    @staticmethod
    def write_manifest(stage_dir: Path, manifest: dict[str, Any]) -> None:
        atomic_write_json(stage_dir / "manifest.json", manifest)

    def write_rejects(self, stage_dir: Path, index: int, rejects: list[dict[str, Any]]) -> None:
        table = pa.Table.from_pylist(rejects, schema=REJECT_SCHEMA)
        atomic_write_table(self.reject_shard_path(stage_dir, index), table)

    def write_load_rejects(self, rejects: list[dict[str, Any]]) -> None:
        """rejects/load.parquet: the input rows a run could not take in, with the reasons."""
        atomic_write_table(
            self.rejects_dir / "load.parquet", pa.Table.from_pylist(rejects, schema=REJECT_SCHEMA)
        )

    def collect_rejects(self, stage_dir: Path, stage_name: str) -> int:
        """Joins a finished stage's reject shards into rejects/NAME.parquet; returns the count."""
        table = concat_tables(sorted(stage_dir.glob("rejects-*.parquet")))
        if table is None:
            table = REJECT_SCHEMA.empty_table()
        atomic_write_table(self.rejects_dir / f"{stage_name}.parquet", table)
        return table.num_rows

    def remove_stage(self, stage_dir: Path) -> None:
        shutil.rmtree(stage_dir, ignore_errors=True)
        name = stage_dir.name.split("-", 1)[-1]
        (self.rejects_dir / f"{name}.parquet").unlink(missing_ok=True)

    @classmethod
    def write_shard(
        cls, stage_dir: Path, index: int, rows: list[dict[str, Any]], schema: pa.Schema | None = None
    ) -> None:
        """Writes one shard of rows; with no schema and no rows, an empty table."""
        from vdata.record import SCHEMA, to_table

        if schema is not None and schema.equals(SCHEMA):
            table = to_table(rows)
        elif schema is not None:
            table = pa.Table.from_pylist(rows, schema=schema)
        else:
            table = rows_to_table(rows)
        atomic_write_table(cls.shard_path(stage_dir, index), table)


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, (list, tuple)):
        return "list"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def split_storable(rows: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[tuple[int, str]]]:
    """Free-form rows that can share one Arrow table, and (index, why) for each row that
    cannot: a field whose value is of another kind than most rows' (a word among numbers, an
    object where text belongs). Such rows are rejected with the reason, never coerced."""
    kinds: dict[str, Counter] = {}
    for row in rows:
        for name, value in row.items():
            if value is not None:
                kinds.setdefault(name, Counter())[_kind(value)] += 1
    usual = {name: counts.most_common(1)[0][0] for name, counts in kinds.items()}
    bad: dict[int, str] = {}
    for index, row in enumerate(rows):
        for name, value in row.items():
            if value is not None and _kind(value) != usual[name]:
                bad[index] = (
                    f"field {name!r} holds {_kind(value)} {str(value)[:40]!r} where the other rows hold "
                    f"{usual[name]}"
                )
                break
    for name in kinds:  # nested values can still clash (a list of numbers and one of words)
        values = [(i, row.get(name)) for i, row in enumerate(rows) if i not in bad]
        try:
            pa.array([v for _, v in values])
            continue
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
            pass
        first = next(v for _, v in values if v is not None)
        column_type = pa.array([first]).type
        for index, value in values:
            try:
                pa.array([value], type=column_type)
            except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError) as exc:
                bad[index] = f"field {name!r} cannot be stored beside the other rows' ({exc})"
    return [row for i, row in enumerate(rows) if i not in bad], sorted(bad.items())


def rows_to_table(rows: list[dict[str, Any]]) -> pa.Table:
    """Free-form rows as a table with every field of every row. (pa.Table.from_pylist takes
    its columns from the first row alone and silently drops fields that only later rows have.)"""
    names: dict[str, None] = {}
    for row in rows:
        names.update(dict.fromkeys(row))
    return pa.table({name: [row.get(name) for row in rows] for name in names})


def write_dataset(table: pa.Table, dataset_dir: Path, splits: Iterable[str] = ()) -> dict[str, int]:
    """Writes the final rows as one Parquet file per split under DATASET_DIR/data/.

    The layout `data/{split}-00000-of-00001.parquet` is what the Hugging Face Hub
    and `datasets.load_dataset("parquet", data_files=...)` expect. Rows with no
    split go to `train`; each of `splits` is written even when it has no rows (a
    build that kept nothing still leaves a dataset that inspect, export and card
    read). The directory is replaced whole, never half-written.
    """
    import pyarrow.compute as pc

    dataset_dir = Path(dataset_dir)
    tmp = dataset_dir.with_name(f".{dataset_dir.name}.tmp")
    old = dataset_dir.with_name(f".{dataset_dir.name}.old")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "data").mkdir(parents=True)
    column = pc.fill_null(table.column("split"), "") if "split" in table.column_names else None
    names = sorted(set(column.to_pylist()) | set(splits)) if column is not None else [""]
    counts: dict[str, int] = {}
    for name in names:
        part = table if column is None else table.filter(pc.equal(column, name))
        split = name or "train"
        atomic_write_table(tmp / "data" / f"{split}-00000-of-00001.parquet", part)
        counts[split] = part.num_rows
    shutil.rmtree(old, ignore_errors=True)
    if dataset_dir.exists():
        os.replace(dataset_dir, old)
    os.replace(tmp, dataset_dir)
    shutil.rmtree(old, ignore_errors=True)
    return counts


def link_media(dataset_dir: Path, rows: list[dict[str, Any]]) -> None:
    """dataset/PATH links to the source video each row's meta_json names, so rows' paths resolve."""
    sources = {}
    for row in rows:
        try:
            source = json.loads(row.get("meta_json") or "{}").get("source_video")
        except (json.JSONDecodeError, AttributeError):
            source = None
        if source and row.get("path"):
            sources[row["path"]] = source
    for relative, source in sorted(sources.items()):
        target = dataset_dir / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists():
            os.symlink(Path(source).resolve(), target)
