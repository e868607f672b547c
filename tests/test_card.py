"""The dataset card: Hub-readable YAML, the making of the data, statistics, plots, no secrets."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from huggingface_hub import DatasetCard

from vdata.cards.card import write_card
from vdata.publish import strip_secrets

from toy_recipe import build

TOKEN = "hf_PlantedSecretToken12345"


def test_the_card_parses_with_the_hub_tools_and_lists_every_split(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    build(tmp_path / "run")
    run_json = tmp_path / "run" / "run.json"
    run = json.loads(run_json.read_text())
    run["config"]["hf_token"] = TOKEN  # planted where a careless config could put it
    run["config"]["note"] = f"pushed with {TOKEN}"
    run["command"] = f"vdata build toy --token {TOKEN}"
    run_json.write_text(json.dumps(run))

    warnings = write_card(tmp_path / "run" / "dataset")
    assert warnings and "no license set" in warnings[0]
    text = (tmp_path / "run" / "dataset" / "README.md").read_text()
    assert TOKEN not in text and "[secret removed]" in text

    card = DatasetCard.load(tmp_path / "run" / "dataset" / "README.md")
    files = sorted(p.name.split("-")[0] for p in (tmp_path / "run" / "dataset" / "data").glob("*.parquet"))
    (config,) = card.data.configs
    assert sorted(f["split"] for f in config["data_files"]) == files
    assert {s["name"] for s in card.data.dataset_info["splits"]} == set(files)
    assert "video-text-to-text" in card.data.task_categories
    assert any(feature["name"] == "solution" for feature in card.data.dataset_info["features"])
    for plot in ("plots/answer_letters.png", "plots/question_length.png"):
        assert f"]({plot})" in text and (tmp_path / "run" / "dataset" / plot).stat().st_size > 1000
    for section in (
        "## How it was built",
        "## What is in it",
        "## Sample rows",
        "## Load it",
        "## Limitations",
    ):
        assert section in text
    assert "`annotate`: 36 in, 35 kept, 1 rejected (stage_error 1)" in text


@pytest.mark.slow
def test_vdata_card_sets_the_license(tmp_path):
    build(tmp_path / "run")
    result = subprocess.run(
        [sys.executable, "-m", "vdata", "card", str(tmp_path / "run" / "dataset"), "--license", "cc-by-4.0"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0 and "warning" not in result.stderr
    assert DatasetCard.load(tmp_path / "run" / "dataset" / "README.md").data.license == "cc-by-4.0"


def test_strip_secrets_drops_secret_keys_and_masks_token_values():
    cleaned = strip_secrets({"api_key": "x", "nested": [{"Authorization": "Bearer y"}, "sk-abcdefghijkl"]})
    assert cleaned == {"nested": [{}, "[secret removed]"]}


def test_the_card_reports_the_clips_a_recipe_read(tmp_path):
    from vdata.record import to_table
    from vdata.runstore import write_dataset

    from conftest import VALID_ROW

    row = {**VALID_ROW, "meta_json": json.dumps({"clips": [[0, 10], [10, 20], [20, 25]]})}
    write_dataset(to_table([row]), tmp_path / "ds")
    write_card(tmp_path / "ds", license="mit")
    assert "Clips: 3, durations (s): median 10.0, max 10.0." in (tmp_path / "ds" / "README.md").read_text()


def test_a_dataset_whose_every_row_was_rejected_still_gets_a_card(tmp_path):
    from vdata.record import SCHEMA
    from vdata.runstore import write_dataset

    write_dataset(SCHEMA.empty_table(), tmp_path / "ds")
    write_card(tmp_path / "ds", license="mit")
    card = DatasetCard.load(tmp_path / "ds" / "README.md")
    assert "0 questions about 0 videos" in card.text
