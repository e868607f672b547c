"""What a stage's code depends on, hashed: so that editing it reruns the stage.

A stage's output depends on its function, the functions that calls, and the
module-level values they read (a category table, a regex of leaks, a prompt
template). `code_hashes` follows them from the stage's function: the source of
every function and class of the project's own code that it reaches, and the
value of every module-level constant read on the way; library code (the
standard library, site-packages other than vdata) counts by name only, its
version is in run.json. Names map to short hashes, so a rerun can say which
one changed. A module's runtime state (a registry of held locks, the engine in use),
listed in its `RUNTIME_STATE`, counts by name only: its value is where the run happens,
not what it computes.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import inspect
import re
import sys
import sysconfig
from pathlib import Path
from typing import Any

_LIBRARY_ROOTS = tuple(
    str(Path(p).resolve()) for p in {sysconfig.get_paths()["stdlib"], sysconfig.get_paths()["purelib"]}
)
_ADDRESS = re.compile(r" at 0x[0-9a-f]+")


def code_hashes(*objects: Any) -> dict[str, str]:
    """{qualified name: hash} of everything the objects' code depends on."""
    found: dict[str, str] = {}
    for obj in objects:
        _visit(obj, getattr(obj, "__qualname__", type(obj).__name__), found)
    return dict(sorted(found.items()))


def _short(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "replace")).hexdigest()[:12]


def _is_ours(obj: Any) -> bool:
    """Project code (vdata, a recipe or test module of the user's): not the standard library
    and not a third-party package."""
    module = getattr(obj, "__module__", None) or ""
    if module == "vdata" or module.startswith("vdata."):
        return True
    source_module = sys.modules.get(module)
    path = getattr(source_module, "__file__", None)
    if not path:
        return module == "__main__"
    return not str(Path(path).resolve()).startswith(_LIBRARY_ROOTS)


def _visit(obj: Any, name: str, found: dict[str, str]) -> None:
    if isinstance(obj, functools.partial):
        _visit(obj.func, name, found)
        for index, arg in enumerate(obj.args):
            _visit(arg, f"{name}.args[{index}]", found)
        for key, value in sorted(obj.keywords.items()):
            _visit(value, f"{name}.{key}", found)
        return
    obj = inspect.unwrap(obj) if callable(obj) else obj
    if inspect.ismodule(obj):
        return
    if inspect.isfunction(obj) or inspect.ismethod(obj) or inspect.isclass(obj):
        key = f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', name)}"
        if key in found:
            return
        if not _is_ours(obj):
            found[key] = "library"
            return
        try:
            found[key] = _short(inspect.getsource(obj))
        except (OSError, TypeError):
            found[key] = _short(getattr(obj, "__qualname__", repr(obj)))
        if inspect.isclass(obj):
            for member in vars(obj).values():
                if inspect.isfunction(member) or isinstance(member, (staticmethod, classmethod)):
                    _visit(getattr(member, "__func__", member), name, found)
            return
        _visit_reads(obj, found)
        return
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        for item in dataclasses.fields(obj):
            _visit(getattr(obj, item.name), f"{name}.{item.name}", found)
        return
    if callable(obj) and not _is_ours(type(obj)):
        found.setdefault(f"{name}", "library")
        return
    found[name] = _short(_stable_repr(obj))


def _visit_reads(function: Any, found: dict[str, str]) -> None:
    """The globals and closure values a function reads."""
    function = getattr(function, "__func__", function)
    try:
        reads = inspect.getclosurevars(function)
    except (TypeError, ValueError):
        return
    module = getattr(function, "__module__", "?")
    state = function.__globals__.get("RUNTIME_STATE", ())
    for label, values in (("", reads.globals), (f"{function.__qualname__}.", reads.nonlocals)):
        for read, value in sorted(values.items()):
            if label == "" and read in state:
                found[f"{module}.{read}"] = "state"
                continue
            _visit(value, f"{module}.{label}{read}", found)
    for code in _nested_code(function.__code__):  # functions defined inside this one
        for read in code.co_names:
            value = function.__globals__.get(read)
            if read in state:
                found[f"{module}.{read}"] = "state"
            elif value is not None:
                _visit(value, f"{module}.{read}", found)


def _nested_code(code: Any) -> list[Any]:
    nested = []
    for constant in code.co_consts:
        if inspect.iscode(constant):
            nested.append(constant)
            nested += _nested_code(constant)
    return nested


def _stable_repr(value: Any) -> str:
    """A text for a value that is the same in every process (no memory addresses)."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_stable_repr(k)}: {_stable_repr(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple, set, frozenset)):
        items = (
            sorted(map(_stable_repr, value))
            if isinstance(value, (set, frozenset))
            else map(_stable_repr, value)
        )
        return f"{type(value).__name__}[{', '.join(items)}]"
    if isinstance(value, re.Pattern):
        return f"re({value.pattern!r}, {value.flags})"
    text = repr(value)
    return type(value).__qualname__ if _ADDRESS.search(text) else text
