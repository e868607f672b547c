"""One way to load a command's settings: a YAML file, then `key=value` overrides, then flags.

Later wins: a flag beats an override, which beats the file. Values of overrides
are read as YAML (3, 1e-6, true, [a, b]); YAML reads `1e-6` as text, so numeric
keys convert it, with a clear error when it is not a number.

Settings are read strictly, by the model the flags fill (`Settings`): a key the
command does not know stops it, naming the closest known key (a typo must not
build with the default); a value of the wrong type names the key and the type; a
number that must be finite refuses NaN and infinity; true and false are not numbers.
"""

from __future__ import annotations

import difflib
import ipaddress
import re
import types
import typing
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, model_validator


class SettingsError(ValueError):
    """Settings that cannot be read; the message names the file or the key."""


def load_settings(
    path: str | Path | None = None,
    overrides: Sequence[str] = (),
    flags: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The settings: the YAML file, then `key=value` overrides, then the flags that were given
    (None means not given)."""
    values: dict[str, Any] = {}
    if path is not None:
        try:
            values = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise SettingsError(f"{path}: cannot read the config ({exc})") from exc
        if not isinstance(values, dict):
            raise SettingsError(f"{path}: a config is a mapping of keys to values")
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep:
            raise SettingsError(f"override {item!r} is not key=value")
        values[key.strip()] = yaml.safe_load(value)
    values.update({key: value for key, value in (flags or {}).items() if value is not None})
    return values


def closest(name: str, known: Iterable[str]) -> str:
    """' (did you mean 'x'?)' for the known name nearest to `name`, or ''."""
    found = difflib.get_close_matches(str(name), sorted(known), n=1, cutoff=0.6)
    return f" (did you mean {found[0]!r}?)" if found else ""


def unknown_keys(values: Mapping[str, Any], known: Iterable[str], where: str) -> None:
    """SettingsError naming the first key that is not one of `known`, and the closest one."""
    known = set(known)
    for key in values:
        if key not in known:
            raise SettingsError(f"{where}: unknown setting {key!r}{_nearest_or_all(str(key), known)}")


def _nearest_or_all(name: str, known: Iterable[str]) -> str:
    """' (did you mean 'x'?)', or the known names when none is near."""
    return closest(name, known) or f"; known: {', '.join(sorted(known))}"


def _admits_bool(annotation: Any) -> bool:
    if annotation is bool or annotation is Any:
        return True
    return any(_admits_bool(arg) for arg in typing.get_args(annotation) if arg is not type(None))


def _items_of(annotation: Any) -> Any:
    """The element type of a list setting (list[int], list[int] | None), else None."""
    for candidate in (annotation, *typing.get_args(annotation)):
        if typing.get_origin(candidate) in (list, tuple, set):
            return (typing.get_args(candidate) or (Any,))[0]
    return None


def refuse_bools(values: Mapping[str, Any], annotations: Mapping[str, Any]) -> None:
    """A SettingsError for true/false given where a number or text belongs (pydantic's lax mode
    would read true as 1): `seeds: [true, false]` is a mistake, not seeds 1 and 0."""
    for key, value in values.items():
        annotation = annotations.get(key, Any)
        if isinstance(value, bool) and not _admits_bool(annotation):
            raise SettingsError(f"setting {key}: {value!r} is true/false, not a {_type_name(annotation)}")
        item = _items_of(annotation)
        listed = isinstance(value, (list, tuple)) and item is not None and not _admits_bool(item)
        if listed and any(isinstance(v, bool) for v in value):
            raise SettingsError(f"setting {key}: {value!r} holds true/false, not {_type_name(item)}s")


def _type_name(annotation: Any) -> str:
    if isinstance(annotation, type):
        return {"int": "whole number", "float": "number", "str": "text"}.get(
            annotation.__name__, annotation.__name__
        )
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        return " or ".join(_type_name(a) for a in typing.get_args(annotation) if a is not type(None))
    return str(annotation).replace("typing.", "")


class Settings(BaseModel):
    """A command's settings: unknown keys, true/false where a number belongs, and numbers that
    are not finite are refused (see `settings_error` for the message)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _no_bools_for_numbers(cls, values: Any) -> Any:
        if isinstance(values, Mapping):
            annotations = {name: f.annotation for name, f in cls.model_fields.items()}
            try:
                refuse_bools(values, annotations)
            except SettingsError as exc:
                raise ValueError(str(exc)) from None
        return values

    def inputs(self) -> list[tuple[str, Any]]:
        """(flag, path) of every file or folder the command reads: its output must stay apart."""
        return []


def settings_error(exc: ValidationError, model: type[BaseModel], where: str) -> SettingsError:
    """One line for the first thing wrong with some settings: the key (with the closest known
    one when it is unknown), what was wrong with its value, and where the settings came from."""
    first = exc.errors()[0]
    key = ".".join(str(part) for part in first["loc"]) or "(the settings)"
    if first["type"] == "extra_forbidden":
        return SettingsError(
            f"{where}: unknown setting {key!r}{_nearest_or_all(str(first['loc'][-1]), model.model_fields)}"
        )
    message = str(first["msg"]).removeprefix("Value error, ")
    if message.startswith("setting "):
        return SettingsError(f"{where}: {message}")
    given = first.get("input")
    shown = "" if isinstance(given, Mapping) else f" (got {given!r:.60})"
    return SettingsError(f"{where}: setting {key}: {message}{shown}")


_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9])?"
_HOST_NAME = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(?:\.{_LABEL})*\.?$")


def is_host(text: str) -> bool:
    """Whether `text` is written as an IP address or a host name (RFC 1123 labels), judged as
    text: a user's address is checked before anything resolves it or connects to it."""
    try:
        ipaddress.ip_address(text.strip("[]"))
        return True
    except ValueError:
        return bool(_HOST_NAME.match(text))


def url_problem(url: str) -> str | None:
    """What is wrong with an http(s) URL a user gave (None when nothing), judged as text."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        port = parts.port  # raises for a port that is not a number in range
    except ValueError as exc:
        return str(exc)
    if parts.scheme not in ("http", "https"):
        return "it is not an http:// or https:// URL"
    if not parts.hostname or not is_host(parts.hostname):
        return f"{parts.hostname or 'nothing'} is not a host name or IP address"
    if port == 0:
        return "port 0 is no port to connect to"
    return None
