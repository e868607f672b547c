"""The recipes (one module each, ending with its `RECIPE`) and `build`, which runs any recipe,
built in or a plugin's: `from vdata.builders import build; build(RECIPE, config, endpoints)`."""

from __future__ import annotations

import os
from typing import Any

from vdata.recipe import Inputs, Prepared, Recipe


def build(
    recipe: Recipe,
    config: Any,
    endpoints: Any = None,
    *,
    no_cache: bool = False,
    refresh: bool = False,
    quiet: bool = False,
    wait: bool = False,
    force: bool = False,
    command: str = "",
    engine: Any = None,
) -> Any:
    """Runs `recipe` with `config` (its config model, or a dict of settings) in config.out, whose
    final rows become config.out/dataset; a rerun resumes. The run directory is locked for the whole
    build (`wait`: wait for another process to finish; `force`: an --out folder holding other
    files). `endpoints`: the models per role (vdata.annotators.endpoints.Endpoints). `engine`:
    where stages run (vdata.engines; default local). Returns the RunResult; the card and the
    summary are `finish` (the command line calls it)."""
    from vdata.annotators.pool import RunModels
    from vdata.runner import run_pipeline
    from vdata.runstore import RunStore

    if not isinstance(config, recipe.config):
        config = recipe.config.model_validate(config)
    found = recipe.inputs(config)
    inputs = found if isinstance(found, Inputs) else Inputs(list(found))
    used = [role for role in recipe.roles if role.in_use(config)]
    with (
        RunStore(config.out).lock(wait, force=force, inputs=config.inputs()),
        RunModels(
            endpoints,
            config.out,
            roles=[role.name for role in used],
            vision_roles=tuple(role.name for role in used if role.needs_vision(config)),
            no_cache=no_cache,
            refresh=refresh,
        ) as models,
    ):
        workers = getattr(config, "workers", 0) or os.cpu_count() or 1
        stages = recipe.stages(Prepared(config, inputs.rows, models, workers))
        return run_pipeline(
            config.out,
            recipe.id,
            inputs.rows,
            stages,
            config={**config.model_dump(), "models": models.described, **inputs.recorded},
            seed=getattr(config, "seed", 0),
            shard_rows=recipe.shard_rows,
            quiet=quiet,
            resources=models.resources,
            dataset_splits=recipe.splits(config),
            command=command,
            engine=engine,
        )
