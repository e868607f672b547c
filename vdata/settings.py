"""One way to load a command's settings: a YAML file, then `key=value` overrides, then flags.

Later wins: a flag beats an override, which beats the file. Values of overrides
are read as YAML (3, 1e-6, true, [a, b]); YAML reads `1e-6` as text, so numeric
keys convert it, with a clear error when it is not a number.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml


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


def as_number(key: str, value: Any, annotation: str) -> Any:
    """A number for a numeric key given as text ('1e-6'), or a clear error."""
    if not isinstance(value, str) or not annotation.startswith(("float", "int")):
        return value
    try:
        return float(value) if annotation.startswith("float") else int(value)
    except ValueError as exc:
        raise SettingsError(f"{key}: {value!r} is not a number") from exc
