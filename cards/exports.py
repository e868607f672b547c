"""Canonical records written in other trainers' formats (METHODS.md, "Video-R1 rewards and row").

Each format is one function of a record that returns the row its consumer
reads, or raises `CannotExpress` with the reason; `export` writes the rows and
reports every record a format could not express, so nothing is dropped unseen.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from vdata.record import (
    CHOICE_TYPES,
    answer_tag,
    imported_source_id,
    path_problems,
    solution_answer,
    validate,
)
from vdata.runstore import atomic_write_bytes, atomic_write_table

FORMATS = ("video-r1", "easyr1", "long-rl", "verl", "tw-grpo", "vst", "llamafactory")
UNSAFE_PATH_CODES = ("absolute_path", "parent_path")


class ExportRefused(ValueError):
    """An export that would write over a file it did not write, or where no file can be
    written; the message names the path and what to do."""


class CannotExpress(ValueError):
    """A record this format has no place for (e.g. a streaming row without a stream)."""


def _letters_and_texts(record: dict[str, Any]) -> list[tuple[str, str]]:
    return [(option[0], option[3:]) for option in record.get("options") or []]


def _answer(record: dict[str, Any]) -> str:
    return solution_answer(record["solution"]) or ""


def _question_with_options(record: dict[str, Any], style: str = "{letter}. {text}") -> str:
    lines = [style.format(letter=letter, text=text) for letter, text in _letters_and_texts(record)]
    return "\n".join([record["problem"], *lines]) if lines else record["problem"]


def _video_r1_path(path: str) -> str:
    return path if path.startswith("/") else "./" + path


# the problem types Video-R1's trainer has a prompt and a reward for (its TYPE_TEMPLATE: any
# other type stops its dataset.map with a KeyError)
VIDEO_R1_TYPES = ("multiple choice", "numerical", "OCR", "free-form", "regression")


def to_video_r1(record: dict[str, Any], index: Any) -> dict[str, Any]:
    """Video-R1: problem without options, options "A. text", <answer> solution, ./ paths;
    `index` is the row's problem_id (the release's own for an imported row)."""
    if record["problem_type"] not in VIDEO_R1_TYPES:
        raise CannotExpress(
            f"Video-R1's trainer prompts and rewards {', '.join(VIDEO_R1_TYPES)} only; this row is "
            f"{record['problem_type']}"
        )
    row = {
        "problem_id": index,
        "problem": record["problem"],
        "data_type": record["data_type"],
        "problem_type": record["problem_type"],
        "options": list(record.get("options") or []),
        "solution": record["solution"],
        "path": _video_r1_path(record["path"]),
        "data_source": record.get("data_source") or "",
    }
    segment = record.get("segment")
    if segment:
        row["start"], row["end"] = segment["start_s"], segment["end_s"]  # as MVBench writes it
    if record.get("process"):
        row["process"] = record["process"]
    return row


def to_easyr1(record: dict[str, Any], index: Any = 0) -> dict[str, Any]:
    """EasyR1 (verl/utils/dataset.py): `problem` starts with a <video> placeholder (EasyR1 splits
    the prompt on it and puts the video part there) then the question with its options inline;
    `answer` the bare answer its r1v reward grades (mathruler's grade_answer against the
    response's <answer> content: 'B', 'A,C', '3'); `videos` a list of paths."""
    return {
        "problem": "<video>" + _question_with_options(record),
        "answer": _answer(record),
        "videos": [record["path"]],
        "problem_type": record["problem_type"],
        "category": record.get("category", ""),
        "data_type": record.get("data_type", "video"),
    }


def to_long_rl(record: dict[str, Any], index: Any = 0) -> dict[str, Any]:
    """Long-RL (its copy of EasyR1's loader): the question with its options, no placeholder (the
    loader puts the video first and its own instructions around the question), `videos` one
    path, `answer` the bare answer its r1v reward grades."""
    return {
        "problem": _question_with_options(record),
        "answer": _answer(record),
        "videos": record["path"],
        "problem_type": record["problem_type"],
        "category": record.get("category", ""),
        "data_type": record.get("data_type", "video"),
    }


def to_verl(record: dict[str, Any], index: Any, *, fps: float = 2.0, max_frames: int = 64) -> dict[str, Any]:
    """verl: a chat prompt with a <video> placeholder, videos as dicts, the ground truth for the
    rule reward, and where the row came from."""
    prompt = (
        "<video>\n"
        + _question_with_options(record)
        + ("\nThink inside <think> </think>, then give the answer inside <answer> </answer>.")
    )
    return {
        "data_source": record.get("data_source") or record.get("recipe", ""),
        "prompt": [{"role": "user", "content": prompt}],
        "videos": [{"video": record["path"], "fps": fps, "max_frames": max_frames}],
        "ability": record.get("category") or "video",
        "reward_model": {"style": "rule", "ground_truth": _answer(record)},
        "extra_info": {
            "index": index,
            "id": record["id"],
            "split": record.get("split") or "",
            "problem_type": record["problem_type"],
        },
    }


def to_tw_grpo(record: dict[str, Any], index: Any) -> dict[str, Any]:
    """TW-GRPO's layout (its nextgqa_val_raw.json): `question`, `options` "(A) text", `answer`
    "(A),(C)", `problem` (the question with "A text" lines), `solution` <answer>A,C</answer>,
    `is_negated`, and NExT-GQA's `duration`, `glue` spans and `type`."""
    if record["problem_type"] not in CHOICE_TYPES:
        raise CannotExpress(f"TW-GRPO rows are choice questions; this one is {record['problem_type']}")
    letters = sorted(part.strip() for part in _answer(record).split(","))
    video = record.get("video") or {}
    return {
        "id": index,
        "video": record["path"],
        "question": record["problem"],
        "options": [f"({letter}) {text}" for letter, text in _letters_and_texts(record)],
        "duration": video.get("duration_s"),
        "glue": [
            [item["start_s"], item["end_s"]]
            for item in record.get("evidence") or []
            if item.get("start_s") is not None and item.get("end_s") is not None
        ],
        "type": record.get("category") or "",
        "answer": ",".join(f"({letter})" for letter in letters),
        "problem": _question_with_options(record, "{letter} {text}"),
        "solution": answer_tag(",".join(letters)),
        "is_negated": is_negated(record),
    }


def is_negated(record: dict[str, Any]) -> bool:
    """Whether the row's question was negated by an inversion (vdata's `inverted`, or the
    `is_negated` of a TW-GRPO row it was read from)."""
    try:
        meta = json.loads(record.get("meta_json") or "{}")
    except ValueError:
        return False
    if not isinstance(meta, dict):
        return False
    return bool(meta.get("inverted", meta.get("is_negated", False)))


def to_vst(record: dict[str, Any], index: Any) -> list[dict[str, Any]]:
    """VST-SFT (VST-SFT/streaming_vlm/data/lmm_dataset.py): one conversation per line, a user turn
    of the video (its path, video_start, video_end) and a text part, and an assistant turn whose
    part holds text_stream [[start, end, thought]] and qa_stream [[start, end, question,
    answer]] (a question is asked at its end time). The loader finds each line through
    STEM_seeks.jsonl, which `export` writes beside it."""
    stream = record.get("stream")
    if not stream or not (stream.get("text_stream") or stream.get("qa_stream")):
        raise CannotExpress("the row has no stream (text_stream, qa_stream)")
    duration = (record.get("video") or {}).get("duration_s")
    if duration is None:
        raise CannotExpress("VST plays the video from video_start to video_end: the row has no duration")
    video = {"type": "video", "video": record["path"], "video_start": 0.0, "video_end": float(duration)}
    streams = {
        "type": "text",
        "text_stream": [[t["start_s"], t["end_s"], t["text"]] for t in stream.get("text_stream") or []],
        "qa_stream": [
            [q["start_s"], q["end_s"], q["question"], q["answer"]] for q in stream.get("qa_stream") or []
        ],
    }
    return [
        {"role": "user", "content": [video, {"type": "text", "text": ""}]},
        {"role": "assistant", "content": [streams]},
    ]


def vst_seeks(lines: list[bytes]) -> list[int]:
    """The byte offset of each line of a JSONL file (VST's loader seeks to them)."""
    offsets, at = [], 0
    for line in lines:
        offsets.append(at)
        at += len(line)
    return offsets


def to_vst_rl(record: dict[str, Any], index: Any) -> list[dict[str, Any]]:
    """VST-RL (VST-RL/recurrent/impls/video_memory.py, a verl dataset): per question of the
    stream, `prompt` and `question` (text it tokenizes), `video_context` the video path (its
    video key), `extra_info` with the video's `duration` and an `index`, and
    `reward_model.ground_truth`."""
    stream = record.get("stream") or {}
    duration = (record.get("video") or {}).get("duration_s")
    rows = []
    for number, qa in enumerate(stream.get("qa_stream") or []):
        rows.append(
            {
                "data_source": record.get("data_source") or "vdata",
                "prompt": qa["question"],
                "question": qa["question"],
                "video_context": record["path"],
                "reward_model": {"style": "rule", "ground_truth": qa["answer"]},
                "extra_info": {
                    "duration": float(duration) if duration is not None else 0.0,
                    "index": str(index),
                    "id": str(record["id"]),
                    "qa": number,
                    "question_start_s": qa["start_s"],
                    "question_end_s": qa["end_s"],
                    "split": record.get("split") or "",
                },
            }
        )
    return rows


def to_llamafactory(record: dict[str, Any], index: Any) -> dict[str, Any]:
    """LLaMA-Factory ShareGPT SFT: a <video> token in the user turn, the reasoning and the answer
    as the assistant turn, `videos` the paths."""
    answer = (record.get("process") or "") + record["solution"]
    return {
        "messages": [
            {"role": "user", "content": "<video>" + _question_with_options(record)},
            {"role": "assistant", "content": answer},
        ],
        "videos": [record["path"]],
    }


WRITERS: dict[str, tuple[Callable[[dict[str, Any], Any], Any], str]] = {
    "video-r1": (to_video_r1, "json"),
    "easyr1": (to_easyr1, "jsonl"),
    "long-rl": (to_long_rl, "jsonl"),
    "verl": (to_verl, "parquet"),
    "tw-grpo": (to_tw_grpo, "json"),
    "vst": (to_vst, "jsonl"),
    "llamafactory": (to_llamafactory, "json"),
}


# what each format's answer field is for: the consumer's reward (or, for SFT, its target)
REWARD_FOR = {
    "video-r1": "`solution` <answer>X</answer> for Video-R1's accuracy reward, by problem_type",
    "easyr1": "`answer` is the bare answer for EasyR1's r1v reward (examples/reward_function/r1v.py: "
    "mathruler's grade_answer on the response's <answer>): a letter, 'A,C' for multi-answer, a "
    "number; a temporal-grounding 'start, end' needs an IoU reward of your own",
    "long-rl": "`answer` is the bare answer for Long-RL's r1v reward (examples/reward_function/r1v.py)",
    "verl": "reward_model.ground_truth is the bare answer; verl has no built-in reward for these "
    "sources: run with custom_reward_function.path=<vdata>/trainers/rewards.py "
    "custom_reward_function.name=verl_compute_score (vdata's reward, by extra_info.problem_type)",
    "tw-grpo": "`solution` <answer>A,C</answer> for TW-GRPO's multi-answer reward (partial credit)",
    "vst": "VST-SFT reads the streams; the -rl.parquet beside it holds each question's bare answer as "
    "reward_model.ground_truth for VST-RL, which asks for the final answer in \\boxed{}: grade the box",
    "llamafactory": "SFT: the assistant turn (reasoning, then <answer>X</answer>) is the target",
}


@dataclass
class ExportReport:
    format: str
    path: str
    written: int = 0
    not_expressed: list[dict[str, str]] = field(default_factory=list)  # id, reason: the format's limits
    refused: list[dict[str, str]] = field(default_factory=list)  # id, reason: defects of the input
    also: list[str] = field(default_factory=list)  # further files the format writes (vst: its RL parquet)
    reward: str = ""  # what the format's answer field is meant for (REWARD_FOR)
    notes: list[str] = field(default_factory=list)  # what the user must do with it


def _row_ids(records: list[Any]) -> list[Any]:
    """Each record's row id in the export: the release's own id for an imported record (so
    that ids round-trip), the next id that no imported record has for a new one."""
    own = [imported_source_id(r) if isinstance(r, dict) else None for r in records]
    taken = {str(found[1]) for found in own if found}
    ids, fresh = [], 0
    for found in own:
        if found:
            ids.append(found[1])
            continue
        while str(fresh) in taken:
            fresh += 1
        ids.append(fresh)
        fresh += 1
    return ids


def export(
    records: Iterable[dict[str, Any]],
    fmt: str,
    out: str | Path,
    *,
    unreadable: Iterable[tuple[str, str]] = (),
    allow_unsafe_paths: bool = False,
    force: bool = False,
) -> ExportReport:
    """Writes `records` in `fmt` to `out`; the report lists every record left out, and why.

    A record with a validation error (a string where the options list belongs, an answer
    that names no option) is refused, never reshaped; so is a path that is absolute or
    climbs out with '..', unless `allow_unsafe_paths`. `unreadable` lines of the input
    (where, why) are reported as refused too. A file that exists is replaced only with `force`;
    ExportRefused otherwise, before anything is written."""
    if fmt not in WRITERS:
        raise ValueError(f"unknown format {fmt!r}; formats: {', '.join(FORMATS)}")
    convert, kind = WRITERS[fmt]
    out = Path(out)
    targets = [out] + (vst_paths(out) if fmt == "vst" else [])
    for target in targets:
        if target.is_dir():
            raise ExportRefused(
                f"{target} is a folder; --out names the file to write, e.g. {target}/train.json"
            )
        if target.exists() and not force:
            raise ExportRefused(f"{target} exists; give --out a new file, or --force to replace it")
    rows, report = [], ExportReport(fmt, str(out))
    accepted: list[int] = []
    report.refused += [{"id": where, "reason": f"unreadable: {why}"} for where, why in unreadable]
    records = list(records)
    ids = _row_ids(records)
    for index, record in enumerate(records):
        ref = record.get("id") if isinstance(record, dict) and record.get("id") else f"#{index}"
        problems = [p for p in validate(record) if p.severity == "error" and p.code not in UNSAFE_PATH_CODES]
        if not allow_unsafe_paths:
            problems += [p for p in path_problems(record.get("path")) if p.code in UNSAFE_PATH_CODES]
        if problems:
            kind_of = "unsafe_path" if problems[0].code in UNSAFE_PATH_CODES else problems[0].code
            report.refused.append({"id": ref, "reason": f"{kind_of}: {problems[0].message}"})
            continue
        try:
            rows.append(convert(record, ids[index]))
            accepted.append(index)
        except CannotExpress as exc:
            report.not_expressed.append({"id": ref, "reason": str(exc)})
    try:
        if fmt == "vst":  # VST trains in two steps: the SFT stream rows, and a parquet for its RL stage
            rl = [item for index in accepted for item in to_vst_rl(records[index], ids[index])]
            atomic_write_table(targets[1], pa.Table.from_pylist(rl) if rl else pa.table({}))
            lines = [(json.dumps(r, ensure_ascii=False) + "\n").encode() for r in rows]
            atomic_write_bytes(targets[2], json.dumps(vst_seeks(lines)).encode())
            report.also += [str(targets[1]), str(targets[2])]
        if kind == "json":
            atomic_write_bytes(out, (json.dumps(rows, ensure_ascii=False, indent=1) + "\n").encode())
        elif kind == "jsonl":
            atomic_write_bytes(out, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode())
        else:
            atomic_write_table(out, pa.Table.from_pylist(rows) if rows else pa.table({}))
    except OSError as exc:
        raise ExportRefused(
            f"cannot write {out} ({exc.strerror or exc}); give --out a file you can write"
        ) from None
    report.written = len(rows)
    report.reward = REWARD_FOR[fmt]
    if fmt == "llamafactory":
        _register_with_llamafactory(out, report)
    return report


def llamafactory_entry(out: Path) -> dict[str, Any]:
    """The dataset_info.json entry by which `llamafactory-cli train` finds the export: its stem
    as the dataset name, ShareGPT messages with videos."""
    tags = {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant"}
    return {
        out.stem: {
            "file_name": out.name,
            "formatting": "sharegpt",
            "columns": {"messages": "messages", "videos": "videos"},
            "tags": tags,
        }
    }


def _register_with_llamafactory(out: Path, report: ExportReport) -> None:
    """Writes dataset_info.json beside the export when there is none; one that exists is the
    user's (other datasets are in it): it is never edited, the entry to add is said instead."""
    from vdata.runstore import RunStoreError, atomic_write_json, read_json

    entry, info = llamafactory_entry(out), out.with_name("dataset_info.json")
    if not info.exists():
        atomic_write_json(info, entry)
        report.also.append(str(info))
        report.notes.append(f"llamafactory-cli train: dataset_dir={out.parent} dataset={out.stem}")
        return
    try:
        present = read_json(info) or {}
    except (RunStoreError, OSError):
        present = {}
    if isinstance(present, dict) and present.get(out.stem) == entry[out.stem]:
        report.notes.append(f"{info} already names it: dataset={out.stem}")
        return
    report.notes.append(
        f"{info} exists and is left as it is; add this entry to it for llamafactory-cli: {json.dumps(entry)}"
    )


def vst_paths(out: Path) -> list[Path]:
    """What the vst format writes beside its SFT rows: the RL parquet, and the seek index VST's
    loader reads (STEM_seeks.jsonl)."""
    return [out.with_name(f"{out.stem}-rl.parquet"), out.with_name(f"{out.stem}_seeks.jsonl")]
