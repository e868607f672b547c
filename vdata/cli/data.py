"""Commands that read and curate datasets: validate, inspect, audit, filter, export."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from vdata.cli import (
    ForceOption,
    app,
    choices,
    command_line,
    err,
    fail,
    filter_app,
    load,
    out,
    with_engine,
)
from vdata.filters import DEDUP_METHODS
from vdata.formats import FILE_TYPES, SHAPES


@app.command()
def validate(
    path: Annotated[
        Path, typer.Argument(help="A .json, .jsonl or .parquet file, or a dataset/run directory.")
    ],
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
    examples: Annotated[int, typer.Option(help="Example rows to show per problem code.")] = 3,
) -> None:
    """Check every row against the vdata record; exit 1 when any row has an error.

    Reads vdata records and Video-R1 rows (problem, options, solution, path, ...).
    Problems are grouped by code with counts and example row ids.
    """
    from vdata.report import summarize_problems

    loaded = load(path)
    summary = summarize_problems(loaded, max_examples=examples)
    if as_json:
        shown = {"path": str(path), "shape": loaded.shape, "read_as": loaded.read_as, **summary.to_json()}
        print(json.dumps(shown, indent=2))
    else:
        _print_validation(path, loaded.read_as or f"{loaded.shape} shape", summary)
    if summary.errors:
        raise typer.Exit(1)


def _print_validation(path: Path, read_as: str, summary: Any) -> None:
    out.print(f"{path}: {summary.rows} rows, {read_as}", highlight=False, soft_wrap=True)
    if not summary.groups:
        out.print("[green]no problems found[/green]")
        return
    table = Table(show_header=True, header_style="bold")
    for column in ("code", "severity", "count", "examples"):
        table.add_column(column, overflow="fold")
    for group in summary.groups:
        shown = "\n".join(f"{ref}: {message}" for ref, message in group.examples)
        style = "red" if group.severity == "error" else "yellow"
        table.add_row(group.code, f"[{style}]{group.severity}[/{style}]", str(group.count), shown)
    out.print(table)
    verdict = "[red]invalid[/red]" if summary.errors else "[green]valid, with warnings[/green]"
    out.print(f"{summary.rows_with_errors} of {summary.rows} rows have errors: {verdict}")


@app.command()
def inspect(
    path: Annotated[Path, typer.Argument(help="A dataset directory, a run directory, or a data file.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the statistics as JSON.")] = False,
) -> None:
    """Show splits, sizes and field statistics of a dataset (and a run's stages)."""
    from vdata.formats import DatasetReadError, LoadedRows, load_rows
    from vdata.report import field_stats
    from vdata.runstore import RunStore

    store = RunStore(path)
    run = store.read_run() if path.is_dir() else None
    try:
        loaded = load_rows(path)
    except DatasetReadError as exc:
        if run is None:
            fail(str(exc))
        loaded = LoadedRows(shape="none")  # a run that makes no question rows (split): its stages
    stats = field_stats(loaded)
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    size = sum(p.stat().st_size for p in files)
    tables = store.other_outputs() if run else {}
    if as_json:
        print(
            json.dumps(
                {"path": str(path), "bytes": size, "splits": stats, "tables": tables, "run": run},
                indent=2,
                default=str,
            )
        )
        return
    shape = f"{len(loaded)} rows, {loaded.shape} shape" if loaded.shape != "none" else "no question rows"
    out.print(f"{path}: {shape}, {size / 1e6:.2f} MB on disk", highlight=False)
    for name, rows in tables.items():
        out.print(f"  {name}: {rows} rows", highlight=False)
    if run:
        table = Table(title=f"run of {run.get('recipe')} ({run.get('status')})")
        for column in ("stage", "status", "in", "kept", "rejected", "seconds"):
            table.add_column(column)
        for stage in run.get("stages", []):
            table.add_row(
                stage["dir"],
                stage["status"],
                *(str(stage[k]) for k in ("rows_in", "rows_out", "rejected", "seconds")),
            )
        out.print(table)
    for split, numbers in stats.items():
        table = Table(title=f"split {split}: {numbers['rows']} rows, {numbers['videos']} videos")
        table.add_column("field")
        table.add_column("statistics", overflow="fold")
        for key, value in numbers.items():
            if key not in ("rows", "videos"):
                table.add_row(key, _compact(value))
        out.print(table)


def _compact(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k}: {v}" for k, v in value.items()) or "-"
    return str(value)


AuditFormat = choices("AuditFormat", ("auto", *SHAPES, *FILE_TYPES))  # a row shape or a file type


def _shape_and_file_type(fmt: AuditFormat) -> tuple[str, str]:
    """--format names a row shape (vdata, video-r1, ...) or a file type (jsonl, csv)."""
    if fmt.value in FILE_TYPES:
        return "auto", fmt.value
    return fmt.value, "auto"


@app.command()
def audit(
    path: Annotated[
        Path, typer.Argument(help="A dataset: a file (.json, .jsonl, .csv, .parquet) or a directory.")
    ],
    fmt: Annotated[
        AuditFormat, typer.Option("--format", help="Row shape or file type; auto reads it from the keys.")
    ] = AuditFormat["auto"],
    evals: Annotated[
        list[Path] | None,
        typer.Option("--eval", help="An eval set to check for overlap (repeatable; any format)."),
    ] = None,
    media_root: Annotated[
        Path | None, typer.Option(help="Folder the rows' video paths are relative to (checks files).")
    ] = None,
    report: Annotated[
        Path | None, typer.Option("--report", help="Also write the report as markdown.")
    ] = None,
    near_threshold: Annotated[float, typer.Option(help="MinHash Jaccard of a near-duplicate.")] = 0.8,
    ngram: Annotated[int, typer.Option(help="Words a question must share with an eval question.")] = 8,
    across_videos: Annotated[
        bool,
        typer.Option(
            help="Count a question shared with an eval question about another video too "
            "(by default an overlap needs the same video: templates are not contamination)."
        ),
    ] = False,
    examples: Annotated[int, typer.Option(help="Example rows per finding.")] = 3,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Find the defects of a dataset in any common format; exit 1 when there are errors.

    Row validation, then dataset checks: answer-letter skew per split (chi-square,
    always-X score), exact and near-duplicate questions, videos and questions shared
    with eval sets (the dataset's own eval split and --eval sets), option counts,
    impossible multi-answer sets, inverted questions without a negation, null or
    empty fields, missing media files.
    """
    from vdata.filters.audit import AuditOptions, to_markdown
    from vdata.filters.audit import audit as run_audit
    from vdata.formats import DatasetReadError
    from vdata.runstore import OutputRefused, atomic_write_bytes, refuse_overlap

    if report is not None:
        try:
            refuse_overlap(report, [("the dataset", path), *(("--eval", e) for e in evals or [])], "--report")
        except OutputRefused as exc:
            fail(str(exc))
    shape, file_type = _shape_and_file_type(fmt)
    options = AuditOptions(
        evals=list(evals or []),
        media_root=media_root,
        shape=shape,
        file_type=file_type,
        near_threshold=near_threshold,
        ngram=ngram,
        examples=examples,
        across_videos=across_videos,
    )
    try:
        result = run_audit(path, options)
    except DatasetReadError as exc:
        fail(str(exc))
    if report is not None:
        try:
            atomic_write_bytes(report, to_markdown(result).encode())
        except OSError as exc:
            fail(f"cannot write {report} ({exc.strerror or exc}); give --report a file you can write")
    if as_json:
        print(json.dumps(result.to_json(), indent=2, default=str))
    else:
        _print_audit(result, report)
    if result.errors:
        raise typer.Exit(1)


def _print_audit(result: Any, report: Path | None) -> None:
    out.print(f"{result.path}: {result.rows:,} rows, {result.read_as}", highlight=False, soft_wrap=True)
    if result.findings:
        table = Table(show_header=True, header_style="bold", title="findings")
        for column in ("severity", "finding", "rows", "what", "examples"):
            table.add_column(column, overflow="fold")
        for finding in result.findings:
            style = {"error": "red", "warning": "yellow"}.get(finding.severity, "white")
            shown = "\n".join(f"{ref}: {what[:100]}" for ref, what in finding.examples)
            table.add_row(
                f"[{style}]{finding.severity}[/{style}]",
                finding.code,
                f"{finding.count:,}",
                finding.title,
                shown,
            )
        out.print(table)
    else:
        out.print("[green]no problems found[/green]")
    if result.letters:
        table = Table(title="answer letters (single-answer choice questions)")
        for column in ("split", "rows", "letters", "chi-square p", "always-X", "uniform"):
            table.add_column(column)
        for item in result.letters:
            table.add_row(
                item["split"] or "(none)",
                f"{item['rows']:,}",
                " ".join(f"{k}:{v}" for k, v in item["counts"].items()),
                f"{item['p_value']:.3g}",
                f"{item['always_letter']} {item['always_accuracy']:.1%}",
                f"{item['uniform_accuracy']:.1%}",
            )
        out.print(table)
    for note in result.notes:
        out.print(f"[yellow]not checked[/yellow] {note}", highlight=False, soft_wrap=True)
    verdict = f"[red]{result.errors} error finding(s)[/red]" if result.errors else "[green]no errors[/green]"
    where = f"; report: {report}" if report else ""
    out.print(f"{verdict}{where}", highlight=False)


DatasetArg = Annotated[
    Path, typer.Argument(help="The dataset: a file (.json, .jsonl, .csv, .parquet) or a directory.")
]
OutOption = Annotated[Path, typer.Option("--out", help="Run directory; the kept rows go to OUT/dataset.")]
FormatOption = Annotated[
    AuditFormat, typer.Option("--format", help="Row shape or file type; auto reads it from the keys.")
]
SeedOption = Annotated[int, typer.Option(help="Seed of every random choice.")]
QuietOption = Annotated[bool, typer.Option("--quiet", help="Log lines instead of progress bars.")]


def _filter(
    name: str,
    dataset: Path,
    out_dir: Path,
    fmt: AuditFormat,
    seed: int,
    quiet: bool,
    force: bool = False,
    endpoints: Callable[[Any], Any] | None = None,
    engine: Any = None,
    **options: Any,
):
    """Runs filter `name` and says what it kept; `endpoints(stage)` gives a filter that calls a
    model its endpoints."""
    from vdata.filters.run import filter_stage, run_filter
    from vdata.formats import DatasetReadError
    from vdata.runner import RunError

    shape, file_type = _shape_and_file_type(fmt)
    if file_type != "auto":
        fail(f"--format {file_type} is for audit; filters read the file type from its name")
    try:
        stage = filter_stage(name, **options)
        result = run_filter(
            stage,
            dataset,
            out_dir,
            shape=shape,
            seed=seed,
            quiet=quiet,
            command=command_line(),
            endpoints=endpoints(stage) if endpoints else None,
            force=force,
            inputs=[("--eval", path) for path in options.get("evals", [])],
            engine=engine,
        )
    except (DatasetReadError, RunError, ValueError) as exc:
        fail(str(exc))
    load = f", {result.load_rejected} unreadable (rejects/load.parquet)" if result.load_rejected else ""
    out.print(
        f"{name}: kept {result.kept:,}, rejected {result.rejected:,} (rejects/{name}.parquet){load}; "
        f"dataset: {result.dataset}",
        highlight=False,
        soft_wrap=True,
    )


@filter_app.command("validate")
@with_engine
def filter_validate(
    dataset: DatasetArg,
    out_dir: OutOption,
    fmt: FormatOption = AuditFormat["auto"],
    media_root: Annotated[
        Path | None,
        typer.Option(
            help="Folder the videos are in: paths (absolute ones too) are rewritten relative to it, "
            "and rows whose file is not there are rejected as missing_media."
        ),
    ] = None,
    seed: SeedOption = 0,
    quiet: QuietOption = False,
    force: ForceOption = False,
    engine: Any = None,
) -> None:
    """Keep rows with no validation error (the codes of `vdata validate`). Warnings (an absolute
    path, a grounding span a little past the end) keep the row."""
    if media_root is not None and not media_root.is_dir():
        fail(f"--media-root {media_root}: not a directory")
    options = {"media_root": str(media_root.resolve())} if media_root else {}
    _filter("validate", dataset, out_dir, fmt, seed, quiet, force, **options, engine=engine)


@filter_app.command("balance-letters")
@with_engine
def filter_balance_letters(
    dataset: DatasetArg,
    out_dir: OutOption,
    fmt: FormatOption = AuditFormat["auto"],
    seed: SeedOption = 0,
    quiet: QuietOption = False,
    force: ForceOption = False,
    engine: Any = None,
) -> None:
    """Reshuffle options so answer letters are uniform within each split (seeded).

    Options, solution and letter references in the reasoning move together; choice
    rows whose options cannot be read are rejected (invalid_choice).
    """
    _filter("balance-letters", dataset, out_dir, fmt, seed, quiet, force, engine=engine)


DedupMethod = choices("DedupMethod", DEDUP_METHODS)


@filter_app.command("dedup")
@with_engine
def filter_dedup(
    dataset: DatasetArg,
    out_dir: OutOption,
    method: Annotated[
        DedupMethod, typer.Option(help="exact only, or exact plus near-copies by MinHash or embeddings.")
    ] = DedupMethod["minhash"],
    threshold: Annotated[
        float | None, typer.Option(help="Near-copy similarity: MinHash Jaccard (0.8) or cosine (0.95).")
    ] = None,
    across_videos: Annotated[
        bool, typer.Option(help="Compare questions about different videos too (default: same video).")
    ] = False,
    fmt: FormatOption = AuditFormat["auto"],
    seed: SeedOption = 0,
    quiet: QuietOption = False,
    force: ForceOption = False,
    engine: Any = None,
) -> None:
    """Drop repeated questions, keeping the first of each group.

    Exact: the same normalised question about the same video. minhash: also near-copies
    of question + options (word bigrams, Jaccard). embedding: near-copies by cosine of
    all-MiniLM-L6-v2 embeddings (the `embed` extra).
    """
    _filter(
        "dedup",
        dataset,
        out_dir,
        fmt,
        seed,
        quiet,
        force,
        method=method.value,
        threshold=threshold,
        across_videos=across_videos,
        engine=engine,
    )


@filter_app.command("decontaminate")
@with_engine
def filter_decontaminate(
    dataset: DatasetArg,
    out_dir: OutOption,
    evals: Annotated[list[Path], typer.Option("--eval", help="An eval set (repeatable; any format).")],
    media_root: Annotated[
        Path | None, typer.Option(help="Folder the dataset's video paths are relative to (content hashes).")
    ] = None,
    ngram: Annotated[int, typer.Option(help="Words a question must share with an eval question.")] = 8,
    across_videos: Annotated[
        bool,
        typer.Option(help="Count a shared question about another video too (templated questions match)."),
    ] = False,
    fmt: FormatOption = AuditFormat["auto"],
    seed: SeedOption = 0,
    quiet: QuietOption = False,
    force: ForceOption = False,
    engine: Any = None,
) -> None:
    """Drop rows whose video (path, file name or content) or question overlaps an eval set."""
    for path in evals:
        if not path.exists():
            fail(f"--eval {path}: no such file or directory")
    _filter(
        "decontaminate",
        dataset,
        out_dir,
        fmt,
        seed,
        quiet,
        force,
        evals=[str(p) for p in evals],
        media_root=str(media_root) if media_root else None,
        ngram=ngram,
        across_videos=across_videos,
        engine=engine,
    )


PolicyOption = Annotated[
    str | None,
    typer.Option(
        "--policy",
        help="The policy's endpoint: local (the embedded model, text only), URL or URL@MODEL "
        "(an OpenAI-compatible server; a vision-language model gets each row's clip), or a name "
        "from --models.",
    ),
]
ModelsOption = Annotated[Path | None, typer.Option("--models", help="YAML of endpoints per role.")]
ResponsePrefixOption = Annotated[
    str,
    typer.Option(
        "--response-prefix",
        help="The start of every answer (the trainer's response_prefix, e.g. '<answer>'); "
        "needs an in-process policy (--policy hf:MODEL).",
    ),
]


def _model_filter(
    name: str,
    dataset: Path,
    out_dir: Path,
    fmt: AuditFormat,
    seed: int,
    quiet: bool,
    policy: str | None,
    models: Path | None,
    force: bool = False,
    engine: Any = None,
    **options: Any,
) -> None:
    """A filter whose stage calls a model: its role's endpoint from --models and the flag."""
    from vdata.cli import endpoints_from_options

    def endpoints(stage: Any) -> Any:
        return endpoints_from_options(models, {stage.role: policy})

    _filter(name, dataset, out_dir, fmt, seed, quiet, force, endpoints, **options, engine=engine)


def _media_root(dataset: Path) -> str:
    from vdata.formats import media_root_of

    return str(media_root_of(dataset))


def _band(text: str) -> tuple[float, float]:
    try:
        low, high = (float(part) for part in text.split(","))
    except ValueError:
        fail(f"--band {text!r}: give LOW,HIGH, e.g. 0,1 (keep 0 < pass rate < 1)")
    if not 0 <= low < high <= 1:
        fail(f"--band {text!r}: need 0 <= LOW < HIGH <= 1")
    return low, high


@filter_app.command("difficulty")
@with_engine
def filter_difficulty(
    dataset: DatasetArg,
    out_dir: OutOption,
    policy: PolicyOption = None,
    models: ModelsOption = None,
    samples: Annotated[int, typer.Option(help="Answers sampled per question.")] = 8,
    band: Annotated[str, typer.Option(help="Keep LOW < pass rate < HIGH.")] = "0,1",
    temperature: Annotated[float, typer.Option(help="Sampling temperature of the policy.")] = 1.0,
    max_tokens: Annotated[int, typer.Option(help="Longest answer, in tokens.")] = 256,
    no_video: Annotated[bool, typer.Option("--no-video", help="Send the question only.")] = False,
    tolerant_letters: Annotated[
        bool, typer.Option(help="Read 'B.' or '(B)' as B, as the trainer can.")
    ] = False,
    per_request: Annotated[
        int, typer.Option(help="Samples asked in one request (the API's n) where the server gives them.")
    ] = 1,
    constrain: Annotated[
        bool,
        typer.Option(
            "--constrain", help="Hold choice answers to their letters (measures knowledge, not the format)."
        ),
    ] = False,
    response_prefix: ResponsePrefixOption = "",
    fmt: FormatOption = AuditFormat["auto"],
    seed: SeedOption = 0,
    quiet: QuietOption = False,
    force: ForceOption = False,
    engine: Any = None,
) -> None:
    """Keep questions the policy answers right sometimes, not always or never: N samples per
    question scored by the trainer's reward; the row gets difficulty.pass_rate. Rejects:
    too_easy, too_hard, policy_failed (no answer: never counted as wrong)."""
    if samples < 1:
        fail(f"--samples {samples}: at least 1")
    _model_filter(
        "difficulty",
        dataset,
        out_dir,
        fmt,
        seed,
        quiet,
        policy,
        models,
        force,
        samples=samples,
        band=_band(band),
        temperature=temperature,
        max_tokens=max_tokens,
        video=not no_video,
        tolerant_letters=tolerant_letters,
        per_request=per_request,
        constrain=constrain,
        response_prefix=response_prefix,
        media_root=_media_root(dataset),
        engine=engine,
    )


@filter_app.command("blind")
@with_engine
def filter_blind(
    dataset: DatasetArg,
    out_dir: OutOption,
    policy: PolicyOption = None,
    models: ModelsOption = None,
    samples: Annotated[int, typer.Option(help="Answers sampled per question, without the video.")] = 8,
    alpha: Annotated[float, typer.Option(help="Binomial p below which the text leaks the answer.")] = 0.01,
    temperature: Annotated[float, typer.Option(help="Sampling temperature.")] = 1.0,
    max_tokens: Annotated[int, typer.Option(help="Longest answer, in tokens.")] = 256,
    response_prefix: ResponsePrefixOption = "",
    fmt: FormatOption = AuditFormat["auto"],
    seed: SeedOption = 0,
    quiet: QuietOption = False,
    force: ForceOption = False,
    engine: Any = None,
) -> None:
    """Drop questions answerable without the video: the policy answers from the text alone, and
    a pass rate far above guessing (one-sided binomial test) rejects answerable_without_video."""
    if samples < 1:
        fail(f"--samples {samples}: at least 1")
    _model_filter(
        "blind",
        dataset,
        out_dir,
        fmt,
        seed,
        quiet,
        policy,
        models,
        force,
        samples=samples,
        alpha=alpha,
        temperature=temperature,
        max_tokens=max_tokens,
        video=False,
        response_prefix=response_prefix,
        media_root=_media_root(dataset),
        engine=engine,
    )


JudgeOption = Annotated[
    str | None,
    typer.Option("--judge", help="The judge's endpoint: local (the embedded model), URL, URL@MODEL, a name."),
]


JUDGED = {
    "sufficiency": """Keep rows whose evidence text alone leads the judge to the gold answer
    (Video-Thinker's hindsight check). Rejects: insufficient_evidence, no_evidence.""",
    "consistency": """Keep rows whose reasoning supports their answer without repeating itself or
    running long, as a judge reads it (VerIPO's verifier). Rejects: reasoning_inconsistent,
    reasoning_repetitive, reasoning_overlong, no_reasoning.""",
    "boundary": """Drop temporal grounding rows whose query also matches moments outside the
    labelled span, as a vision-language judge watching the video finds them (VideoTG-R1).
    Rejects: partially_annotated, no_label_span, media_error.""",
}
WATCHING = ("boundary",)  # judged filters that read the rows' videos


def _judged_command(name: str, doc: str) -> None:
    """`vdata filter NAME` for a filter whose model is the judge."""

    def command(
        dataset: DatasetArg,
        out_dir: OutOption,
        judge: JudgeOption = None,
        models: ModelsOption = None,
        fmt: FormatOption = AuditFormat["auto"],
        seed: SeedOption = 0,
        quiet: QuietOption = False,
        force: ForceOption = False,
        engine: Any = None,
    ) -> None:
        media = {"media_root": _media_root(dataset)} if name in WATCHING else {}
        _model_filter(name, dataset, out_dir, fmt, seed, quiet, judge, models, force, **media, engine=engine)

    command.__doc__ = doc
    filter_app.command(name)(with_engine(command))


for _name, _doc in JUDGED.items():
    _judged_command(_name, _doc)


@filter_app.command("augment")
@with_engine
def filter_augment(
    dataset: DatasetArg,
    out_dir: OutOption,
    fmt: FormatOption = AuditFormat["auto"],
    seed: SeedOption = 0,
    quiet: QuietOption = False,
    force: ForceOption = False,
    engine: Any = None,
) -> None:
    """Difficulty-aware augmentation (DeepVideo-R1) of rows that carry a pass rate: a hint from
    the evidence for questions never answered, frame noise (meta_json.frame_noise, applied by
    vdata train) for questions always answered. Rejects: no_difficulty, too_hard."""
    _filter("augment", dataset, out_dir, fmt, seed, quiet, force, engine=engine)


@filter_app.command("length")
@with_engine
def filter_length(
    dataset: DatasetArg,
    out_dir: OutOption,
    min_question: Annotated[int, typer.Option(help="Fewest characters in the question.")] = 1,
    max_question: Annotated[int | None, typer.Option(help="Most characters in the question.")] = None,
    min_reasoning: Annotated[int, typer.Option(help="Fewest characters of reasoning (process).")] = 0,
    max_reasoning: Annotated[int | None, typer.Option(help="Most characters of reasoning.")] = None,
    fmt: FormatOption = AuditFormat["auto"],
    seed: SeedOption = 0,
    quiet: QuietOption = False,
    force: ForceOption = False,
    engine: Any = None,
) -> None:
    """Keep rows whose question and reasoning lengths (characters) are within bounds."""
    _filter(
        "length",
        dataset,
        out_dir,
        fmt,
        seed,
        quiet,
        force,
        min_question=min_question,
        max_question=max_question,
        min_reasoning=min_reasoning,
        max_reasoning=max_reasoning,
        engine=engine,
    )


@filter_app.command("sample")
@with_engine
def filter_sample(
    dataset: DatasetArg,
    out_dir: OutOption,
    n: Annotated[int | None, typer.Option("--n", help="Rows to keep.")] = None,
    fraction: Annotated[float | None, typer.Option(help="Share of rows to keep (0..1).")] = None,
    by: Annotated[str, typer.Option(help="Fields of the strata, comma-separated.")] = "split,category",
    fmt: FormatOption = AuditFormat["auto"],
    seed: SeedOption = 0,
    quiet: QuietOption = False,
    force: ForceOption = False,
    engine: Any = None,
) -> None:
    """Keep a seeded sample, stratified: each split x category keeps its share."""
    if (n is None) == (fraction is None):
        fail("give exactly one of --n and --fraction")
    if fraction is not None and not 0 < fraction <= 1:
        fail(f"--fraction {fraction} must be in (0, 1]")
    if n is not None and n < 0:
        fail(f"--n {n} must not be negative")
    fields = tuple(part.strip() for part in by.split(",") if part.strip())
    _filter(
        "sample", dataset, out_dir, fmt, seed, quiet, force, n=n, fraction=fraction, by=fields, engine=engine
    )


@app.command("export")
def export_command(
    dataset: Annotated[Path, typer.Argument(help="A vdata dataset or run directory, or a data file.")],
    fmt: Annotated[
        str,
        typer.Option("--format", help="video-r1 | easyr1 | long-rl | verl | tw-grpo | vst | llamafactory"),
    ],
    out: Annotated[Path, typer.Option("--out", help="The file to write.")],
    allow_unsafe_paths: Annotated[
        bool, typer.Option("--allow-unsafe-paths", help="Write rows whose path is absolute or has '..'.")
    ] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Replace --out if it exists (never the input).")
    ] = False,
) -> None:
    """Write a vdata dataset in another trainer's format; every row left out is reported.

    Rows the format cannot express are listed (exit 0). Rows that are defective (an
    unreadable line, a validation error, an absolute or '..' path) are refused, never
    reshaped, and the exit code is 1.
    """
    from vdata.cards.exports import FORMATS, ExportRefused, export, vst_paths
    from vdata.runstore import OutputRefused, refuse_overlap

    if fmt not in FORMATS:
        fail(f"unknown format {fmt!r}; formats: {', '.join(FORMATS)}")
    try:
        for target in [out] + (vst_paths(out) if fmt == "vst" else []):
            refuse_overlap(target, [("the dataset", dataset)])
    except OutputRefused as exc:
        fail(str(exc))
    loaded = load(dataset)
    if loaded.shape != "vdata":
        fail(f"{dataset} holds {loaded.shape} rows; export reads vdata records")
    try:
        report = export(
            loaded.rows,
            fmt,
            out,
            unreadable=loaded.unreadable,
            allow_unsafe_paths=allow_unsafe_paths,
            force=force,
        )
    except ExportRefused as exc:
        fail(str(exc))
    err.print(f"{report.written} rows written to {out} ({fmt})", highlight=False)
    for path in report.also:
        err.print(f"also written: {path}", highlight=False)
    err.print(f"reward: {report.reward}", highlight=False, soft_wrap=True)
    for note in report.notes:
        err.print(f"note: {note}", highlight=False, soft_wrap=True)
    for items, what in (
        (report.not_expressed, f"[yellow]{len(report.not_expressed)} rows not expressible in {fmt}:"),
        (report.refused, f"[red]{len(report.refused)} rows refused:"),
    ):
        if not items:
            continue
        err.print(what, highlight=False)
        kinds = Counter(item["reason"].split(":")[0] for item in items)
        for kind, count in kinds.most_common():
            example = next(i for i in items if i["reason"].split(":")[0] == kind)
            err.print(f"  {count} x {kind} (e.g. {example['id']}: {example['reason']})", highlight=False)
    if report.refused:
        raise typer.Exit(1)


@app.command()
def view(
    path: Annotated[
        Path, typer.Argument(help="A dataset directory, a run directory, or any file vdata reads.")
    ],
    port: Annotated[int, typer.Option(help="Port to listen on; 0: a free one.", min=0, max=65535)] = 0,
    host: Annotated[
        str,
        typer.Option(
            help="IP address to listen on (0.0.0.0: every interface); anything but loopback shows the "
            "data to the network."
        ),
    ] = "127.0.0.1",
    open_browser: Annotated[bool, typer.Option("--open", help="Open the page in a browser.")] = False,
    media_root: Annotated[
        Path | None,
        typer.Option(help="Folder the rows' video paths are under (absolute ones too); default: the data's."),
    ] = None,
) -> None:
    """Browse a dataset in a local web page: rows with their video segments, evidence and
    reasoning, and (for a run) every reject with its reason. Read-only; stops on Ctrl-C."""
    import errno

    from vdata.view import ViewData, ViewError, is_loopback, listen_address, serve

    try:
        host = listen_address(host)
        data = ViewData(path, audit=_audit_for_view, media_root=media_root)
    except ViewError as exc:
        fail(str(exc))
    if not is_loopback(host):
        err.print(
            f"[yellow]warning:[/yellow] listening on {host}: anyone who can reach this machine can read "
            f"{data.path} and its videos",
            highlight=False,
            soft_wrap=True,
        )

    def ready(url: str) -> None:
        out.print(f"vdata view: {data.rows.height:,} rows, {data.rejects.height:,} rejects", highlight=False)
        out.print(f"serving {data.path} at {url} (Ctrl-C stops)", highlight=False, soft_wrap=True)
        if open_browser:
            import webbrowser

            webbrowser.open(url)

    try:
        serve(data, host, port, ready)
    except OSError as exc:
        taken = exc.errno == errno.EADDRINUSE
        fix = "give another --port" if taken else f"give --host an address of this machine ({host} is not)"
        fail(f"cannot listen on {host}:{port} ({exc.strerror or exc}); {fix}")


def _audit_for_view(path: Path) -> dict[str, Any]:
    from vdata.filters.audit import audit as run_audit

    return run_audit(path).to_json()
