"""`vdata train grpo`: a short GRPO run."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from vdata.cli import ForceOption, app, err, fail, out, train_app


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
        from vdata.trainers.mrsp import finish
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
    finish()  # under torchrun (sp > 1): the ranks leave together
    where = summary.out
    out.print(
        f"{summary.steps} steps; metrics: {where / 'metrics.jsonl'}; checkpoint: {where / 'checkpoint'}"
    )


@app.command("ablate", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def ablate(
    ctx: typer.Context,
    action: Annotated[
        str | None, typer.Argument(help="`report OUT`: rebuild the report from OUT's finished runs.")
    ] = None,
    target: Annotated[Path | None, typer.Argument(help="The ablation folder, for `report`.")] = None,
    config: Annotated[Path | None, typer.Option("--config", help="The ablation YAML.")] = None,
    out_dir: Annotated[Path | None, typer.Option("--out", help="Where runs and the report go.")] = None,
    gpus: Annotated[str, typer.Option("--gpus", help="auto, N (parallel runs), or 0 (CPU).")] = "auto",
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress display.")] = False,
    force: ForceOption = False,
) -> None:
    """Data ablation: dataset variants x seeds -> short GRPO runs -> one comparison.

    vdata ablate --config ablation.yaml [--out DIR] [--gpus auto|N|0] [key=value ...]

    \b
    base: runs/lvr/dataset            # the rows every variant starts from
    eval: runs/lvr-eval/dataset       # held out: the same for every run; shares no video
    variants:
      all: {}
      filtered: {filters: [{difficulty: {band: [0, 1]}}]}   # the trained policy's pass rates
      random-same-size: {sample_like: filtered}              # the control
      plus-counterexamples: {add: runs/ce/dataset, curriculum: true}
    seeds: [0, 1, 2]
    train: {model: ..., steps: 200, group_size: 8}          # vdata train grpo's keys

    Variants are built and checked before any training; each (variant, seed) is a
    `vdata train grpo` run in OUT/runs/VARIANT/seed-S/ (rerun to resume: finished runs are
    kept, changed ones start over). Writes OUT/report.md, report.json and OUT/plots/.
    `vdata ablate report OUT` rebuilds the report from finished runs.
    """
    try:
        from vdata.trainers.ablation import AblationConfig, AblationError, gpu_count, write_report
    except ImportError as exc:
        fail(f"ablation needs the train extra ({exc}): pip install -e '.[train]'")
    if action is not None:
        if action != "report" or target is None:
            fail(f"unknown action {action!r}: `vdata ablate --config FILE` or `vdata ablate report OUT`")
        try:
            report = write_report(target)
        except AblationError as exc:
            fail(str(exc))
        out.print(f"report: {target / 'report.md'} ({len(report['variants'])} variants)")
        return
    if config is None:
        fail("give --config ablation.yaml (or `vdata ablate report OUT`)")
    if not config.is_file():
        fail(f"--config {config}: no such file")
    try:
        from vdata.filters.variants import build_variants
        from vdata.progress import progress_display
        from vdata.trainers.ablation import check_models, claim_folder, run_all, run_spec

        settings = AblationConfig.load(config, list(ctx.args), str(out_dir) if out_dir else None)
        devices = gpu_count(gpus)
        claim_folder(settings, force)
        check_models(settings)
        say = lambda line: err.print(line, highlight=False)  # noqa: E731
        variants = build_variants(settings, quiet=quiet, log=say)
        specs = [
            run_spec(v.name, seed, settings.run_config(settings.variant(v.name), seed, v.dataset), v.digest)
            for v in variants
            for seed in settings.seeds
        ]
        with progress_display(quiet, err) as progress:
            run_all(specs, gpus=devices, progress=progress, log=say)
        report = write_report(Path(settings.out))
    except AblationError as exc:
        fail(str(exc))
    out.print(f"{len(specs)} runs; report: {Path(settings.out) / 'report.md'}")
    for name, row in report["variants"].items():
        final = row.get(f"final_{report['metric']}") or {}
        shown = f"{final.get('mean', float('nan')):.3f} ± {final.get('std', 0):.3f}"
        out.print(f"  {name}: {report['metric']} {shown}")
