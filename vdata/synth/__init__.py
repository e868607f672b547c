"""A synthetic video world with ground truth: `vdata synth`.

DIR/videos/NAME.mp4        H.264 videos
DIR/truth/NAME.json        every object's track, events, shots, violations, clip captions,
                           entity-relation events (see vdata.synth.truth.knowledge_graph)
DIR/videos.parquet         one row per video: path, sha256, duration, cuts, violations
DIR/events.parquet         every event and violation of the set, with times
DIR/captions.jsonl         ground-truth captions of 10 s clips: video, start_s, end_s, caption
DIR/questions.parquet      verifiable questions as canonical records
"""

from __future__ import annotations

import json
import os
import random
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from vdata.record import to_table
from vdata.runner import RunResult, run_pipeline
from vdata.runstore import RunStore, atomic_write_bytes, rows_to_table
from vdata.stages import MapStage, StageContext
from vdata.synth.questions import questions
from vdata.synth.render import render
from vdata.synth.truth import dumps, knowledge_graph, truth_document
from vdata.synth.world import VIOLATIONS, WorldSpec, simulate
from vdata.video import sha256_file

__all__ = ["SynthConfig", "generate_video", "knowledge_graph", "synthesize", "WorldSpec", "VIOLATIONS"]


@dataclass(frozen=True)
class SynthConfig:
    n: int = 20
    minutes: float = 2.0
    violations: float = 0.5  # share of videos with at least one violation
    seed: int = 0
    width: int = 854
    height: int = 480
    fps: int = 30
    preset: str = "ultrafast"
    workers: int = 0  # 0: one per core

    def specs(self) -> list[dict[str, Any]]:
        """One input row per video: its name, its world spec."""
        rows = []
        for index in range(self.n):
            rng = random.Random(f"{self.seed}:{index}")
            kinds: tuple[str, ...] = ()
            if rng.random() < self.violations:
                kinds = tuple(sorted(rng.sample(VIOLATIONS, rng.randint(1, 3))))
            spec = WorldSpec(
                seconds=self.minutes * 60,
                width=self.width,
                height=self.height,
                fps=self.fps,
                seed=rng.randrange(2**31),
                violations=kinds,
            )
            rows.append({"name": f"synth-{self.seed:04d}-{index:04d}", "spec": json.dumps(asdict(spec))})
        return rows


def generate_video(out: str | Path, name: str, spec: WorldSpec, preset: str = "ultrafast") -> dict[str, Any]:
    """Simulates, renders and writes one video with its ground truth; returns a summary row."""
    out = Path(out)
    relative = f"videos/{name}.mp4"
    world = simulate(spec)
    render(world, out / relative, preset=preset, threads=1)
    truth = truth_document(world, relative, sha256_file(out / relative), spec.seed)
    atomic_write_bytes(out / "truth" / f"{name}.json", dumps(truth).encode("utf-8"))
    return {
        "name": name,
        "path": relative,
        "truth": f"truth/{name}.json",
        "sha256": truth["sha256"],
        "duration_s": truth["duration_s"],
        "frames": truth["frames"],
        "shots": len(truth["shots"]),
        "cuts_s": truth["cuts_s"],
        "events": len(truth["events"]),
        "violations": sorted({v["kind"] for v in truth["violations"]}),
        "seed": spec.seed,
    }


def _render_row(row: dict[str, Any], ctx: StageContext, *, out: str, preset: str) -> dict[str, Any]:
    spec = WorldSpec(
        **{k: tuple(v) if isinstance(v, list) else v for k, v in json.loads(row["spec"]).items()}
    )
    return generate_video(out, row["name"], spec, preset)


def synthesize(
    out: str | Path,
    config: SynthConfig = SynthConfig(),
    *,
    quiet: bool = False,
    command: str = "",
    force: bool = False,
) -> RunResult:
    """The whole set: videos and truth, then the set's tables. A rerun resumes; `out` is an
    empty folder or a synth run (`force`: beside other files, which stay untouched)."""
    import functools

    out = Path(out)
    workers = config.workers or os.cpu_count() or 1
    stage = MapStage(
        "render",
        functools.partial(_render_row, out=str(out.resolve()), preset=config.preset),
        config={"preset": config.preset},
        workers=workers,
    )
    with RunStore(out).lock(force=force):
        result = run_pipeline(
            out,
            "synth@1",
            config.specs(),
            [stage],
            config=asdict(config),
            seed=config.seed,
            shard_rows=max(4, workers * 2),
            quiet=quiet,
            command=command,
            paper="CLEVRER-style rendered scenes with known events",
        )
        videos = result.final_table()
        write_set_tables(out, videos.to_pylist() if videos is not None else [], config.seed)
    return result


def write_set_tables(out: Path, videos: list[dict[str, Any]], seed: int) -> None:
    events, captions, records = [], [], []
    for video in videos:
        truth = json.loads((out / video["truth"]).read_text())
        for event in truth["events"] + truth["violations"]:
            events.append({"video": video["path"], **{k: v for k, v in event.items() if k != "detail"}})
        for clip in truth["clips"]:
            captions.append(
                {
                    "video": video["path"],
                    "start_s": clip["start_s"],
                    "end_s": clip["end_s"],
                    "caption": clip["caption"],
                }
            )
        records += questions(truth, video["path"], random.Random(f"{seed}:{video['name']}"))
    store = RunStore(out)
    store.write_output("videos.parquet", rows_to_table(videos))
    store.write_output("events.parquet", rows_to_table(events) if events else pa.table({}))
    store.write_output("questions.parquet", to_table(records))
    lines = "".join(json.dumps(c, ensure_ascii=False) + "\n" for c in captions)
    atomic_write_bytes(out / "captions.jsonl", lines.encode("utf-8"))
