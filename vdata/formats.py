"""Reading datasets from disk and mapping known row shapes onto the record.

The file type comes from the file (JSON, JSONL, CSV, Parquet, a saved Hugging
Face dataset, a vdata dataset or run directory); the row shape comes from the
keys (METHODS.md), as the releases ship them (../shared/real-data holds real files):
vdata records; Video-R1 rows (`path` or `video`, the eval copies of MVBench, MMVU
and Video-MME with their extras kept in meta_json); EasyR1/Long-RL rows (options
inline, `answer`, `videos`); NExT-GQA rows (`question`, `options` "(A) text",
`answer` "(C)", grounding spans in `glue`) and TW-GRPO's copies of them (`problem`,
`solution`, `is_negated`); temporal grounding annotations (Charades / ActivityNet:
video -> duration, timestamps, sentences), one row per sentence; plain
question/answer rows (VideoHallu-style CSV, image rows with `image_path`). A layout
the record cannot hold (object-tracking boxes) is refused with a message that says so.
Values are mapped, never repaired: a null question stays null for `validate` to
report. A line that cannot be parsed is reported, never skipped in silence.
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
    solution_of,
    source_id,
    source_ref,
)
from vdata.runstore import RunStore

VIDEO_R1_RECIPE = "video-r1-import@1"
SHAPES = ("vdata", "video-r1", "easyr1", "tw-grpo", "nextgqa", "grounding", "qa", "vst")
FILE_TYPES = ("json", "jsonl", "csv", "parquet")
_RECORD_KEYS = set(SCHEMA.names)
_VIDEO_R1_KEYS = {"problem", "problem_type", "solution", "path", "data_type"}
# plain question/answer rows: the first of these keys that a row has names the field
_QA_KEYS = {
    "problem": ("question", "problem", "query"),
    "answer": ("answer", "solution", "ground_truth", "gt_answer", "gt"),
    "path": ("video", "video_path", "video_name", "video_id", "path", "videos", "image_path", "image"),
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
    # how each row is named in reports: the release's own id and its position in the file
    refs: list[str] = field(default_factory=list)
    source_ids: list[str | None] = field(default_factory=list)  # the release's own id, as text
    read_as: str = ""  # "read as tw-grpo: keys id, video, question, ..."

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
    raw_rows, raw_splits, positions = [], [], []
    for split, raw, where in _iter_raw(path, loaded, file_type):
        raw_rows.append(raw)
        raw_splits.append(split)
        positions.append(where)
    loaded.shape = detect_shape(raw_rows) if shape == "auto" else shape
    loaded.read_as = read_as(loaded.shape, raw_rows)
    mapped = map_rows(loaded.shape, raw_rows, positions, raw_splits)
    loaded.rows, loaded.refs, loaded.source_ids, loaded.splits = mapped
    return loaded


def map_rows(
    shape: str, rows: list[Any], positions: list[str], splits: list[str]
) -> tuple[list[Any], list[str], list[str | None], list[str]]:
    """Rows of `shape` as records, with each record's ref, source id and split. A grounding
    annotation of several sentences gives one record per sentence."""
    convert = MAPPERS.get(shape)
    records: list[Any] = []
    refs: list[str] = []
    ids: list[str | None] = []
    out_splits: list[str] = []
    for row, position, split in zip(rows, positions, splits, strict=True):
        own = source_id(row)
        readable = isinstance(row, Mapping) or (shape == "vst" and _vst_streams(row) is not None)
        mapped = convert(row) if convert is not None and readable else row
        if isinstance(mapped, list):
            name = f"video {row.get('key')}" if isinstance(row, Mapping) else position
            for j, record in enumerate(mapped):
                records.append(record)
                refs.append(f"{name} sentence {j} ({position})")
                ids.append(f"{row.get('key')}#{j}" if isinstance(row, Mapping) else None)
                out_splits.append(split)
            continue
        records.append(mapped)
        refs.append(source_ref(row, position))
        ids.append(str(own[1]) if own else None)
        out_splits.append(split)
    return records, refs, ids, out_splits


def read_as(shape: str, rows: list[Any]) -> str:
    """'read as tw-grpo: keys id, video, question, ...': the shape and the keys it was read from."""
    if shape == "vst":
        return "read as vst: conversations of a video and its text_stream and qa_stream"
    keys: dict[str, None] = {}
    for row in rows[:200]:
        if isinstance(row, Mapping):
            keys.update(dict.fromkeys(row))
    shown = ", ".join(list(keys)[:14]) + (", ..." if len(keys) > 14 else "")
    return f"read as {shape}: keys {shown}" if keys else f"read as {shape}: no rows"


def iter_raw_rows(
    path: str | Path, sink: LoadedRows, file_type: str = "auto"
) -> Iterator[tuple[str, Any, str]]:
    """(split, row as stored, where) for every row under `path`, streamed; unparseable lines go to
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
    rows = [row for _, row, _ in _iter_raw(path, loaded, "auto")]
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
    if rows and all(_vst_streams(row) is not None for row in rows[:200]):
        return "vst"
    keys: set[str] = set()
    for row in rows[:200]:
        if isinstance(row, Mapping):
            keys |= set(row)
    if not keys:
        return "vdata"
    if {"recipe", "id"} <= keys and len(keys & _RECORD_KEYS) >= 8:
        return "vdata"
    if "recipe" not in keys:
        if {"object", "gt"} <= keys:
            raise DatasetReadError(
                f"rows with keys {sorted(keys)[:12]} are object-tracking annotations (a box per frame "
                "of a frame folder): the vdata record holds questions, answers and time spans, not "
                "boxes, so vdata cannot represent them; turn them into questions first"
            )
        if {"timestamps", "sentences"} <= keys:
            return "grounding"
        if {"question", "options", "answer"} <= keys and keys & {"glue", "is_negated"}:
            return "tw-grpo" if keys & {"is_negated", "problem", "solution"} else "nextgqa"
        if {"problem", "problem_type", "solution"} <= keys or (
            len(keys & _VIDEO_R1_KEYS) >= 3 and "options" in keys
        ):
            return "video-r1"
        if {"problem", "answer"} <= keys and keys & {"videos", "images", "video"}:
            return "easyr1"
        if len(keys & _VIDEO_R1_KEYS) >= 3 or ({"problem", "solution"} <= keys and keys & {"path", "video"}):
            return "video-r1"
        lower = {k.lower() for k in keys}
        if any(a in lower for a in _QA_KEYS["problem"]) and any(a in lower for a in _QA_KEYS["answer"]):
            return "qa"
    raise DatasetReadError(
        f"rows with keys {sorted(keys)[:12]} have no shape vdata knows: vdata records, Video-R1 rows "
        "(problem, options, solution, path or video), EasyR1 rows (problem, answer, videos), NExT-GQA "
        "or TW-GRPO rows (question, options, answer, glue), grounding annotations (video -> "
        "timestamps, sentences), or question/answer rows (question, answer, video or image_path); "
        "give --format if the keys mislead"
    )


def from_video_r1(row: Mapping[str, Any]) -> dict[str, Any]:
    """A Video-R1 row (METHODS.md) as a record dict; values are mapped, never repaired. The eval
    copies name the file `video` instead of `path`; MVBench's `start`/`end` are the segment the
    question is about; options written inline in `problem` are split off."""
    used = _VIDEO_R1_KEYS | {"options", "process", "data_source"}
    path = row.get("path")
    if "path" not in row:
        path = row.get("video")
        used.add("video")
    problem, options = row.get("problem"), row.get("options")
    if options is None and isinstance(problem, str):
        problem, options = split_inline_options(problem)
    segment = None
    start, end = row.get("start"), row.get("end")
    if _number(start) and _number(end):
        segment, used = {"start_s": float(start), "end_s": float(end)}, used | {"start", "end"}
    return _imported(
        VIDEO_R1_RECIPE,
        path,
        problem,
        options,
        data_type=row.get("data_type"),
        problem_type=row.get("problem_type"),
        solution=row.get("solution"),
        process=row.get("process") or None,
        data_source=row.get("data_source") or "",
        segment=segment,
        meta_json=_extras(row, used),
    )


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def from_nextgqa(row: Mapping[str, Any]) -> dict[str, Any]:
    """A NExT-GQA row (`question`, `options` "(A) text", `answer` "(C)" or "(B),(C)", grounding
    spans `glue` [[start, end]], `duration`, `type`), or TW-GRPO's copy of one, which adds the
    question with inline options as `problem`, `solution` "<answer>B,C</answer>" and
    `is_negated`: the text the trainer reads (`problem`) and its `solution` win when present."""
    options = row.get("options")
    if isinstance(options, list) and all(isinstance(o, str) for o in options):
        options = [normal_option(o, i) for i, o in enumerate(options)]
    question = row.get("question")
    if isinstance(row.get("problem"), str):
        question, _ = split_inline_options(row["problem"])
    answer = row.get("solution") if row.get("solution") is not None else row.get("answer")
    letters = answer_letters_in(answer, options if isinstance(options, list) else [])
    solution = solution_of(letters) if letters else _solution(answer)
    glue = row.get("glue")
    evidence = glue
    if isinstance(glue, list):
        evidence = [
            {"start_s": span[0], "end_s": span[1], "text": ""}
            if isinstance(span, (list, tuple)) and len(span) == 2
            else {"start_s": None, "end_s": None, "text": str(span)}
            for span in glue
        ]
    duration = row.get("duration")
    used = {"video", "question", "options", "answer", "glue", "duration", "type", "problem", "solution"}
    return _imported(
        "nextgqa-import@1",
        row.get("video"),
        question,
        options,
        # an inverted TW-GRPO row is a multi-answer question even when one option is correct
        problem_type=(
            ("multi-answer" if len(letters) > 1 or row.get("is_negated") is True else "multiple choice")
            if options
            else None
        ),
        solution=solution,
        category=str(row.get("type") or ""),
        evidence=evidence,
        video=_declared_video(duration),
        data_source=row.get("data_source") or "NExT-GQA",
        meta_json=_extras(row, used),
    )


def from_grounding(row: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A temporal grounding annotation (Charades-STA / ActivityNet Captions as VideoChat-R1 ships
    them: video -> duration, timestamps [[start, end], ...], sentences [...]) as one row per
    sentence: the sentence is the query, its span the answer ("<answer>start, end</answer>")
    and the evidence."""
    video = row.get("key") if "key" in row else row.get("video")
    spans = row.get("timestamps") if isinstance(row.get("timestamps"), list) else []
    sentences = row.get("sentences") if isinstance(row.get("sentences"), list) else []
    extras = _extras(row, {"key", "video", "timestamps", "sentences", "duration"})
    records = []
    for j in range(max(len(spans), len(sentences))):
        text = sentences[j].strip() if j < len(sentences) and isinstance(sentences[j], str) else None
        span = spans[j] if j < len(spans) else None
        ok = isinstance(span, (list, tuple)) and len(span) == 2 and all(_number(v) for v in span)
        records.append(
            _imported(
                "grounding-import@1",
                video,
                text,
                [],
                problem_type="temporal grounding",
                solution=answer_tag(f"{float(span[0])}, {float(span[1])}") if ok else None,
                evidence=[{"start_s": span[0], "end_s": span[1], "text": text or ""}] if ok else [],
                video=_declared_video(row.get("duration")),
                meta_json=extras,
            )
        )
    return records


def _declared_video(duration: Any) -> dict[str, Any] | None:
    """The video struct of a release that states only the duration (the rest unknown, null)."""
    if not _number(duration):
        return None
    return {"sha256": None, "duration_s": float(duration), "fps": None, "width": None, "height": None}


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


def normal_option(option: str, index: int) -> str:
    """'(A) text', 'A) text', 'A text', 'A: text' as 'A. text'; an unlettered option gets the
    letter of its place."""
    match = _INLINE_OPTION.match(option.strip())
    if match:
        return f"{match.group(1)}. {match.group(2).strip()}"
    return f"{chr(65 + index)}. {option.strip()}"


_ANSWER_LETTER = re.compile(r"^\(?([A-Z])\)?$")


def answer_letters_in(answer: Any, options: list[str]) -> list[str]:
    """The letters an answer names: 'B', '(B)', '(B),(C)', 'B,C', '<answer>B,C</answer>', or the
    text of one option (MVBench writes the option itself). [] when it names none."""
    if isinstance(answer, bool) or not isinstance(answer, (str, int, float)):
        return []
    text = str(answer).strip()
    tagged = solution_answer(text)
    text = tagged if tagged is not None else text
    parts = [p.strip() for p in text.split(",")]
    matches = [_ANSWER_LETTER.match(p) for p in parts]
    if parts and all(matches):
        return [m.group(1) for m in matches if m]
    wanted = " ".join(text.lower().split())
    for option in options:
        body = option[3:] if re.match(r"^[A-Z]\. ", option) else option
        if " ".join(body.lower().split()) == wanted:
            return [option[0]]
    return []


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
        "id": record_id(
            recipe,
            str(path),
            str(problem),
            options if isinstance(options, list) else [],
            _span_of(fields.get("segment")),
        ),
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


def _span_of(segment: Any) -> tuple[Any, Any] | None:
    return (segment.get("start_s"), segment.get("end_s")) if isinstance(segment, Mapping) else None


def _extras(row: Mapping[str, Any], used: set[str]) -> str:
    return json.dumps({k: v for k, v in row.items() if k not in used}, ensure_ascii=False, default=str)


def from_easyr1(row: Mapping[str, Any]) -> dict[str, Any]:
    """An EasyR1 / Long-RL row: options inline in `problem`, `answer`, `videos` a path or a list.

    LongVideo-Reason's release puts the category (temporal, goal, spatial, plot) in
    `problem_type` and plain-text `reasoning` beside the answer: they map to category
    and to process (in <think> tags).
    """
    problem, options = row.get("problem"), []
    if isinstance(problem, str):  # EasyR1's prompt names where the video goes: not question text
        problem, options = split_inline_options(problem.replace("<video>", "").strip())
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
    image = any(by_lower.get(k) in used for k in ("image_path", "image"))
    options = pick("options")
    if isinstance(options, str) and options.strip().startswith("["):
        with contextlib.suppress(ValueError):  # left as text, validate reports it
            options = json.loads(options)
    if isinstance(options, list) and options and all(isinstance(o, str) for o in options):
        if all(_INLINE_OPTION.match(o.strip()) for o in options):
            options = [normal_option(o, i) for i, o in enumerate(options)]
        else:
            options = [f"{chr(65 + i)}. {o.strip()}" for i, o in enumerate(options)]
    elif options is None and isinstance(problem, str):
        problem, options = split_inline_options(problem)
    if isinstance(path, list) and len(path) == 1:
        path = path[0]
    letters = answer_letters_in(answer, options) if isinstance(options, list) and options else []
    solution = solution_of(letters) if letters else _solution(answer)
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
        data_type="image" if image else "video",
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


def _vst_streams(row: Any) -> dict[str, Any] | None:
    """The assistant part of a VST-SFT conversation (a user turn, then an assistant turn whose
    part holds text_stream and qa_stream), or None when the row is not one."""
    if not isinstance(row, list) or len(row) != 2 or not all(isinstance(m, Mapping) for m in row):
        return None
    content = row[1].get("content")
    part = content[0] if isinstance(content, list) and content and isinstance(content[0], Mapping) else None
    return part if part is not None and "text_stream" in part else None


def from_vst(row: Any) -> dict[str, Any]:
    """A VST-SFT conversation as a streaming record: the video of its user turn, its streams, and
    its last question as the question the row asks (vdata's streaming rows ask one each)."""
    streams = _vst_streams(row) or {}
    user = row[0].get("content") if isinstance(row, list) and row and isinstance(row[0], Mapping) else None
    video = next((p for p in user or [] if isinstance(p, Mapping) and p.get("type") == "video"), {})
    text = [
        {"start_s": item[0], "end_s": item[1], "text": item[2]}
        for item in streams.get("text_stream") or []
        if isinstance(item, list) and len(item) == 3
    ]
    qas = [
        {"start_s": item[0], "end_s": item[1], "question": item[2], "answer": item[3]}
        for item in streams.get("qa_stream") or []
        if isinstance(item, list) and len(item) == 4
    ]
    last = qas[-1] if qas else {}
    return _imported(
        "vst-import@1",
        video.get("video"),
        last.get("question"),
        [],
        problem_type="free-form",
        solution=_solution(last["answer"]) if last else None,
        category="streaming",
        stream={"text_stream": text, "qa_stream": qas},
        video=_declared_video(video.get("video_end")),
        data_source="VST",
    )


MAPPERS = {
    "video-r1": from_video_r1,
    "easyr1": from_easyr1,
    "tw-grpo": from_nextgqa,
    "nextgqa": from_nextgqa,
    "grounding": from_grounding,
    "qa": from_qa,
    "vst": from_vst,
}


# ---------------------------------------------------------------- raw readers


def _iter_raw(path: Path, loaded: LoadedRows, file_type: str) -> Iterator[tuple[str, Any, str]]:
    """(split, row as stored, where it is: 'row 3' of a list, 'line 4' of a JSONL file, with the
    file's name inside a folder) for every row under `path`."""
    if path.is_dir():
        yield from _iter_dir(path, loaded, file_type)
        return
    kind = file_type if file_type != "auto" else path.suffix.lower().lstrip(".")
    if kind == "parquet":
        rows = _read_parquet(path)
    elif kind == "jsonl":
        yield from (("", row, f"line {number}") for number, row in _read_jsonl(path, loaded))
        return
    elif kind == "json":
        rows = _read_json(path)
    elif kind == "csv":
        rows = _read_csv(path)
    else:
        raise DatasetReadError(
            f"{path}: unknown file type; give a .json, .jsonl, .csv or .parquet file, "
            "or name the type with --format"
        )
    yield from (("", row, f"row {index}") for index, row in enumerate(rows))


def _iter_dir(path: Path, loaded: LoadedRows, file_type: str) -> Iterator[tuple[str, Any, str]]:
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
        name = file.relative_to(path)
        for _, row, where in _iter_raw(file, loaded, file_type):
            yield split, row, f"{name} {where}"


def _is_metadata(path: Path) -> bool:
    return path.name in {"dataset_info.json", "state.json", "dataset_dict.json", "run.json", "manifest.json"}


def split_from_filename(path: Path) -> str:
    """'sft' from data/sft-00000-of-00001.parquet or sft.jsonl; '' when unnamed."""
    stem = path.name.split(".")[0]
    head = stem.split("-")[0]
    return head if head in ("sft", "rl", "eval", "train", "test", "validation") else ""


def _iter_saved_hf(path: Path) -> Iterator[tuple[str, Any, str]]:
    import datasets

    try:
        saved = datasets.load_from_disk(str(path))
    except Exception as exc:  # datasets raises many types for a broken directory
        raise DatasetReadError(f"{path}: not a readable saved Hugging Face dataset ({exc})") from exc
    parts = saved.items() if isinstance(saved, datasets.DatasetDict) else [("", saved)]
    for split, dataset in parts:
        for index, row in enumerate(dataset):
            yield split, row, f"{split} row {index}" if split else f"row {index}"


def _cannot_read(path: Path, exc: OSError) -> DatasetReadError:
    return DatasetReadError(
        f"{path}: cannot be read ({exc.strerror or exc}); make it readable, or move it out of the dataset"
    )


def _read_parquet(path: Path) -> list[Any]:
    try:
        return pq.read_table(path).to_pylist()
    except Exception as exc:  # pyarrow raises several types for corrupt files
        raise DatasetReadError(f"{path}: not a readable Parquet file ({exc})") from exc


def _parse_json(text: str) -> Any:
    """json.loads, with nesting too deep for Python's parser as a JSONDecodeError."""
    try:
        return json.loads(text)
    except RecursionError:
        raise json.JSONDecodeError("nested too deeply to read", text[:40], 0) from None


def _read_jsonl(path: Path, loaded: LoadedRows) -> Iterator[tuple[int, Any]]:
    try:
        handle = path.open(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise _cannot_read(path, exc) from None
    with handle:
        try:
            for number, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                try:
                    yield number, _parse_json(line)
                except json.JSONDecodeError as exc:
                    loaded.unreadable.append((f"{path}:{number}", f"invalid JSON: {exc.msg}"))
        except OSError as exc:
            raise _cannot_read(path, exc) from None


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
        data = _parse_json(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise _cannot_read(path, exc) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        hint = "" if "nested too deeply" in str(exc) else "; if it holds one row per line, name it .jsonl"
        raise DatasetReadError(f"{path}: not valid JSON ({exc}){hint}") from exc
    if isinstance(data, dict):
        lists = [v for v in data.values() if isinstance(v, list)]
        if len(lists) == 1:
            return lists[0]
        if len(data) > 1 and all(isinstance(v, dict) for v in data.values()):
            # rows keyed by name (Charades / ActivityNet: video -> annotation): the name is `key`
            return [{"key": key, **value} for key, value in data.items()]
        return [data]
    if isinstance(data, list):
        return data
    raise DatasetReadError(f"{path}: expected a JSON list of rows, got {type(data).__name__}")


def media_root_of(path: str | Path) -> Path:
    """Where the relative video paths of a dataset resolve: a dataset directory, a run's
    dataset/, or the folder of a data file."""
    path = Path(path)
    return RunStore(path).media_root() if path.is_dir() else path.parent


def source_rows(source: str | Path) -> tuple[list[dict[str, Any]], str]:
    """Every row of the source as a record dict with `source_ref` (how reports name it); a line
    that could not be read is a row the load stage rejects `unreadable`. Also how it was read."""
    from vdata.record import schema_mismatch

    loaded = load_rows(source)
    rows = []
    for row, ref, split in zip(loaded.rows, loaded.refs, loaded.splits, strict=True):
        field = schema_mismatch(row) if isinstance(row, dict) else None
        if not isinstance(row, dict):
            rows.append({"unreadable": "the row is not an object of fields", "source_ref": ref})
        elif field is not None:
            why = f"field {field!r} holds a {type(row[field]).__name__}, which a question row cannot hold"
            rows.append({"unreadable": why, "source_ref": ref})
        else:
            rows.append({**row, "split": row.get("split") or split, "source_ref": ref})
    rows += [{"unreadable": why, "source_ref": where} for where, why in loaded.unreadable]
    return rows, loaded.read_as
