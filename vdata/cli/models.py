"""Commands about models: serve the embedded one, annotate rows with any."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Annotated, Any

import typer

from vdata.cli import (
    ForceOption,
    app,
    command_line,
    endpoints_from_options,
    err,
    fail,
    serve_app,
    with_engine,
)


@app.command()
@with_engine
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
    force: ForceOption = False,
    engine: Any = None,
) -> None:
    """Ask a model about every row: OUT/annotated.parquet gets the rows with a `reply` field.

    Every answer is cached in OUT/cache.sqlite, so a rerun after a crash pays for nothing
    twice. A row whose prompt cannot be filled, or whose request fails for good, becomes a
    reject row in OUT/rejects/annotate.parquet with the reason.
    """
    from vdata.annotators.annotate import annotate_rows
    from vdata.formats import DatasetReadError

    endpoints = endpoints_from_options(models, {"reasoner": reasoner, "judge": judge})
    try:
        result = annotate_rows(
            data,
            out,
            prompt=prompt,
            system=system,
            role=role,
            endpoints=endpoints,
            temperature=temperature,
            max_tokens=max_tokens,
            no_cache=no_cache,
            refresh=refresh,
            quiet=quiet,
            command=command_line(),
            engine=engine,
            force=force,
        )
    except DatasetReadError as exc:
        fail(str(exc))
    unread = f", {result.unreadable} unreadable (rejects/load.parquet)" if result.unreadable else ""
    err.print(
        f"{result.annotated} rows annotated in {result.path}; {result.rejected} rejected{unread}",
        highlight=False,
    )


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
            fail(f"the server exited by itself; its log is {server.log_path}", 1)
        err.print("stopping the local model server")
    except LocalModelError as exc:
        fail(str(exc), 1)
    finally:
        server.stop()
