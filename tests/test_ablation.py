"""`vdata ablate`: the config's errors, the checks before training, the report on known runs,
and a real tiny ablation (a random-init text LM, real GRPO runs) killed and resumed.

The policy here is a tiny random-init model: what is tested is the machinery (variants,
fingerprints, resume, report), not whether a filter helps; benchmarks/ablate_difficulty.py
measures that with a pretrained policy."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from vdata.cli import app
from vdata.trainers.ablation import AblationConfig, AblationError, write_report

torch = pytest.importorskip("torch", reason="ablation runs need the train extra")

from test_grpo import text_lm, text_rows  # noqa: E402


def rows_with_answers(n: int, prefix: str = "v") -> list[dict]:
    rows = text_rows(n)
    for i, row in enumerate(rows):
        row["solution"] = f"<answer>{'AB'[i % 2]}</answer>"
        row["path"] = f"videos/{prefix}{i}.mp4"
    return rows


def write_config(tmp_path: Path, model: Path, **changes) -> Path:
    if not (tmp_path / "train.json").exists():
        (tmp_path / "train.json").write_text(json.dumps(rows_with_answers(8)))
    if not (tmp_path / "eval.json").exists():
        (tmp_path / "eval.json").write_text(json.dumps(rows_with_answers(4, prefix="held")))
    config = {
        "base": str(tmp_path / "train.json"),
        "eval": str(tmp_path / "eval.json"),
        "variants": {
            "all": {},
            "sampled": {"filters": [{"sample": {"n": 4}}]},
            "random-same-size": {"sample_like": "sampled"},
        },
        "seeds": [0, 1],
        "train": {
            "model": str(model),
            "split": "",
            "steps": 2,
            "prompts_per_step": 2,
            "group_size": 4,
            "max_new_tokens": 2,
            "tolerant_letters": True,
            "eval_every": 1,
            "lr": 0.01,
        },
        **changes,
    }
    path = tmp_path / "ablation.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def test_config_mistakes_are_named(tmp_path):
    model = tmp_path / "model"
    cases = {
        "unknown setting 'bogus'": {"bogus": 1},
        "unknown setting 'sead' (did you mean 'seeds'?)": {"sead": [0]},
        "`eval` is required": {"eval": ""},
        "sample_like 'nope' is not a variant": {"variants": {"a": {}, "b": {"sample_like": "nope"}}},
        "in a circle": {"variants": {"a": {"sample_like": "b"}, "b": {"sample_like": "a"}}},
        "train.seed is set by the ablation": {"train": {"model": "m", "seed": 3}},
        "`seeds` repeats a seed": {"seeds": [1, 1]},
        "`seeds` is a list of integers, e.g. [0, 1, 2]; got [True, False]": {"seeds": [True, False]},
        "`sample_seed` is an integer; got 'abc'": {"sample_seed": "abc"},
        "metric 'loss' is not one of": {"metric": "loss"},
        "variant 'a': unknown setting 'filter' (did you mean 'filters'?)": {
            "variants": {"a": {"filter": []}}
        },
        "variant 'all': train: group_size 1": {"train": {"model": "m", "group_size": 1}},
        "variant 'all': train: steps: Input should be a valid integer (got [1, 2])": {
            "train": {"model": "m", "steps": [1, 2]}
        },
        "variant 'a': `add` is a dataset path or a list of them; got 5": {"variants": {"a": {"add": 5}}},
        "variant 'a': filter 'dedup' takes a mapping of options": {
            "variants": {"a": {"filters": [{"dedup": "exact"}]}}
        },
        "variant 'a': `filters` is a list, e.g. [dedup]": {"variants": {"a": {"filters": "dedup"}}},
        "variant 'a': `train` maps GRPO config keys to values": {"variants": {"a": {"train": [1, 2]}}},
    }
    for message, change in cases.items():
        path = write_config(tmp_path, model, **change)
        with pytest.raises(AblationError, match=re.escape(message)):
            AblationConfig.load(path)


@pytest.mark.slow
def test_an_eval_set_that_shares_a_video_stops_the_ablation_before_training(tmp_path):
    model = text_lm(tmp_path)  # its config is read before anything is built; nothing trains
    path = write_config(tmp_path, model)
    held = rows_with_answers(4, prefix="held")
    held[2]["path"] = "elsewhere/v5.mp4"  # the same file name as a base row's video
    (tmp_path / "eval.json").write_text(json.dumps(held))
    result = CliRunner().invoke(app, ["ablate", "--config", str(path), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2
    said = " ".join(result.output.split())
    assert "variant 'all' shares videos with the eval set" in said and "v5.mp4" in said
    assert "Nothing was trained" in said and "decontaminate" in said
    assert not (tmp_path / "out" / "runs").exists()


def finished(out: Path) -> list[str]:
    done = []
    for marker in sorted(out.glob("runs/*/seed-*/ablation.json")):
        if json.loads(marker.read_text()).get("finished"):
            done.append(f"{marker.parent.parent.name}/{marker.parent.name}")
    return done


def stamps(out: Path, runs: list[str]) -> dict[str, int]:
    return {run: (out / "runs" / run / "eval.json").stat().st_mtime_ns for run in runs}


@pytest.mark.slow
def test_a_killed_ablation_resumes_without_rerunning_finished_runs(tmp_path):
    model = text_lm(tmp_path)
    path = write_config(tmp_path, model)
    out = tmp_path / "out"
    command = [
        sys.executable,
        "-m",
        "vdata",
        "ablate",
        "--config",
        str(path),
        "--out",
        str(out),
        "--gpus",
        "0",
    ]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
    )
    deadline = time.monotonic() + 300
    while not finished(out) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    before = finished(out)
    assert before and len(before) < 6, f"the kill must land mid-ablation: {before}"
    kept = stamps(out, before)

    rerun = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert len(finished(out)) == 6
    assert stamps(out, before) == kept  # finished runs were not touched
    for run in before:
        variant, seed = run.split("/seed-")
        assert f"{variant} seed {seed}: finished before, not rerun" in rerun.stderr
    report = json.loads((out / "report.json").read_text())
    assert list(report["variants"]) == ["all", "sampled", "random-same-size"]
    assert all(row["seeds"] == [0, 1] for row in report["variants"].values())
    assert report["variant_checks"][1]["rows"] == 4 and report["variant_checks"][2]["rows"] == 4
    assert report["comparisons"]["sampled"]["against"] == "all"
    assert not report["missing_runs"]
    assert "step 2: " in (out / "runs" / "all" / "seed-0" / "train.log").read_text()
    for plot in report["plots"]:
        assert (out / plot).stat().st_size > 1000
    markdown = (out / "report.md").read_text()
    assert "| sampled | 4 | the base, then sample kept 4 of 8 |" in markdown

    # a changed train override reruns that variant's runs only
    config = yaml.safe_load(path.read_text())
    config["variants"]["sampled"]["train"] = {"lr": 0.02}
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    all_runs = finished(out)
    kept = stamps(out, all_runs)
    again = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    now = stamps(out, all_runs)
    changed = sorted(run for run in all_runs if now[run] != kept[run])
    assert changed == ["sampled/seed-0", "sampled/seed-1"]
    assert "sampled seed 0: config changed: starts over" in again.stderr


@pytest.mark.slow
def test_runs_in_parallel_processes_finish_and_report(tmp_path):
    """The multi-GPU path (a `vdata train grpo` process per device) on CPU: two at a time."""
    from vdata.filters.variants import build_variants
    from vdata.trainers.ablation import _train_in_processes, prepare, run_spec

    model = text_lm(tmp_path)
    path = write_config(tmp_path, model, seeds=[0], variants={"all": {}, "half": {"sample_like": "all"}})
    config = AblationConfig.load(path, out=str(tmp_path / "out"))
    config.train["steps"] = 1
    variants = build_variants(config, quiet=True, log=lambda line: None)
    specs = [
        run_spec(v.name, 0, config.run_config(config.variant(v.name), 0, v.dataset), v.digest)
        for v in variants
    ]
    for spec in specs:
        prepare(spec)
    _train_in_processes(specs, ["", ""], lambda spec: None, lambda line: None)
    assert finished(tmp_path / "out") == ["all/seed-0", "half/seed-0"]
    report = write_report(tmp_path / "out", plots=False)
    assert set(report["variants"]) == {"all", "half"}


def known_run(out: Path, variant: str, seed: int, evals: list[tuple[int, float]], zero: list[float]) -> None:
    folder = out / "runs" / variant / f"seed-{seed}"
    folder.mkdir(parents=True)
    lines = []
    for step, fraction in enumerate(zero, 1):
        lines.append({"step": step, "zero_variance_fraction": fraction, "reward_mean": 0.5, "tokens": 100})
    for step, value in evals:
        match = next((line for line in lines if line["step"] == step), None)
        if match is None:
            match = {"step": step}
            lines.insert(0, match)
        match["eval_accuracy_sampled"] = value
    (folder / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    (folder / "eval.json").write_text(json.dumps({"step": evals[-1][0], "accuracy_sampled": evals[-1][1]}))
    marker = {"variant": variant, "seed": seed, "fingerprint": "x", "finished": True, "wall_s": 10.0 + seed}
    (folder / "ablation.json").write_text(json.dumps(marker))


def test_the_report_on_runs_with_known_numbers(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    record = {
        "metric": "eval_accuracy_sampled",
        "seeds": [0, 1, 2],
        "variants": [{"name": "all", "rows": 8}, {"name": "filtered", "rows": 4}],
    }
    (out / "ablation.json").write_text(json.dumps(record))
    # all: final 0.2, 0.4, 0.3; filtered: 0.5, 0.3, 0.6 -> differences 0.3, -0.1, 0.3
    for seed, (a, b) in enumerate([(0.2, 0.5), (0.4, 0.3), (0.3, 0.6)]):
        known_run(out, "all", seed, [(0, 0.1), (2, a)], [0.5, 0.5])
        known_run(out, "filtered", seed, [(0, 0.1), (2, b)], [0.25, 0.0])
    report = write_report(out, plots=False)
    final = report["variants"]["all"]["final_eval_accuracy_sampled"]
    assert final["mean"] == pytest.approx(0.3) and final["std"] == pytest.approx(0.1) and final["n"] == 3
    assert report["variants"]["filtered"]["mean_zero_variance_fraction"]["mean"] == pytest.approx(0.125)
    assert report["variants"]["all"]["area_under_curve"]["mean"] == pytest.approx((0.1 + 0.3) / 2)
    assert report["variants"]["filtered"]["best_step"]["mean"] == 2
    assert report["variants"]["all"]["wall_s"]["mean"] == pytest.approx(11.0)
    paired = report["comparisons"]["filtered"]["final_eval_accuracy_sampled"]
    assert (
        paired["difference"] == pytest.approx(0.5 / 3) and paired["seeds_won"] == 2 and paired["seeds"] == 3
    )
    assert paired["low"] == pytest.approx(-0.1) and paired["high"] == pytest.approx(0.3)
    markdown = (out / "report.md").read_text()
    assert "| filtered | all | +0.167 | 2/3 |" in markdown
    # an unfinished run is left out and named
    (out / "runs" / "filtered" / "seed-2" / "ablation.json").write_text(
        json.dumps({"variant": "filtered", "seed": 2, "fingerprint": "x", "finished": False})
    )
    report = write_report(out, plots=False)
    assert report["missing_runs"] == ["filtered seed 2"]
    assert report["comparisons"]["filtered"]["final_eval_accuracy_sampled"]["seeds"] == 2
    result = CliRunner().invoke(app, ["ablate", "report", str(out)])
    assert result.exit_code == 0 and "2 variants" in result.output


def test_a_variant_whose_answers_are_one_letter_is_flagged_before_training(tmp_path):
    from vdata.filters.variants import build_variants

    path = write_config(tmp_path, tmp_path / "model", variants={"all": {}})
    rows = rows_with_answers(20)
    for row in rows:
        row["solution"] = "<answer>A</answer>"
    (tmp_path / "train.json").write_text(json.dumps(rows))
    config = AblationConfig.load(path, out=str(tmp_path / "out"))
    said: list[str] = []
    (variant,) = build_variants(config, quiet=True, log=said.append)
    assert variant.letters == {"A": 20, "B": 0} and variant.letters_skewed
    assert any("answers are skewed: always answering A scores 100% (even letters: 50%)" in s for s in said)
