from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

from vdata.runner import RunError, run_pipeline
from vdata.runstore import RunStoreError
from vdata.stages import MapStage, StageFailed

from toy_recipe import build, toy_inputs


def _calls(log) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


def test_a_run_writes_shards_manifests_rejects_and_the_dataset(tmp_path, monkeypatch):
    monkeypatch.setenv("TOY_CALL_LOG", str(tmp_path / "calls.log"))
    out = tmp_path / "run"
    result = build(out)

    run = json.loads((out / "run.json").read_text())
    assert run["status"] == "done" and run["recipe"] == "toy@1"
    assert [s["dir"] for s in run["stages"]] == ["01-import", "02-annotate", "03-split"]
    assert [r.status for r in result.stages] == ["ran", "ran", "ran"]
    assert len(list((out / "stages" / "00-inputs").glob("part-*.parquet"))) == 8  # 40 rows, 5 a shard

    manifest = json.loads((out / "stages" / "01-import" / "manifest.json").read_text())
    assert manifest["done"] and manifest["rows_in"] == 40 and manifest["rows_out"] == 36

    rejects = pq.read_table(out / "rejects" / "import.parquet").to_pylist()
    assert sorted(r["reason"] for r in rejects) == ["answer_not_in_options"] + ["missing_field"] * 3
    null_question = next(r for r in rejects if r["reason"] == "missing_field")
    assert null_question["stage"] == "import" and "problem" in null_question["detail"]
    assert json.loads(null_question["payload_json"])["problem_id"] in (5, 18, 31)  # the row is kept whole

    errors = pq.read_table(out / "rejects" / "annotate.parquet").to_pylist()
    assert [r["reason"] for r in errors] == ["stage_error"]
    assert "ValueError: the annotator cannot read question 33" in errors[0]["detail"]

    splits = {p.name.split("-")[0]: pq.read_table(p) for p in (out / "dataset" / "data").glob("*.parquet")}
    assert sum(t.num_rows for t in splits.values()) == 35
    videos = {name: set(t.column("path").to_pylist()) for name, t in splits.items()}
    assert set(videos) <= {"eval", "sft", "rl"} and "eval" in videos
    names = list(videos)
    assert all(not (videos[a] & videos[b]) for a in names for b in names if a < b), "a video in two splits"
    assert not list(out.rglob(".*tmp*")), "temporary files left behind"


def test_a_rerun_skips_finished_stages(tmp_path, monkeypatch):
    log = tmp_path / "calls.log"
    monkeypatch.setenv("TOY_CALL_LOG", str(log))
    build(tmp_path / "run")
    first = _calls(log)
    result = build(tmp_path / "run")
    assert [r.status for r in result.stages] == ["skipped", "skipped", "skipped"]
    assert _calls(log) == first
    assert json.loads((tmp_path / "run" / "run.json").read_text())["invocations"] == 2


def test_a_config_change_reruns_that_stage_and_the_ones_after_it(tmp_path, monkeypatch, capsys):
    log = tmp_path / "calls.log"
    monkeypatch.setenv("TOY_CALL_LOG", str(log))
    build(tmp_path / "run", tag="t")
    calls = len(_calls(log))
    capsys.readouterr()
    result = build(tmp_path / "run", tag="u")
    said = capsys.readouterr().err
    assert "stage 02-annotate config changed (tag: 't' -> 'u')" in said
    assert "rerunning 02-annotate, 03-split" in said
    assert [r.status for r in result.stages] == ["skipped", "ran", "ran"]
    assert len(_calls(log)) == 2 * calls
    categories = set(result.final_table().column("category").to_pylist())
    assert categories and all(c.startswith("u-") for c in categories)


def test_a_seed_change_reruns_only_the_seeded_stages(tmp_path, monkeypatch, capsys):
    log = tmp_path / "calls.log"
    monkeypatch.setenv("TOY_CALL_LOG", str(log))
    first = build(tmp_path / "run", seed=0).final_table()
    calls = len(_calls(log))
    second = build(tmp_path / "run", seed=1)
    assert [r.status for r in second.stages] == ["skipped", "skipped", "ran"]
    assert len(_calls(log)) == calls
    assert "stage 03-split seed changed (0 -> 1): rerunning 03-split" in capsys.readouterr().err
    assert first.column("split").to_pylist() != second.final_table().column("split").to_pylist()


def test_another_recipe_in_the_same_directory_is_refused(tmp_path):
    build(tmp_path / "run")
    with pytest.raises(RunError, match="holds a run of recipe 'toy@1'"):
        run_pipeline(tmp_path / "run", "other@1", [], [], quiet=True)


def test_a_stage_that_fails_on_every_row_stops_the_run(tmp_path):
    def broken(row, ctx):
        raise KeyError("missing setting")

    stages = [MapStage("broken", broken)]
    with pytest.raises(StageFailed, match="failed on every one of its 40 rows; first: stage_error: KeyError"):
        run_pipeline(tmp_path / "run", "broken@1", toy_inputs(), stages, quiet=True, shard_rows=10)
    assert json.loads((tmp_path / "run" / "run.json").read_text())["status"] == "failed"
    assert not (tmp_path / "run" / "stages" / "01-broken").exists(), "a rerun must retry the stage"


def test_summary_prints_counts_per_stage(tmp_path, capsys):
    build(tmp_path / "run", quiet=False)
    said = capsys.readouterr().err
    for line in ("01-import", "02-annotate", "03-split"):
        assert line in said
    assert "36" in said and "35" in said  # kept after import, kept after annotate


def test_a_damaged_manifest_redoes_its_stage_and_a_damaged_run_json_is_named(tmp_path, monkeypatch):
    log = tmp_path / "calls.log"
    monkeypatch.setenv("TOY_CALL_LOG", str(log))
    reference = build(tmp_path / "run").final_table()
    calls = len(_calls(log))
    (tmp_path / "run" / "stages" / "02-annotate" / "manifest.json").write_text("{half")
    result = build(tmp_path / "run")
    assert [r.status for r in result.stages] == ["skipped", "ran", "skipped"]
    assert len(_calls(log)) == 2 * calls
    assert result.final_table().equals(reference)

    (tmp_path / "run" / "run.json").write_text("not json")
    with pytest.raises(RunStoreError, match=r"run\.json is not valid JSON .* restore it, or delete it"):
        build(tmp_path / "run")


def test_rows_with_different_fields_keep_every_field(tmp_path):
    rows = [{"id": "a", "word": "sky"}, {"id": "b", "noun": "snow", "count": 3}]
    result = run_pipeline(tmp_path / "run", "fields@1", rows, [MapStage("keep", lambda r, c: r)], quiet=True)
    back = result.final_table().to_pylist()
    assert back[1]["noun"] == "snow" and back[1]["count"] == 3 and back[0]["word"] == "sky"


PROMPT_MODULE = """
STYLE = "{style}"


def prompt(row):
    return [{{"role": "user", "content": f"Describe {{row['word']}} in a {{STYLE}} way."}}]
"""


def test_editing_a_constant_a_prompt_reads_reruns_the_stage_and_says_why(tmp_path, monkeypatch):
    # The stage's fingerprint covers the prompt's code and the module-level values it reads.
    import importlib
    import io

    from rich.console import Console

    from vdata.annotators.endpoints import Endpoint, Endpoints
    from vdata.annotators.pool import ModelPool
    from vdata.annotators.stage import annotate_stage
    from vdata.annotators.testing import FaultProxy

    module = tmp_path / "edited_recipe.py"
    monkeypatch.syspath_prepend(str(tmp_path))
    rows = [{"word": w} for w in ("sky", "sea")]

    def run(style: str, proxy: FaultProxy) -> tuple[str, list[dict]]:
        module.write_text(PROMPT_MODULE.format(style=style))
        recipe = importlib.reload(importlib.import_module("edited_recipe"))
        stage = annotate_stage("describe", role="reasoner", prompt=recipe.prompt)
        log = io.StringIO()
        endpoints = Endpoints(roles={"reasoner": Endpoint(base_url=proxy.base_url, model="stand-in")})
        with ModelPool(endpoints, cache_path=tmp_path / "run" / "cache.sqlite") as pool:
            result = run_pipeline(
                tmp_path / "run",
                "describe@1",
                rows,
                [stage],
                quiet=True,
                resources={"models": pool},
                console=Console(file=log, width=200),
            )
        return log.getvalue(), result.final_table().to_pylist()

    with FaultProxy(None, latency_s=0.0, keep_bodies=True) as proxy:
        _, first = run("plain", proxy)
        again, _ = run("plain", proxy)
        assert len(proxy.bodies) == 2 and "rerunning" not in again  # nothing changed: skipped
        said, second = run("poetic", proxy)
    assert "stage 01-describe code changed (STYLE): rerunning 01-describe" in said
    assert len(proxy.bodies) == 4 and "poetic" in json.dumps(proxy.bodies[-1])  # asked again, anew
    assert [r["word"] for r in second] == [r["word"] for r in first]


def test_runtime_state_a_stage_reads_does_not_change_its_code_hash(tmp_path):
    """A module's RUNTIME_STATE (the run directories this process holds) counts by name: holding
    another run directory leaves a stage's fingerprint as it was (it did not, and two output
    folders differed). The engine is no such state: it is passed, never global."""
    from vdata import runner, runstore
    from vdata.codehash import code_hashes

    def stage(row, ctx):
        with runstore.RunStore(ctx.run_dir).lock():
            return row

    before = code_hashes(stage, runstore.RunStore.lock)
    with runstore.RunStore(tmp_path / "elsewhere").lock():
        during = code_hashes(stage, runstore.RunStore.lock)
    assert during == before and before["vdata.runstore._HELD"] == "state"
    assert not hasattr(runner, "RUNTIME_STATE") and not hasattr(runner, "using_engine")
