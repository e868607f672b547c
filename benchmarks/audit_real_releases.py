"""`vdata audit` on the files public releases ship (../shared/real-data), in one run.

For each file: the format detected, the rows read, the findings with their counts, and
the seconds of `vdata audit FILE --json` as a command (best of two), against a floor
named in the same run: `python -c "json.load(FILE)"`, the interpreter reading the file
and nothing else. Writes benchmarks/results/audit_real_releases.json.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REAL = Path(os.environ.get("VDATA_REAL_DATA") or ROOT.parent / "shared" / "real-data")
RESULT = ROOT / "benchmarks" / "results" / "audit_real_releases.json"
REPEATS = 2


def timed(command: list[str]) -> tuple[float, subprocess.CompletedProcess]:
    best, result = float("inf"), None
    for _ in range(REPEATS):
        started = time.perf_counter()
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        best = min(best, time.perf_counter() - started)
    assert result is not None
    return best, result


def main() -> None:
    if not REAL.is_dir():
        sys.exit(f"{REAL} is absent: this benchmark reads the real release files kept there")
    rows = []
    for path in sorted(REAL.iterdir()):
        if path.suffix not in (".json", ".jsonl"):
            continue
        print(f"auditing {path.name} ...", file=sys.stderr)
        seconds, result = timed([sys.executable, "-m", "vdata", "audit", str(path), "--json"])
        loader = "json.load(f)" if path.suffix == ".json" else "[json.loads(l) for l in f]"
        floor, _ = timed([sys.executable, "-c", f"import json; f = open({str(path)!r}); {loader}"])
        row = {
            "file": path.name,
            "seconds_audit": round(seconds, 3),
            "seconds_json_load_floor": round(floor, 3),
        }
        if result.returncode == 2:  # refused: a layout the record cannot hold
            row |= {"format": None, "rows": 0, "refused": result.stderr.strip().splitlines()[-1]}
        else:
            report = json.loads(result.stdout)
            row |= {
                "format": report["shape"],
                "read_as": report["read_as"],
                "rows": report["rows"],
                "findings": {f["code"]: [f["severity"], f["count"]] for f in report["findings"]},
                "not_checked": report["notes"],
                "exit_code": result.returncode,
            }
        rows.append(row)
    RESULT.parent.mkdir(parents=True, exist_ok=True)
    RESULT.write_text(
        json.dumps(
            {
                "benchmark": "audit_real_releases",
                "baseline": "python -c 'json.load(FILE)': reading the file, nothing else",
                "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
                "files": rows,
            },
            indent=2,
        )
        + "\n"
    )
    for row in rows:
        shown = ", ".join(f"{k} {v[1]}" for k, v in (row.get("findings") or {}).items()) or row.get(
            "refused", "-"
        )
        print(f"{row['file']}: {row.get('format')} {row['rows']} rows, {row['seconds_audit']} s; {shown}")


if __name__ == "__main__":
    main()
