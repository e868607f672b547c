"""The architecture as DESIGN.md draws it: families depend on the kernel, not on each other
(builders may compose annotators and filters; the CLI composes everything)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = {
    "vdata": "vdata",
    "builders": "builders",
    "annotators": "annotators",
    "filters": "filters",
    "trainers": "trainers",
    "cards": "cards",
}
# builders use the annotators and filters; model filters call the annotators and score with the
# trainer's torch-free rewards and prompt
# (and an in-process policy is the trainer's own model)
ALLOWED = {
    "builders": {"annotators", "filters"},
    "filters": {"annotators", "trainers"},
    "annotators": {"trainers"},
}


def family(module: str) -> str:
    """kernel, cli, or the family of a vdata module name."""
    parts = module.split(".")
    if parts[0] != "vdata":
        return "outside"
    if len(parts) > 1 and parts[1] in ("builders", "annotators", "filters", "trainers", "cards", "cli"):
        return parts[1]
    return "kernel"


def imports(path: Path) -> list[tuple[int, str]]:
    """Every vdata module a file imports, at any depth of its code."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
    return [(line, name) for line, name in found if name.split(".")[0] == "vdata"]


def test_no_family_imports_another():
    wrong = []
    for folder in FOLDERS:
        for path in sorted((ROOT / folder).rglob("*.py")):
            relative = path.relative_to(ROOT)
            command_line = relative.parts[:2] == ("vdata", "cli") or relative == Path("vdata/__main__.py")
            own = "cli" if command_line else ("kernel" if folder == "vdata" else folder)
            if own == "cli":
                continue  # the command line composes build -> dataset -> card
            for line, module in imports(path):
                other = family(module)
                if other in ("kernel", own, "outside") or other in ALLOWED.get(own, set()):
                    continue
                wrong.append(f"{relative}:{line} ({own}) imports {module} ({other})")
    assert not wrong, "\n".join(wrong)


def test_the_walk_sees_an_import_inside_a_function(tmp_path):
    path = tmp_path / "m.py"
    path.write_text("def f():\n    from vdata.cards.card import write_card\n")
    assert imports(path) == [(2, "vdata.cards.card")] and family("vdata.cards.card") == "cards"


def test_no_recipe_imports_another():
    """A recipe is one file: what two recipes share lives in the kernel, the annotators or the
    filters (or `vdata.builders.build`, which runs any recipe), so a recipe can be copied out as a
    plugin and one change never reaches another."""
    wrong = []
    for path in sorted((ROOT / "builders").glob("*.py")):
        own = f"vdata.builders.{path.stem}"
        for line, module in imports(path):
            if module.startswith("vdata.builders.") and module != own:
                wrong.append(f"builders/{path.name}:{line} imports {module}")
    assert not wrong, "\n".join(wrong)


def test_the_card_names_no_recipe():
    """The card asks the run's recipe for its lines, limitations and paper (vdata.recipe)."""
    from vdata.recipe import BUILT_IN

    text = (ROOT / "cards" / "card.py").read_text()
    named = [name for name in BUILT_IN if name in text or name.replace("-", "_") in text]
    assert not named, f"cards/card.py names recipes {named}"


def test_engines_are_passed_and_import_no_runner():
    """The runner takes its engine as an argument (no engine stack, no module state) and the
    engines need nothing of the runner: no import loop between them."""
    wrong = [
        f"{path.relative_to(ROOT)}:{line} imports {module}"
        for path in sorted((ROOT / "vdata" / "engines").glob("*.py"))
        for line, module in imports(path)
        if module == "vdata.runner"
    ]
    assert not wrong, "\n".join(wrong)
    runner = (ROOT / "vdata" / "runner.py").read_text()
    assert "vdata.engines.ray" not in runner and "_DEFAULT" not in runner
