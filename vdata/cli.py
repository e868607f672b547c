"""The `vdata` command."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from collections import Counter
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

import vdata
from vdata.progress import log_console

HELP = """\
vdata builds, curates and verifies training data for video reasoning with RL.

A typical session:

\b
  vdata serve local                 start the embedded model (SmolLM2-135M) for offline runs
  vdata build longvideo-reason --videos examples/videos --captions examples/captions.jsonl --out runs/lvr
                                    build a reasoning dataset (resumable; --reasoner URL@MODEL)
  vdata synth --n 4 --out runs/synth     render videos with known content and ground truth
  vdata split videos/ --out runs/clips   cut videos into 10 s clips (or --mode scene)
  vdata validate data.jsonl         check a dataset (vdata or Video-R1 rows) row by row
  vdata audit train.json --eval test.json   find a dataset's defects (letters, duplicates, leaks)
  vdata filter dedup data.jsonl --out runs/dedup   curate: validate, balance-letters, dedup, ...
  vdata inspect runs/demo           splits, sizes and field statistics of a dataset or run
  vdata card runs/lvr/dataset       write the dataset card; vdata push ... to the Hub
  vdata export runs/lvr/dataset --format easyr1 --out train.jsonl   rows for other trainers
  vdata train grpo --config run.yaml steps=20   a short GRPO run to check a data change

Every command takes --help. Runs are directories: rerun the same command to
resume; nothing is dropped without a reject row that says why.
"""

app = typer.Typer(help=HELP, no_args_is_help=True, rich_markup_mode=None, add_completion=False)
serve_app = typer.Typer(help="Start model servers that vdata's annotators can use.", no_args_is_help=True)
app.add_typer(serve_app, name="serve")
filter_app = typer.Typer(
    help="Curate a dataset with one filter: vdata filter NAME DATASET --out DIR. Kept rows go to "
    "DIR/dataset, dropped rows to DIR/rejects/NAME.parquet with their reason.",
    no_args_is_help=True,
)
app.add_typer(filter_app, name="filter")
train_app = typer.Typer(help="Short RL runs on a dataset, to compare dataset variants.", no_args_is_help=True)
app.add_typer(train_app, name="train")

out = log_console(stderr=False)
err = log_console()


def _version(value: bool) -> None:
    if value:
        print(f"vdata {vdata.__version__}")
        raise typer.Exit()


@app.callback()
def main_callback(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """vdata: data for video reasoning with RL."""


def _fail(message: str, code: int = 2) -> None:
    err.print(f"[bold red]error:[/bold red] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _load(path: Path):
    from vdata.formats import DatasetReadError, load_rows

    try:
        return load_rows(path)
    except DatasetReadError as exc:
        _fail(str(exc))


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

    loaded = _load(path)
    summary = summarize_problems(loaded, max_examples=examples)
    if as_json:
        print(json.dumps({"path": str(path), "shape": loaded.shape, **summary.to_json()}, indent=2))
    else:
        _print_validation(path, loaded.shape, summary)
    if summary.errors:
        raise typer.Exit(1)


def _print_validation(path: Path, shape: str, summary: Any) -> None:
    out.print(f"{path}: {summary.rows} rows ({shape} shape)", highlight=False, soft_wrap=True)
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
            _fail(str(exc))
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


class AuditFormat(str, Enum):
    auto = "auto"
    vdata = "vdata"
    video_r1 = "video-r1"
    easyr1 = "easyr1"
    tw_grpo = "tw-grpo"
    jsonl = "jsonl"
    csv = "csv"


def _shape_and_file_type(fmt: AuditFormat) -> tuple[str, str]:
    """--format names a row shape (vdata, video-r1, ...) or a file type (jsonl, csv)."""
    if fmt in (AuditFormat.jsonl, AuditFormat.csv):
        return "auto", fmt.value
    return fmt.value, "auto"


@app.command()
def audit(
    path: Annotated[
        Path, typer.Argument(help="A dataset: a file (.json, .jsonl, .csv, .parquet) or a directory.")
    ],
    fmt: Annotated[
        AuditFormat, typer.Option("--format", help="Row shape or file type; auto reads it from the keys.")
    ] = AuditFormat.auto,
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

    shape, file_type = _shape_and_file_type(fmt)
    options = AuditOptions(
        evals=list(evals or []), media_root=media_root, shape=shape, file_type=file_type,
        near_threshold=near_threshold, ngram=ngram, examples=examples,
    )  # fmt: skip
    try:
        result = run_audit(path, options)
    except DatasetReadError as exc:
        _fail(str(exc))
    if report is not None:
        report.parent.mkdir(parents=True, exist_ok=True)
        report.write_text(to_markdown(result))
    if as_json:
        print(json.dumps(result.to_json(), indent=2, default=str))
    else:
        _print_audit(result, report)
    if result.errors:
        raise typer.Exit(1)


def _print_audit(result: Any, report: Path | None) -> None:
    out.print(f"{result.path}: {result.rows:,} rows ({result.shape} shape)", highlight=False, soft_wrap=True)
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
                item["split"] or "(none)", f"{item['rows']:,}",
                " ".join(f"{k}:{v}" for k, v in item["counts"].items()), f"{item['p_value']:.3g}",
                f"{item['always_letter']} {item['always_accuracy']:.1%}", f"{item['uniform_accuracy']:.1%}",
            )  # fmt: skip
        out.print(table)
    for note in result.notes:
        out.print(f"[dim]not checked: {note}[/dim]", highlight=False)
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
    name: str, dataset: Path, out_dir: Path, fmt: AuditFormat, seed: int, quiet: bool, **options: Any
):
    from vdata.filters.run import filter_stage, run_filter
    from vdata.formats import DatasetReadError
    from vdata.runner import RunError

    shape, file_type = _shape_and_file_type(fmt)
    if file_type != "auto":
        _fail(f"--format {file_type} is for audit; filters read the file type from its name")
    try:
        stage = filter_stage(name, **options)
        result = run_filter(stage, dataset, out_dir, shape=shape, seed=seed, quiet=quiet)
    except (DatasetReadError, RunError, ValueError) as exc:
        _fail(str(exc))
    load = f", {result.load_rejected} unreadable (rejects/load.parquet)" if result.load_rejected else ""
    out.print(
        f"{name}: kept {result.kept:,}, rejected {result.rejected:,} (rejects/{name}.parquet){load}; "
        f"dataset: {result.dataset}",
        highlight=False,
        soft_wrap=True,
    )


@filter_app.command("validate")
def filter_validate(
    dataset: DatasetArg, out_dir: OutOption, fmt: FormatOption = AuditFormat.auto,
    seed: SeedOption = 0, quiet: QuietOption = False,
) -> None:  # fmt: skip
    """Keep rows with no validation error (the codes of `vdata validate`)."""
    _filter("validate", dataset, out_dir, fmt, seed, quiet)


@filter_app.command("balance-letters")
def filter_balance_letters(
    dataset: DatasetArg, out_dir: OutOption, fmt: FormatOption = AuditFormat.auto,
    seed: SeedOption = 0, quiet: QuietOption = False,
) -> None:  # fmt: skip
    """Reshuffle options so answer letters are uniform within each split (seeded).

    Options, solution and letter references in the reasoning move together; choice
    rows whose options cannot be read are rejected (invalid_choice).
    """
    _filter("balance-letters", dataset, out_dir, fmt, seed, quiet)


class DedupMethod(str, Enum):
    exact = "exact"
    minhash = "minhash"
    embedding = "embedding"


@filter_app.command("dedup")
def filter_dedup(
    dataset: DatasetArg, out_dir: OutOption,
    method: Annotated[
        DedupMethod, typer.Option(help="exact only, or exact plus near-copies by MinHash or embeddings.")
    ] = DedupMethod.minhash,
    threshold: Annotated[
        float | None, typer.Option(help="Near-copy similarity: MinHash Jaccard (0.8) or cosine (0.95).")
    ] = None,
    across_videos: Annotated[
        bool, typer.Option(help="Compare questions about different videos too (default: same video).")
    ] = False,
    fmt: FormatOption = AuditFormat.auto, seed: SeedOption = 0, quiet: QuietOption = False,
) -> None:  # fmt: skip
    """Drop repeated questions, keeping the first of each group.

    Exact: the same normalised question about the same video. minhash: also near-copies
    of question + options (word bigrams, Jaccard). embedding: near-copies by cosine of
    all-MiniLM-L6-v2 embeddings (the `embed` extra).
    """
    _filter(
        "dedup", dataset, out_dir, fmt, seed, quiet,
        method=method.value, threshold=threshold, across_videos=across_videos,
    )  # fmt: skip


@filter_app.command("decontaminate")
def filter_decontaminate(
    dataset: DatasetArg, out_dir: OutOption,
    evals: Annotated[list[Path], typer.Option("--eval", help="An eval set (repeatable; any format).")],
    media_root: Annotated[
        Path | None, typer.Option(help="Folder the dataset's video paths are relative to (content hashes).")
    ] = None,
    ngram: Annotated[int, typer.Option(help="Words a question must share with an eval question.")] = 8,
    fmt: FormatOption = AuditFormat.auto, seed: SeedOption = 0, quiet: QuietOption = False,
) -> None:  # fmt: skip
    """Drop rows whose video (path, file name or content) or question overlaps an eval set."""
    for path in evals:
        if not path.exists():
            _fail(f"--eval {path}: no such file or directory")
    _filter(
        "decontaminate", dataset, out_dir, fmt, seed, quiet,
        evals=[str(p) for p in evals], media_root=str(media_root) if media_root else None, ngram=ngram,
    )  # fmt: skip


@filter_app.command("length")
def filter_length(
    dataset: DatasetArg, out_dir: OutOption,
    min_question: Annotated[int, typer.Option(help="Fewest characters in the question.")] = 1,
    max_question: Annotated[int | None, typer.Option(help="Most characters in the question.")] = None,
    min_reasoning: Annotated[int, typer.Option(help="Fewest characters of reasoning (process).")] = 0,
    max_reasoning: Annotated[int | None, typer.Option(help="Most characters of reasoning.")] = None,
    fmt: FormatOption = AuditFormat.auto, seed: SeedOption = 0, quiet: QuietOption = False,
) -> None:  # fmt: skip
    """Keep rows whose question and reasoning lengths (characters) are within bounds."""
    _filter(
        "length", dataset, out_dir, fmt, seed, quiet,
        min_question=min_question, max_question=max_question,
        min_reasoning=min_reasoning, max_reasoning=max_reasoning,
    )  # fmt: skip


@filter_app.command("sample")
def filter_sample(
    dataset: DatasetArg, out_dir: OutOption,
    n: Annotated[int | None, typer.Option("--n", help="Rows to keep.")] = None,
    fraction: Annotated[float | None, typer.Option(help="Share of rows to keep (0..1).")] = None,
    by: Annotated[str, typer.Option(help="Fields of the strata, comma-separated.")] = "split,category",
    fmt: FormatOption = AuditFormat.auto, seed: SeedOption = 0, quiet: QuietOption = False,
) -> None:  # fmt: skip
    """Keep a seeded sample, stratified: each split x category keeps its share."""
    if (n is None) == (fraction is None):
        _fail("give exactly one of --n and --fraction")
    if fraction is not None and not 0 < fraction <= 1:
        _fail(f"--fraction {fraction} must be in (0, 1]")
    if n is not None and n < 0:
        _fail(f"--n {n} must not be negative")
    fields = tuple(part.strip() for part in by.split(",") if part.strip())
    _filter("sample", dataset, out_dir, fmt, seed, quiet, n=n, fraction=fraction, by=fields)


@train_app.command("grpo", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def train_grpo(
    ctx: typer.Context,
    config: Annotated[
        Path | None, typer.Option("--config", help="A YAML config (vdata.trainers.config).")
    ] = None,
) -> None:
    """A short GRPO run: vdata train grpo --config run.yaml [key=value ...].

    Overrides are config keys: steps=20 lr=1e-6 algorithm=dapo data=runs/lvr/dataset.
    Writes OUT/metrics.jsonl (a line per step) and OUT/checkpoint; rerun to resume.
    Needs the train extra (torch, transformers).
    """
    try:
        from vdata.trainers.config import ConfigError, GRPOConfig
        from vdata.trainers.train import train
    except ImportError as exc:
        _fail(
            f"training needs the train extra ({exc}): pip install torch==2.13.0 && pip install -e '.[train]'"
        )
    if config is not None and not config.is_file():
        _fail(f"--config {config}: no such file")
    try:
        settings = GRPOConfig.load(config, list(ctx.args))
        summary = train(settings, log=lambda line: err.print(line, highlight=False))
    except ConfigError as exc:
        _fail(str(exc))
    where = summary.out
    out.print(
        f"{summary.steps} steps; metrics: {where / 'metrics.jsonl'}; checkpoint: {where / 'checkpoint'}"
    )


class SplitMode(str, Enum):
    fixed = "fixed"
    scene = "scene"


class MaterializeMode(str, Enum):
    none = "none"
    copy = "copy"
    exact = "exact"


@app.command()
def split(
    videos: Annotated[
        list[Path],
        typer.Argument(
            help="Video files, or folders to search for videos.", readable=False, resolve_path=False
        ),
    ],
    out: Annotated[Path, typer.Option("--out", help="Run directory; rerun the command to resume.")],
    mode: Annotated[SplitMode, typer.Option(help="fixed-length clips, or scene clips.")] = SplitMode.fixed,
    clip_seconds: Annotated[float, typer.Option(help="Clip length for --mode fixed.")] = 10.0,
    min_clip_seconds: Annotated[float, typer.Option(help="Shorter scenes join a neighbour.")] = 1.0,
    max_clip_seconds: Annotated[float, typer.Option(help="Longer scenes are split evenly; 0: never.")] = 60.0,
    threshold: Annotated[float, typer.Option(help="AdaptiveDetector adaptive_threshold.")] = 3.5,
    window_width: Annotated[int, typer.Option(help="AdaptiveDetector window_width (frames).")] = 3,
    min_scene_seconds: Annotated[float, typer.Option(help="AdaptiveDetector min_scene_len.")] = 0.6,
    frame_skip: Annotated[int, typer.Option(help="Look at every (N+1)-th frame when detecting scenes.")] = 0,
    full_decode: Annotated[
        bool,
        typer.Option(
            "--full-decode",
            help="Decode every frame in full: frame-exact cuts, PySceneDetect's own scores (slower).",
        ),
    ] = False,
    materialize: Annotated[
        MaterializeMode,
        typer.Option(help="Also write clip files: copy (keyframe-snapped) or exact (re-encoded)."),
    ] = MaterializeMode.none,
    workers: Annotated[int, typer.Option(help="Processes over files; default: one per core.")] = 0,
    quiet: Annotated[bool, typer.Option("--quiet", help="Log lines instead of progress bars.")] = False,
) -> None:
    """Cut videos into clips: OUT/clips.parquet (time ranges) and OUT/rejects/*.parquet.

    Bad files (empty, truncated, not a video, audio only, unreadable) become reject
    rows with a reason; the run goes on. Files are only cut with --materialize.
    """
    from vdata.segment import SceneOptions
    from vdata.split import SplitConfig, split_videos

    scene = SceneOptions(
        adaptive_threshold=threshold,
        window_width=window_width,
        min_scene_len_s=min_scene_seconds,
        frame_skip=frame_skip,
        fast_decode=not full_decode,
    )
    config = SplitConfig(
        mode=mode.value,
        clip_seconds=clip_seconds,
        min_clip_seconds=min_clip_seconds,
        max_clip_seconds=max_clip_seconds or None,
        scene=scene,
        materialize=materialize.value,
        workers=workers or (os.cpu_count() or 1),
    )
    try:
        result = split_videos(videos, out, config, quiet=quiet)
    except ValueError as exc:
        _fail(str(exc))
    clips = result.stages[-1].rows_out
    rejected = sum(r.rejected for r in result.stages)
    err.print(f"{clips} clips in {out / 'clips.parquet'}; {rejected} rejected (see {out / 'rejects'})")


def endpoints_from_options(models: Path | None, roles: dict[str, str | None]) -> Any:
    """Endpoints from a models YAML file, then role flags (`local`, `URL`, `URL@MODEL`, a name)."""
    from vdata.annotators.endpoints import EndpointError, Endpoints

    try:
        endpoints = Endpoints.from_yaml(models) if models else Endpoints()
        for role, value in roles.items():
            if value:
                endpoints = endpoints.with_role(role, value)
    except EndpointError as exc:
        _fail(str(exc))
    return endpoints


@app.command()
def annotate(
    data: Annotated[
        Path, typer.Argument(help="Rows to annotate: .jsonl, .json, .parquet, or a folder of them.")
    ],
    out: Annotated[Path, typer.Option("--out", help="Run directory; rerun the command to resume.")],
    prompt: Annotated[str, typer.Option(help="Prompt template; {field} is replaced by the row's field.")],
    system: Annotated[str, typer.Option(help="An optional system message.")] = "",
    role: Annotated[str, typer.Option(help="Which role's endpoint answers.")] = "reasoner",
    reasoner: Annotated[str | None, typer.Option(help="local | URL | URL@MODEL | a named endpoint.")] = None,
    judge: Annotated[str | None, typer.Option(help="Endpoint of the judge role.")] = None,
    models: Annotated[Path | None, typer.Option(help="YAML file of endpoints per role.")] = None,
    temperature: Annotated[float, typer.Option()] = 0.0,
    max_tokens: Annotated[int, typer.Option()] = 512,
    no_cache: Annotated[
        bool, typer.Option("--no-cache", help="Neither read nor write the request cache.")
    ] = False,
    refresh: Annotated[
        bool, typer.Option("--refresh", help="Ask again, and overwrite cached answers.")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", help="Log lines instead of progress bars.")] = False,
) -> None:
    """Ask a model about every row: OUT/annotated.parquet gets the rows with a `reply` field.

    Every answer is cached in OUT/cache.sqlite, so a rerun after a crash pays for nothing
    twice. A row whose prompt cannot be filled, or whose request fails for good, becomes a
    reject row in OUT/rejects/annotate.parquet with the reason.
    """
    from vdata.annotators.pool import ModelPool
    from vdata.annotators.stage import annotate_stage
    from vdata.formats import DatasetReadError, load_raw_rows
    from vdata.runner import run_pipeline
    from vdata.runstore import RunStore, atomic_write_table, split_storable
    from vdata.stages import Reject, reject_rows

    try:
        raw = load_raw_rows(data)
    except DatasetReadError as exc:
        _fail(str(exc))
    rows, unstorable = split_storable(raw)  # rows Arrow cannot hold beside the others: load rejects
    load_rejects = [Reject("wrong_type", why, f"{data}: row {i}", raw[i]) for i, why in unstorable]
    endpoints = endpoints_from_options(models, {"reasoner": reasoner, "judge": judge})

    def messages(row: dict) -> list[dict]:
        text = prompt.format_map(_FilledFields(row))
        return ([{"role": "system", "content": system}] if system else []) + [
            {"role": "user", "content": text}
        ]

    endpoint = endpoints.for_role(role)
    stage = annotate_stage(
        "annotate",
        role=role,
        prompt=messages,
        sampling={"temperature": temperature, "max_tokens": max_tokens},
        model=endpoint.model or endpoint.base_url,
        # --refresh must rerun the stage (a finished stage is otherwise skipped): it joins the config
        config={"prompt": prompt, "system": system, "endpoint": endpoint.base_url}
        | ({"refreshed_at": time.time()} if refresh else {}),
    )
    cache = None if no_cache else out / "cache.sqlite"
    store = RunStore(out)
    with store.lock(), ModelPool(endpoints, cache_path=cache, refresh=refresh, log_dir=out) as pool:
        result = run_pipeline(
            out,
            "annotate@1",
            rows,
            [stage],
            config={"prompt": prompt},
            quiet=quiet,
            resources={"models": pool},
        )
        store.write_load_rejects(reject_rows(load_rejects, "load"))
        table = result.final_table()
        if table is not None:
            atomic_write_table(out / "annotated.parquet", table)
    report = result.stages[-1]
    unread = f", {len(load_rejects)} unreadable (rejects/load.parquet)" if load_rejects else ""
    err.print(
        f"{report.rows_out} rows annotated in {out / 'annotated.parquet'}; "
        f"{report.rejected} rejected{unread}",
        highlight=False,
    )


build_app = typer.Typer(
    help="Build datasets with a recipe: a resumable list of stages.", no_args_is_help=True
)
app.add_typer(build_app, name="build")


@build_app.command("longvideo-reason")
def build_longvideo_reason(
    videos: Annotated[
        list[Path] | None, typer.Option("--videos", help="Video files or folders (repeatable).")
    ] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Run directory; rerun to resume.")] = None,
    captions: Annotated[
        Path | None, typer.Option(help="Clip captions JSONL: video, start_s, end_s, caption.")
    ] = None,
    captioner: Annotated[str | None, typer.Option(help="local | URL | URL@MODEL | a named endpoint.")] = None,
    reasoner: Annotated[str | None, typer.Option(help="The model that writes the questions.")] = None,
    rewriter: Annotated[str | None, typer.Option(help="The model that rewrites the reasoning.")] = None,
    clip_seconds: Annotated[float | None, typer.Option(help="Fixed clip length (default 10).")] = None,
    scenes: Annotated[bool, typer.Option("--scenes", help="Scene clips instead of fixed ones.")] = False,
    categories: Annotated[str | None, typer.Option(help="Comma list of temporal,goal,spatial,plot.")] = None,
    questions_per_video: Annotated[int | None, typer.Option(help="Questions per video (default 4).")] = None,
    eval_fraction: Annotated[float | None, typer.Option(help="Share of videos held out for eval.")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed for splits, letters, sampling order.")] = None,
    config: Annotated[Path | None, typer.Option(help="YAML with the same settings; flags win.")] = None,
    models: Annotated[Path | None, typer.Option(help="YAML of endpoints per role.")] = None,
    no_cache: Annotated[
        bool, typer.Option("--no-cache", help="Neither read nor write the request cache.")
    ] = False,
    refresh: Annotated[bool, typer.Option("--refresh", help="Ask the models again.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", help="Log lines instead of progress bars.")] = False,
    push_to_hub: Annotated[
        str | None, typer.Option(help="Then push the dataset to this Hub repository.")
    ] = None,
    allow_empty: Annotated[
        bool, typer.Option("--allow-empty", help="Exit 0 even when the build keeps no question.")
    ] = False,
    wait: Annotated[
        bool, typer.Option("--wait", help="If another process works in --out, wait for it to finish.")
    ] = False,
) -> None:
    """LongVideo-Reason: long videos -> four-option reasoning questions for SFT and RL.

    Stages: ingest, segment (10 s clips), caption (or --captions), generate (per video and
    category), check, dedup, rewrite (reasoning as `process`), split (by video), balance
    (answer letters). Output: OUT/dataset/data/{sft,rl,eval}-*.parquet, rejects, run.json.
    Exit 1 with one line when the build keeps no question (--allow-empty: exit 0).
    """
    import yaml
    from pydantic import ValidationError

    from vdata.builders.longvideo_reason import CaptionsError, LongVideoReasonConfig, build

    settings: dict[str, Any] = {}
    if config:
        try:
            settings = yaml.safe_load(config.read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            _fail(f"{config}: cannot read the config ({exc})")
    flags = {
        "videos": [str(v) for v in videos] if videos else None,
        "out": str(out) if out else None,
        "captions": str(captions) if captions else None,
        "clip_seconds": clip_seconds,
        "scenes": scenes or None,
        "categories": [c.strip() for c in categories.split(",")] if categories else None,
        "questions_per_video": questions_per_video,
        "eval_fraction": eval_fraction,
        "seed": seed,
    }
    settings |= {k: v for k, v in flags.items() if v is not None}
    roles = {role: settings.pop(role, None) for role in ("captioner", "reasoner", "rewriter")}
    roles |= {
        k: v for k, v in {"captioner": captioner, "reasoner": reasoner, "rewriter": rewriter}.items() if v
    }
    try:
        recipe = LongVideoReasonConfig.model_validate(settings)
    except ValidationError as exc:
        first = exc.errors()[0]
        _fail(f"setting {'.'.join(str(p) for p in first['loc'])}: {first['msg']} (flags, or the YAML config)")
    endpoints = endpoints_from_options(models, roles)
    try:
        result = build(recipe, endpoints, no_cache=no_cache, refresh=refresh, quiet=quiet, wait=wait)
    except (CaptionsError, ValueError) as exc:
        _fail(str(exc))
    print_build_summary(Path(recipe.out), result)
    finish_build(result, allow_empty)
    if push_to_hub:
        push_command(Path(recipe.out) / "dataset", push_to_hub)


def finish_build(result: Any, allow_empty: bool) -> None:
    """A build that kept nothing has failed (exit 1, one line naming the stage that rejected
    everything), unless the pipeline expects that (--allow-empty)."""
    why = result.why_empty()
    if why is None:
        return
    if allow_empty:
        err.print(
            f"[yellow]warning:[/yellow] the dataset is empty: {escape(why)}", highlight=False, soft_wrap=True
        )
        return
    _fail(
        f"the build kept no rows: {why}; see {result.out / 'rejects'} "
        "(--allow-empty accepts an empty dataset)",
        1,
    )


def print_build_summary(out: Path, result: Any) -> None:
    """Videos, clips, questions, rejects per stage with the top reasons, tokens, time, letters."""
    import pyarrow.parquet as pq

    from vdata.runstore import read_json

    run = read_json(out / "run.json") or {}
    stages = {s.name: s for s in result.stages}
    table = Table(title=f"{run.get('recipe')}: {out / 'dataset'}")
    for column in ("stage", "in", "kept", "rejected", "top reasons"):
        table.add_column(column, overflow="fold")
    for name, stage in stages.items():
        reasons = ""
        rejects = out / "rejects" / f"{name}.parquet"
        if rejects.exists() and stage.rejected:
            counts = Counter(pq.read_table(rejects, columns=["reason"]).column("reason").to_pylist())
            reasons = ", ".join(f"{r} {n}" for r, n in counts.most_common(3))
        table.add_row(name, str(stage.rows_in), str(stage.rows_out), str(stage.rejected), reasons)
    out_console = Console(stderr=True)
    out_console.print(table)
    tokens = sum(
        m.get("prompt_tokens", 0) + m.get("completion_tokens", 0)
        for usage in run.get("usage", {}).values()
        for m in usage.values()
    )
    letters: dict[str, Counter] = {}
    for path in sorted((out / "dataset" / "data").glob("*.parquet")):
        rows = pq.read_table(path, columns=["split", "solution"]).to_pylist()
        for row in rows:
            letters.setdefault(row["split"], Counter())[row["solution"][8:-9]] += 1
    ingest = stages.get("ingest")
    clips = stages["segment"].rows_out if "segment" in stages else 0
    out_console.print(
        f"videos {ingest.rows_out if ingest else 0} (rejected {ingest.rejected if ingest else 0}), "
        f"clips {clips}, "
        f"questions {result.stages[-1].rows_out}; tokens {tokens:,}; "
        f"time {run.get('timings', {}).get('total_s', 0):.1f}s",
        highlight=False,
    )
    for split, counts in sorted(letters.items()):
        out_console.print(
            f"  {split}: answer letters " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
        )


ShowEndpoints = typer.Option(
    "--show-endpoints",
    help="Name the model endpoints' URLs; by default only 'self-hosted' or the public API's name.",
)


@app.command()
def card(
    dataset: Annotated[Path, typer.Argument(help="A dataset directory (OUT/dataset of a build).")],
    license: Annotated[str | None, typer.Option(help="The data's license, e.g. cc-by-4.0.")] = None,
    tag: Annotated[list[str] | None, typer.Option(help="Extra Hub tags (repeatable).")] = None,
    show_endpoints: Annotated[bool, ShowEndpoints] = False,
) -> None:
    """Write DATASET/README.md: the Hub's YAML header, how it was built, statistics, plots."""
    from vdata.cards.card import write_card
    from vdata.formats import DatasetReadError

    try:
        warnings = write_card(dataset, license=license, tags=tuple(tag or ()), show_endpoints=show_endpoints)
    except DatasetReadError as exc:
        _fail(str(exc))
    for warning in warnings:
        err.print(f"[yellow]warning:[/yellow] {escape(warning)}", highlight=False)
    err.print(f"card written to {dataset / 'README.md'}", highlight=False)


class VideosMode(str, Enum):
    upload = "upload"
    reference = "reference"


@app.command("push")
def push_command(
    dataset: Annotated[Path, typer.Argument(help="A dataset directory (OUT/dataset of a build).")],
    repo_id: Annotated[str, typer.Argument(help="The Hub dataset, e.g. my-org/longvideo-reason.")],
    private: Annotated[bool, typer.Option("--private", help="Create the repository private.")] = False,
    videos: Annotated[
        VideosMode, typer.Option(help="upload the videos too, or only reference their paths.")
    ] = (VideosMode.reference),
    dry_run: Annotated[
        Path | None, typer.Option(help="Write the files that would be uploaded here instead.")
    ] = None,
    show_endpoints: Annotated[bool, ShowEndpoints] = False,
) -> None:
    """Upload Parquet shards, the card and its plots, run.json (secrets stripped), videos on request.

    The token comes from HF_TOKEN or the login cache; it is never printed or written. With
    --videos upload, only the videos the rows refer to go up; a link is followed only to the
    row's own video (checked by sha256), and what is left out is said.
    """
    from vdata.cards.push import PushError, push

    try:
        staged = push(
            dataset, repo_id, private=private, videos=videos.value, dry_run=dry_run,
            show_endpoints=show_endpoints,
        )  # fmt: skip
    except PushError as exc:
        _fail(str(exc))
    for note in staged.notes:
        err.print(f"[yellow]note:[/yellow] {escape(note)}", highlight=False, soft_wrap=True)
    where = f"laid out in {dry_run}" if dry_run else f"pushed to https://huggingface.co/datasets/{repo_id}"
    err.print(f"{len(staged.files)} files {where}", highlight=False)


@app.command("export")
def export_command(
    dataset: Annotated[Path, typer.Argument(help="A vdata dataset or run directory, or a data file.")],
    fmt: Annotated[
        str, typer.Option("--format", help="video-r1 | easyr1 | verl | tw-grpo | vst | llamafactory")
    ],
    out: Annotated[Path, typer.Option("--out", help="The file to write.")],
    allow_unsafe_paths: Annotated[
        bool, typer.Option("--allow-unsafe-paths", help="Write rows whose path is absolute or has '..'.")
    ] = False,
) -> None:
    """Write a vdata dataset in another trainer's format; every row left out is reported.

    Rows the format cannot express are listed (exit 0). Rows that are defective (an
    unreadable line, a validation error, an absolute or '..' path) are refused, never
    reshaped, and the exit code is 1.
    """
    from vdata.cards.exports import FORMATS, export

    if fmt not in FORMATS:
        _fail(f"unknown format {fmt!r}; formats: {', '.join(FORMATS)}")
    loaded = _load(dataset)
    if loaded.shape != "vdata":
        _fail(f"{dataset} holds {loaded.shape} rows; export reads vdata records")
    report = export(
        loaded.rows, fmt, out, unreadable=loaded.unreadable, allow_unsafe_paths=allow_unsafe_paths
    )
    err.print(f"{report.written} rows written to {out} ({fmt})", highlight=False)
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
def synth(
    out: Annotated[Path, typer.Option("--out", help="Output directory; rerun to resume.")],
    n: Annotated[int, typer.Option("--n", help="How many videos.")] = 20,
    minutes: Annotated[float, typer.Option(help="Length of each video.")] = 2.0,
    violations: Annotated[float, typer.Option(help="Share of videos with impossible events (0..1).")] = 0.5,
    seed: Annotated[int, typer.Option(help="Same seed, same videos and truth.")] = 0,
    width: Annotated[int, typer.Option()] = 854,
    height: Annotated[int, typer.Option()] = 480,
    fps: Annotated[int, typer.Option()] = 30,
    workers: Annotated[int, typer.Option(help="Processes; default: one per core.")] = 0,
    quiet: Annotated[bool, typer.Option("--quiet", help="Log lines instead of progress bars.")] = False,
) -> None:
    """Render synthetic videos whose content is known exactly, with ground truth and questions.

    Moving shapes in shots separated by hard cuts; events (enter, exit, collide, bounce, stop,
    change colour, split, merge, occlusion); with --violations, impossible events (teleport,
    pass-through, spontaneous changes, vanishing, reversed gravity, time running backwards).
    """
    from vdata.synth import SynthConfig, synthesize

    if not 0 <= violations <= 1 or n < 1 or minutes <= 0 or width % 2 or height % 4:
        _fail(
            "--violations must be within 0..1, --n and --minutes positive, "
            "--width even and --height a multiple of 4"
        )
    config = SynthConfig(n, minutes, violations, seed, width, height, fps, workers=workers)
    result = synthesize(out, config, quiet=quiet)
    err.print(f"{result.stages[-1].rows_out} videos, their truth and questions in {out}")


class _FilledFields(dict):
    """Template fields of a row: a field that is missing or null cannot fill a prompt. (Rows
    pass through columnar shards, where a field one row lacks is null in it.)"""

    def __getitem__(self, key: str) -> Any:
        value = super().get(key)
        if value is None:
            raise KeyError(f"{key!r} is missing or null in this row")
        return value


@serve_app.command("local")
def serve_local(
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1; 0 picks a free one.")] = 0,
    n_ctx: Annotated[int, typer.Option(help="Context length in tokens.")] = 8192,
) -> None:
    """Serve the embedded SmolLM2-135M-Instruct model over the OpenAI API until stopped.

    Prints the base URL on the first line of standard output. Ctrl-C or SIGTERM stops it.
    """
    from vdata.annotators.local_server import LocalModelError, LocalServer

    server = LocalServer(port=port, n_ctx=n_ctx)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    try:
        server.start()
        print(server.base_url, flush=True)
        err.print(f"serving {server.model!r} at {server.base_url}; log: {server.log_path}; Ctrl-C stops it")
        while server.running and not stop.wait(0.5):
            pass
        if not stop.is_set():
            _fail(f"the server exited by itself; its log is {server.log_path}", 1)
        err.print("stopping the local model server")
    except LocalModelError as exc:
        _fail(str(exc), 1)
    finally:
        server.stop()


def main() -> None:

    from vdata.annotators.endpoints import EndpointError
    from vdata.annotators.local_server import LocalModelError
    from vdata.runner import RunError
    from vdata.runstore import RunLocked, RunStoreError
    from vdata.stages import StageFailed

    try:
        app()
    except (RunLocked, RunError) as exc:
        _say_failed(str(exc), 2)
    except (StageFailed, LocalModelError, EndpointError, RunStoreError) as exc:
        _say_failed(str(exc), 1)


def _say_failed(message: str, code: int) -> None:
    """Errors of a run that the user can act on: one line (or the message as given), no traceback."""
    err.print(f"[bold red]error:[/bold red] {escape(message)}", highlight=False, soft_wrap=True)
    sys.exit(code)


if __name__ == "__main__":
    sys.exit(main())
