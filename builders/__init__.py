"""The recipes (one module each, ending with its `RECIPE`) and `build`, which runs any recipe,
built in or a plugin's: `from vdata.builders import build; build(RECIPE, config, endpoints)`.
(Its imports are inside the functions: the package imports with no dependency installed.)"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from vdata.recipe import Recipe
    from vdata.stages import DatasetStage, StageContext, StageOutput


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
    from vdata.recipe import Inputs, Prepared
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
        stages = [
            *recipe.stages(Prepared(config, inputs.rows, models, workers)),
            provenance_stage(recipe, config),
        ]
        return run_pipeline(
            config.out,
            recipe.id,
            inputs.rows,
            stages,
            config={
                **config.model_dump(),
                "models": models.described,
                **inputs.recorded,
                **_prompts_of(config),
            },
            seed=getattr(config, "seed", 0),
            shard_rows=recipe.shard_rows,
            quiet=quiet,
            resources=models.resources,
            dataset_splits=recipe.splits(config),
            command=command,
            engine=engine,
        )


# ---------------------------------------------------------------- provenance


def provenance_stage(recipe: Recipe, config: Any) -> DatasetStage:
    """The last stage of every recipe: each row's `provenance` says where its fields came from."""
    from vdata.stages import DatasetStage

    fields = dict(recipe.provenance(config) if callable(recipe.provenance) else recipe.provenance)
    return DatasetStage(
        "provenance",
        functools.partial(fill_provenance, fields=fields, recipe_id=recipe.id),
        config={"fields": fields},
    )


def fill_provenance(
    rows: list[dict[str, Any]], ctx: StageContext, *, fields: Mapping[str, str], recipe_id: str
) -> StageOutput:
    """Each row's provenance: for a field a model wrote (`fields` names its stage), the role, the
    model, the prompt's name and the sha256 of its text (of its code where the prompt is code) and
    the sampling with its seed, as the stage's manifest recorded them; for a field taken from the
    input or a simulation's truth, that source. `models` and `prompts` list what was used;
    `params_json` holds the per-field map; `created` is the run's start. A row that came with a
    provenance of its own (a source dataset's) keeps it under `params_json.source_provenance`."""
    from vdata.runstore import RunStore
    from vdata.stages import StageOutput

    store = RunStore(ctx.run_dir)
    manifests = {m["stage"]: m for m in store.manifests()}
    created = (store.read_run() or {}).get("created", "")
    per_field: dict[str, Any] = {}
    models: dict[tuple[str, str], dict[str, Any]] = {}
    prompts: dict[str, dict[str, str]] = {}
    for name, declared in fields.items():
        entries = []
        for origin in (declared,) if isinstance(declared, str) else declared:
            entry = _origin(origin, manifests.get(origin))
            entries.append(entry)
            if entry.get("model"):
                models[(entry["role"], entry["model"])] = {"role": entry["role"], "model": entry["model"]}
            if entry.get("prompt_sha256"):
                prompts[origin] = {"name": origin, "sha256": entry["prompt_sha256"]}
        per_field[name] = entries[0] if isinstance(declared, str) else entries
    params: dict[str, Any] = {"recipe": recipe_id, "seed": ctx.seed, "fields": per_field}
    shared = {
        "models": [{**m, "revision": None} for m in models.values()],
        "prompts": list(prompts.values()),
        "params_json": json.dumps(params, sort_keys=True, ensure_ascii=False),  # once: the same for every row
        "created": created,
    }
    out = StageOutput()
    for row in rows:
        own = row.get("provenance") or {}
        if own.get("models") or own.get("prompts") or own.get("created"):
            mine = {**params, "source_provenance": own}
            out.rows.append(
                {**row, "provenance": {**shared, "params_json": json.dumps(mine, sort_keys=True)}}
            )
        else:
            out.rows.append({**row, "provenance": shared})
    return out


def _origin(origin: str, manifest: Mapping[str, Any] | None) -> dict[str, Any]:
    """Where a field came from: a source (said in words), or a stage with the role, model, prompt
    hash (of its text, or of its code where the prompt is code) and sampling its manifest holds."""
    if origin.startswith("source:"):
        return {"source": origin.removeprefix("source:").strip()}
    if manifest is None:  # an optional stage this run did not have: said, not guessed
        return {"stage": origin, "ran": False}
    config = manifest.get("config") or {}
    text = config.get("prompt")  # a stage that sends settable prompts records their text
    if text is not None:
        hashed = text if isinstance(text, str) else json.dumps(text, sort_keys=True, ensure_ascii=False)
    else:
        hashed = json.dumps(manifest.get("code") or {}, sort_keys=True)
    return {
        "stage": origin,
        "role": config.get("role", ""),
        "model": config.get("model", ""),
        "prompt": origin,
        "prompt_sha256": hashlib.sha256(hashed.encode()).hexdigest(),
        "prompt_is": "code" if text is None else "text",
        "sampling": config.get("sampling") or {},
    }


def _prompts_of(config: Any) -> dict[str, Any]:
    """For run.json and the card: which of the recipe's prompts differ from vdata's (name: sha256
    prefix); the texts themselves are in the config's `prompts`."""
    from vdata.prompts import Prompts

    prompts = getattr(config, "prompts", None)
    return {"prompts_overridden": prompts.overridden()} if isinstance(prompts, Prompts) else {}
