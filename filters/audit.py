"""`vdata audit`: the defects that released video-RL datasets carry, found in any of them.

Row checks are `vdata.record.validate`; dataset checks run over one polars
frame (filters/columns.py): answer-letter skew, duplicates, train/eval overlap of
videos and questions, option counts, impossible multi-answer sets, inverted
questions with no negation, null fields, missing media. Each finding has a
severity, a count and example rows; errors make the command exit 1.
"""

from __future__ import annotations

import itertools
import json
import os
from collections import Counter, deque
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from vdata.filters.columns import (
    first_copies,
    has_negation,
    is_eval_split,
    known_video,
    normalized_path,
    question_and_options,
    rows_frame,
)
from vdata.filters.contamination import EvalSet, Overlaps, file_sizes, load_eval_sets
from vdata.filters.letters import SKEW_MARGIN, SKEW_P, letter_stats
from vdata.filters.similarity import minhash_pairs
from vdata.formats import (
    SHAPES,
    DatasetReadError,
    LoadedRows,
    detect_shape,
    iter_raw_rows,
    map_rows,
    media_root_of,
    read_as,
)
from vdata.orphans import worker_pool
from vdata.record import CHOICE_TYPES, rebased_path
from vdata.report import ProblemCounter, ValidationSummary

REQUIRED_FIELDS = ("problem", "problem_type", "solution", "path")
OPTIONAL_FIELDS = ("process", "category", "video_sha")


@dataclass
class Finding:
    code: str
    severity: str  # error | warning | info
    title: str
    count: int
    examples: list[tuple[str, str]] = field(default_factory=list)  # (row ref, what)


@dataclass
class AuditReport:
    path: str
    shape: str
    read_as: str  # the shape and the keys it was read from
    rows: int
    findings: list[Finding]
    letters: list[dict[str, Any]]
    option_counts: dict[str, dict[int, int]]
    fields: dict[str, dict[str, int]]
    notes: list[str]

    @property
    def errors(self) -> int:
        return sum(1 for f in self.findings if f.severity == "error")

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["findings"] = [
            {**asdict(f), "examples": [{"row": r, "what": w} for r, w in f.examples]} for f in self.findings
        ]
        data["option_counts"] = {s: {str(k): v for k, v in c.items()} for s, c in self.option_counts.items()}
        return data


@dataclass
class AuditOptions:
    evals: list[Path] = field(default_factory=list)
    media_root: Path | None = None
    shape: str = "auto"
    file_type: str = "auto"
    near_threshold: float = 0.8
    ngram: int = 8
    examples: int = 3
    across_videos: bool = False  # a question overlap needs no shared video


CHUNK_ROWS = 50_000


def audit(
    path: str | Path, options: AuditOptions | None = None, *, workers: int | None = None
) -> AuditReport:
    """Reads the dataset at `path` (any known format) and runs every check on it."""
    options = options or AuditOptions()
    path = Path(path)
    scanned = scan(path, options.shape, options.file_type, options.examples, workers=workers)
    evals = load_eval_sets(options.evals)
    return audit_scan(scanned, str(path), evals, options, media_root_of(path))


@dataclass
class Scan:
    """A dataset read in parts: its frame of columns and its row-validation summary."""

    frame: pl.DataFrame
    problems: ValidationSummary
    shape: str
    read_as: str = ""


def scan(
    path: Path, shape: str = "auto", file_type: str = "auto", examples: int = 3, *, workers: int | None = None
) -> Scan:
    """Maps and validates rows in parts of CHUNK_ROWS, in worker processes when there are
    several parts: only the columns the checks need stay in memory, not a million dicts."""
    if shape != "auto" and shape not in SHAPES:
        raise DatasetReadError(f"unknown row shape {shape!r}; shapes: auto, {', '.join(SHAPES)}")
    counter = ProblemCounter(examples)
    frames: list[pl.DataFrame] = []
    if path.is_file() and (file_type == "jsonl" or (file_type == "auto" and path.suffix.lower() == ".jsonl")):
        lines = _line_parts(path)
        first = next(lines, ([], 1))
        sample_rows = _parse_lines(first[0][:200], first[1], str(path), LoadedRows())
        shape = detect_shape(sample_rows) if shape == "auto" else shape
        described = read_as(shape, sample_rows)
        jobs = [
            (_scan_lines, (shape, part, start, str(path), examples))
            for part, start in itertools.chain([first], lines)
        ]
        many = len(first[0]) == CHUNK_ROWS
    else:
        sink = LoadedRows()
        parts = _parts(iter_raw_rows(path, sink, file_type))
        first = next(parts, ([], [], []))
        shape = detect_shape(first[0]) if shape == "auto" else shape
        described = read_as(shape, first[0])
        jobs = (
            (_scan_part, (shape, rows, splits, positions, examples))
            for rows, splits, positions in itertools.chain([first], parts)
        )
        many = len(first[0]) == CHUNK_ROWS
        counter.add_unreadable(sink.unreadable)
    workers = workers or os.cpu_count() or 1
    if workers > 1 and many:
        with worker_pool(workers) as pool:
            pending: deque = deque()
            for fn, args in jobs:
                pending.append(pool.submit(fn, *args))
                while len(pending) > 2 * workers:
                    _collect(pending.popleft().result(), frames, counter)
            while pending:
                _collect(pending.popleft().result(), frames, counter)
    else:
        for fn, args in jobs:
            _collect(fn(*args), frames, counter)
    frame = pl.concat(frames) if frames else rows_frame([])
    frame = frame.drop("idx").with_row_index("idx")  # parts may expand rows (one per sentence)
    return Scan(frame, counter.summary(), shape, described)


def _parts(raw: Iterator[tuple[str, Any, str]]) -> Iterator[tuple[list[Any], list[str], list[str]]]:
    while True:
        part = list(itertools.islice(raw, CHUNK_ROWS))
        if not part:
            return
        yield [row for _, row, _ in part], [split for split, _, _ in part], [where for _, _, where in part]


def _line_parts(path: Path) -> Iterator[tuple[list[str], int]]:
    """Lines of a JSONL file in parts, with the number of each part's first line."""
    with path.open(encoding="utf-8", errors="replace") as handle:
        number = 1
        while True:
            part = list(itertools.islice(handle, CHUNK_ROWS))
            if not part:
                return
            yield part, number
            number += len(part)


def _parse_lines(
    lines: list[str], first: int, name: str, sink: LoadedRows, numbers: list[int] | None = None
) -> list[Any]:
    """Rows of JSONL lines (the first numbered `first`); `numbers` gets each row's line number."""
    rows = []
    for number, line in enumerate(lines, first):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as exc:
            sink.unreadable.append((f"{name}:{number}", f"invalid JSON: {exc.msg}"))
            continue
        if numbers is not None:
            numbers.append(number)
    return rows


def _scan_lines(
    shape: str, lines: list[str], first: int, name: str, examples: int
) -> tuple[pl.DataFrame, ProblemCounter]:
    """A part of a JSONL file, parsed in the worker (the parent only reads lines). Rows are
    named by their line numbers, so names do not depend on the other parts."""
    sink, numbers = LoadedRows(), []
    rows = _parse_lines(lines, first, name, sink, numbers)
    frame, counter = _scan_part(shape, rows, [""] * len(rows), [f"line {n}" for n in numbers], examples)
    counter.add_unreadable(sink.unreadable)
    return frame, counter


def _scan_part(
    shape: str, rows: list[Any], splits: list[str], positions: list[str], examples: int
) -> tuple[pl.DataFrame, ProblemCounter]:
    records, refs, ids, splits = map_rows(shape, rows, positions, splits)
    counter = ProblemCounter(examples)
    counter.add_rows(records, refs=refs)
    return rows_frame(records, splits, refs=refs, source_ids=ids), counter


def _collect(result: tuple[pl.DataFrame, ProblemCounter], frames: list, counter: ProblemCounter) -> None:
    frames.append(result[0])
    counter.merge(result[1])


def audit_scan(
    scanned: Scan, name: str, evals: list[EvalSet], options: AuditOptions, default_root: Path
) -> AuditReport:
    frame = scanned.frame
    n = options.examples
    findings: list[Finding] = []
    notes: list[str] = []

    for group in scanned.problems.groups:
        findings.append(Finding(group.code, group.severity, group.meaning, group.count, group.examples))

    fields = _field_counts(frame)
    for name_, counts in fields.items():
        missing = counts["null"] + counts["empty"]
        if missing and name_ in REQUIRED_FIELDS + ("options",):
            findings.append(
                Finding(
                    "empty_field",
                    "error",
                    f"{missing:,} of {counts['rows']:,} rows have a null or empty {name_} "
                    f"({counts['null']:,} null, {counts['empty']:,} empty)",
                    missing,
                    _examples(frame.filter(_blank(name_)), n, f"{name_} is null or empty"),
                )
            )

    stats = letter_stats(frame)
    notes += _letters_not_counted(frame, stats)
    for item in stats:
        if item.skewed:
            findings.append(
                Finding(
                    "letter_skew",
                    "error",
                    f"split {item.split or '(none)'}: answer letters are skewed "
                    f"(chi-square p={item.p_value:.2g}); always answering {item.always_letter} scores "
                    f"{item.always_accuracy:.1%} where uniform letters give {item.uniform_accuracy:.1%}: "
                    "run `vdata filter balance-letters`",
                    item.rows,
                )
            )

    option_counts = _option_counts(frame)
    for split, counts in option_counts.items():
        if len(counts) > 1:
            shown = ", ".join(f"{k} options: {v:,}" for k, v in sorted(counts.items()))
            common = max(counts, key=lambda k: counts[k])
            odd = frame.filter(_choice() & (pl.col("split") == split) & (pl.col("n_options") != common))
            findings.append(
                Finding(
                    "mixed_option_counts",
                    "info",  # a property of the data (MVBench mixes 1 to 5 options by task), not a defect
                    f"split {split or '(none)'}: choice questions have different option counts ({shown})",
                    odd.height,
                    _examples(odd, n, "has {n_options} options", fmt=True),
                )
            )

    findings += _empty_provenance(frame, n) if scanned.shape == "vdata" else []  # others have no such field
    findings += _duplicate_source_ids(frame, n)
    findings += _duplicates(frame, options, n, notes)
    findings += _eval_overlap(frame, evals, options, default_root, n, notes)
    findings += _multi_answer(frame, n)
    findings += _missing_media(frame, options.media_root, default_root, n, notes)

    order = {"error": 0, "warning": 1, "info": 2}
    findings.sort(key=lambda f: (order[f.severity], -f.count, f.code))
    return AuditReport(
        path=name,
        shape=scanned.shape,
        read_as=scanned.read_as,
        rows=scanned.problems.rows,
        findings=findings,
        letters=[
            {**asdict(s), "skewed": s.skewed, "skew_rule": f"p < {SKEW_P} and +{SKEW_MARGIN:.0%}"}
            for s in stats
        ],
        option_counts=option_counts,
        fields=fields,
        notes=notes,
    )


# ---------------------------------------------------------------- checks


def _choice() -> pl.Expr:
    return pl.col("problem_type").is_in(list(CHOICE_TYPES))


def _blank(name: str) -> pl.Expr:
    if name == "options":
        return _choice() & (pl.col("n_options") == 0)
    return pl.col(name).is_null() | (pl.col(name).str.strip_chars() == "")


def _field_counts(frame: pl.DataFrame) -> dict[str, dict[str, int]]:
    counts = {}
    for name in REQUIRED_FIELDS + OPTIONAL_FIELDS:
        row = frame.select(
            null=pl.col(name).is_null().sum(), empty=(pl.col(name).str.strip_chars() == "").sum()
        ).row(0, named=True)
        counts[name] = {"rows": frame.height, **row}
    choice = frame.filter(_choice())
    counts["options"] = {"rows": choice.height, "null": 0, "empty": int((choice["n_options"] == 0).sum())}
    return counts


def _option_counts(frame: pl.DataFrame) -> dict[str, dict[int, int]]:
    counted = frame.filter(_choice()).group_by("split", "n_options").len().sort("split", "n_options")
    result: dict[str, dict[int, int]] = {}
    for split, k, count in counted.iter_rows():
        result.setdefault(split, {})[k] = count
    return result


def _letters_not_counted(frame: pl.DataFrame, stats: list[Any]) -> list[str]:
    """Single-answer choice rows the letter check could not read, said with their count."""
    single = frame.filter(pl.col("problem_type") == "multiple choice")
    counted = sum(item.rows for item in stats)
    if not single.height:
        return ["answer letters: no row is a single-answer choice question"]
    left = single.height - counted
    if not left:
        return []
    no_letter = single.filter(~pl.col("answer").fill_null("").str.contains(r"^[A-Z]$")).height
    return [
        f"answer letters: {left:,} of {single.height:,} single-answer choice rows not counted "
        f"({no_letter:,} without a one-letter answer, {left - no_letter:,} with fewer than 2 options)"
    ]


def _empty_provenance(frame: pl.DataFrame, n: int) -> list[Finding]:
    """vdata rows whose provenance says nothing: no model, no prompt, no time."""
    empty = frame.filter(pl.col("provenance") == "empty")
    if not empty.height:
        return []
    return [
        Finding(
            "empty_provenance",
            "warning",
            f"{empty.height:,} rows have an empty provenance: nothing says which model, prompt or source "
            "made their fields (vdata build fills it; rebuild, or say so where you publish them)",
            empty.height,
            _examples(empty, n, "provenance is empty"),
        )
    ]


def _duplicate_source_ids(frame: pl.DataFrame, n: int) -> list[Finding]:
    """Rows whose release id an earlier row already has: the id names no single row."""
    ids = frame.filter(pl.col("source_id").is_not_null()).select("idx", "ref", "source_id")
    repeated = ids.filter(pl.col("idx") != pl.col("idx").first().over("source_id"))
    if not repeated.height:
        return []
    first = ids.unique("source_id", keep="first").select("source_id", first_ref="ref")
    repeated = repeated.join(first, on="source_id").sort("idx")
    return [
        Finding(
            "duplicate_source_id",
            "warning",
            f"{repeated.height:,} rows carry an id ({repeated['source_id'].n_unique():,} distinct) that an "
            "earlier row has: the release's ids do not name single rows (the position in the file does)",
            repeated.height,
            _examples(repeated, n, "same id as {first_ref}", fmt=True),
        )
    ]


def _duplicates(frame: pl.DataFrame, options: AuditOptions, n: int, notes: list[str]) -> list[Finding]:
    pathless = frame.filter(pl.col("video_key").is_null() & pl.col("problem").is_not_null()).height
    if pathless:
        notes.append(
            f"duplicates: {pathless:,} rows name no media file; they are never counted as one video, "
            "and count as copies only with the same question and the same options"
        )
    refs = frame.select("idx", "ref")
    exact = (
        frame.select("idx", "ref", first=first_copies(frame))
        .filter(pl.col("idx") != pl.col("first"))
        .join(refs.rename({"idx": "first", "ref": "first_ref"}), on="first")
        .sort("idx")
    )
    findings = []
    if exact.height:
        findings.append(
            Finding(
                "exact_duplicates",
                "warning",
                f"{exact.height:,} rows repeat an earlier row's question about the same video "
                "(normalised text): `vdata filter dedup` keeps the first",
                exact.height,
                _examples(exact, n, "repeats {first_ref}", fmt=True),
            )
        )
    scope = frame.select(known_video()).to_series()
    pairs = minhash_pairs(question_and_options(frame), scope, threshold=options.near_threshold)
    duplicated = set(exact["idx"].to_list())
    near = pl.DataFrame(
        {"idx": pairs.idx, "of": pairs.of, "sim": pairs.sim},
        schema={"idx": pl.UInt32, "of": pl.UInt32, "sim": pl.Float64},
    ).filter(~pl.col("idx").is_in(list(duplicated)))
    near = near.sort("idx", "sim", descending=[False, True]).unique("idx", keep="first", maintain_order=True)
    if near.height:
        near = near.join(refs, on="idx").join(refs.rename({"idx": "of", "ref": "of_ref"}), on="of")
        findings.append(
            Finding(
                "near_duplicates",
                "warning",
                f"{near.height:,} rows are near-copies of an earlier question about the same video "
                f"(MinHash Jaccard >= {options.near_threshold})",
                near.height,
                _examples(near, n, "near-copy of {of_ref} (similarity {sim:.2f})", fmt=True),
            )
        )
    return findings


def _eval_overlap(
    frame: pl.DataFrame,
    evals: list[EvalSet],
    options: AuditOptions,
    default_root: Path,
    n: int,
    notes: list[str],
) -> list[Finding]:
    media_root = options.media_root or default_root
    in_eval = frame.filter(is_eval_split(pl.col("split")))
    train = frame.filter(~is_eval_split(pl.col("split")))
    sets = list(evals)
    if in_eval.height and train.height:
        sets.append(EvalSet(f"split {in_eval['split'][0]}", in_eval, media_root))
    if not sets:
        notes.append("train/eval overlap: no eval split and no --eval sets")
        return []
    found = Overlaps.find(
        train,
        sets,
        media_root if media_root.is_dir() else None,
        options.ngram,
        across_videos=options.across_videos,
    )
    findings = []
    refs = frame.select("idx", "ref")
    if found.videos.height:
        videos = found.videos.join(refs, on="idx")
        by_how = Counter(videos["how"].to_list())
        findings.append(
            Finding(
                "eval_video_overlap",
                "error",
                f"{videos.height:,} training rows use a video that is also in an eval set ("
                + ", ".join(f"by {how}: {count:,}" for how, count in sorted(by_how.items()))
                + "): `vdata filter decontaminate`",
                videos.height,
                _examples(videos, n, "{eval_set}: {eval_ref} has the same video (by {how})", fmt=True),
            )
        )
    if found.questions.height:
        questions = found.questions.join(refs, on="idx")
        findings.append(
            Finding(
                "eval_question_overlap",
                "error",
                f"{questions.height:,} training questions share a {options.ngram}-word sequence "
                "with an eval question (or equal a short one)"
                + (" about any video" if options.across_videos else " about the same video"),
                questions.height,
                _examples(questions, n, "shares {shared} n-gram(s) with {eval_set}: {eval_ref}", fmt=True),
            )
        )
    return findings


def _multi_answer(frame: pl.DataFrame, n: int) -> list[Finding]:
    multi = frame.filter((pl.col("problem_type") == "multi-answer") & pl.col("answer").is_not_null())
    positions = {chr(65 + i): i for i in range(26)}
    letters = (
        multi.select("idx", "n_options", letter=pl.col("answer").str.split(","))
        .explode("letter")
        .with_columns(
            position=pl.col("letter")
            .str.strip_chars()
            .replace_strict(positions, default=None, return_dtype=pl.Int32)
        )
    )
    per_row = letters.group_by("idx").agg(
        picked=pl.col("position").drop_nulls().n_unique(),
        beyond=(pl.col("position").is_null() | (pl.col("position") >= pl.col("n_options"))).any(),
    )
    multi = multi.join(per_row, on="idx")
    findings = []
    impossible = multi.filter(
        (pl.col("n_options") >= 2) & ((pl.col("picked") >= pl.col("n_options")) | pl.col("beyond"))
    ).with_columns(
        why=pl.when(pl.col("beyond"))
        .then(pl.lit("names a letter with no option"))
        .otherwise(pl.lit("every option is correct: nothing to rule out"))
    )
    if impossible.height:
        findings.append(
            Finding(
                "impossible_multi_answer",
                "error",
                f"{impossible.height:,} multi-answer questions have an answer set no reader can pick "
                "(all options, or letters with no option)",
                impossible.height,
                _examples(impossible, n, "answer {answer}: {why}", fmt=True),
            )
        )
    flagged = pl.col("meta_json").str.contains(r'"(inverted|negated|is_negated)"\s*:\s*true')
    inverted = frame.filter(
        (pl.col("problem").is_not_null() & ~has_negation(pl.col("problem")))
        & (
            flagged
            | (
                (pl.col("problem_type") == "multi-answer")
                & (pl.col("n_options") >= 3)
                & (pl.col("answer").str.count_matches(r"\b[A-Z]\b") == pl.col("n_options") - 1)
            )
        )
    )
    if inverted.height:
        findings.append(
            Finding(
                "inverted_without_negation",
                "warning",
                f"{inverted.height:,} questions look inverted (every option but one is correct, or marked "
                "inverted) yet have no negation in the text: their labels are likely wrong (TW-GRPO's "
                "inversion left such questions unchanged)",
                inverted.height,
                _examples(inverted, n, "{problem}", fmt=True),
            )
        )
    return findings


def _missing_media(
    frame: pl.DataFrame, media_root: Path | None, default_root: Path, n: int, notes: list[str]
) -> list[Finding]:
    """Rows whose file is not under the media root. With --media-root, paths (absolute ones too)
    are read relative to it (`rebased_path`)."""
    root = media_root or default_root
    paths = frame.filter(pl.col("path").is_not_null()).select("idx", "ref", p=normalized_path(pl.col("path")))
    unique = paths["p"].unique().to_list()
    if not unique:
        if frame.height:
            notes.append(f"media files: none of the {frame.height:,} rows names one")
        return []
    if media_root is not None:
        if not media_root.is_dir():
            notes.append(
                f"media files of {paths.height:,} rows: --media-root {media_root} is not a directory"
            )
            return []
        rebased = {p: rebased_path(p, media_root.resolve()) for p in unique}
        paths = paths.with_columns(p=pl.col("p").replace_strict(rebased, return_dtype=pl.String))
        unique = list(set(rebased.values()))
    found = file_sizes(root, unique)
    if media_root is None and not found:
        notes.append(
            f"media files of {paths.height:,} rows: no media path resolves under {root}; "
            "pass --media-root DIR (absolute paths are read relative to it)"
        )
        return []
    exists = {p: p in found for p in unique}
    missing = paths.filter(pl.col("p").replace_strict(exists, return_dtype=pl.Boolean).not_())
    if not missing.height:
        return []
    return [
        Finding(
            "missing_media",
            "error",
            f"{missing.height:,} rows name a media file that is not under {root}",
            missing.height,
            _examples(missing, n, "{p} not found", fmt=True),
        )
    ]


def _examples(frame: pl.DataFrame, n: int, what: str, *, fmt: bool = False) -> list[tuple[str, str]]:
    rows = frame.head(n).to_dicts()
    return [(str(r["ref"]), what.format(**r) if fmt else what) for r in rows]


# ---------------------------------------------------------------- the report


def to_markdown(report: AuditReport) -> str:
    """The report as markdown: findings with counts and example rows, then the statistics."""
    verdict = f"{report.errors} error finding(s)" if report.errors else "no errors"
    lines = [
        f"# Audit of {report.path}",
        "",
        f"{report.rows:,} rows, {report.read_as}; {len(report.findings)} finding(s), {verdict}.",
        "",
        "## Findings",
        "",
    ]
    if not report.findings:
        lines.append("No problems found.")
    for finding in report.findings:
        lines.append(f"### {finding.severity}: {finding.code} ({finding.count:,} rows)")
        lines += ["", finding.title, ""]
        lines += [f"- `{ref}`: {_one_line(what)}" for ref, what in finding.examples]
        lines.append("")
    lines += ["## Answer letters", ""]
    if report.letters:
        lines += [
            "| split | rows | letters | chi-square p | always-X | uniform |",
            "|---|---|---|---|---|---|",
        ]
        for item in report.letters:
            counts = " ".join(f"{k}:{v}" for k, v in item["counts"].items())
            lines.append(
                f"| {item['split'] or '(none)'} | {item['rows']:,} | {counts} | {item['p_value']:.3g} | "
                f"{item['always_letter']} {item['always_accuracy']:.1%} | {item['uniform_accuracy']:.1%} |"
            )
    else:
        lines.append("None counted (see Not checked).")
    lines += ["", "## Option counts (choice questions)", ""]
    for split, counts in report.option_counts.items():
        shown = ", ".join(f"{k}: {v:,}" for k, v in sorted(counts.items()))
        lines.append(f"- {split or '(none)'}: {shown}")
    lines += ["", "## Null or empty fields", "", "| field | rows | null | empty |", "|---|---|---|---|"]
    for name, counts in report.fields.items():
        lines.append(f"| {name} | {counts['rows']:,} | {counts['null']:,} | {counts['empty']:,} |")
    if report.notes:
        lines += ["", "## Not checked", ""] + [f"- {note}" for note in report.notes]
    return "\n".join(lines) + "\n"


def _one_line(text: str, limit: int = 160) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
