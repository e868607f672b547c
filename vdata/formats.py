"""Reading datasets from disk and mapping known row shapes onto the record.

The file type comes from the file (JSON, JSONL, CSV, Parquet, a saved Hugging
Face dataset, a vdata dataset or run directory); the row shape comes from the
keys (METHODS.md): vdata records, Video-R1 rows, EasyR1/Long-RL rows (options
inline, `answer`, `videos`), TW-GRPO rows (options inline as "A text", letter
sets), or plain question/answer rows (VideoHallu-style CSV or JSONL). Values are
mapped, never repaired: a null question stays null for `validate` to report.
A line that cannot be parsed is reported, never skipped in silence.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from vdata.record import (
    PROBLEM_TYPES,
    SCHEMA,
    Provenance,
    answer_letters,
    answer_tag,
    record_id,
    solution_answer,
)
from vdata.runstore import RunStore

VIDEO_R1_RECIPE = "video-r1-import@1"
SHAPES = ("vdata", "video-r1", "easyr1", "tw-grpo", "qa")
FILE_TYPES = ("json", "jsonl", "csv", "parquet")
_RECORD_KEYS = set(SCHEMA.names)
_VIDEO_R1_KEYS = {"problem", "problem_type", "solution", "path", "data_type"}
# plain question/answer rows: the first of these keys that a row has names the field
_QA_KEYS = {
    "problem": ("question", "problem", "query"),
    "answer": ("answer", "solution", "ground_truth", "gt_answer"),
    "path": ("video", "video_path", "video_name", "video_id", "path", "videos"),
    "options": ("options", "choices", "candidates"),
    "problem_type": ("problem_type", "question_type", "type"),
    "category": ("category", "task", "task_type"),
    "split": ("split",),
    "data_source": ("data_source", "source", "dataset"),
}


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


def load_rows(path: str | Path, shape: str = "auto", file_type: str = "auto") -> LoadedRows:
    """Reads every row under `path` and maps it onto the canonical record.

    `shape` is one of SHAPES or "auto" (from the keys); `file_type` one of
    FILE_TYPES or "auto" (from the file name).
    """
    path = Path(path)
    if not path.exists():
        raise DatasetReadError(f"{path}: no such file or directory")
    if shape != "auto" and shape not in SHAPES:
        raise DatasetReadError(f"unknown row shape {shape!r}; shapes: auto, {', '.join(SHAPES)}")
    loaded = LoadedRows()
    for split, raw in _iter_raw(path, loaded, file_type):
        loaded.rows.append(raw)
        loaded.splits.append(split)
    loaded.shape = detect_shape(loaded.rows) if shape == "auto" else shape
    convert = MAPPERS.get(loaded.shape)
    if convert is not None:
        loaded.rows = [convert(r) if isinstance(r, Mapping) else r for r in loaded.rows]
    return loaded


def iter_raw_rows(path: str | Path, sink: LoadedRows, file_type: str = "auto") -> Iterator[tuple[str, Any]]:
    """(split, row as stored) for every row under `path`, streamed; unparseable lines go to
    `sink.unreadable`. For readers that map and check rows in parts (vdata audit)."""
    path = Path(path)
    if not path.exists():
        raise DatasetReadError(f"{path}: no such file or directory")
    return _iter_raw(path, sink, file_type)


def load_raw_rows(path: str | Path) -> list[dict[str, Any]]:
    """Every row under `path` as it is (any keys); unparseable lines are an error here."""
    path = Path(path)
    if not path.exists():
        raise DatasetReadError(f"{path}: no such file or directory")
    loaded = LoadedRows()
    rows = [row for _, row in _iter_raw(path, loaded, "auto")]
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
    """One of SHAPES from the keys of the rows; raises when none fits."""
    keys: set[str] = set()
    for row in rows[:200]:
        if isinstance(row, Mapping):
            keys |= set(row)
    if not keys:
        return "vdata"
    if {"recipe", "id"} <= keys and len(keys & _RECORD_KEYS) >= 8:
        return "vdata"
    if "recipe" not in keys:
        if {"problem", "answer"} <= keys and keys & {"videos", "images", "video"}:
            return "easyr1"
        if len(keys & _VIDEO_R1_KEYS) >= 3 and "options" in keys:
            return "video-r1"
        if {"problem", "solution"} <= keys and "path" in keys:
            return "tw-grpo"  # options inline in the question: "A text" lines
        if len(keys & _VIDEO_R1_KEYS) >= 3:
            return "video-r1"
        lower = {k.lower() for k in keys}
        if any(a in lower for a in _QA_KEYS["problem"]) and any(a in lower for a in _QA_KEYS["answer"]):
            return "qa"
    raise DatasetReadError(
        f"rows with keys {sorted(keys)[:12]} have no shape vdata knows: vdata records, Video-R1 rows "
        "(problem, options, solution, path), EasyR1 rows (problem, answer, videos), TW-GRPO rows, "
        "or question/answer rows (question, answer, video); give --format if the keys mislead"
    )


def from_video_r1(row: Mapping[str, Any]) -> dict[str, Any]:
    """A Video-R1 row (METHODS.md) as a record dict; values are mapped, never repaired."""
    used = _VIDEO_R1_KEYS | {"options", "process", "data_source"}
    return _imported(
        VIDEO_R1_RECIPE,
        row.get("path"),
        row.get("problem"),
        row.get("options"),
        data_type=row.get("data_type"),
        problem_type=row.get("problem_type"),
        solution=row.get("solution"),
        process=row.get("process"),
        data_source=row.get("data_source") or "",
        meta_json=_extras(row, used),
    )


_INLINE_OPTION = re.compile(r"^\(?([A-Z])(?:[.):]\s*|\s+)(\S.*)$")
_OPTIONS_HEADER = re.compile(r"^\s*(options|choices)\s*:?\s*$", re.IGNORECASE)
_LETTER_SET = re.compile(r"^\s*\(?([A-Z])\)?(\s*,\s*\(?[A-Z]\)?)*\s*$")


def split_inline_options(text: str) -> tuple[str, list[str]]:
    """'question\\nA. x\\nB. y' as ('question', ['A. x', 'B. y']).

    Only a trailing block of lines lettered A, B, C... in order counts as options
    (a looser pattern catches lines of reasons: METHODS.md, LongVideo-Reason).
    """
    lines = text.rstrip().split("\n")
    options: list[str] = []
    start = len(lines)
    for index in range(len(lines) - 1, -1, -1):
        match = _INLINE_OPTION.match(lines[index].strip())
        if not match:
            break
        options.insert(0, f"{match.group(1)}. {match.group(2).strip()}")
        start = index
    letters = [o[0] for o in options]
    if "A" not in letters:
        return text, []
    first = letters.index("A")
    options, start = options[first:], start + first
    if len(options) < 2 or [o[0] for o in options] != [chr(65 + i) for i in range(len(options))]:
        return text, []
    question = lines[:start]
    if question and _OPTIONS_HEADER.match(question[-1]):
        question = question[:-1]
    return "\n".join(question).strip(), options


def _solution(answer: Any) -> Any:
    """An answer as '<answer>..</answer>'; anything but a string or number stays as it is."""
    if isinstance(answer, bool) or not isinstance(answer, (str, int, float)):
        return answer
    text = str(answer)
    return text if solution_answer(text) is not None else answer_tag(text.strip())


def _choice_type(solution: Any, options: list[str]) -> str:
    """'multi-answer' for a letter set, 'multiple choice' otherwise, when there are options."""
    return "multi-answer" if len(answer_letters(solution)) > 1 else "multiple choice"


def _imported(recipe: str, path: Any, problem: Any, options: Any, **fields: Any) -> dict[str, Any]:
    """A record dict for a row read from another format; `fields` fill the rest."""
    if isinstance(path, str) and path.startswith("./"):
        path = path[2:]  # "./videos/a.mp4" is the same relative path as "videos/a.mp4"
    record = {
        "id": record_id(recipe, str(path), str(problem), options if isinstance(options, list) else []),
        "recipe": recipe,
        "data_type": "video",
        "path": path,
        "video": None,
        "segment": None,
        "problem": problem,
        "problem_type": None,
        "options": [] if options is None else options,
        "solution": None,
        "category": "",
        "process": None,
        "evidence": [],
        "stream": None,
        "split": "",
        "data_source": "",
        "difficulty": None,
        "provenance": Provenance().model_dump(),
        "meta_json": "{}",
    }
    record.update(fields)
    return record


def _extras(row: Mapping[str, Any], used: set[str]) -> str:
    return json.dumps({k: v for k, v in row.items() if k not in used}, ensure_ascii=False, default=str)


def from_easyr1(row: Mapping[str, Any]) -> dict[str, Any]:
    """An EasyR1 / Long-RL row: options inline in `problem`, `answer`, `videos` a path or a list.

    LongVideo-Reason's release puts the category (temporal, goal, spatial, plot) in
    `problem_type` and plain-text `reasoning` beside the answer: they map to category
    and to process (in <think> tags).
    """
    problem, options = row.get("problem"), []
    if isinstance(problem, str):
        problem, options = split_inline_options(problem)
    videos = row.get("videos", row.get("video"))
    path = videos[0] if isinstance(videos, list) and len(videos) == 1 else videos
    solution = _solution(row.get("answer"))
    problem_type, category = row.get("problem_type"), row.get("category") or ""
    if problem_type not in PROBLEM_TYPES and options:
        problem_type, category = _choice_type(solution, options), category or problem_type or ""
    reasoning = row.get("reasoning")
    process = (
        f"<think>{reasoning.strip()}</think>" if isinstance(reasoning, str) and reasoning.strip() else None
    )
    used = {
        "problem",
        "answer",
        "videos",
        "video",
        "problem_type",
        "category",
        "data_type",
        "data_source",
        "reasoning",
    }
    return _imported(
        "easyr1-import@1",
        path,
        problem,
        options,
        problem_type=problem_type,
        solution=solution,
        category=category,
        process=process,
        data_type=row.get("data_type", "video"),
        data_source=row.get("data_source") or "",
        meta_json=_extras(row, used),
    )


def from_tw_grpo(row: Mapping[str, Any]) -> dict[str, Any]:
    """A TW-GRPO row: options inline as "A text", solution a letter set "<answer>A,C</answer>"."""
    problem, options = row.get("problem"), []
    if isinstance(problem, str):
        problem, options = split_inline_options(problem)
    return _imported(
        "tw-grpo-import@1",
        row.get("path"),
        problem,
        options,
        problem_type=row.get("problem_type"),
        solution=row.get("solution"),
        data_type=row.get("data_type", "video"),
        data_source=row.get("data_source") or "",
        process=row.get("process"),
        meta_json=_extras(
            row, {"problem", "solution", "path", "problem_type", "data_type", "data_source", "process"}
        ),
    )


def from_qa(row: Mapping[str, Any]) -> dict[str, Any]:
    """A plain question/answer row (VideoHallu-style CSV or JSONL), keys matched case-insensitively."""
    by_lower = {k.lower(): k for k in row}
    used: set[str] = set()

    def pick(field: str) -> Any:
        for alias in _QA_KEYS[field]:
            if alias in by_lower:
                used.add(by_lower[alias])
                return row[by_lower[alias]]
        return None

    problem, answer, path = pick("problem"), pick("answer"), pick("path")
    options = pick("options")
    if isinstance(options, str) and options.strip().startswith("["):
        with contextlib.suppress(ValueError):  # left as text, validate reports it
            options = json.loads(options)
    if isinstance(options, list) and options and all(isinstance(o, str) for o in options):
        if not all(_INLINE_OPTION.match(o.strip()) for o in options):
            options = [f"{chr(65 + i)}. {o.strip()}" for i, o in enumerate(options)]
    elif options is None and isinstance(problem, str):
        problem, options = split_inline_options(problem)
    if isinstance(path, list) and len(path) == 1:
        path = path[0]
    solution = _solution(answer)
    problem_type = pick("problem_type")
    if not problem_type and isinstance(solution, str):
        problem_type = _infer_type(solution, options)
    return _imported(
        "qa-import@1",
        path,
        problem,
        options,
        problem_type=problem_type,
        solution=solution,
        category=str(pick("category") or ""),
        split=str(pick("split") or ""),
        data_source=str(pick("data_source") or ""),
        meta_json=_extras(row, used),
    )


def _infer_type(solution: str, options: Any) -> str:
    tagged = solution_answer(solution)
    answer = tagged if tagged is not None else solution
    if options and _LETTER_SET.match(answer):
        return _choice_type(solution, options)
    if answer.lower() in ("yes", "no"):
        return "yes/no"
    try:
        float(answer)
    except ValueError:
        return "free-form"
    return "numerical"


MAPPERS = {"video-r1": from_video_r1, "easyr1": from_easyr1, "tw-grpo": from_tw_grpo, "qa": from_qa}


# ---------------------------------------------------------------- raw readers


def _iter_raw(path: Path, loaded: LoadedRows, file_type: str) -> Iterator[tuple[str, Any]]:
    if path.is_dir():
        yield from _iter_dir(path, loaded, file_type)
        return
    kind = file_type if file_type != "auto" else path.suffix.lower().lstrip(".")
    if kind == "parquet":
        rows = _read_parquet(path)
    elif kind == "jsonl":
        rows = _read_jsonl(path, loaded)
    elif kind == "json":
        rows = _read_json(path)
    elif kind == "csv":
        rows = _read_csv(path)
    else:
        raise DatasetReadError(
            f"{path}: unknown file type; give a .json, .jsonl, .csv or .parquet file, "
            "or name the type with --format"
        )
    yield from (("", row) for row in rows)


def _iter_dir(path: Path, loaded: LoadedRows, file_type: str) -> Iterator[tuple[str, Any]]:
    store = RunStore(path)
    if store.is_run():  # a vdata run directory: its rows are where its recipe put them, if anywhere
        rows = store.rows_path()
        if rows is None:
            recipe = (store.read_run() or {}).get("recipe", "a recipe")
            made = ", ".join(store.other_outputs()) or "no tables yet"
            raise DatasetReadError(
                f"{path} is a run of {recipe}, which makes no question rows (it holds {made}); "
                f"`vdata inspect {path}` shows its stages"
            )
        yield from _iter_raw(rows, loaded, file_type)
        return
    if (path / "dataset_dict.json").exists() or (path / "state.json").exists():
        yield from _iter_saved_hf(path)
        return
    suffixes = (f".{file_type}",) if file_type != "auto" else tuple(f".{t}" for t in FILE_TYPES)
    files = sorted(p for p in path.rglob("*") if p.suffix.lower() in suffixes and p.is_file())
    files = [p for p in files if not _is_metadata(p)]
    if not files:
        raise DatasetReadError(
            f"{path}: no {', '.join(suffixes)} files and no saved Hugging Face dataset inside"
        )
    for file in files:
        split = split_from_filename(file)
        for _, row in _iter_raw(file, loaded, file_type):
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


def _read_csv(path: Path) -> list[Any]:
    """CSV rows with every value a string; an empty cell is null (VideoHallu's null questions)."""
    import polars as pl

    try:
        frame = pl.read_csv(path, infer_schema=False, encoding="utf8-lossy")
    except Exception as exc:  # polars raises several types for malformed CSV
        raise DatasetReadError(f"{path}: not a readable CSV file ({exc})") from exc
    return frame.to_dicts()


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


def media_root_of(path: str | Path) -> Path:
    """Where the relative video paths of a dataset resolve: a dataset directory, a run's
    dataset/, or the folder of a data file."""
    path = Path(path)
    return RunStore(path).media_root() if path.is_dir() else path.parent
