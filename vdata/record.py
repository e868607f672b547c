"""The canonical row: one fixed Arrow schema, a typed model, and `validate`.

The row is a superset of the Video-R1 row that most video-RL trainers read
(DESIGN.md, "The record"). `validate` reports problems with stable codes and
never changes the row: fixing is a filter's job, and it must say so.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import statistics
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
from pydantic import BaseModel, Field, ValidationError

PROBLEM_TYPES = (
    "multiple choice",
    "multi-answer",
    "yes/no",
    "numerical",
    "free-form",
    "OCR",
    "regression",
    "temporal grounding",
)
CHOICE_TYPES = ("multiple choice", "multi-answer")
DATA_TYPES = ("video", "image", "frame")  # frame: a folder of frames (MVBench's TVQA ships them)
SPLITS = ("sft", "rl", "eval")

# ---------------------------------------------------------------- schema

_TIMED_TEXT = pa.struct([("start_s", pa.float64()), ("end_s", pa.float64()), ("text", pa.string())])

SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("recipe", pa.string()),
        pa.field("data_type", pa.string()),
        pa.field("path", pa.string()),
        pa.field(
            "video",
            pa.struct(
                [
                    ("sha256", pa.string()),
                    ("duration_s", pa.float64()),
                    ("fps", pa.float64()),
                    ("width", pa.int32()),
                    ("height", pa.int32()),
                ]
            ),
        ),
        pa.field("segment", pa.struct([("start_s", pa.float64()), ("end_s", pa.float64())])),
        pa.field("problem", pa.string()),
        pa.field("problem_type", pa.string()),
        pa.field("options", pa.list_(pa.string())),
        pa.field("solution", pa.string()),
        pa.field("category", pa.string()),
        pa.field("process", pa.string()),
        pa.field("evidence", pa.list_(_TIMED_TEXT)),
        pa.field(
            "stream",
            pa.struct(
                [
                    ("text_stream", pa.list_(_TIMED_TEXT)),
                    (
                        "qa_stream",
                        pa.list_(
                            pa.struct(
                                [
                                    ("start_s", pa.float64()),
                                    ("end_s", pa.float64()),
                                    ("question", pa.string()),
                                    ("answer", pa.string()),
                                ]
                            )
                        ),
                    ),
                ]
            ),
        ),
        pa.field("split", pa.string()),
        pa.field("data_source", pa.string()),
        pa.field(
            "difficulty",
            pa.struct([("pass_rate", pa.float64()), ("n_rollouts", pa.int32()), ("model", pa.string())]),
        ),
        pa.field(
            "provenance",
            pa.struct(
                [
                    (
                        "models",
                        pa.list_(
                            pa.struct(
                                [
                                    ("role", pa.string()),
                                    ("model", pa.string()),
                                    ("revision", pa.string()),
                                ]
                            )
                        ),
                    ),
                    ("prompts", pa.list_(pa.struct([("name", pa.string()), ("sha256", pa.string())]))),
                    ("params_json", pa.string()),
                    ("created", pa.string()),
                ]
            ),
        ),
        pa.field("meta_json", pa.string()),
    ]
)

# ---------------------------------------------------------------- typed model


class VideoInfo(BaseModel):
    sha256: str
    duration_s: float
    fps: float
    width: int
    height: int


class Segment(BaseModel):
    start_s: float
    end_s: float


class TimedText(BaseModel):
    start_s: float
    end_s: float
    text: str


class TimedQA(BaseModel):
    start_s: float
    end_s: float
    question: str
    answer: str


class Stream(BaseModel):
    text_stream: list[TimedText] = Field(default_factory=list)
    qa_stream: list[TimedQA] = Field(default_factory=list)


class Difficulty(BaseModel):
    pass_rate: float
    n_rollouts: int
    model: str


class ModelRef(BaseModel):
    role: str
    model: str
    revision: str | None = None


class PromptRef(BaseModel):
    name: str
    sha256: str


class Provenance(BaseModel):
    models: list[ModelRef] = Field(default_factory=list)
    prompts: list[PromptRef] = Field(default_factory=list)
    params_json: str = "{}"
    created: str = ""


class Record(BaseModel):
    """A typed canonical row; `to_row()` gives the dict that SCHEMA stores."""

    id: str = ""
    recipe: str
    data_type: Literal["video", "image"] = "video"
    path: str
    video: VideoInfo | None = None
    segment: Segment | None = None
    problem: str
    problem_type: str
    options: list[str] = Field(default_factory=list)
    solution: str
    category: str = ""
    process: str | None = None
    evidence: list[TimedText] = Field(default_factory=list)
    stream: Stream | None = None
    split: str = ""
    data_source: str = ""
    difficulty: Difficulty | None = None
    provenance: Provenance = Field(default_factory=Provenance)
    meta_json: str = "{}"

    def model_post_init(self, __context: Any) -> None:
        if not self.id:
            self.id = record_id(
                self.recipe,
                self.video.sha256 if self.video else self.path,
                self.problem,
                self.options,
                (self.segment.start_s, self.segment.end_s) if self.segment else None,
            )

    def to_row(self) -> dict[str, Any]:
        return self.model_dump(mode="python")


def record_id(
    recipe: str,
    video_key: str,
    problem: str,
    options: Iterable[str],
    segment: tuple[float | None, float | None] | None = None,
) -> str:
    """Stable content hash: the same question about the same part of the same video gets the
    same id; about two clips of one video, two ids (trainers key their frames on it)."""
    parts: list[Any] = [recipe, video_key, problem, list(options)]
    if segment is not None:
        parts.append(list(segment))
    payload = json.dumps(parts, ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:24]


class RecordTypeError(ValueError):
    """A row whose values do not have the record's types (Arrow would coerce them silently)."""


def to_table(rows: Iterable[Mapping[str, Any] | Record]) -> pa.Table:
    """Rows (dicts or Records) as an Arrow table with the fixed SCHEMA.

    Every row goes through the typed model first: Arrow alone would turn a string
    where a list belongs into a list of characters.
    """
    dicts = []
    for index, row in enumerate(rows):
        if isinstance(row, Record):
            dicts.append(row.to_row())
            continue
        try:
            dicts.append(Record.model_validate(dict(row)).to_row())
        except ValidationError as exc:
            ref = row.get("id") or f"#{index}"
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise RecordTypeError(f"row {ref}: field {where!r}: {first['msg']}") from exc
    return pa.Table.from_pylist(dicts, schema=SCHEMA)


# ---------------------------------------------------------------- validation


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a row. `code` is stable and machine-readable."""

    code: str
    message: str
    field: str = ""
    severity: Literal["error", "warning"] = "error"


# code -> (severity, what it means). Documented in the README; tests cover each.
CODES: dict[str, tuple[str, str]] = {
    "not_a_row": ("error", "the row is not a mapping of field names to values"),
    "missing_field": ("error", "a required field is absent or null"),
    "wrong_type": ("error", "a field holds a value of the wrong type"),
    "empty_problem": ("error", "the question text is empty"),
    "unknown_problem_type": ("error", "problem_type is not one of the known types"),
    "unknown_data_type": ("error", "data_type is neither 'video' nor 'image'"),
    "unknown_split": ("error", "split is set but is not sft, rl or eval"),
    "too_few_options": ("error", "a choice question has fewer than 2 options"),
    "option_format": ("error", "an option is not shaped 'X. text'"),
    "option_letters": ("error", "option letters are not consecutive from A"),
    "duplicate_options": ("error", "two options have the same text"),
    "option_leak": ("error", "an option contains scratchpad text (ANSWER:, REASONS, tags)"),
    "option_too_long": ("error", "an option is far longer than its siblings (leaked text)"),
    "solution_format": ("error", "solution is not wrapped in <answer>...</answer>"),
    "empty_answer": ("error", "the <answer> tag is empty"),
    "answer_not_in_options": ("error", "an answer letter names no option"),
    "duplicate_answer_letters": ("error", "a multi-answer solution repeats a letter"),
    "single_answer_expected": ("error", "a multiple choice solution names several letters"),
    "empty_path": ("error", "path is empty"),
    # absolute paths are a portability warning, not a reason to drop data: the files may well be
    # there (--media-root rewrites them relative); export and push refuse them unless told
    "absolute_path": ("warning", "path is absolute; it resolves only on the machine that wrote it"),
    "parent_path": ("error", "path contains '..'"),
    "non_posix_path": ("error", "path uses backslashes; use '/'"),
    "bad_video_info": ("error", "video duration, fps or size is not positive"),
    "segment_order": ("error", "segment start_s is not before end_s"),
    "segment_outside_video": ("error", "segment lies outside the video's duration"),
    "evidence_order": ("error", "an evidence item ends before it starts"),
    # a warning: the question stands; NExT-GQA and Charades-STA carry spans a little off the ends
    "evidence_outside_video": ("warning", "an evidence item lies outside the video's duration"),
    "process_format": ("warning", "process has no <think>...</think> block"),
    "not_finite": ("error", "a number is NaN or infinite"),
    "nul_character": ("error", "a text holds a NUL character (\\x00)"),
    "bad_difficulty": ("error", "difficulty's pass_rate is not within 0..1 or n_rollouts is negative"),
}

_OPTION = re.compile(r"^([A-Z])\.\s+(\S.*)$", re.DOTALL)
# The one spelling of the answer tag, for three purposes, each with its one home: a row's solution is
# exactly one tag (SOLUTION_PATTERN, here); a model's response is read at its first tag
# (vdata.trainers.rewards); a Video-Thinker trace ends with one (vdata.thinker).
ANSWER_TAG = r"<answer>(?P<answer>.*?)</answer>"
SOLUTION_PATTERN = rf"^\s*{ANSWER_TAG}\s*$"  # (also matched column-wise, in polars)
_SOLUTION = re.compile(SOLUTION_PATTERN, re.DOTALL)
_LEAK = re.compile(
    r"ANSWER\s*:|\bREASONS?\b|</?think>|</?answer>|\bQUESTION\s*:|\n\s*[A-Z]\.\s", re.MULTILINE
)
_REQUIRED_STRINGS = ("problem", "problem_type", "solution", "data_type", "path")
_LENGTH_RATIO = 4.0  # an option this many times longer than its siblings' median ...
_LENGTH_MARGIN = 120  # ... and this many characters longer is leaked text, not an answer
_TIME_SLACK_S = 0.05


def _problem(code: str, message: str, field: str = "") -> Problem:
    return Problem(code, message, field, CODES[code][0])  # type: ignore[arg-type]


def validate(row: Any) -> list[Problem]:
    """Everything wrong with one row, as Problems; an empty list means valid."""
    if isinstance(row, Record):
        row = row.to_row()
    if not isinstance(row, Mapping):
        return [_problem("not_a_row", f"expected a mapping, got {type(row).__name__}")]

    problems: list[Problem] = []
    for name in _REQUIRED_STRINGS:
        value = row.get(name)
        if value is None:
            problems.append(_problem("missing_field", f"'{name}' is missing or null", name))
        elif not isinstance(value, str):
            problems.append(
                _problem("wrong_type", f"'{name}' must be a string, got {type(value).__name__}", name)
            )

    problem_text = row.get("problem")
    if isinstance(problem_text, str) and not problem_text.strip():
        problems.append(_problem("empty_problem", "the question text is empty", "problem"))

    problem_type = row.get("problem_type")
    if isinstance(problem_type, str) and problem_type not in PROBLEM_TYPES:
        problems.append(
            _problem(
                "unknown_problem_type",
                f"problem_type {problem_type!r} is not one of {', '.join(PROBLEM_TYPES)}",
                "problem_type",
            )
        )
    data_type = row.get("data_type")
    if isinstance(data_type, str) and data_type not in DATA_TYPES:
        problems.append(
            _problem("unknown_data_type", f"data_type {data_type!r} is not video or image", "data_type")
        )
    split = row.get("split")
    if split not in (None, "") and split not in SPLITS:
        problems.append(_problem("unknown_split", f"split {split!r} is not sft, rl or eval", "split"))

    problems += path_problems(row.get("path"))
    letters = _check_options(row.get("options"), problem_type, problems)
    problems += _check_solution(row.get("solution"), problem_type, letters)
    duration = _check_video(row.get("video"), problems)
    problems += _check_times(row, duration)

    process = row.get("process")
    if isinstance(process, str) and process.strip() and not re.search(r"<think>.*?</think>", process, re.S):
        problems.append(_problem("process_format", "process has no <think>...</think> block", "process"))
    problems += _check_difficulty(row.get("difficulty"))
    return problems + _odd_values(row)


def _odd_values(row: Mapping[str, Any]) -> list[Problem]:
    """NaN or infinity in any number of the record and NUL in any of its texts: values no
    source means, which readers downstream (JSON, C strings, file systems) cannot take."""
    problems = []
    for name in SCHEMA.names:
        if name == "path":
            continue  # path_problems says it
        for where, value in _leaves(row.get(name), name):
            if isinstance(value, float) and not math.isfinite(value):
                problems.append(_problem("not_finite", f"{where} is {value}, not a finite number", name))
            elif isinstance(value, str) and "\x00" in value:
                problems.append(_problem("nul_character", f"{where} holds a NUL character (\\x00)", name))
    return problems


def _leaves(value: Any, where: str) -> Iterator[tuple[str, Any]]:
    if isinstance(value, Mapping):
        for key, item in value.items():
            yield from _leaves(item, f"{where}.{key}")
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            yield from _leaves(item, f"{where}[{index}]")
    else:
        yield where, value


def _check_difficulty(difficulty: Any) -> list[Problem]:
    if difficulty is None:
        return []
    if not isinstance(difficulty, Mapping):
        return [_problem("wrong_type", "'difficulty' must be a struct", "difficulty")]
    rate, rollouts = difficulty.get("pass_rate"), difficulty.get("n_rollouts")
    if rate is not None and _is_number(rate) and not 0 <= rate <= 1:
        return [_problem("bad_difficulty", f"difficulty.pass_rate {rate} is not within 0..1", "difficulty")]
    if rollouts is not None and _is_number(rollouts) and rollouts < 0:
        return [_problem("bad_difficulty", f"difficulty.n_rollouts {rollouts} is negative", "difficulty")]
    return []


def path_problems(path: Any) -> list[Problem]:
    """What makes a media path unsafe to resolve under a dataset root (absolute, '..', '\\')."""
    if not isinstance(path, str):
        return []
    if not path.strip():
        return [_problem("empty_path", "path is empty", "path")]
    problems = []
    if "\\" in path:
        problems.append(_problem("non_posix_path", f"path {path!r} uses backslashes", "path"))
    if path.startswith("/") or re.match(r"^[A-Za-z]:[\\/]", path):
        problems.append(
            _problem(
                "absolute_path",
                f"path {path!r} is absolute; --media-root DIR rewrites it relative to DIR",
                "path",
            )
        )
    if ".." in re.split(r"[\\/]", path):
        problems.append(_problem("parent_path", f"path {path!r} climbs out with '..'", "path"))
    if "\x00" in path:
        problems.append(_problem("nul_character", f"path {path!r} holds a NUL character", "path"))
    return problems


def rebased_path(path: str, root: str | Path) -> str:
    """An absolute path as one relative to the media root: the part below `root` when it lies
    there, else the path without its leading '/' (a release's '/MVBench/x.mp4' is
    ROOT/MVBench/x.mp4 on the reader's machine). Relative paths lose only a leading './'."""
    root_text = str(root).rstrip("/")
    if path.startswith(root_text + "/"):
        return path[len(root_text) + 1 :]
    while path.startswith("./"):
        path = path[2:]
    return path.lstrip("/")


def _check_options(options: Any, problem_type: Any, problems: list[Problem]) -> list[str] | None:
    """Checks options; returns their letters, or None when they cannot be read."""
    if options is None:
        options = []
    if not isinstance(options, (list, tuple)) or not all(isinstance(o, str) for o in options):
        problems.append(_problem("wrong_type", "'options' must be a list of strings", "options"))
        return None
    if problem_type in CHOICE_TYPES and len(options) < 2:
        problems.append(
            _problem("too_few_options", f"a {problem_type} question has {len(options)} option(s)", "options")
        )
    letters, texts = [], []
    for option in options:
        match = _OPTION.match(option.strip())
        if not match:
            problems.append(_problem("option_format", f"option {option[:60]!r} is not 'X. text'", "options"))
            letters.append(None)
            texts.append(option.strip())
            continue
        letters.append(match.group(1))
        texts.append(match.group(2).strip())
    expected = [chr(ord("A") + i) for i in range(len(options))]
    if all(letters) and letters != expected:
        problems.append(
            _problem("option_letters", f"option letters {letters} should be {expected}", "options")
        )
    normalised = [" ".join(t.lower().split()) for t in texts]
    repeated = sorted({t for t in normalised if normalised.count(t) > 1})
    if repeated:
        problems.append(_problem("duplicate_options", f"repeated option text {repeated[0]!r}", "options"))
    for option in options:
        if _LEAK.search(option):
            problems.append(
                _problem("option_leak", f"option {option[:60]!r} contains scratchpad text", "options")
            )
    if len(texts) >= 3:
        for i, text in enumerate(texts):
            if len(text) <= _LENGTH_MARGIN:
                continue  # cannot be too long; skips the median on nearly every row
            others = statistics.median(len(t) for j, t in enumerate(texts) if j != i)
            if len(text) > _LENGTH_RATIO * max(others, 1) and len(text) - others > _LENGTH_MARGIN:
                problems.append(
                    _problem(
                        "option_too_long",
                        f"option {i + 1} has {len(text)} characters; its siblings about {others:.0f}",
                        "options",
                    )
                )
    return [letter for letter in letters if letter] if all(letters) else None


# ---------------------------------------------------------------- answers
# The one home of the `<answer>...</answer>` solution and its letter sets.


def solution_answer(solution: Any) -> str | None:
    """'B' of '<answer>B</answer>' (stripped); None when the solution is not one answer tag."""
    match = _SOLUTION.match(solution) if isinstance(solution, str) else None
    return match.group(1).strip() if match else None


def answer_letters(solution: Any) -> list[str]:
    """['A', 'C'] of '<answer>A,C</answer>'; [] when there is no answer."""
    answer = solution_answer(solution)
    return [part.strip() for part in answer.split(",") if part.strip()] if answer else []


def answer_tag(answer: Any) -> str:
    """'<answer>B</answer>': an answer as a solution."""
    return f"<answer>{answer}</answer>"


def solution_of(letters: Iterable[str]) -> str:
    """'<answer>A,C</answer>' for a letter set, sorted."""
    return answer_tag(",".join(sorted(letters)))


# the fields by which releases name their own rows, in the order they are looked for
SOURCE_ID_KEYS = ("problem_id", "id", "RowID", "row_id", "question_id", "qid", "uid", "sample_id")


def source_id(row: Any) -> tuple[str, Any] | None:
    """(field, value) of a row's own id as its release stores it; None when it has none."""
    if not isinstance(row, Mapping):
        return None
    for key in SOURCE_ID_KEYS:
        value = row.get(key)
        if isinstance(value, (str, int, float)) and not isinstance(value, bool) and str(value).strip():
            return key, value
    return None


def source_ref(row: Any, position: str) -> str:
    """How a report names a row so that a person can find it in the file: the release's own id
    and the row's position ('problem_id 76 (row 75)'); the position alone when there is no id."""
    found = source_id(row)
    return f"{found[0]} {found[1]} ({position})" if found else position


def imported_source_id(record: Mapping[str, Any]) -> tuple[str, Any] | None:
    """The release's own id of an imported record, kept in its meta_json."""
    meta = record.get("meta_json")
    if not isinstance(meta, str) or not any(f'"{key}"' in meta for key in SOURCE_ID_KEYS):
        return None
    try:
        return source_id(json.loads(meta))
    except ValueError:
        return None


def row_ref(row: Any, fallback: str) -> str:
    """A short name for a row in rejects: the source's own id, our id, its path or video, else
    `fallback` (its position)."""
    if not isinstance(row, Mapping):
        return fallback
    found = source_id({k: row.get(k) for k in SOURCE_ID_KEYS if k != "id"}) or imported_source_id(row)
    if found:
        return str(found[1])
    for key in ("id", "path", "video"):
        if isinstance(row.get(key), str) and row[key]:
            return row[key]
    return fallback


def _check_solution(solution: Any, problem_type: Any, letters: list[str] | None) -> list[Problem]:
    if not isinstance(solution, str):
        return []
    answer = solution_answer(solution)
    if answer is None:
        return [
            _problem("solution_format", f"solution {solution[:60]!r} is not <answer>...</answer>", "solution")
        ]
    if not answer:
        return [_problem("empty_answer", "the <answer> tag is empty", "solution")]
    if problem_type not in CHOICE_TYPES:
        return []
    picked = [part.strip() for part in answer.split(",")]
    problems = []
    if problem_type == "multiple choice" and len(picked) > 1:
        problems.append(
            _problem("single_answer_expected", f"multiple choice answer {answer!r} names several", "solution")
        )
    if len(set(picked)) != len(picked):
        problems.append(
            _problem("duplicate_answer_letters", f"answer {answer!r} repeats a letter", "solution")
        )
    if letters is not None:
        unknown = [p for p in picked if p not in letters]
        if unknown:
            problems.append(
                _problem(
                    "answer_not_in_options",
                    f"answer {', '.join(unknown)!s} is not among options {''.join(letters) or 'none'}",
                    "solution",
                )
            )
    return problems


def _check_video(video: Any, problems: list[Problem]) -> float | None:
    """Checks the video struct; returns its duration when it can be trusted. A value the source
    did not give (null: a release that states only the duration) is not a defect."""
    if video is None:
        return None
    if not isinstance(video, Mapping):
        problems.append(_problem("wrong_type", "'video' must be a struct", "video"))
        return None
    numbers = {k: video.get(k) for k in ("duration_s", "fps", "width", "height")}
    bad = [k for k, v in numbers.items() if v is not None and (not _is_number(v) or v <= 0)]
    if bad:
        problems.append(
            _problem("bad_video_info", f"video {', '.join(bad)} must be positive numbers", "video")
        )
    duration = numbers["duration_s"]
    return float(duration) if _is_number(duration) and duration > 0 else None


def _time_slack(duration: float | None) -> float:
    """How far past `duration` a time may lie: a whole-second duration was rounded (NExT-GQA
    states 21 for a 21.5 s video), so anything within the next second is inside."""
    if duration is not None and float(duration).is_integer():
        return 1.0
    return _TIME_SLACK_S


def _check_times(row: Mapping[str, Any], duration: float | None) -> list[Problem]:
    problems = []
    segment = row.get("segment")
    if segment is not None:
        start, end = _span(segment)
        if start is None or end is None:
            problems.append(_problem("wrong_type", "'segment' needs numeric start_s and end_s", "segment"))
        elif start >= end:
            problems.append(
                _problem("segment_order", f"segment {start}s..{end}s: start is not before end", "segment")
            )
        elif start < 0 or (duration is not None and end > duration + _time_slack(duration)):
            problems.append(
                _problem(
                    "segment_outside_video",
                    f"segment {start}s..{end}s is outside the video (0..{duration}s)",
                    "segment",
                )
            )
    evidence = row.get("evidence") or []
    if not isinstance(evidence, (list, tuple)):
        return problems + [_problem("wrong_type", "'evidence' must be a list", "evidence")]
    for i, item in enumerate(evidence):
        start, end = _span(item)
        if start is None or end is None:
            problems.append(
                _problem("wrong_type", f"evidence {i} needs numeric start_s and end_s", "evidence")
            )
        elif start > end:
            problems.append(_problem("evidence_order", f"evidence {i} spans {start}s..{end}s", "evidence"))
        elif start < 0 or (duration is not None and end > duration + _time_slack(duration)):
            problems.append(
                _problem(
                    "evidence_outside_video",
                    f"evidence {i} at {start}s..{end}s is outside the video (0..{duration}s)",
                    "evidence",
                )
            )
    return problems


def _span(item: Any) -> tuple[float | None, float | None]:
    if not isinstance(item, Mapping):
        return None, None
    start, end = item.get("start_s"), item.get("end_s")
    return (float(start) if _is_number(start) else None, float(end) if _is_number(end) else None)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


# ---------------------------------------------------------------- storing rows as they are


def schema_mismatch(row: Mapping[str, Any]) -> str | None:
    """The first field whose value SCHEMA cannot store as it is (None when all fit).

    Nulls fit anywhere: a missing question is `validate`'s finding, not a storage
    problem. A string where a list belongs does not fit (Arrow would split it).
    """
    for schema_field in SCHEMA:
        if not _fits(row.get(schema_field.name), schema_field.type):
            return schema_field.name
    return None


def _fits(value: Any, arrow_type: pa.DataType) -> bool:
    if value is None:
        return True
    if pa.types.is_string(arrow_type):
        return isinstance(value, str)
    if pa.types.is_floating(arrow_type):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if pa.types.is_integer(arrow_type):
        return isinstance(value, int) and not isinstance(value, bool)
    if pa.types.is_list(arrow_type):
        return isinstance(value, (list, tuple)) and all(_fits(v, arrow_type.value_type) for v in value)
    if pa.types.is_struct(arrow_type):
        return isinstance(value, Mapping) and all(_fits(value.get(f.name), f.type) for f in arrow_type)
    return False


def conform_table(table: pa.Table) -> pa.Table:
    """A table of rows that fit SCHEMA, with SCHEMA's columns, order and types."""
    columns = [
        table.column(f.name).cast(f.type)
        if f.name in table.column_names
        else pa.nulls(table.num_rows, f.type)
        for f in SCHEMA
    ]
    return pa.Table.from_arrays(columns, schema=SCHEMA)


def row_meta(row: Mapping[str, Any]) -> dict[str, Any]:
    """A row's meta_json as a dict (unreadable: empty; not an object: under `source_meta`)."""
    try:
        meta = json.loads(row.get("meta_json") or "{}")
    except ValueError:
        meta = {}
    return meta if isinstance(meta, dict) else {"source_meta": meta}
