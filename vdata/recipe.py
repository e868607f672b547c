"""Recipes: what a `vdata build NAME` is made of, in one declaration, and the one build that runs them.

A recipe module ends with `RECIPE = Recipe(...)`: its name and version, a one-line summary and the
paper it implements, its config model (a `Settings` whose field descriptions are the command's
help), how its inputs are found, its stages, the model roles it asks (which need vision, which take
`none` or an oracle), its splits, what its card and build summary say, and where each record field
comes from (`provenance`). `vdata.builders.build(RECIPE, config)` does the rest for every recipe: the run
directory's lock, the models, the run of the stages (resumable), the dataset, provenance on every
row, the card and the summary. `vdata build NAME` is generated from the same declaration
(`vdata.cli.build`), so a recipe written outside vdata, registered under the `vdata.recipes` entry
point group, gets the command, resume, rejects, the card, the viewer and `--engine ray` as a
built-in recipe does (see the README's "Write your own recipe").
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from vdata.settings import Settings

BUILT_IN = {
    "longvideo-reason": "vdata.builders.longvideo_reason",
    "video-thinker": "vdata.builders.video_thinker",
    "qa-inversion": "vdata.builders.qa_inversion",
    "counterexample": "vdata.builders.counterexample",
    "streaming-cot": "vdata.builders.streaming_cot",
}
ENTRY_POINTS = "vdata.recipes"  # the group a package registers its recipes under


class RecipeError(ValueError):
    """A recipe that cannot be found or loaded; the message names it and what is installed."""


@dataclass(frozen=True)
class Role:
    """A model a recipe asks, by role name: `--NAME` on the command line, a key of `--models`.

    `used(config)`: whether this run asks it (default: always). `vision`: whether it must read
    frames (bool, or a function of the config). `none`: the bool setting that `--NAME none` turns
    off (the step runs without a model, and the card says so). `oracle`: (value, setting): `--NAME
    synth-truth`, say, sets the setting true and asks no model. `given`: settings that naming the
    role implies, unless they are set (a policy turns on the blind check)."""

    name: str
    help: str
    used: Callable[[Any], bool] | None = None
    vision: bool | Callable[[Any], bool] = False
    none: str | None = None
    oracle: tuple[str, str] | None = None
    given: Mapping[str, Any] = field(default_factory=dict)

    def in_use(self, config: Any) -> bool:
        return self.used is None or bool(self.used(config))

    def needs_vision(self, config: Any) -> bool:
        return bool(self.vision(config) if callable(self.vision) else self.vision)


@dataclass(frozen=True)
class Inputs:
    """A recipe's input rows, and what run.json should record about how they were read."""

    rows: list[dict[str, Any]]
    recorded: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class Prepared:
    """What a recipe's stages are made from, inside the run's lock: the config, the input rows,
    the models of the run (`models.pool.model_name(role)`) and the worker count."""

    config: Any
    inputs: list[dict[str, Any]]
    models: Any
    workers: int


@dataclass(frozen=True)
class Recipe:
    """One recipe, declared. See the module's docstring; every callable takes the config (or,
    for `stages`, a `Prepared`) and returns plain values."""

    name: str
    version: int
    summary: str  # one line, for `vdata build --list`
    paper: str  # the paper it implements, for the card
    config: type[Settings]
    inputs: Callable[[Any], list[dict[str, Any]] | Inputs]
    stages: Callable[[Prepared], list[Any]]
    splits: Callable[[Any], list[str]]
    roles: tuple[Role, ...] = ()
    help: str = ""  # the command's description: its stages and output
    shard_rows: int = 64
    card: Callable[[list[dict[str, Any]], Mapping[str, Any]], list[str]] | None = None
    summary_lines: Callable[[list[dict[str, Any]], Mapping[str, Any], Any], list[str]] | None = None
    limitations: tuple[str, ...] = ()
    # record field -> the stage that wrote it, or "source: where it was taken from", or a tuple of
    # those where rows differ (meta_json says which applies to a row); or a function of the config
    # giving that map, where the config decides
    provenance: Mapping[str, Any] | Callable[[Any], Mapping[str, Any]] = field(default_factory=dict)
    errors: tuple[type[BaseException], ...] = ()  # errors the user fixes (exit 2 with one line)

    @property
    def id(self) -> str:
        """`name@version`, what each row's `recipe` field and run.json hold."""
        return f"{self.name}@{self.version}"


# ---------------------------------------------------------------- finding recipes


def recipe_names() -> dict[str, str]:
    """Every recipe installed, name -> where it comes from (a module, or a plugin's entry point),
    without importing any of them."""
    from importlib.metadata import entry_points

    names = dict(BUILT_IN)
    for point in entry_points(group=ENTRY_POINTS):
        names.setdefault(point.name, point.value)
    return names


def load_recipe(name: str) -> Recipe:
    """The recipe called `name` (or `name@version`), built in or from a plugin."""
    import importlib
    from importlib.metadata import entry_points

    name = name.split("@")[0]
    if name in BUILT_IN:
        return _checked(importlib.import_module(BUILT_IN[name]).RECIPE, name, BUILT_IN[name])
    for point in entry_points(group=ENTRY_POINTS):
        if point.name == name:
            try:
                loaded = point.load()
            except Exception as exc:  # a plugin's import error is the plugin's, named as such
                raise RecipeError(
                    f"recipe {name!r} (entry point {point.value}) failed to load: {type(exc).__name__}: {exc}"
                ) from exc
            return _checked(getattr(loaded, "RECIPE", loaded), name, point.value)
    known = ", ".join(sorted(recipe_names()))
    raise RecipeError(f"no recipe named {name!r}; installed: {known} (vdata build --list)")


def _checked(found: Any, name: str, where: str) -> Recipe:
    if not isinstance(found, Recipe):
        raise RecipeError(f"recipe {name!r} ({where}) is a {type(found).__name__}, not a vdata.recipe.Recipe")
    if found.name != name:
        raise RecipeError(
            f"recipe {name!r} ({where}) calls itself {found.name!r}; register it under that name"
        )
    return found


def recipe_of_run(run: Mapping[str, Any] | None) -> Recipe | None:
    """The recipe that made a run (run.json's `recipe`), when it is installed; else None."""
    name = str((run or {}).get("recipe") or "").split("@")[0]
    if not name or name not in recipe_names():
        return None
    try:
        return load_recipe(name)
    except RecipeError:
        return None
