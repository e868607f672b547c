"""Commands that publish: the dataset card, the Hub push."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from vdata.cards.push import VIDEO_MODES
from vdata.cli import app, choices, err, fail

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

    if not dataset.is_dir():
        fail(
            f"{dataset} is not a folder: the card is DATASET/README.md beside the data/ of a dataset "
            "folder (a build's OUT/dataset; `vdata filter validate FILE --out DIR` makes one of a file)"
        )
    try:
        warnings = write_card(dataset, license=license, tags=tuple(tag or ()), show_endpoints=show_endpoints)
    except DatasetReadError as exc:
        fail(str(exc))
    except OSError as exc:
        fail(f"cannot write the card into {dataset} ({exc.strerror or exc})")
    for warning in warnings:
        err.print(f"[yellow]warning:[/yellow] {escape(warning)}", highlight=False)
    err.print(f"card written to {dataset / 'README.md'}", highlight=False)


VideosMode = choices("VideosMode", VIDEO_MODES)


@app.command("push")
def push_command(
    dataset: Annotated[Path, typer.Argument(help="A dataset directory (OUT/dataset of a build).")],
    repo_id: Annotated[str, typer.Argument(help="The Hub dataset, e.g. my-org/longvideo-reason.")],
    private: Annotated[bool, typer.Option("--private", help="Create the repository private.")] = False,
    videos: Annotated[
        VideosMode, typer.Option(help="upload the videos too, or only reference their paths.")
    ] = VideosMode["reference"],
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
            dataset,
            repo_id,
            private=private,
            videos=videos.value,
            dry_run=dry_run,
            show_endpoints=show_endpoints,
        )
    except PushError as exc:
        fail(str(exc))
    for note in staged.notes:
        err.print(f"[yellow]note:[/yellow] {escape(note)}", highlight=False, soft_wrap=True)
    where = f"laid out in {dry_run}" if dry_run else f"pushed to https://huggingface.co/datasets/{repo_id}"
    err.print(f"{len(staged.files)} files {where}", highlight=False)
