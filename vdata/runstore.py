"""On-disk layout of a run: run.json, stage shards with manifests, rejects.

Every file is written atomically (temp file in the same directory, fsync,
rename), so a run killed at any instant leaves either the old file or the new
one, never half of one. A shard exists only once it is complete.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterable
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


class RunStore:
    """Paths and atomic writes under one run directory."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.stages_dir = self.root / "stages"
        self.rejects_dir = self.root / "rejects"
        self.run_json = self.root / "run.json"

    def read_run(self) -> dict[str, Any] | None:
        return read_json(self.run_json)

    def write_run(self, run: dict[str, Any]) -> None:
        atomic_write_json(self.run_json, run)

    def remove_stale_temp_files(self) -> int:
        """Deletes temp files that a killed run left half-written; returns how many."""
        stale = [p for p in self.root.rglob(".*.tmp-*") if p.is_file()]
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


def rows_to_table(rows: list[dict[str, Any]]) -> pa.Table:
    """Free-form rows as a table with every field of every row. (pa.Table.from_pylist takes
    its columns from the first row alone and silently drops fields that only later rows have.)"""
    names: dict[str, None] = {}
    for row in rows:
        names.update(dict.fromkeys(row))
    return pa.table({name: [row.get(name) for row in rows] for name in names})


def write_dataset(table: pa.Table, dataset_dir: Path) -> dict[str, int]:
    """Writes the final rows as one Parquet file per split under DATASET_DIR/data/.

    The layout `data/{split}-00000-of-00001.parquet` is what the Hugging Face Hub
    and `datasets.load_dataset("parquet", data_files=...)` expect. Rows with no
    split go to `train`. The directory is replaced whole, never half-written.
    """
    import pyarrow.compute as pc

    dataset_dir = Path(dataset_dir)
    tmp = dataset_dir.with_name(f".{dataset_dir.name}.tmp")
    old = dataset_dir.with_name(f".{dataset_dir.name}.old")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "data").mkdir(parents=True)
    splits = pc.fill_null(table.column("split"), "") if "split" in table.column_names else None
    names = sorted(set(splits.to_pylist())) if splits is not None else [""]
    counts: dict[str, int] = {}
    for name in names:
        part = table if splits is None else table.filter(pc.equal(splits, name))
        split = name or "train"
        atomic_write_table(tmp / "data" / f"{split}-00000-of-00001.parquet", part)
        counts[split] = part.num_rows
    shutil.rmtree(old, ignore_errors=True)
    if dataset_dir.exists():
        os.replace(dataset_dir, old)
    os.replace(tmp, dataset_dir)
    shutil.rmtree(old, ignore_errors=True)
    return counts
