"""`vdata ablate`: dataset variants x seeds -> short GRPO runs -> one comparison.

The config (YAML) names a base dataset, a fixed held-out eval set, the variants
(`{}`: the base; `filters`: the base through filter stages; `sample_like`: a
seeded random subset of the base of another variant's size, the control;
`add`: more datasets; `curriculum`; `train`: overrides), the seeds, and one
GRPO config for every run. Variants are built and checked (vdata.filters.variants)
before any training; then each (variant, seed) is one `vdata train grpo` run in
OUT/runs/VARIANT/seed-S/. A run whose config and data are unchanged and that
finished is never rerun; one that did not finish resumes from its checkpoint;
one whose config or data changed starts over (its fingerprint). Runs go one per
GPU in parallel where GPUs exist, one after another on CPU.

The report (OUT/report.md, report.json, OUT/plots/*.png) is a function of the
finished runs' files, so `vdata ablate report OUT` rebuilds it. Its statistics
(below) are pure functions of numbers, checked on known inputs.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vdata.settings import SettingsError, load_settings, unknown_keys
from vdata.trainers.config import ConfigError, GRPOConfig

METRICS = ("eval_accuracy_sampled", "eval_accuracy_greedy", "eval_reward_sampled", "eval_reward_greedy")


class AblationError(ValueError):
    """An ablation that cannot run; the message names the key, variant or run and what to do."""


# ---------------------------------------------------------------- the config


@dataclass
class Variant:
    name: str
    filters: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    sample_like: str = ""
    add: list[str] = field(default_factory=list)
    curriculum: bool = False
    train: dict[str, Any] = field(default_factory=dict)  # overrides of the shared train config


VARIANT_KEYS = {"filters", "sample_like", "add", "curriculum", "train"}
KEYS = {"base", "eval", "eval_split", "variants", "seeds", "train", "out", "metric", "models", "sample_seed"}


@dataclass
class AblationConfig:
    base: str
    eval: str
    variants: list[Variant]
    seeds: list[int]
    train: dict[str, Any]
    out: str = "runs/ablation"
    eval_split: str = ""  # the eval set's split ("" : every row of it)
    metric: str = "eval_accuracy_sampled"  # what the comparison ranks variants by
    models: str = ""  # a models YAML (endpoints per role) for filters that call a model
    sample_seed: int = 0  # the seed of sample_like's random subsets
    source: str = ""  # the config file, for messages

    @classmethod
    def load(cls, path: str | Path | None, overrides: Sequence[str] = (), out: str | None = None):
        """From a YAML file and `key=value` overrides; every mistake is an AblationError that
        names the key and what to write instead."""
        try:
            values = load_settings(path, overrides, {"out": out})
        except SettingsError as exc:
            raise AblationError(str(exc)) from exc
        where = str(path or "the config")
        try:
            unknown_keys(values, KEYS, where)
        except SettingsError as exc:
            raise AblationError(str(exc)) from None
        for key in ("base", "eval", "variants", "train"):
            if not values.get(key):
                raise AblationError(f"{where}: `{key}` is required (see `vdata ablate --help`)")
        for key in ("base", "eval", "eval_split", "out", "metric", "models"):
            if key in values and not isinstance(values[key], str):
                raise AblationError(f"{where}: `{key}` is text (a path or a name); got {values[key]!r}")
        if not isinstance(values["variants"], Mapping):
            raise AblationError(f"{where}: `variants` maps names to variants, e.g. all: {{}}")
        variants = [_variant(str(name), spec, where) for name, spec in values["variants"].items()]
        seeds = values.get("seeds", [0])
        if not isinstance(seeds, list) or not seeds or not all(_whole(s) for s in seeds):
            raise AblationError(f"{where}: `seeds` is a list of integers, e.g. [0, 1, 2]; got {seeds!r}")
        if not _whole(values.get("sample_seed", 0)):
            raise AblationError(f"{where}: `sample_seed` is an integer; got {values['sample_seed']!r}")
        if len(set(seeds)) != len(seeds):
            raise AblationError(f"{where}: `seeds` repeats a seed: {seeds}")
        if not isinstance(values["train"], Mapping):
            raise AblationError(f"{where}: `train` is a GRPO config mapping (model, steps, ...)")
        for key in ("data", "seed", "out", "eval_data"):
            if key in values["train"] or any(key in v.train for v in variants):
                raise AblationError(
                    f"{where}: train.{key} is set by the ablation (base/variants, seeds, out, eval); "
                    "remove it"
                )
        metric = values.get("metric", "eval_accuracy_sampled")
        if metric not in METRICS:
            raise AblationError(f"{where}: metric {metric!r} is not one of {', '.join(METRICS)}")
        names = {v.name for v in variants}
        for variant in variants:
            if variant.sample_like and variant.sample_like not in names:
                raise AblationError(
                    f"{where}: variant {variant.name!r}: sample_like {variant.sample_like!r} is not a "
                    f"variant (variants: {', '.join(sorted(names))})"
                )
            if variant.sample_like and variant.filters:
                raise AblationError(
                    f"{where}: variant {variant.name!r}: sample_like draws from the base; it takes no filters"
                )
        config = cls(
            base=str(values["base"]),
            eval=str(values["eval"]),
            variants=variants,
            seeds=seeds,
            train=dict(values["train"]),
            out=str(values.get("out") or "runs/ablation"),
            eval_split=str(values.get("eval_split") or ""),
            metric=metric,
            models=str(values.get("models") or ""),
            sample_seed=int(values.get("sample_seed", 0)),
            source=where,
        )
        build_order(variants, where)  # no circle
        for variant in config.variants:
            config.run_config(variant, config.seeds[0], Path(config.out) / "check")  # errors now
        return config

    @property
    def split(self) -> str:
        """The split the variants' rows are written as and trained from."""
        return str(self.train.get("split") or "rl")

    def variant(self, name: str) -> Variant:
        return next(v for v in self.variants if v.name == name)

    def run_config(self, variant: Variant, seed: int, data: Path) -> GRPOConfig:
        """The GRPO config of one (variant, seed) run: the shared train config, the variant's
        overrides, its data, the eval set, the seed and the run's folder."""
        values = {
            **self.train,
            **variant.train,
            "data": str(data),
            "split": self.split,
            "eval_data": self.eval,
            "eval_split": self.eval_split,
            "seed": seed,
            "out": str(run_dir(Path(self.out), variant.name, seed)),
        }
        if variant.curriculum:
            values["curriculum"] = True
        try:
            return GRPOConfig.from_values(values, "train")
        except (TypeError, ConfigError) as exc:
            raise AblationError(f"{self.source}: variant {variant.name!r}: {exc}") from exc

    def inputs(self) -> list[tuple[str, str]]:
        """(key, path) of everything the ablation reads: its folder must stay apart from them."""
        added = [("add", path) for variant in self.variants for path in variant.add]
        return [("base", self.base), ("eval", self.eval), ("models", self.models or None), *added]


def _whole(value: Any) -> bool:
    """An integer, and not true or false (which YAML and Python would take for 1 and 0)."""
    return isinstance(value, int) and not isinstance(value, bool)


def _variant(name: str, spec: Any, where: str) -> Variant:
    if spec is None:
        spec = {}
    here = f"{where}: variant {name!r}"
    if not isinstance(spec, Mapping):
        raise AblationError(f"{here} is a mapping ({{}} for the base as it is)")
    try:
        unknown_keys(spec, VARIANT_KEYS, here)
    except SettingsError as exc:
        raise AblationError(str(exc)) from None
    listed = spec.get("filters") or []
    if not isinstance(listed, list):
        raise AblationError(
            f"{here}: `filters` is a list, e.g. [dedup] or [{{difficulty: {{band: [0, 1]}}}}]; got {listed!r}"
        )
    filters = []
    for item in listed:
        if isinstance(item, str):
            item = {item: {}}
        if not isinstance(item, Mapping) or len(item) != 1:
            raise AblationError(
                f"{here}: each filter is NAME or {{NAME: {{options}}}}, e.g. "
                f"{{difficulty: {{band: [0, 1]}}}}; got {item!r}"
            )
        ((filter_name, options),) = item.items()
        if options is not None and not isinstance(options, Mapping):
            raise AblationError(
                f"{here}: filter {filter_name!r} takes a mapping of options (e.g. {{{filter_name}: "
                f"{{method: exact}}}}); got {options!r}"
            )
        filters.append((str(filter_name), dict(options or {})))
    add = spec.get("add") or []
    if isinstance(add, str):
        add = [add]
    if not isinstance(add, list) or not all(isinstance(a, str) for a in add):
        raise AblationError(f"{here}: `add` is a dataset path or a list of them; got {add!r}")
    if not isinstance(spec.get("sample_like") or "", str):
        raise AblationError(f"{here}: `sample_like` names another variant; got {spec['sample_like']!r}")
    if not isinstance(spec.get("curriculum", False), bool):
        raise AblationError(f"{here}: `curriculum` is true or false; got {spec['curriculum']!r}")
    train = spec.get("train") or {}
    if not isinstance(train, Mapping):
        raise AblationError(
            f"{here}: `train` maps GRPO config keys to values (e.g. {{lr: 1e-6}}); got {train!r}"
        )
    return Variant(
        name=name,
        filters=filters,
        sample_like=str(spec.get("sample_like") or ""),
        add=list(add),
        curriculum=spec.get("curriculum", False),
        train=dict(train),
    )


ABLATION_ENTRIES = ("ablation.json", "variants", "runs", "report.json", "report.md", "plots")


def claim_folder(config: AblationConfig, force: bool = False) -> None:
    """The ablation's folder: new, empty, or an ablation's (its ablation.json), apart from
    every dataset it reads; AblationError otherwise, before anything is built."""
    from vdata.runstore import OutputRefused, claim_output, refuse_overlap

    out = Path(config.out)
    try:
        refuse_overlap(out, config.inputs())
        claim_output(
            out,
            force=force,
            ours=lambda folder: (folder / "ablation.json").is_file(),
            owns=ABLATION_ENTRIES,
            kind="an ablation's folder (it has no ablation.json)",
        )
    except OutputRefused as exc:
        raise AblationError(str(exc)) from None


def check_models(config: AblationConfig) -> None:
    """Loads each run's model config now, so that a model that does not exist stops the
    ablation before any variant is built (and before a filter samples it)."""
    from vdata.trainers.policy import reads_video

    models = {str(m) for v in config.variants if (m := {**config.train, **v.train}.get("model"))}
    for model in sorted(models):
        try:
            reads_video(model)
        except Exception as exc:  # transformers and the Hub client raise many kinds for a missing model
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise AblationError(
                f"{config.source}: train.model {model!r} cannot be loaded ({first[:200]}); give a model "
                "directory, a .gguf file or a Hub id that exists"
            ) from None


def build_order(variants: list[Variant], where: str = "the config") -> list[Variant]:
    """The variants in an order where each comes after the one it samples like."""
    by_name = {v.name: v for v in variants}
    done: list[Variant] = []
    visiting: set[str] = set()

    def visit(variant: Variant) -> None:
        if variant in done:
            return
        if variant.name in visiting:
            raise AblationError(f"{where}: variants sample like each other in a circle ({variant.name!r})")
        visiting.add(variant.name)
        if variant.sample_like:
            visit(by_name[variant.sample_like])
        visiting.discard(variant.name)
        done.append(variant)

    for variant in variants:
        visit(variant)
    return done


def run_dir(out: Path, variant: str, seed: int) -> Path:
    return out / "runs" / variant / f"seed-{seed}"


# ---------------------------------------------------------------- the runs


@dataclass
class RunSpec:
    variant: str
    seed: int
    config: GRPOConfig
    fingerprint: str  # its parts': a change of any starts the run over
    parts: dict[str, str] = field(default_factory=dict)  # config, data, code -> hash

    @property
    def out(self) -> Path:
        return Path(self.config.out)


def run_spec(variant: str, seed: int, config: GRPOConfig, data_digest: str) -> RunSpec:
    """A run and its fingerprint: its config (but where it is written), its data's content and
    the trainer's code (`vdata.codehash`: the loop and everything it calls), so that a finished
    run is kept exactly while none of them changes."""
    settings = {k: v for k, v in config.to_dict().items() if k not in ("out", "data")}
    parts = {
        "config": _hash(json.dumps(settings, sort_keys=True, default=str)),
        "data": data_digest,
        "code": trainer_code(),
    }
    return RunSpec(variant, seed, config, _hash(json.dumps(parts, sort_keys=True)), parts)


@functools.cache
def trainer_code() -> str:
    from vdata.codehash import code_hashes
    from vdata.trainers.train import train

    return _hash(json.dumps(code_hashes(train), sort_keys=True))


def _hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def what_changed(spec: RunSpec) -> str:
    """Which of a changed run's parts differ from its last start ('config', 'data', 'trainer
    code'), for the message."""
    before = (read_marker(spec.out) or {}).get("parts") or {}
    names = {"config": "config", "data": "data", "code": "trainer code"}
    changed = [names[k] for k, v in spec.parts.items() if before.get(k) != v]
    return " and ".join(changed) if before and changed else "its config, data or trainer code"


def run_state(spec: RunSpec) -> str:
    """'finished', 'partial' (same fingerprint, not finished: resumes), 'changed' or 'new'."""
    marker = read_marker(spec.out)
    if marker is None:
        return "changed" if spec.out.exists() and any(spec.out.iterdir()) else "new"
    if marker.get("fingerprint") != spec.fingerprint:
        return "changed"
    return "finished" if marker.get("finished") else "partial"


def read_marker(out: Path) -> dict[str, Any] | None:
    try:
        return json.loads((out / "ablation.json").read_text())
    except (OSError, ValueError):
        return None


def _write_marker(spec: RunSpec, **fields: Any) -> None:
    from vdata.runstore import atomic_write_json

    marker = {**(read_marker(spec.out) or {}), "variant": spec.variant, "seed": spec.seed}
    marker.update(fingerprint=spec.fingerprint, parts=spec.parts, **fields)
    atomic_write_json(spec.out / "ablation.json", marker)


def prepare(spec: RunSpec) -> str:
    """Readies a run's folder (a changed run's old files go) and returns its state before."""
    state = run_state(spec)
    if state == "changed":
        shutil.rmtree(spec.out)
    if state != "finished":
        spec.out.mkdir(parents=True, exist_ok=True)
        _write_marker(spec, finished=False, wall_s=(read_marker(spec.out) or {}).get("wall_s", 0.0))
    return state


def finish(spec: RunSpec, wall_s: float, *, stopped: bool = False) -> bool:
    """Adds a session's wall time to a run and marks it finished when its last step and final
    eval are on disk. A run that did not stop early but is not finished is an error."""
    done = steps_done(spec.out) >= spec.config.steps and (spec.out / "eval.json").exists()
    previous = (read_marker(spec.out) or {}).get("wall_s", 0.0)
    _write_marker(spec, finished=done, wall_s=round(previous + wall_s, 3))
    if not done and not stopped:
        raise AblationError(f"run {spec.out} ended before step {spec.config.steps}; rerun to resume it")
    return done


def steps_done(out: Path) -> int:
    """The last training step in a run's metrics.jsonl (0 when none)."""
    path = out / "metrics.jsonl"
    if not path.exists():
        return 0
    steps = [json.loads(line).get("step", 0) for line in path.read_text().splitlines() if line.strip()]
    return max(steps, default=0)


def gpu_count(gpus: str) -> int:
    """--gpus auto|N|0: how many GPUs to spread runs over (auto: every one torch sees)."""
    try:
        import torch

        seen = torch.cuda.device_count() if torch.cuda.is_available() else 0
    except ImportError:
        seen = 0
    if gpus == "auto":
        return seen
    try:
        wanted = int(gpus)
    except ValueError as exc:
        raise AblationError(f"--gpus {gpus!r}: give auto, a number, or 0 (CPU)") from exc
    if wanted < 0 or wanted > seen:
        raise AblationError(f"--gpus {wanted}: torch sees {seen} GPU(s) here; give 0..{seen} or auto")
    return wanted


def run_all(
    specs: list[RunSpec],
    *,
    gpus: int = 0,
    progress: Any = None,
    log: Callable[[str], None] = print,
) -> None:
    """Trains every run that is not finished: in this process one after another (CPU, or one
    GPU), or as `vdata train grpo` processes one per GPU (CUDA_VISIBLE_DEVICES) in parallel.
    Each run's log lines go to its train.log."""
    pending = []
    for spec in specs:
        changed = what_changed(spec) if run_state(spec) == "changed" else ""
        state = prepare(spec)
        if state == "finished":
            log(f"{spec.variant} seed {spec.seed}: finished before, not rerun")
            continue
        if state in ("changed", "partial"):
            log(
                f"{spec.variant} seed {spec.seed}: "
                + (
                    f"{changed} changed: starts over"
                    if state == "changed"
                    else f"resumes after step {steps_done(spec.out)}"
                )
            )
        pending.append(spec)
    tasks = {}
    waiting = {id(spec) for spec in pending}
    if progress is not None:
        for spec in specs:
            done = steps_done(spec.out) if id(spec) in waiting else spec.config.steps
            tasks[id(spec)] = progress.add_task(
                f"{spec.variant} seed {spec.seed}",
                total=spec.config.steps,
                completed=done,
                status="",
                resumed_at=done,
                unit="step",
            )

    def show(spec: RunSpec) -> None:
        if progress is not None:
            progress.update(tasks[id(spec)], completed=steps_done(spec.out))

    if gpus <= 1:
        for spec in pending:
            _train_here(spec, lambda line, spec=spec: show(spec))
            show(spec)
        return
    _train_in_processes(pending, [str(i) for i in range(gpus)], show, log)


def _train_here(spec: RunSpec, on_line: Callable[[str], None]) -> None:
    from vdata.trainers.train import train

    started = time.monotonic()
    try:
        with (spec.out / "train.log").open("a") as logfile:  # as a run in its own process writes it

            def line(text: str) -> None:
                logfile.write(text + "\n")
                logfile.flush()
                on_line(text)

            train(spec.config, log=line)
    except BaseException:
        finish(spec, time.monotonic() - started, stopped=True)  # its time counts; it resumes
        raise
    finish(spec, time.monotonic() - started)


def _train_in_processes(
    pending: list[RunSpec], devices: list[str], show: Callable[[RunSpec], None], log: Callable[[str], None]
) -> None:
    """One `vdata train grpo` process per device at a time; a failed run is named and the others
    go on (the ablation then stops with the list)."""
    queue = list(pending)
    running: dict[str, tuple[RunSpec, subprocess.Popen, float, Any]] = {}
    failed: list[str] = []
    try:
        while queue or running:
            for device in devices:
                if device not in running and queue:
                    spec = queue.pop(0)
                    config_path = spec.out / "train.json"
                    config_path.write_text(json.dumps(spec.config.to_dict(), default=str))
                    logfile = (spec.out / "train.log").open("a")
                    env = {**os.environ, "CUDA_VISIBLE_DEVICES": device}
                    command = [sys.executable, "-m", "vdata", "train", "grpo", "--config", str(config_path)]
                    process = subprocess.Popen(command, stdout=logfile, stderr=subprocess.STDOUT, env=env)
                    running[device] = (spec, process, time.monotonic(), logfile)
            time.sleep(0.5)
            for device, (spec, process, started, logfile) in list(running.items()):
                show(spec)
                if process.poll() is None:
                    continue
                logfile.close()
                del running[device]
                if not finish(spec, time.monotonic() - started, stopped=True):
                    failed.append(
                        f"{spec.variant} seed {spec.seed} (exit {process.returncode}; {spec.out}/train.log)"
                    )
                    log(f"{spec.variant} seed {spec.seed} failed: see {spec.out / 'train.log'}")
    finally:
        for _spec, process, _, logfile in running.values():
            process.kill()
            logfile.close()
    if failed:
        raise AblationError(f"{len(failed)} run(s) failed: {'; '.join(failed)}; fix and rerun to resume")


# ---------------------------------------------------------------- statistics


@dataclass(frozen=True)
class Spread:
    mean: float
    std: float  # sample standard deviation (n - 1); 0 for a single seed
    n: int


def spread(values: Sequence[float]) -> Spread:
    """Mean and sample standard deviation over seeds."""
    if not values:
        raise ValueError("no values: a variant with no finished run has no statistics")
    array = np.asarray(values, dtype=float)
    return Spread(float(array.mean()), float(array.std(ddof=1)) if len(array) > 1 else 0.0, len(array))


@dataclass(frozen=True)
class Paired:
    difference: float  # mean over shared seeds of (variant - baseline)
    seeds_won: int  # seeds where the variant is strictly better
    seeds: int
    low: float  # bootstrap percentile interval of the mean difference
    high: float


def paired(
    baseline: Mapping[int, float],
    variant: Mapping[int, float],
    *,
    confidence: float = 0.95,
    resamples: int = 10_000,
    seed: int = 0,
) -> Paired:
    """The variant against the baseline on the seeds both finished (a seed is a pairing: the
    same sampling order and initial noise), with a seeded bootstrap of the mean difference."""
    shared = sorted(set(baseline) & set(variant))
    if not shared:
        raise ValueError("the variant and the baseline share no finished seed")
    differences = np.asarray([variant[s] - baseline[s] for s in shared], dtype=float)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(differences), size=(resamples, len(differences)))
    means = differences[draws].mean(axis=1)
    tail = (1 - confidence) / 2
    return Paired(
        float(differences.mean()),
        int((differences > 0).sum()),
        len(shared),
        float(np.quantile(means, tail)),
        float(np.quantile(means, 1 - tail)),
    )


def area_under_curve(steps: Sequence[float], values: Sequence[float]) -> float:
    """The eval curve's trapezoid area divided by its span of steps: its mean level over
    training (one point: that point)."""
    if len(steps) != len(values) or not steps:
        raise ValueError("steps and values must be non-empty and of one length")
    if len(steps) == 1:
        return float(values[0])
    x, y = np.asarray(steps, dtype=float), np.asarray(values, dtype=float)
    return float(((y[1:] + y[:-1]) / 2 * np.diff(x)).sum() / (x[-1] - x[0]))


def best_step(steps: Sequence[int], values: Sequence[float]) -> int:
    """The step of the highest value (the earliest, on a tie)."""
    if len(steps) != len(values) or not steps:
        raise ValueError("steps and values must be non-empty and of one length")
    return int(steps[int(np.argmax(values))])


# ---------------------------------------------------------------- the report


@dataclass
class RunResult:
    """What one finished run measured, read from its files."""

    variant: str
    seed: int
    final: dict[str, float]  # eval.json: the held-out metrics after the last step
    curves: dict[str, list[tuple[int, float]]]  # metric -> (step, value), eval steps and per-step ones
    wall_s: float
    tokens: int


PER_STEP = ("zero_variance_fraction", "reward_mean", "response_length", "accuracy")


def read_run(out: Path) -> RunResult | None:
    """A finished run's result (None when it is not finished)."""
    marker = read_marker(out)
    if not marker or not marker.get("finished") or not (out / "eval.json").exists():
        return None
    final_doc = json.loads((out / "eval.json").read_text())
    final = {f"eval_{k}": float(v) for k, v in final_doc.items() if k.startswith(("accuracy", "reward"))}
    curves: dict[str, list[tuple[int, float]]] = {key: [] for key in (*METRICS, *PER_STEP)}
    tokens, step_s = 0, 0.0
    for line in (out / "metrics.jsonl").read_text().splitlines():
        if not line.strip():
            continue
        metrics = json.loads(line)
        for key in curves:
            if isinstance(metrics.get(key), (int, float)):
                curves[key].append((int(metrics["step"]), float(metrics[key])))
        tokens += int(metrics.get("tokens", 0))
        step_s += float(metrics.get("step_s", 0.0))
    return RunResult(
        str(marker["variant"]),
        int(marker["seed"]),
        final,
        curves,
        float(marker.get("wall_s") or step_s),
        tokens,
    )


def collect(out: Path) -> list[RunResult]:
    """Every finished run under OUT/runs."""
    found = []
    for folder in sorted((out / "runs").glob("*/seed-*")):
        result = read_run(folder)
        if result is not None:
            found.append(result)
    return found


def summarize(results: list[RunResult], order: list[str], metric: str) -> dict[str, Any]:
    """Per variant, mean and spread over seeds; each variant against the first, paired by seed,
    on the final metric and on the area under its eval curve."""
    by_variant: dict[str, list[RunResult]] = {}
    for result in results:
        by_variant.setdefault(result.variant, []).append(result)
    names = [name for name in order if name in by_variant] + sorted(set(by_variant) - set(order))
    variants: dict[str, Any] = {}
    for name in names:
        runs = sorted(by_variant[name], key=lambda r: r.seed)
        row: dict[str, Any] = {"seeds": [r.seed for r in runs]}
        for key in METRICS:
            values = [r.final[key] for r in runs if key in r.final]
            if values:
                row[f"final_{key}"] = dataclasses.asdict(spread(values))
        curve_runs = [r for r in runs if r.curves.get(metric)]
        if curve_runs:
            row["area_under_curve"] = dataclasses.asdict(
                spread([area_under_curve(*zip(*r.curves[metric], strict=True)) for r in curve_runs])
            )
            row["best_step"] = dataclasses.asdict(
                spread([best_step(*zip(*r.curves[metric], strict=True)) for r in curve_runs])
            )
        for key in PER_STEP:
            values = [float(np.mean([v for _, v in r.curves[key]])) for r in runs if r.curves.get(key)]
            if values:
                row[f"mean_{key}"] = dataclasses.asdict(spread(values))
        row["tokens"] = dataclasses.asdict(spread([float(r.tokens) for r in runs]))
        row["wall_s"] = dataclasses.asdict(spread([r.wall_s for r in runs]))
        variants[name] = row
    comparisons: dict[str, Any] = {}
    if names:
        first = {r.seed: r for r in by_variant[names[0]]}
        for name in names[1:]:
            other = {r.seed: r for r in by_variant[name]}
            entry: dict[str, Any] = {"against": names[0]}
            finals_a = {s: r.final[metric] for s, r in first.items() if metric in r.final}
            finals_b = {s: r.final[metric] for s, r in other.items() if metric in r.final}
            if set(finals_a) & set(finals_b):
                entry[f"final_{metric}"] = dataclasses.asdict(paired(finals_a, finals_b))
            areas_a = {
                s: area_under_curve(*zip(*r.curves[metric], strict=True))
                for s, r in first.items()
                if r.curves.get(metric)
            }
            areas_b = {
                s: area_under_curve(*zip(*r.curves[metric], strict=True))
                for s, r in other.items()
                if r.curves.get(metric)
            }
            if set(areas_a) & set(areas_b):
                entry["area_under_curve"] = dataclasses.asdict(paired(areas_a, areas_b))
            comparisons[name] = entry
    return {"metric": metric, "variants": variants, "comparisons": comparisons}


def write_report(out: Path, *, plots: bool = True) -> dict[str, Any]:
    """OUT/report.json, OUT/report.md and OUT/plots/*.png from the finished runs and the
    ablation's record of its variants (OUT/ablation.json)."""
    from vdata.runstore import atomic_write_json

    record = json.loads((out / "ablation.json").read_text()) if (out / "ablation.json").exists() else {}
    results = collect(out)
    if not results:
        raise AblationError(f"{out}: no finished run to report on (runs live in {out / 'runs'})")
    order = [v["name"] for v in record.get("variants", [])]
    report = summarize(results, order, record.get("metric", "eval_accuracy_sampled"))
    expected = {(v["name"], s) for v in record.get("variants", []) for s in record.get("seeds", [])}
    report["missing_runs"] = sorted(
        f"{v} seed {s}" for v, s in expected - {(r.variant, r.seed) for r in results}
    )
    report["runs"] = [  # each run's numbers, for plots and checks of one's own
        {
            "variant": r.variant,
            "seed": r.seed,
            "final": r.final,
            "wall_s": r.wall_s,
            "tokens": r.tokens,
            "curves": {k: v for k, v in r.curves.items() if v},
        }
        for r in sorted(results, key=lambda r: (r.variant, r.seed))
    ]
    report["variant_checks"] = record.get("variants", [])
    report["train"] = record.get("train", {})
    report["plots"], report["plots_note"] = [], ""
    if plots:
        try:
            report["plots"] = draw_plots(results, out / "plots", order, report["metric"])
        except ImportError as exc:
            report["plots_note"] = f"plots not drawn: {exc}; pip install matplotlib"
    atomic_write_json(out / "report.json", report)
    (out / "report.md").write_text(to_markdown(report))
    return report


def _cell(stat: Mapping[str, Any] | None, digits: int = 3) -> str:
    if not stat:
        return "-"
    if stat["n"] == 1:
        return f"{stat['mean']:.{digits}f}"
    return f"{stat['mean']:.{digits}f} ± {stat['std']:.{digits}f}"


def to_markdown(report: Mapping[str, Any]) -> str:
    metric = report["metric"]
    lines = ["# Data ablation", ""]
    train = report.get("train") or {}
    if train:
        shown = ", ".join(
            f"{k}={train[k]}"
            for k in ("model", "steps", "prompts_per_step", "group_size", "lr", "max_new_tokens")
            if k in train
        )
        lines += [f"One GRPO config for every run: {shown}.", ""]
    checks = report.get("variant_checks") or []
    if checks:
        lines += [
            "## Variants",
            "",
            "| variant | rows | made by | letters (share of the most common) | eval overlap |",
            "|---|---|---|---|---|",
        ]
        for v in checks:
            letters = v.get("letters") or {}
            top = max(letters.values(), default=0) / max(sum(letters.values()), 1)
            shown = " ".join(f"{k}:{n}" for k, n in sorted(letters.items())) or "-"
            skew = ", skewed" if v.get("letters_skewed") else ""
            lines.append(
                f"| {v['name']} | {v['rows']} | {v.get('made_by', '')} | {shown} ({top:.0%}{skew}) | "
                f"{v.get('eval_overlap', 0)} |"
            )
        lines.append("")
    lines += [
        f"## Results (mean ± sample std over seeds; ranked by {metric})",
        "",
        "| variant | seeds | final " + metric + " | final greedy acc | area under eval curve | "
        "best step | zero-variance groups | reward | response length | tokens | wall s |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, row in report["variants"].items():
        lines.append(
            f"| {name} | {len(row['seeds'])} | {_cell(row.get('final_' + metric))} | "
            f"{_cell(row.get('final_eval_accuracy_greedy'))} | {_cell(row.get('area_under_curve'))} | "
            f"{_cell(row.get('best_step'), 1)} | {_cell(row.get('mean_zero_variance_fraction'))} | "
            f"{_cell(row.get('mean_reward_mean'))} | {_cell(row.get('mean_response_length'), 1)} | "
            f"{_cell(row.get('tokens'), 0)} | {_cell(row.get('wall_s'), 0)} |"
        )
    lines.append("")
    if report["comparisons"]:
        lines += [
            "## Against the first variant (paired by seed; 95% bootstrap interval of the mean difference)",
            "",
            "| variant | vs | final difference | seeds won | interval | area difference | interval |",
            "|---|---|---|---|---|---|---|",
        ]
        for name, entry in report["comparisons"].items():
            final, area = entry.get(f"final_{metric}"), entry.get("area_under_curve")
            lines.append(
                f"| {name} | {entry['against']} | "
                + (
                    f"{final['difference']:+.3f} | {final['seeds_won']}/{final['seeds']} | "
                    f"[{final['low']:+.3f}, {final['high']:+.3f}]"
                    if final
                    else "- | - | -"
                )
                + " | "
                + (
                    f"{area['difference']:+.3f} | [{area['low']:+.3f}, {area['high']:+.3f}]"
                    if area
                    else "- | -"
                )
                + " |"
            )
        lines += ["", "An interval that contains 0 means these seeds cannot tell the variants apart.", ""]
    if report.get("missing_runs"):
        lines += [f"Not finished (left out above): {', '.join(report['missing_runs'])}.", ""]
    for plot in report.get("plots") or []:
        lines += [f"![{Path(plot).stem}]({plot})", ""]
    if report.get("plots_note"):
        lines += [report["plots_note"], ""]
    return "\n".join(lines)


def draw_plots(results: list[RunResult], folder: Path, order: list[str], metric: str) -> list[str]:
    """Eval metric, zero-variance fraction and reward against step: each variant's mean over
    seeds as a line, its min-max over seeds as a band. Returns the PNGs' paths relative to OUT."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    names = [n for n in order if any(r.variant == n for r in results)]
    names += sorted({r.variant for r in results} - set(names))
    written = []
    for key, title in (
        (metric, f"held-out {metric}"),
        ("zero_variance_fraction", "zero-variance group fraction"),
        ("reward_mean", "training reward"),
    ):
        figure, axis = plt.subplots(figsize=(6, 3.6))
        for name in names:
            curves = [dict(r.curves[key]) for r in results if r.variant == name and r.curves.get(key)]
            steps = sorted(set.intersection(*(set(c) for c in curves))) if curves else []
            if not steps:
                continue
            values = np.asarray([[c[s] for s in steps] for c in curves])
            line = axis.plot(steps, values.mean(0), marker="o" if len(steps) < 30 else None, label=name)[0]
            if len(curves) > 1:
                axis.fill_between(steps, values.min(0), values.max(0), alpha=0.2, color=line.get_color())
        axis.set_xlabel("step")
        axis.set_title(f"{title} (mean over seeds; band: min-max)")
        axis.legend()
        figure.tight_layout()
        path = folder / f"{key}.png"
        figure.savefig(path, dpi=110)
        plt.close(figure)
        written.append(str(path.relative_to(folder.parent)))
    return written
