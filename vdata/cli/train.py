"""`vdata train grpo`: a short GRPO run."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from vdata.cli import err, fail, out, train_app


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
        fail(
            f"training needs the train extra ({exc}): pip install torch==2.13.0 && pip install -e '.[train]'"
        )
    if config is not None and not config.is_file():
        fail(f"--config {config}: no such file")
    try:
        settings = GRPOConfig.load(config, list(ctx.args))
        summary = train(settings, log=lambda line: err.print(line, highlight=False))
    except ConfigError as exc:
        fail(str(exc))
    where = summary.out
    out.print(
        f"{summary.steps} steps; metrics: {where / 'metrics.jsonl'}; checkpoint: {where / 'checkpoint'}"
    )
