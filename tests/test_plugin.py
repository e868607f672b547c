"""A recipe written outside vdata: the example plugin (examples/recipe-plugin) pip-installed, found
under the `vdata.recipes` entry point group, and built like a built-in recipe with the real embedded
model: killed mid-run and resumed, then the same build on Ray; the card, the summary, provenance and
`vdata view`'s row listing come from vdata, with nothing in vdata naming the recipe."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from vdata.annotators.testing import FaultProxy

from conftest import cached_replies, dataset, models_file, wait_for

ROOT = Path(__file__).resolve().parents[1]
PLUGIN = ROOT / "examples" / "recipe-plugin"


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict[str, str]:
    """The plugin pip-installed (no index, no build isolation: nothing leaves the machine) into a
    folder of its own; the environment whose `vdata` sees it."""
    site = tmp_path_factory.mktemp("site")
    source = tmp_path_factory.mktemp("plugin") / "recipe-plugin"  # the build's files stay out of the checkout
    shutil.copytree(PLUGIN, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", "--no-build-isolation",
         "--target", str(site), str(source)],
        check=True, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}


def vdata(env: dict[str, str], *args: str, **options) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "vdata", *args],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        **options,
    )


@pytest.mark.install
def test_the_plugin_is_listed_and_gets_a_generated_command(installed):
    listed = vdata(installed, "build", "--list", timeout=120)
    assert listed.returncode == 0, listed.stderr
    assert "clip-quiz@1" in listed.stdout and "plugin vdata_clip_quiz:RECIPE" in listed.stdout
    assert "longvideo-reason@1" in listed.stdout and "built in" in listed.stdout
    shown = vdata(installed, "build", "clip-quiz", "--help", timeout=120)
    assert shown.returncode == 0, shown.stderr
    for option in (
        "--captions",
        "--max-clips",
        "--eval-fraction",
        "--writer",
        "--engine",
        "--models",
        "--config",
    ):
        assert option in shown.stdout, option
    unknown = vdata(installed, "build", "clip-quizz", "--help", timeout=120)
    assert unknown.returncode == 2 and "clip-quizz" in unknown.stderr


@pytest.mark.install
@pytest.mark.model
def test_the_plugin_builds_resumes_and_runs_on_ray_like_a_built_in_recipe(installed, embedded, tmp_path):
    from vdata.view import ViewData

    def build(out: Path, *extra: str) -> list[str]:
        return [
            sys.executable, "-m", "vdata", "build", "clip-quiz",
            "--captions", str(ROOT / "examples" / "captions.jsonl"), "--max-clips", "4",
            "--models", str(models), "--out", str(out), "--quiet", *extra,
        ]  # fmt: skip

    with FaultProxy(embedded.base_url.removesuffix("/v1"), memo=True) as proxy:
        models = models_file(tmp_path / "models.yaml", proxy.base_url, embedded.model, ["writer"])
        local = tmp_path / "local"
        process = subprocess.Popen(build(local), env=installed, stderr=subprocess.PIPE)
        wait_for(
            lambda: cached_replies(local / "cache.sqlite") >= 1, "a cached answer", process, every_s=0.05
        )
        process.send_signal(signal.SIGKILL)
        process.wait()
        killed = dataset(local) if (local / "dataset").is_dir() else {}
        resumed = subprocess.run(build(local), env=installed, capture_output=True, text=True, timeout=900)
        assert resumed.returncode == 0, resumed.stderr
        on_ray = subprocess.run(
            build(tmp_path / "ray", "--engine", "ray"),
            env=installed,
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert on_ray.returncode == 0, on_ray.stderr

    assert not killed  # the kill came before the dataset was written
    rows = dataset(local)
    assert sum(len(r) for r in rows.values()) >= 1
    assert json.loads((local / "run.json").read_text())["invocations"] == 2

    def portable(found: dict) -> dict:  # the run's own folder aside
        return {s: [{k: v for k, v in r.items() if k != "meta_json"} for r in rs] for s, rs in found.items()}

    assert portable(dataset(tmp_path / "ray")) == portable(rows)
    for row in (r for split in rows.values() for r in split):
        assert row["recipe"] == "clip-quiz@1" and row["problem"].endswith("?")
        fields = json.loads(row["provenance"]["params_json"])["fields"]
        assert fields["problem"]["role"] == "writer" and fields["problem"]["model"]
        assert len(fields["problem"]["prompt_sha256"]) == 64 and fields["evidence"]["source"]
    card = (local / "dataset" / "README.md").read_text()
    assert "Recipe `clip-quiz@1`" in card and "Every answer is yes" in card and "example of a recipe" in card
    assert "clip-quiz@1:" in resumed.stderr and "rl: answer letters" in resumed.stderr
    listing = [(r["id"], r["problem"]) for r in ViewData(local).page({})["rows"]]
    assert listing == [(r["id"], r["problem"]) for r in ViewData(tmp_path / "ray").page({})["rows"]]
    assert sorted(listing) == sorted((r["id"], r["problem"]) for split in rows.values() for r in split)


def test_the_readme_s_recipe_code_is_the_example_s():
    """What the README's "Write your own recipe" shows is the example's code, line for line."""
    import re

    readme = (ROOT / "README.md").read_text()
    section = readme.split("**Write your own recipe.**", 1)[1].split("\n### ", 1)[0]
    blocks = re.findall(r"```(python|toml)\n(.*?)```", section, re.S)
    assert len(blocks) >= 4
    sources = {
        "python": (PLUGIN / "vdata_clip_quiz.py").read_text(),
        "toml": (PLUGIN / "pyproject.toml").read_text(),
    }
    for kind, code in blocks:
        assert code in sources[kind], code[:200]
