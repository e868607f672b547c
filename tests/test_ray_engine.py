"""`--engine ray` (issue 24, first part): the toy recipe's shards as Ray tasks on a local
cluster give the same bytes as the local engine. One Ray start for the module (a real local
cluster of 2 CPUs); stopped at the end."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from conftest import cached_replies, cmdline, descendants
from toy_recipe import build

ray = pytest.importorskip("ray", reason="the ray extra is not installed")

from vdata.engines import engine_for  # noqa: E402
from vdata.runner import RunError  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ray_engine():
    from vdata.engines.ray import RayEngine

    engine = RayEngine(num_cpus=2)
    yield engine
    engine.close()
    assert not ray.is_initialized()


def files(out: Path) -> dict[str, bytes]:
    """Every Parquet file of a run (stages, rejects, dataset), by path in the run."""
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*.parquet"))}


def manifests(out: Path) -> dict[str, str]:
    """Every stage manifest as its text, less its seconds (wall time differs between runs)."""
    found = {}
    for path in sorted(out.glob("stages/*/manifest.json")):
        manifest = json.loads(path.read_text())
        manifest.pop("seconds", None)
        found[str(path.relative_to(out))] = json.dumps(manifest)  # key order kept: the bytes' order
    return found


def test_the_toy_recipe_on_ray_writes_the_local_engines_bytes(tmp_path, ray_engine):
    """40 rows in 8 shards of 5: import and annotate (per row, one Ray task per shard, done in
    whatever order) and split (the whole dataset, on the driver). Every Parquet file, the
    dataset's included, is byte for byte the local run's; the manifests list the shards in
    order and equal the local ones; a rerun on Ray skips every stage."""
    local = build(tmp_path / "local")
    on_ray = build(tmp_path / "ray", engine=ray_engine)
    again = build(tmp_path / "ray", engine=ray_engine)
    assert [s.rows_out for s in on_ray.stages] == [s.rows_out for s in local.stages]
    assert on_ray.stages[1].rows_out > 0 and on_ray.stages[1].rejected > 0
    ours, theirs = files(tmp_path / "ray"), files(tmp_path / "local")
    assert len(ours) >= 20 and ours.keys() == theirs.keys()
    assert [name for name in ours if ours[name] != theirs[name]] == []
    assert manifests(tmp_path / "ray") == manifests(tmp_path / "local")
    shards = json.loads((tmp_path / "ray" / "stages" / "02-annotate" / "manifest.json").read_text())["shards"]
    assert list(shards) == sorted(shards) and len(shards) == 8
    assert [s.status for s in again.stages] == ["skipped"] * 3


def test_a_resource_that_cannot_travel_is_refused_not_run_without_it(tmp_path, ray_engine):
    from vdata.runner import run_pipeline
    from vdata.stages import MapStage

    stage = MapStage("ask", lambda row, ctx: row)
    with pytest.raises(RunError, match="cannot be sent .*--engine local"):
        run_pipeline(
            tmp_path / "run",
            "x@1",
            [{"a": 1}],
            [stage],
            resources={"models": object()},
            quiet=True,
            engine=ray_engine,
        )


def test_engine_names():
    assert type(engine_for("local")).__name__ == "LocalEngine"
    with pytest.raises(RunError, match="local or ray"):
        engine_for("spark")
    with pytest.raises(RunError, match="goes with --engine ray"):
        engine_for("local", "ray://head:10001")


def _mark_worker(row, ctx):
    """Notes which process did the row; a shard's first attempt at row 7 kills its worker;
    row 0 takes a while, so shard 0 finishes after others."""
    import os
    import time

    if row["n"] == 0:
        time.sleep(1.0)

    run = Path(ctx.run_dir)
    with open(run / f"pids-{ctx.shard}.txt", "a") as handle:
        handle.write(f"{os.getpid()}\n")
    if row["n"] == 7 and (run / "always-kill").exists():
        os._exit(9)
    if row["n"] == 7 and (run / "arm-kill").exists() and not (run / "killed").exists():
        (run / "killed").write_text("once")
        os._exit(9)  # the worker process dies mid-shard, as a crash or an OOM kill would
    return {**row, "square": row["n"] ** 2}


def _numbers_run(out: Path, engine=None):
    from vdata.runner import run_pipeline
    from vdata.stages import MapStage

    rows = [{"n": n} for n in range(20)]
    stages = [MapStage("square", _mark_worker)]
    # force: the test's switches (arm-kill, always-kill) lie in the folder before the run
    return run_pipeline(out, "numbers@1", rows, stages, shard_rows=4, quiet=True, force=True, engine=engine)


def test_shards_run_in_worker_processes_and_a_killed_worker_is_retried(tmp_path, ray_engine):
    """The rows are done in Ray's worker processes, not the driver; a worker killed in the
    middle of shard 1 is retried by Ray, shard 0 finishes late, and the run's files and
    manifests (shards in order) equal a local run's."""
    import os

    _numbers_run(tmp_path / "local")
    (tmp_path / "ray").mkdir()
    (tmp_path / "ray" / "arm-kill").write_text("the first attempt at row 7 kills its worker")
    _numbers_run(tmp_path / "ray", ray_engine)
    assert (tmp_path / "ray" / "killed").exists()
    pids = {int(p) for f in (tmp_path / "ray").glob("pids-*.txt") for p in f.read_text().split()}
    assert os.getpid() not in pids and pids
    assert files(tmp_path / "ray") == files(tmp_path / "local")
    assert manifests(tmp_path / "ray") == manifests(tmp_path / "local")


def test_vdata_split_with_engine_ray_writes_the_local_runs_bytes(tmp_path, ray_engine):
    """`vdata split --engine ray` (joining the module's cluster, as --ray-address would) on
    three real videos and a file that is not a video: clips.parquet, the stages' files and
    the rejects are the local engine's bytes."""
    from typer.testing import CliRunner

    from vdata.cli import app

    from videos import make_video

    videos = tmp_path / "videos"
    videos.mkdir()
    for i in range(3):
        make_video(videos / f"v{i}.mp4", [3.0, 4.0 + i], seed=i)
    (videos / "notes.mp4").write_text("not a video")
    runner = CliRunner()
    for engine in ("local", "ray"):
        result = runner.invoke(
            app,
            [
                "split",
                str(videos),
                "--out",
                str(tmp_path / engine),
                "--mode",
                "scene",
                "--quiet",
                "--engine",
                engine,
            ],
        )
        assert result.exit_code == 0, result.output
    ours, theirs = files(tmp_path / "ray"), files(tmp_path / "local")
    assert "clips.parquet" in ours and any(name.startswith("rejects/") for name in ours)
    assert ours == theirs
    assert ray.is_initialized()  # a cluster the command joined is left running
    bad = runner.invoke(app, ["split", str(videos), "--out", str(tmp_path / "x"), "--engine", "spark"])
    assert bad.exit_code == 2 and "local or ray" in bad.output


# One filter per kind of stage, the kinds the engines treat differently: a row-by-row stage
# runs in shards on the Ray tasks, a whole-dataset one (seeded here) on the driver, a model
# stage sends its model pool to the tasks. Every filter's own behaviour is proven on the local
# engine (test_filters, test_model_filters); here, that Ray changes nothing for each kind.
RAY_REPRESENTATIVES = {"validate": "MapStage", "sample": "DatasetStage", "difficulty": "AnnotationStage"}


def test_every_kind_of_filter_stage_with_engine_ray_writes_the_local_runs_bytes(tmp_path, ray_engine):
    """A filter of each stage kind on a Video-R1-shaped file with bad rows (and videos that are
    not there), --engine ray against local: the same Parquet files and manifests. The
    difficulty filter's policy is a scripted stand-in server that always answers A (no
    competent model runs here; the real embedded model's path is the annotate test's)."""
    from typer.testing import CliRunner

    from vdata.annotators.testing import FaultProxy
    from vdata.cli import app
    from vdata.cli.data import filter_app
    from vdata.filters.run import filter_stage

    from toy_recipe import toy_inputs

    data = tmp_path / "rows.json"
    data.write_text(json.dumps(toy_inputs(60)))
    (tmp_path / "eval.json").write_text(json.dumps(toy_inputs(60)[:5]))
    names = [command.name for command in filter_app.registered_commands]
    options = {"decontaminate": {"evals": [tmp_path / "eval.json"]}}
    kinds = {name: type(filter_stage(name, **options.get(name, {}))).__name__ for name in names}
    assert set(kinds.values()) == set(RAY_REPRESENTATIVES.values()), kinds  # a new kind needs its own
    assert all(kinds[name] == kind for name, kind in RAY_REPRESENTATIVES.items())
    runner = CliRunner()
    with FaultProxy(None, latency_s=0.0, reply_text="<answer>A</answer>") as stand_in:
        extra = {
            "sample": ["--n", "10"],
            "difficulty": ["--policy", f"{stand_in.base_url}@stand-in", "--samples", "2", "--no-video"],
        }
        for name in RAY_REPRESENTATIVES:
            for engine in ("local", "ray"):
                out = tmp_path / f"{name}-{engine}"
                result = runner.invoke(
                    app,
                    ["filter", name, str(data), "--out", str(out), "--quiet", "--engine", engine]
                    + extra.get(name, []),
                )
                assert result.exit_code == 0, (name, engine, result.output)
            ours, theirs = files(tmp_path / f"{name}-ray"), files(tmp_path / f"{name}-local")
            assert ours and ours == theirs, name
            assert manifests(tmp_path / f"{name}-ray") == manifests(tmp_path / f"{name}-local"), name
        kept = [
            cached_replies(tmp_path / f"difficulty-{engine}" / "cache.sqlite") for engine in ("ray", "local")
        ]
        asked = len(stand_in.seen)
    assert any(name.startswith("rejects/") for name in files(tmp_path / "validate-ray"))
    assert kept[0] == kept[1] > 0, kept  # the Ray tasks' answers are in the run's cache
    assert asked >= 2 * kept[1], (asked, kept)  # the model was asked on both engines


def test_vdata_annotate_on_ray_with_the_embedded_model(tmp_path, ray_engine):
    """`vdata annotate --engine ray` with the real embedded model (SmolLM2-135M through
    llama.cpp): the model pool travels to the Ray tasks, the embedded server runs once on the
    node, in the engine's actor (its log in the run directory), and stops with the command;
    the annotated rows are the local engine's bytes."""
    from typer.testing import CliRunner

    from vdata.cli import app

    rows = tmp_path / "rows.jsonl"
    rows.write_text(
        "".join(json.dumps({"id": f"r{i}", "q": f"What is {i} plus {i}?"}) + "\n" for i in range(6))
    )

    def servers() -> set[int]:
        return {pid for pid in descendants(os.getpid()) if b"vdata.annotators.local_server" in cmdline(pid)}

    before = servers()
    runner = CliRunner()
    for engine in ("local", "ray"):
        result = runner.invoke(
            app,
            ["annotate", str(rows), "--out", str(tmp_path / engine), "--prompt", "{q}", "--max-tokens", "12"]
            + ["--quiet", "--engine", engine],
        )
        assert result.exit_code == 0, result.output
        assert "6 rows annotated" in result.output
    assert files(tmp_path / "ray") == files(tmp_path / "local")
    # the tasks keep their answers in the run's cache, as the local engine does: a resumed run
    # does not pay for them again
    assert (
        cached_replies(tmp_path / "ray" / "cache.sqlite")
        == cached_replies(tmp_path / "local" / "cache.sqlite")
        == 6
    )
    assert len(list((tmp_path / "ray").glob("local-server-*.log"))) == 1  # one server, on the node
    assert not (tmp_path / "ray" / "local-server.log").exists()  # the driver started none
    # only the servers this test's commands started (they ran in this process, the cluster is
    # its child): another vdata run on the machine, or the session's server, is not theirs
    left = servers() - before
    assert left == set(), "an embedded server outlived the command"


def test_a_shard_whose_worker_always_dies_stops_the_run_with_a_clear_error(tmp_path, ray_engine):
    """Every attempt at shard 1 kills its worker: after Ray's retries the run stops with a
    RunError naming the stage and shard and how to resume; the other shards are kept."""
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "always-kill").write_text("row 7 kills its worker every time")
    with pytest.raises(RunError, match="square, shard 1: .*rerun"):
        _numbers_run(tmp_path / "run", ray_engine)
    kept = json.loads((tmp_path / "run" / "stages" / "01-square" / "manifest.json").read_text())["shards"]
    assert "00001" not in kept and len(kept) >= 1


def test_a_cache_per_node_keeps_every_answer_and_a_rerun_pays_for_none(tmp_path, ray_engine):
    """The cache layout for a cluster of several machines, forced on this one node: the tasks
    write their answers to the node's own file (RUN/node-caches/), read the run's cache for
    what an earlier run paid for, and the driver gathers the nodes' answers into the run's
    cache after the stage. The model is a scripted stand-in server (a verdict per word)."""
    import shutil

    from annotate_recipe import WORDS
    from annotate_recipe import build as colours

    from vdata.annotators.endpoints import Endpoint
    from vdata.annotators.testing import FaultProxy
    from vdata.engines.ray import RayEngine

    per_node = RayEngine(cache_per_node=True)  # joins the module's cluster
    assert not per_node.started
    with FaultProxy(None, latency_s=0.0, reply_json={"colour": "blue"}) as stand_in:
        endpoint = Endpoint(base_url=stand_in.base_url, model="stand-in", structured="json_object")
        first = colours(tmp_path / "run", endpoint, shard_rows=3, engine=per_node)
        assert first.stages[0].rows_out == len(WORDS)
        asked = len(stand_in.seen)
        assert asked == len(WORDS)
        nodes = list((tmp_path / "run" / "node-caches").glob("*.sqlite"))
        assert len(nodes) == 1 and cached_replies(nodes[0]) == len(WORDS)
        assert cached_replies(tmp_path / "run" / "cache.sqlite") == len(WORDS)  # gathered
        # the stage's output lost: the rerun reads every answer from a cache, the node's
        shutil.rmtree(tmp_path / "run" / "stages")
        colours(tmp_path / "run", endpoint, shard_rows=3, engine=per_node)
        assert len(stand_in.seen) == asked
        # answers only the run's cache holds (a local run's) are read through by the node
        colours(tmp_path / "local", endpoint, shard_rows=3)
        asked = len(stand_in.seen)
        shutil.rmtree(tmp_path / "local" / "stages")
        colours(tmp_path / "local", endpoint, shard_rows=3, engine=per_node)
        assert len(stand_in.seen) == asked
    assert files(tmp_path / "run") == files(tmp_path / "local")
