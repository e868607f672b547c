"""The six import names map onto the top-level folders, installed editable or as a wheel."""

from __future__ import annotations

import importlib
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NAMES = {
    "vdata": "vdata",
    "vdata.builders": "builders",
    "vdata.annotators": "annotators",
    "vdata.filters": "filters",
    "vdata.trainers": "trainers",
    "vdata.cards": "cards",
}
IMPORT_ALL = "; ".join(f"import {name}" for name in NAMES)


@pytest.mark.parametrize("name", sorted(NAMES))
def test_each_import_name_comes_from_its_folder(name):
    module = importlib.import_module(name)
    path = Path(module.__file__)
    assert path.name == "__init__.py"
    if (ROOT / NAMES[name]) == path.parent:
        return  # editable install: straight from the source folder
    assert path.parent.parts[-1] == name.split(".")[-1] and "site-packages" in path.parts


@pytest.mark.install
def test_a_wheel_installs_and_imports_all_six(tmp_path):
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(ROOT)],
        check=True,
        capture_output=True,
    )
    (wheel,) = dist.glob("vdata-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for name in NAMES:
        assert f"{name.replace('.', '/')}/__init__.py" in names
    assert not any(n.startswith("tests/") for n in names)
    for page in ("index.html", "app.js", "style.css"):  # `vdata view` serves them from the package
        assert f"vdata/view_page/{page}" in names

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    # pip from this interpreter installs the wheel into the fresh venv; no dependencies are
    # needed to import the six packages, so nothing is fetched.
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", site, str(wheel)],
        check=True,
        capture_output=True,
    )
    result = subprocess.run(
        [str(python), "-c", f"{IMPORT_ALL}; print(vdata.builders.__file__)"],
        cwd=tmp_path,
        check=True,
        capture_output=True,
        text=True,
    )
    assert result.stdout.strip() == str(Path(site) / "vdata" / "builders" / "__init__.py")
