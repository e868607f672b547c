"""`vdata build RECIPE`: one command per installed recipe, generated from its declaration
(vdata.recipe.Recipe): an option per config field (its description is the help), an option per
model role, `key=value` overrides, and what every build takes (--config, --models, --out, ...).
Then the dataset's card and the build summary; exit 1 when a build keeps nothing."""

from __future__ import annotations

import inspect
import types
import typing
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import click
import typer
from pydantic_core import PydanticUndefined
from rich.markup import escape
from typer.core import TyperGroup

from vdata.cli import (
    ForceOption,
    app,
    command_line,
    endpoints_from_options,
    err,
    fail,
    finite_numbers,
    out,
    with_engine,
)
from vdata.cli.hub import push_command
from vdata.runstore import RunStore

# options every recipe takes
Config = Annotated[Path | None, typer.Option(help="YAML with the same settings; flags win.")]
Models = Annotated[Path | None, typer.Option(help="YAML of endpoints per role.")]
NoCache = Annotated[bool, typer.Option("--no-cache", help="Neither read nor write the request cache.")]
Refresh = Annotated[bool, typer.Option("--refresh", help="Ask the models again.")]
Quiet = Annotated[bool, typer.Option("--quiet", help="Log lines instead of progress bars.")]
PushToHub = Annotated[str | None, typer.Option(help="Then push the dataset to this Hub repository.")]
AllowEmpty = Annotated[
    bool, typer.Option("--allow-empty", help="Exit 0 even when the build keeps no question.")
]
Wait = Annotated[
    bool, typer.Option("--wait", help="If another process works in --out, wait for it to finish.")
]
Overrides = Annotated[
    list[str] | None,
    typer.Argument(help="Settings as key=value (YAML values), over --config and under the options."),
]
COMMON = {
    "overrides": (Overrides, None),
    "config": (Config, None),
    "models": (Models, None),
    "no_cache": (NoCache, False),
    "refresh": (Refresh, False),
    "quiet": (Quiet, False),
    "push_to_hub": (PushToHub, None),
    "allow_empty": (AllowEmpty, False),
    "wait": (Wait, False),
    "force": (ForceOption, False),
}
ROLE_VALUES = "local | URL | URL@MODEL | a named endpoint"


class RecipeGroup(TyperGroup):
    """`vdata build`'s subcommands: the installed recipes, each loaded only when it is asked for."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        from vdata.recipe import recipe_names

        return sorted(recipe_names())

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        from vdata.recipe import RecipeError, load_recipe, recipe_names

        if name not in recipe_names():
            return None
        try:
            return recipe_command(load_recipe(name))
        except RecipeError as exc:
            fail(str(exc))
        return None


build_app = typer.Typer(
    cls=RecipeGroup,
    help="Build datasets with a recipe: a resumable list of stages. --list shows the recipes installed.",
    invoke_without_command=True,
)
app.add_typer(build_app, name="build")


@build_app.callback()
def build_callback(
    ctx: typer.Context,
    list_recipes: Annotated[
        bool, typer.Option("--list", help="The recipes installed, with their paper, one line each.")
    ] = False,
) -> None:
    if list_recipes:
        list_installed()
        raise typer.Exit()
    if ctx.invoked_subcommand is None:
        out.print(ctx.get_help(), highlight=False, markup=False)
        raise typer.Exit()


def list_installed() -> None:
    """One line per recipe: name@version, what it makes, its paper, where it comes from."""
    from vdata.recipe import BUILT_IN, RecipeError, load_recipe, recipe_names

    for name, where in sorted(recipe_names().items()):
        try:
            recipe = load_recipe(name)
        except RecipeError as exc:
            out.print(f"{name}: cannot load ({exc})", highlight=False, soft_wrap=True)
            continue
        origin = "built in" if name in BUILT_IN else f"plugin {where}"
        out.print(
            f"{recipe.id:24} {recipe.summary}\n{'':24} paper: {recipe.paper} ({origin})",
            highlight=False,
            soft_wrap=True,
            markup=False,
        )


# ---------------------------------------------------------------- the command of a recipe


def cli_spec(field: Any) -> dict[str, Any]:
    """A config field's command-line spelling: json_schema_extra={"cli": {...}} with `flags`
    (the spellings, the first shown), `split` (a list option that also takes comma lists),
    `path` ("resolve": made absolute; "dir": also an existing directory), `type` ("str": given
    as text, which the config model parses), `hidden` (YAML and key=value only)."""
    extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
    spec = extra.get("cli", {})
    return {"hidden": True} if spec is False else dict(spec)


def _option_type(annotation: Any, spec: dict[str, Any]) -> tuple[Any, bool] | None:
    """(the option's Python type, whether it repeats) for a field's annotation; None for a field
    the command line cannot hold (a mapping, a nested model): YAML and key=value only."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        if len(args) != 1:
            return None
        annotation = args[0]
    origin = typing.get_origin(annotation)
    if origin in (list, tuple, set):
        (item,) = typing.get_args(annotation)[:1] or (str,)
        if spec.get("type") == "str" or item in (str, int, float) or typing.get_origin(item) is Literal:
            return {int: int, float: float}.get(item, str), True
        return None
    if spec.get("type") == "str" or annotation is str or origin is Literal:
        return str, False
    if annotation in (bool, int, float):
        return annotation, False
    return None


def _default_text(field: Any) -> str:
    if field.default_factory is not None:
        value = field.default_factory()
    elif field.default is PydanticUndefined:
        return " (required: here, in --config or as key=value)"
    else:
        value = field.default
    if value is None or value == []:
        return ""
    shown = ",".join(map(str, value)) if isinstance(value, list) else value
    return f" (default: {shown})"


def hidden_fields(recipe: Any) -> set[str]:
    """Settings a role sets (`--ROLE none`, an oracle, what naming it implies): reached through the
    role's option, not one of their own."""
    hidden = set()
    for role in recipe.roles:
        hidden |= {role.none} if role.none else set()
        hidden |= {role.oracle[1]} if role.oracle else set()
        hidden |= {k for k, v in role.given.items() if isinstance(v, bool)}
    return hidden


def field_options(recipe: Any) -> list[tuple[str, Any, dict[str, Any]]]:
    """(field name, its typer annotation, its cli spec) for each field the command shows."""
    hidden = hidden_fields(recipe)
    options = []
    for name, field in recipe.config.model_fields.items():
        spec = cli_spec(field)
        if spec.get("hidden") or name in hidden:
            continue
        if name in COMMON or name in {role.name for role in recipe.roles}:
            raise click.ClickException(
                f"recipe {recipe.name}: setting {name!r} has the name of a command option; rename it"
            )
        typed = _option_type(field.annotation, spec)
        if typed is None:
            continue
        kind, repeats = typed
        help_text = (field.description or name.replace("_", " ")) + _default_text(field)
        flags = spec.get("flags") or [f"--{name.replace('_', '-')}"]
        if kind is bool:
            flags = [f"{flag}/--no-{flag.removeprefix('--')}" for flag in flags[:1]] + flags[1:]
            annotation = Annotated[bool | None, typer.Option(*flags, help=help_text)]
        elif repeats:
            annotation = Annotated[list[kind] | None, typer.Option(*flags, help=help_text)]
        else:
            annotation = Annotated[kind | None, typer.Option(*flags, help=help_text)]
        options.append((name, annotation, spec))
    return options


def role_help(role: Any) -> str:
    values = ROLE_VALUES + (", none" if role.none else "") + (f", {role.oracle[0]}" if role.oracle else "")
    return f"{role.help} ({values})"


def recipe_command(recipe: Any) -> click.Command:
    """The click command of `vdata build NAME`, made from the recipe's declaration."""
    options = field_options(recipe)
    specs = {name: spec for name, _, spec in options}
    parameters = [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=annotation)
        for name, annotation, _ in options
    ]
    parameters += [
        inspect.Parameter(
            role.name,
            inspect.Parameter.KEYWORD_ONLY,
            default=None,
            annotation=Annotated[str | None, typer.Option(f"--{role.name}", help=role_help(role))],
        )
        for role in recipe.roles
    ]
    parameters += [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)
        for name, (annotation, default) in COMMON.items()
    ]

    def command(engine: Any = None, **values: Any) -> None:
        run_recipe_command(recipe, specs, values, engine)

    engine = inspect.Parameter("engine", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=Any)
    command.__signature__ = inspect.Signature([*parameters, engine])  # type: ignore[attr-defined]
    command.__annotations__ = {p.name: p.annotation for p in parameters}
    command.__doc__ = inspect.cleandoc(recipe.help) if recipe.help else recipe.summary
    command.__name__ = recipe.name.replace("-", "_")
    single = typer.Typer(rich_markup_mode=None, add_completion=False)
    single.command(recipe.name)(finite_numbers(with_engine(command)))
    return typer.main.get_command(single)


def run_recipe_command(
    recipe: Any, specs: dict[str, dict[str, Any]], values: dict[str, Any], engine: Any = None
) -> None:
    """The settings from --config, key=value and the options; the roles' special values; the
    build, the card, the summary."""
    from vdata.settings import SettingsError, load_settings

    common = {name: values.pop(name) for name in COMMON}
    given_roles = {role.name: values.pop(role.name) for role in recipe.roles}
    flags: dict[str, Any] = {}
    for name, value in values.items():
        if value is None or value == []:
            continue
        spec = specs[name]
        if spec.get("split") and isinstance(value, list):
            value = [
                part.strip() for item in value for part in str(item).split(spec["split"]) if part.strip()
            ]
        if spec.get("path") and not isinstance(value, list):
            value = str(Path(value).resolve())
        flags[name] = str(value) if isinstance(value, Path) else value
    try:
        settings = load_settings(common["config"], common["overrides"] or (), flags)
    except SettingsError as exc:
        fail(str(exc))
    for role in recipe.roles:  # a role may come from the flag or from --config / key=value
        value = given_roles[role.name] if given_roles[role.name] is not None else settings.get(role.name)
        settings.pop(role.name, None)
        given_roles[role.name] = value
    endpoints_of = {}
    for role in recipe.roles:
        value = given_roles[role.name]
        if value is None:
            continue
        if role.none and str(value).lower() == "none":
            settings[role.none] = False
        elif role.oracle and str(value) == role.oracle[0]:
            settings[role.oracle[1]] = True
        else:
            for key, implied in role.given.items():
                settings.setdefault(key, implied)
            endpoints_of[role.name] = str(value)
    for name, spec in specs.items():
        if spec.get("path") == "dir" and settings.get(name) and not Path(settings[name]).is_dir():
            flag = (spec.get("flags") or [f"--{name.replace('_', '-')}"])[0]
            fail(f"{flag} {settings[name]}: not a directory")
    config = recipe_config(recipe.config, settings, common["config"])
    endpoints = endpoints_from_options(common["models"], endpoints_of)
    options = RunOptions(
        common["no_cache"],
        common["refresh"],
        common["quiet"],
        common["wait"],
        common["allow_empty"],
        common["push_to_hub"],
        common["force"],
    )
    run_build(recipe, config, endpoints, options, engine)


@dataclass(frozen=True)
class RunOptions:
    """The options every recipe command takes, past its settings."""

    no_cache: bool
    refresh: bool
    quiet: bool
    wait: bool
    allow_empty: bool
    push_to_hub: str | None
    force: bool = False


def run_build(recipe: Any, config: Any, endpoints: Any, options: RunOptions, engine: Any = None) -> None:
    """Runs the recipe, then `finish_build`; its errors are the user's to fix (exit 2)."""
    from vdata.builders import build
    from vdata.formats import DatasetReadError

    try:
        result = build(
            recipe,
            config,
            endpoints,
            no_cache=options.no_cache,
            refresh=options.refresh,
            quiet=options.quiet,
            wait=options.wait,
            force=options.force,
            command=command_line(),
            engine=engine,
        )
    except (ValueError, DatasetReadError, *recipe.errors) as exc:
        fail(str(exc))
    finish_build(result, options.allow_empty, options.push_to_hub)


def recipe_config(model: Any, settings: dict[str, Any], config: Path | None) -> Any:
    """The recipe's config from the settings; a bad value or an unknown key is one line naming
    the setting (and the closest known key) and where it came from."""
    from pydantic import ValidationError

    from vdata.settings import settings_error

    try:
        return model.model_validate(settings)
    except ValidationError as exc:
        fail(str(settings_error(exc, model, f"the flags or --config {config}" if config else "the flags")))


def finish_build(result: Any, allow_empty: bool, push_to_hub: str | None = None) -> None:
    """The card and the summary; then a build that kept nothing has failed (exit 1, one line
    naming the stage that rejected everything) unless the pipeline expects that (--allow-empty);
    then the push, when asked for."""
    from vdata.cards.card import write_card

    dataset = RunStore(result.out).dataset_dir
    write_card(dataset)
    print_build_summary(result)
    why = result.why_empty()
    if why is not None and not allow_empty:
        fail(
            f"the build kept no rows: {why}; see {result.out / 'rejects'} "
            "(--allow-empty accepts an empty dataset)",
            1,
        )
    if why is not None:
        warning = f"[yellow]warning:[/yellow] the dataset is empty: {escape(why)}"
        err.print(warning, highlight=False, soft_wrap=True)
    if push_to_hub:
        push_command(dataset, push_to_hub)


def print_build_summary(result: Any) -> None:
    """Under the run's summary table: videos, clips, questions, tokens, time, the answer letters
    of each split, then the recipe's own lines."""
    from vdata.formats import load_rows
    from vdata.recipe import recipe_of_run
    from vdata.record import CHOICE_TYPES, answer_letters

    store = RunStore(result.out)
    run = store.read_run() or {}
    stages = {s.name: s for s in result.stages}
    tokens = sum(
        m.get("prompt_tokens", 0) + m.get("completion_tokens", 0)
        for usage in run.get("usage", {}).values()
        for m in usage.values()
    )
    ingest = stages.get("ingest")
    if ingest is not None and "segment" in stages:
        counted = (
            f"videos {ingest.rows_out} (rejected {ingest.rejected}), clips {stages['segment'].rows_out}, "
            f"questions {result.stages[-1].rows_out}"
        )
    else:
        first = result.stages[0] if result.stages else None
        counted = (
            f"rows read {first.rows_in if first else 0}, kept {result.stages[-1].rows_out if first else 0}"
        )
    err.print(
        f"{run.get('recipe')}: {store.dataset_dir}: {counted}; "
        f"tokens {tokens:,}; time {run.get('timings', {}).get('total_s', 0):.1f}s",
        highlight=False,
        soft_wrap=True,
    )
    letters: dict[str, Counter] = {}
    loaded = load_rows(store.dataset_dir)
    for row, split in zip(loaded.rows, loaded.splits, strict=True):
        counts = letters.setdefault(row.get("split") or split, Counter())
        if row.get("problem_type") in CHOICE_TYPES:  # yes/no, free-form and spans have no letter
            counts.update(answer_letters(row.get("solution")))
    for split, counts in sorted(letters.items()):
        shown = ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "none (no choice questions)"
        err.print(f"  {split}: answer letters {shown}")
    recipe = recipe_of_run(run)
    if recipe is not None and recipe.summary_lines is not None:
        for line in recipe.summary_lines(loaded.rows, run, store):
            err.print(f"  {line}", highlight=False, soft_wrap=True)
