"""Golden datasets: a recipe's scripted-endpoint run must keep giving the same rows.

`check_golden(dataset_dir, name, bodies)` reads the dataset's rows (every split, in order),
writes each as canonical JSON with pytest's temporary root replaced by `<tmp>`, leaves out
`provenance` (which names the run's start time), and compares the digest with the one stored
in tests/golden.json; and the same for the messages of every request the run sent (`bodies`,
a FaultProxy's with keep_bodies=True), so a prompt that changes by one character shows.
`VDATA_WRITE_GOLDEN=1 python -m pytest ...` stores the digests anew; do that only for a change
that is meant to change a recipe's rows or requests, and say so in the commit.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

import pyarrow.parquet as pq

GOLDEN = Path(__file__).with_name("golden.json")
REPO = str(Path(__file__).resolve().parents[1])  # examples/ are read from the checkout


# pytest's temporary root, whatever the user, the session number and the xdist worker
TMP_ROOT = re.compile(r"/[^\"']*?/pytest-of-[^/]+/pytest-\d+(/popen-gw\d+)?")


def canonical_rows(dataset_dir: Path) -> list[str]:
    rows = []
    for path in sorted((Path(dataset_dir) / "data").glob("*.parquet")):
        for row in pq.read_table(path).to_pylist():
            row.pop("provenance", None)
            text = json.dumps(row, sort_keys=True, ensure_ascii=False, default=str)
            rows.append(TMP_ROOT.sub("<tmp>", text).replace(REPO, "<repo>"))
    return rows


def canonical_requests(bodies: list[dict]) -> list[str]:
    """The messages of every request a run sent (the client's schema probe left out), sorted: what
    the prompts said, whatever order the requests went in."""
    sent = [json.dumps(b.get("messages"), sort_keys=True, ensure_ascii=False) for b in bodies]
    return sorted(TMP_ROOT.sub("<tmp>", s).replace(REPO, "<repo>") for s in sent if "Say hello." not in s)


def check_golden(dataset_dir: Path, name: str, bodies: list[dict]) -> None:
    rows = canonical_rows(dataset_dir)
    assert rows, f"{name}: the golden run kept no rows"
    check_provenance(dataset_dir, name)
    requests = canonical_requests(bodies)
    assert requests, f"{name}: the golden run's server kept no requests (keep_bodies=True)"
    found = {
        "rows": len(rows),
        "sha256": hashlib.sha256("\n".join(rows).encode()).hexdigest(),
        "requests": len(requests),
        "requests_sha256": hashlib.sha256("\n".join(requests).encode()).hexdigest(),
    }
    stored = json.loads(GOLDEN.read_text()) if GOLDEN.exists() else {}
    if os.environ.get("VDATA_WRITE_GOLDEN"):
        stored[name] = found
        GOLDEN.write_text(json.dumps(stored, indent=2, sort_keys=True) + "\n")
        return
    assert name in stored, f"no golden digest for {name}: run with VDATA_WRITE_GOLDEN=1 once"
    assert stored[name]["requests_sha256"] == found["requests_sha256"], (
        f"{name}: the requests changed ({len(requests)} now); first: {requests[0][:400]}"
    )
    assert stored[name] == found, (
        f"{name}: the recipe's rows changed ({len(rows)} rows now); first: {rows[0][:400]}"
    )


def check_provenance(dataset_dir: Path, name: str) -> None:
    """Every row says where each of the recipe's fields came from: a model-written field names its
    stage, role, model and prompt hash; any other field its source; and when the run began."""
    from vdata.recipe import load_recipe

    recipe = load_recipe(name)
    declared = recipe.provenance
    if callable(declared):
        run = json.loads((Path(dataset_dir).parent / "run.json").read_text())["config"]
        declared = declared(
            recipe.config.model_validate({k: v for k, v in run.items() if k in recipe.config.model_fields})
        )
    assert declared, f"{name} declares no field provenance"
    rows = [
        row
        for path in sorted((Path(dataset_dir) / "data").glob("*.parquet"))
        for row in pq.read_table(path).to_pylist()
    ]
    for row in rows:
        provenance = row["provenance"]
        assert provenance["created"], row["id"]
        per_field = json.loads(provenance["params_json"])["fields"]
        assert set(per_field) == set(declared), (name, sorted(per_field))
        for field, origins in per_field.items():
            origins = origins if isinstance(origins, list) else [origins]
            assert any("source" in o or o.get("ran", True) for o in origins), (name, field, origins)
            for origin in origins:
                if "source" in origin:
                    assert origin["source"], (name, field)
                elif origin.get("ran", True):
                    assert origin["role"] and origin["model"] and len(origin["prompt_sha256"]) == 64, (
                        name,
                        field,
                    )
                    assert {"name": origin["prompt"], "sha256": origin["prompt_sha256"]} in provenance[
                        "prompts"
                    ]
                    assert {"role": origin["role"], "model": origin["model"], "revision": None} in provenance[
                        "models"
                    ]
