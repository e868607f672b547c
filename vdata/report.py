"""Summaries of a dataset for people: problems grouped by code, field statistics."""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from vdata.formats import LoadedRows
from vdata.record import CODES, answer_letters, row_ref, validate

# Problems of a dataset rather than of one row (record.CODES are the row's).
DATASET_CODES = {
    "duplicate_id": ("error", "two rows share an id"),
    "duplicate_source_id": ("warning", "rows share the id the release gives them: it cannot name a row"),
}


@dataclass
class ProblemGroup:
    code: str
    severity: str
    meaning: str
    count: int = 0
    examples: list[tuple[str, str]] = field(default_factory=list)  # (row ref, message)


@dataclass
class ValidationSummary:
    rows: int
    groups: list[ProblemGroup]
    rows_with_errors: int

    @property
    def errors(self) -> int:
        return sum(g.count for g in self.groups if g.severity == "error")

    def to_json(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "rows_with_errors": self.rows_with_errors,
            "problems": [
                {
                    "code": g.code,
                    "severity": g.severity,
                    "count": g.count,
                    "examples": [{"row": r, "message": m} for r, m in g.examples],
                }
                for g in self.groups
            ],
        }


class ProblemCounter:
    """Problems grouped by code, counted over rows given in any number of parts."""

    def __init__(self, max_examples: int = 3):
        self.max_examples = max_examples
        self.groups: dict[str, ProblemGroup] = {}
        self.rows = 0
        self.bad_rows = 0

    def _note(self, code: str, severity: str, meaning: str, ref: str, message: str) -> None:
        group = self.groups.setdefault(code, ProblemGroup(code, severity, meaning))
        group.count += 1
        if len(group.examples) < self.max_examples:
            group.examples.append((ref, message))

    def add_unreadable(self, unreadable: list[tuple[str, str]]) -> None:
        for where, why in unreadable:
            self._note("unreadable_row", "error", "a line could not be parsed", where, why)
        self.rows += len(unreadable)
        self.bad_rows += len(unreadable)

    def add_rows(self, rows: list[Any], offset: int = 0, refs: list[str] | None = None) -> None:
        """Validates `rows`, whose first is row number `offset` of the dataset; `refs` name them
        (the release's own id and position), else their id or position."""
        for index, row in enumerate(rows, offset):
            problems = validate(row)
            if any(p.severity == "error" for p in problems):
                self.bad_rows += 1
            ref = refs[index - offset] if refs else row_ref(row, f"#{index}")
            for problem in problems:
                severity, meaning = CODES[problem.code]
                self._note(problem.code, severity, meaning, ref, problem.message)
        self.rows += len(rows)

    def add_duplicate_source_ids(self, ids: list[str | None], refs: list[str]) -> None:
        """A warning per row whose release id an earlier row already has (ids that name no row)."""
        first: dict[str, str] = {}
        for key, ref in zip(ids, refs, strict=True):
            if key is None:
                continue
            if key in first:
                severity, meaning = DATASET_CODES["duplicate_source_id"]
                self._note("duplicate_source_id", severity, meaning, ref, f"{first[key]} has the same id")
            else:
                first[key] = ref

    def add_duplicate_ids(self, rows: list[Any]) -> None:
        """A dataset-level error: rows of one dataset sharing an id (the record's stable key), as
        a model that repeats itself makes. Every row after the first of its id is counted."""
        first: dict[str, str] = {}
        for index, row in enumerate(rows):
            key = row.get("id") if isinstance(row, Mapping) else None
            if not isinstance(key, str) or not key:
                continue
            ref = row_ref(row, f"#{index}")
            if key in first:
                severity, meaning = DATASET_CODES["duplicate_id"]
                self._note("duplicate_id", severity, meaning, ref, f"id {key} is also row {first[key]}'s")
                self.bad_rows += 1
            else:
                first[key] = ref

    def merge(self, other: ProblemCounter) -> None:
        for code, theirs in other.groups.items():
            mine = self.groups.setdefault(code, ProblemGroup(code, theirs.severity, theirs.meaning))
            mine.count += theirs.count
            mine.examples.extend(theirs.examples[: self.max_examples - len(mine.examples)])
        self.rows += other.rows
        self.bad_rows += other.bad_rows

    def summary(self) -> ValidationSummary:
        ordered = sorted(self.groups.values(), key=lambda g: (g.severity != "error", -g.count, g.code))
        return ValidationSummary(self.rows, ordered, self.bad_rows)


def summarize_problems(loaded: LoadedRows, max_examples: int = 3) -> ValidationSummary:
    counter = ProblemCounter(max_examples)
    counter.add_unreadable(loaded.unreadable)
    counter.add_rows(loaded.rows, refs=loaded.refs or None)
    if loaded.shape == "vdata":  # ids given by the file; imported shapes get ids from content
        counter.add_duplicate_ids(loaded.rows)
    elif loaded.source_ids:
        counter.add_duplicate_source_ids(loaded.source_ids, loaded.refs)
    return counter.summary()


def field_stats(loaded: LoadedRows) -> dict[str, Any]:
    """Per split: rows, videos, value counts of categorical fields, lengths, option and letter counts."""
    by_split: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for row, file_split in zip(loaded.rows, loaded.splits, strict=True):
        if isinstance(row, Mapping):
            by_split[row.get("split") or file_split or "(none)"].append(row)
    return {split: _split_stats(rows) for split, rows in sorted(by_split.items())}


def _split_stats(rows: list[Mapping[str, Any]]) -> dict[str, Any]:
    stats: dict[str, Any] = {"rows": len(rows), "videos": len({r.get("path") for r in rows})}
    for name in ("data_type", "problem_type", "category", "recipe", "data_source"):
        stats[name] = dict(Counter(str(r.get(name)) for r in rows).most_common(8))
    stats["options_per_question"] = dict(sorted(Counter(len(r.get("options") or []) for r in rows).items()))
    letters: Counter[str] = Counter()
    for row in rows:
        if row.get("options"):
            letters.update(answer_letters(row.get("solution")))
    stats["answer_letters"] = dict(sorted(letters.items()))
    for name in ("problem", "process"):
        lengths = [len(r[name]) for r in rows if isinstance(r.get(name), str)]
        stats[f"{name}_chars"] = _lengths(lengths)
        stats[f"{name}_missing"] = len(rows) - len(lengths)
    durations = [
        r["video"]["duration_s"]
        for r in rows
        if isinstance(r.get("video"), Mapping) and isinstance(r["video"].get("duration_s"), (int, float))
    ]
    stats["video_duration_s"] = _lengths(durations)
    stats["with_difficulty"] = sum(1 for r in rows if r.get("difficulty"))
    return stats


def _lengths(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    return {
        "min": round(min(values), 2),
        "median": round(statistics.median(values), 2),
        "mean": round(statistics.fmean(values), 2),
        "max": round(max(values), 2),
    }


def counts(values: Mapping[Any, Any]) -> str:
    """{'A': 3, 'B': 1} -> 'A: 3, B: 1', as cards and summaries show tallies."""
    return ", ".join(f"{k}: {v}" for k, v in values.items())
