"""Reading datasets from disk and mapping known row shapes onto the record.

Formats come from the file (JSON, JSONL, Parquet, a saved Hugging Face dataset,
a vdata dataset or run directory); the row shape (vdata or Video-R1) comes from
the keys. A line that cannot be parsed is reported, never skipped in silence.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from vdata.record import SCHEMA, Provenance, record_id

VIDEO_R1_RECIPE = "video-r1-import@1"
_RECORD_KEYS = set(SCHEMA.names)
_VIDEO_R1_KEYS = {"problem", "problem_type", "solution", "path", "data_type"}


class DatasetReadError(Exception):
    """A dataset path that cannot be read at all; the message says what to do."""


@dataclass
class LoadedRows:
    """Rows of one dataset, each tagged with its split ('' when the files name none)."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    splits: list[str] = field(default_factory=list)
    unreadable: list[tuple[str, str]] = field(default_factory=list)  # (where, why)
    shape: str = ""

    def __len__(self) -> int:
        return len(self.rows)


def load_rows(path: str | Path) -> LoadedRows:
    """Reads every row under `path` and maps it onto the canonical record."""
    path = Path(path)
    if not path.exists():
        raise DatasetReadError(f"{path}: no such file or directory")
    loaded = LoadedRows()
    for split, raw in _iter_raw(path, loaded):
        loaded.rows.append(raw)
        loaded.splits.append(split)
    loaded.shape = detect_shape(loaded.rows)
    if loaded.shape == "video-r1":
        loaded.rows = [from_video_r1(r) if isinstance(r, Mapping) else r for r in loaded.rows]
    return loaded


def load_raw_rows(path: str | Path) -> list[dict[str, Any]]:
    """Every row under `path` as it is (any keys); unparseable lines are an error here."""
    path = Path(path)
    if not path.exists():
        raise DatasetReadError(f"{path}: no such file or directory")
    loaded = LoadedRows()
    rows = [row for _, row in _iter_raw(path, loaded)]
    if loaded.unreadable:
        where, why = loaded.unreadable[0]
        raise DatasetReadError(
            f"{where}: {why}; fix or remove the line ({len(loaded.unreadable)} such lines)"
        )
    bad = next((i for i, r in enumerate(rows) if not isinstance(r, Mapping)), None)
    if bad is not None:
        raise DatasetReadError(f"{path}: row {bad} is not an object of fields")
    return [dict(r) for r in rows]


def detect_shape(rows: list[Any]) -> str:
    """'vdata' or 'video-r1' from the keys of the rows; raises when neither fits."""
    keys: set[str] = set()
    for row in rows[:200]:
        if isinstance(row, Mapping):
            keys |= set(row)
    if not keys:
        return "vdata"
    if {"recipe", "id"} <= keys and len(keys & _RECORD_KEYS) >= 8:
        return "vdata"
    if len(keys & _VIDEO_R1_KEYS) >= 3 and "recipe" not in keys:
        return "video-r1"
    raise DatasetReadError(
        f"rows with keys {sorted(keys)[:12]} are neither vdata records nor Video-R1 rows "
        "(problem, problem_type, options, solution, path, data_type)"
    )


def from_video_r1(row: Mapping[str, Any]) -> dict[str, Any]:
    """A Video-R1 row (METHODS.md) as a record dict; values are mapped, never repaired."""
    options = row.get("options")
    extras = {k: v for k, v in row.items() if k not in _VIDEO_R1_KEYS | {"options", "process", "data_source"}}
    path = row.get("path")
    if isinstance(path, str) and path.startswith("./"):
        path = path[2:]  # Video-R1 writes "./videos/a.mp4": the same relative path as "videos/a.mp4"
    problem = row.get("problem")
    return {
        "id": record_id(
            VIDEO_R1_RECIPE,
            str(path),
            str(problem),
            options if isinstance(options, list) else [],
        ),
        "recipe": VIDEO_R1_RECIPE,
        "data_type": row.get("data_type"),
        "path": path,
        "video": None,
        "segment": None,
        "problem": problem,
        "problem_type": row.get("problem_type"),
        "options": [] if options is None else options,
        "solution": row.get("solution"),
        "category": "",
        "process": row.get("process"),
        "evidence": [],
        "stream": None,
        "split": "",
        "data_source": row.get("data_source") or "",
        "difficulty": None,
        "provenance": Provenance().model_dump(),
        "meta_json": json.dumps(extras, ensure_ascii=False, default=str),
    }


def row_ref(row: Any, index: int) -> str:
    """A short name for a row in reports: the source's own problem_id, our id, or its position."""
    if not isinstance(row, Mapping):
        return f"#{index}"
    if row.get("problem_id") not in (None, ""):
        return str(row["problem_id"])
    meta = row.get("meta_json")
    if isinstance(meta, str) and '"problem_id"' in meta:
        try:
            return str(json.loads(meta)["problem_id"])
        except (ValueError, KeyError, TypeError):
            pass
    return str(row["id"]) if row.get("id") not in (None, "") else f"#{index}"


# ---------------------------------------------------------------- raw readers


def _iter_raw(path: Path, loaded: LoadedRows) -> Iterator[tuple[str, Any]]:
    if path.is_dir():
        yield from _iter_dir(path, loaded)
        return
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        rows = _read_parquet(path)
    elif suffix == ".jsonl":
        rows = _read_jsonl(path, loaded)
    elif suffix == ".json":
        rows = _read_json(path)
    else:
        raise DatasetReadError(f"{path}: unknown file type; give a .json, .jsonl or .parquet file")
    yield from (("", row) for row in rows)


def _iter_dir(path: Path, loaded: LoadedRows) -> Iterator[tuple[str, Any]]:
    if (path / "dataset" / "data").is_dir():  # a vdata run directory
        yield from _iter_dir(path / "dataset", loaded)
        return
    if (path / "dataset_dict.json").exists() or (path / "state.json").exists():
        yield from _iter_saved_hf(path)
        return
    files = sorted(
        p for p in path.rglob("*") if p.suffix.lower() in (".parquet", ".jsonl", ".json") and p.is_file()
    )
    files = [p for p in files if not _is_metadata(p)]
    if not files:
        raise DatasetReadError(
            f"{path}: no .parquet, .jsonl or .json files and no saved Hugging Face dataset inside"
        )
    for file in files:
        split = split_from_filename(file)
        for _, row in _iter_raw(file, loaded):
            yield split, row


def _is_metadata(path: Path) -> bool:
    return path.name in {"dataset_info.json", "state.json", "dataset_dict.json", "run.json", "manifest.json"}


def split_from_filename(path: Path) -> str:
    """'sft' from data/sft-00000-of-00001.parquet or sft.jsonl; '' when unnamed."""
    stem = path.name.split(".")[0]
    head = stem.split("-")[0]
    return head if head in ("sft", "rl", "eval", "train", "test", "validation") else ""


def _iter_saved_hf(path: Path) -> Iterator[tuple[str, Any]]:
    import datasets

    try:
        saved = datasets.load_from_disk(str(path))
    except Exception as exc:  # datasets raises many types for a broken directory
        raise DatasetReadError(f"{path}: not a readable saved Hugging Face dataset ({exc})") from exc
    parts = saved.items() if isinstance(saved, datasets.DatasetDict) else [("", saved)]
    for split, dataset in parts:
        for row in dataset:
            yield split, row


def _read_parquet(path: Path) -> list[Any]:
    try:
        return pq.read_table(path).to_pylist()
    except Exception as exc:  # pyarrow raises several types for corrupt files
        raise DatasetReadError(f"{path}: not a readable Parquet file ({exc})") from exc


def _read_jsonl(path: Path, loaded: LoadedRows) -> Iterator[Any]:
    with path.open(encoding="utf-8", errors="replace") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                yield json.loads(line)
            except json.JSONDecodeError as exc:
                loaded.unreadable.append((f"{path}:{number}", f"invalid JSON: {exc.msg}"))


def _read_json(path: Path) -> list[Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DatasetReadError(
            f"{path}: not valid JSON ({exc}); if it holds one row per line, name it .jsonl"
        ) from exc
    if isinstance(data, dict):
        lists = [v for v in data.values() if isinstance(v, list)]
        if len(lists) == 1:
            return lists[0]
        return [data]
    if isinstance(data, list):
        return data
    raise DatasetReadError(f"{path}: expected a JSON list of rows, got {type(data).__name__}")
