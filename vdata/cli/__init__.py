"""The `vdata` command: the app and what every command shares (consoles, errors, endpoints,
the command line). The commands are declared beside what they run, in this package's
modules by family: data, build, hub, video, models, train."""

from __future__ import annotations

import importlib
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

import vdata
from vdata.progress import log_console

HELP = """\
vdata builds, curates and verifies training data for video reasoning with RL.

A typical session:

\b
  vdata serve local                 start the embedded model (SmolLM2-135M) for offline runs
  vdata build --list                the recipes installed (built in, and plugins'), with their papers
  vdata build longvideo-reason --videos examples/videos --captions examples/captions.jsonl --out runs/lvr
                                    build a reasoning dataset (resumable; --reasoner URL@MODEL)
  vdata build qa-inversion --from nextgqa_val.json --out runs/qa-inv
                                    multi-answer questions by negation, each one checked
  vdata build video-thinker --source synth=runs/synth:qa --captioner synth-truth --out runs/thinker
                                    <time>/<caption>/<think> traces kept by a hindsight check
  vdata synth --n 4 --out runs/synth     render videos with known content and ground truth
  vdata split videos/ --out runs/clips   cut videos into 10 s clips (or --mode scene)
  vdata validate data.jsonl         check a dataset (vdata or Video-R1 rows) row by row
  vdata audit train.json --eval test.json   find a dataset's defects (letters, duplicates, leaks)
  vdata filter dedup data.jsonl --out runs/dedup   curate: validate, balance-letters, dedup, ...
  vdata inspect runs/demo           splits, sizes and field statistics of a dataset or run
  vdata view runs/lvr               browse rows with their video segments, and every reject, in a web page
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


def fail(message: str, code: int = 2) -> None:
    err.print(f"[bold red]error:[/bold red] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def load(path: Path):
    from vdata.formats import DatasetReadError, load_rows

    try:
        return load_rows(path)
    except DatasetReadError as exc:
        fail(str(exc))


def endpoints_from_options(models: Path | None, roles: dict[str, str | None]) -> Any:
    """Endpoints from a models YAML file, then role flags (`local`, `URL`, `URL@MODEL`, a name)."""
    from vdata.annotators.endpoints import EndpointError, Endpoints

    try:
        endpoints = Endpoints.from_yaml(models) if models else Endpoints()
        for role, value in roles.items():
            if value:
                endpoints = endpoints.with_role(role, value)
    except EndpointError as exc:
        fail(str(exc))
    return endpoints


ForceOption = Annotated[
    bool,
    typer.Option(
        "--force", help="Write into an --out folder that holds other files (never over or deleting them)."
    ),
]

EngineOption = Annotated[
    str,
    typer.Option("--engine", help="local, or ray: each shard a Ray task, the same output (README: cluster)."),
]
RayAddressOption = Annotated[
    str | None,
    typer.Option("--ray-address", help="A running Ray cluster for --engine ray; default: start one here."),
]


def with_engine(command: Any) -> Any:
    """Gives a command --engine and --ray-address: the engine they name (vdata.engines) is made,
    passed to the command as its `engine` argument, and closed when the command ends."""
    import functools
    import inspect
    import typing

    @functools.wraps(command)
    def wrapper(*args: Any, engine: str = "local", ray_address: str | None = None, **kwargs: Any) -> Any:
        from vdata.engines import engine_for
        from vdata.stages import RunError

        try:
            chosen = engine_for(engine, ray_address)
        except RunError as exc:
            fail(str(exc))
        try:
            return command(*args, engine=chosen, **kwargs)
        finally:
            chosen.close()

    hints = typing.get_type_hints(command, include_extras=True)  # the command's own names resolved
    signature = inspect.signature(command)
    own = [
        p.replace(annotation=hints.get(p.name, p.annotation))
        for p in signature.parameters.values()
        if p.name != "engine"  # the engine object the wrapper passes
    ]
    extra = [
        inspect.Parameter("engine", inspect.Parameter.KEYWORD_ONLY, default="local", annotation=EngineOption),
        inspect.Parameter(
            "ray_address", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=RayAddressOption
        ),
    ]
    wrapper.__signature__ = signature.replace(parameters=[*own, *extra])
    wrapper.__annotations__ = {**hints, "engine": EngineOption, "ray_address": RayAddressOption}
    del wrapper.__wrapped__  # typer reads the signature above, not the command's
    return wrapper


def choices(name: str, values: tuple[str, ...]) -> type[Enum]:
    """A command-line choice made from a module's own constant, so the two never drift apart."""
    return Enum(name, {value: value for value in values}, type=str)


def command_line() -> str:
    """The command as typed, for run.json and the card (passed to the runner explicitly)."""
    import shlex

    return shlex.join(["vdata", *sys.argv[1:]])


def finite_numbers(command: Any) -> Any:
    """The command refusing nan and inf for every number it is given (`--minutes nan` would
    run, or fail later with a worse message): exit 2 naming the option."""
    import functools
    import math

    @functools.wraps(command)
    def checked(*args: Any, **kwargs: Any) -> Any:
        for name, value in kwargs.items():
            values = value if isinstance(value, (list, tuple)) else [value]
            if any(isinstance(v, float) and not math.isfinite(v) for v in values):
                fail(f"--{name.replace('_', '-')} {value}: give a finite number")
        return command(*args, **kwargs)

    return checked


def _check_numbers_everywhere(typer_app: typer.Typer) -> None:
    for info in typer_app.registered_commands:
        info.callback = finite_numbers(info.callback)
    for group in typer_app.registered_groups:
        _check_numbers_everywhere(group.typer_instance)


def main() -> None:

    from vdata.annotators.endpoints import EndpointError
    from vdata.annotators.local_server import LocalModelError
    from vdata.formats import DatasetReadError
    from vdata.runner import RunError
    from vdata.runstore import OutputRefused, RunLocked, RunStoreError
    from vdata.stages import StageFailed

    try:
        app()
    except (RunLocked, RunError, OutputRefused, DatasetReadError) as exc:
        _say_failed(str(exc), 2)
    except (StageFailed, LocalModelError, EndpointError, RunStoreError) as exc:
        _say_failed(str(exc), 1)


def _say_failed(message: str, code: int) -> None:
    """Errors of a run that the user can act on: one line (or the message as given), no traceback."""
    err.print(f"[bold red]error:[/bold red] {escape(message)}", highlight=False, soft_wrap=True)
    sys.exit(code)


if __name__ == "__main__":
    sys.exit(main())


for _family in ("data", "build", "hub", "video", "models", "train"):  # their commands register on `app`
    importlib.import_module(f"vdata.cli.{_family}")
_check_numbers_everywhere(app)
