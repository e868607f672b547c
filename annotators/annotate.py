"""`vdata annotate`: ask a model about every row of any dataset, as a one-stage resumable run.

The prompt is a template whose `{field}`s are filled from the row; the reply lands in
OUT/annotated.parquet as `reply`. A row whose template cannot be filled, or whose
request fails for good, is a reject with the reason; a row whose fields cannot be
stored beside the others' goes to rejects/load.parquet whole.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vdata.annotators.endpoints import Endpoints
from vdata.annotators.pool import RunModels
from vdata.annotators.stage import annotate_stage
from vdata.formats import load_raw_rows
from vdata.runner import RunResult, run_pipeline
from vdata.runstore import RunStore, refuse_overlap, split_storable
from vdata.stages import Reject, reject_rows

ANNOTATED = "annotated.parquet"


@dataclass
class AnnotateResult:
    run: RunResult
    annotated: int
    rejected: int
    unreadable: int
    path: Path


class FilledFields(dict):
    """Template fields of a row: a field that is missing or null cannot fill a prompt. (Rows
    pass through columnar shards, where a field one row lacks is null in it.)"""

    def __getitem__(self, key: str) -> Any:
        value = super().get(key)
        if value is None:
            raise KeyError(f"{key!r} is missing or null in this row")
        return value


def annotate_rows(
    data: str | Path,
    out: str | Path,
    *,
    prompt: str,
    system: str = "",
    role: str = "reasoner",
    endpoints: Endpoints | None = None,
    temperature: float = 0.0,
    max_tokens: int = 512,
    no_cache: bool = False,
    refresh: bool = False,
    quiet: bool = False,
    command: str = "",
    force: bool = False,
    engine: Any = None,
) -> AnnotateResult:
    refuse_overlap(Path(out), [("the data", data)])
    raw = load_raw_rows(data)
    rows, unstorable = split_storable(raw)  # rows Arrow cannot hold beside the others: load rejects
    load_rejects = [Reject("wrong_type", why, f"{data}: row {i}", raw[i]) for i, why in unstorable]

    def messages(row: dict) -> list[dict]:
        text = prompt.format_map(FilledFields(row))
        return ([{"role": "system", "content": system}] if system else []) + [
            {"role": "user", "content": text}
        ]

    stage = annotate_stage(
        "annotate",
        role=role,
        prompt=messages,
        sampling={"temperature": temperature, "max_tokens": max_tokens},
        # --refresh must rerun the stage (a finished stage is otherwise skipped): it joins the config
        config={"prompt": prompt, "system": system} | ({"refreshed_at": time.time()} if refresh else {}),
    )
    store = RunStore(out)
    with (
        store.lock(force=force),
        RunModels(endpoints, out, roles=[role], no_cache=no_cache, refresh=refresh) as models,
    ):
        result = run_pipeline(
            out,
            "annotate@1",
            rows,
            [stage],
            config={"prompt": prompt, "models": models.described},
            quiet=quiet,
            resources=models.resources,
            command=command,
            engine=engine,
        )
        store.write_load_rejects(reject_rows(load_rejects, "load"))
        table = result.final_table()
        if table is not None:
            store.write_output(ANNOTATED, table)
    report = result.stages[-1]
    return AnnotateResult(result, report.rows_out, report.rejected, len(load_rejects), store.root / ANNOTATED)
