"""Rows as one polars frame of the columns that dataset-level checks read.

Audit and filters compute over columns (polars), not Python loops: a million
rows fit in seconds. Values that have the wrong type become null here; row
validation reports them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa

from vdata.record import SOLUTION_PATTERN, row_ref

EVAL_SPLITS = ("eval", "test", "validation", "val")
_NEGATION = r"(?i)\b(not|no|never|none|neither|nor|except|without|false|incorrect|untrue|cannot)\b|n't\b"


def rows_frame(
    rows: Sequence[Any],
    splits: Sequence[str] | None = None,
    offset: int = 0,
    *,
    refs: Sequence[str] | None = None,
    source_ids: Sequence[str | None] | None = None,
) -> pl.DataFrame:
    """One row per input row, in input order: idx, ref, source_id, split, problem, problem_type,
    options, solution, answer, path, video_sha, segment, process, category, meta_json,
    provenance ('given', 'empty', null without the field), n_options and video_key (the video's
    hash or path, and the segment asked about; null without a path).
    `refs` name the rows in reports (the release's id and position), else their id or position."""
    splits = splits or [""] * len(rows)

    def text(row: Any, name: str) -> str | None:
        value = row.get(name) if isinstance(row, Mapping) else None
        return value if isinstance(value, str) else None

    def options(row: Any) -> list[str]:
        value = row.get("options") if isinstance(row, Mapping) else None
        ok = isinstance(value, (list, tuple)) and all(isinstance(o, str) for o in value)
        return list(value) if ok else []

    def sha(row: Any) -> str | None:
        video = row.get("video") if isinstance(row, Mapping) else None
        value = video.get("sha256") if isinstance(video, Mapping) else None
        return value if isinstance(value, str) and value else None

    def segment(row: Any) -> str | None:
        value = row.get("segment") if isinstance(row, Mapping) else None
        if not isinstance(value, Mapping):
            return None
        return f"{value.get('start_s')}-{value.get('end_s')}"

    def provenance(row: Any) -> str | None:
        """'empty' for a provenance that says nothing, 'given' for one that says something, null
        for a row that has no provenance field (another release's layout)."""
        value = row.get("provenance") if isinstance(row, Mapping) else None
        if not isinstance(value, Mapping):
            return None
        said = value.get("models") or value.get("prompts") or value.get("created")
        return "given" if said else "empty"

    columns = {
        "ref": list(refs) if refs is not None else [row_ref(r, f"#{i}") for i, r in enumerate(rows, offset)],
        "source_id": list(source_ids) if source_ids is not None else [None] * len(rows),
        "split": [text(r, "split") or s or "" for r, s in zip(rows, splits, strict=True)],
        "problem": [text(r, "problem") for r in rows],
        "problem_type": [text(r, "problem_type") for r in rows],
        "options": [options(r) for r in rows],
        "solution": [text(r, "solution") for r in rows],
        "path": [text(r, "path") for r in rows],
        "video_sha": [sha(r) for r in rows],
        "segment": [segment(r) for r in rows],
        "process": [text(r, "process") for r in rows],
        "category": [text(r, "category") or "" for r in rows],
        "meta_json": [text(r, "meta_json") or "" for r in rows],
        "provenance": [provenance(r) for r in rows],
    }
    arrays = {
        name: pa.array(values, type=pa.list_(pa.string()) if name == "options" else pa.string())
        for name, values in columns.items()
    }
    frame = pl.from_arrow(pa.table(arrays))
    return frame.with_row_index("idx", offset=offset).with_columns(
        answer=pl.col("solution").str.extract("(?s)" + SOLUTION_PATTERN, 1).str.strip_chars(),
        n_options=pl.col("options").list.len(),
        video_key=pl.concat_str(
            pl.coalesce("video_sha", normalized_path(pl.col("path"))),
            pl.lit("@") + pl.col("segment").fill_null(""),
        ),
    )


def normalized_path(column: pl.Expr) -> pl.Expr:
    """'./videos//a.mp4' and 'videos/a.mp4' name the same file."""
    return column.str.replace_all(r"\\", "/").str.replace(r"^(\./)+", "").str.replace_all(r"/+", "/")


def file_name(column: pl.Expr) -> pl.Expr:
    return normalized_path(column).str.extract(r"([^/]+)$", 1)


def normalized_text(column: pl.Expr) -> pl.Expr:
    """Lower case, punctuation as space, single spaces: the key of exact-duplicate checks."""
    return (
        column.str.to_lowercase()
        .str.replace_all(r"[^\p{L}\p{N}\s]", " ")
        .str.replace_all(r"\s+", " ")
        .str.strip_chars()
    )


def is_eval_split(column: pl.Expr) -> pl.Expr:
    return column.str.to_lowercase().is_in(list(EVAL_SPLITS))


def has_negation(column: pl.Expr) -> pl.Expr:
    return column.str.contains(_NEGATION)


def negations(text: str) -> int:
    """How many negations a text has ("not", "no", "-n't", "never", ...): what the audit's
    `inverted_without_negation` looks for, counted."""
    return len(re.findall(_NEGATION, text))


def word_hashes(
    texts: pl.Series, ids: pl.Series | None = None, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """(id of each word, 64-bit hash of each word) for the lower-cased words (letters and
    digits) of `texts`, in order; ids default to row positions."""
    words = (
        pl.DataFrame({"id": ids if ids is not None else pl.int_range(len(texts), eager=True), "text": texts})
        .select("id", word=pl.col("text").str.to_lowercase().str.extract_all(r"[\p{L}\p{N}]+"))
        .explode("word")
        .drop_nulls("word")
        .select("id", h=pl.col("word").hash(seed=seed))
    )
    return words["id"].to_numpy(), words["h"].to_numpy().astype(np.uint64)


def question_and_options(frame: pl.DataFrame) -> pl.Series:
    """Question and options as one text: what near-duplicate checks compare."""
    return frame.select(
        pl.concat_str(pl.col("problem").fill_null(""), pl.col("options").list.join(" "), separator=" ")
    ).to_series()


def known_video() -> pl.Expr:
    """The scope of same-sample checks: the video key, or for a row with no media path its
    options (such rows are never one video: they are the same sample only with the same
    options). A grounding query is a sample together with the moment it names: its answer."""
    scope = pl.coalesce(pl.col("video_key"), pl.lit("\x00options:") + pl.col("options").list.join("\x1e"))
    grounding = pl.col("problem_type") == "temporal grounding"
    return (
        pl.when(grounding)
        .then(pl.concat_str(scope, pl.lit("@"), pl.col("answer").fill_null("")))
        .otherwise(scope)
    )


def first_copies(frame: pl.DataFrame, *, across_videos: bool = False) -> pl.Series:
    """For each row, the idx of the first row with the same normalised question about the same
    video (any video with `across_videos`; rows without a path: the same options); its own idx
    when it is the first or has no question."""
    key = pl.concat_str(
        normalized_text(pl.col("problem")),
        pl.lit("") if across_videos else known_video(),
        separator="\x1f",
    )
    first = pl.col("idx").first().over(key)
    return frame.select(pl.when(pl.col("problem").is_null()).then(pl.col("idx")).otherwise(first)).to_series()
