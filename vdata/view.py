"""`vdata view`: a local, read-only web page over a dataset or a run.

The server reads pages of rows from Parquet (polars) and sends the browser one page at a
time, never the whole dataset; a row's video is served with HTTP range requests so the
page can play just the row's segment. What it serves, and nothing else: the dataset's data
files, its card and the card's plots (never run.json, the request cache, logs or anything
else a run holds), and the videos its rows and rejects name, each by its row's number, never
by a path the browser names, and only where the name leads inside the dataset (or
--media-root) to a file that starts like a video. It answers only requests addressed to the
host it listens on (a page elsewhere that points a name of its own at 127.0.0.1 gets 400),
and renders odd values (NaN, NUL) instead of failing. The page itself (vdata/view_page/)
loads no asset from the internet.

The audit is handed in by the command line (`vdata view` composes the filters' audit); the
viewer only shows its findings.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import os
import re
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import polars as pl

from vdata.formats import DatasetReadError, load_rows, media_root_of
from vdata.record import rebased_path
from vdata.runstore import RunStore, rows_to_table
from vdata.video import VIDEO_SUFFIXES, looks_like_video

PAGE_DIR = Path(__file__).with_name("view_page")
# how reports name a row (record.source_ref): 'KEY VALUE (POSITION)', POSITION '[FILE ]row N'
_REF = re.compile(r"^(?:(?P<key>\S+) (?P<id>\S+) \()?(?:(?P<file>\S+) )?row (?P<n>\d+)\)?$")
FACETS = ("split", "category", "problem_type", "recipe")
MAX_PAGE = 200
VIDEO_KEYS = ("video", "path", "source_video", "clip", "file")  # where a reject's payload names one


class ViewError(ValueError):
    """A path the viewer cannot show; the message says what to do."""


class ViewData:
    """What `vdata view PATH` shows: the rows (a dataset directory, a run, or any file vdata
    reads), the run's rejects, the card's plots, and where their videos are."""

    def __init__(
        self,
        path: str | Path,
        audit: Callable[[Path], dict[str, Any]] | None = None,
        media_root: str | Path | None = None,
    ):
        given = Path(path)
        if not given.exists():
            raise ViewError(
                f"{path}: no such file or directory; give a dataset directory, a run or a data file"
            )
        self.path = given.resolve()
        self.root = self.path if self.path.is_dir() else self.path.parent
        self.run = self._run_of(self.path)
        self.rows_path = self._rows_path()
        self._file_starts: dict[str, int] = {}  # a Parquet file's first row number, for report refs
        if media_root is not None and not Path(media_root).is_dir():
            raise ViewError(f"--media-root {media_root}: not a directory")
        # a given root reads every path under it, absolute ones too (a release's '/MVBench/x.mp4')
        self.given_root = Path(media_root).resolve() if media_root is not None else None
        self.media_root = self.given_root or (media_root_of(self.rows_path) if self.rows_path else self.root)
        self.rows, self.read_as = self._read_rows()
        self.index = self._index(self.rows)
        self._all_counts = self._counts(self.index)  # an unfiltered page's, counted once
        self.rejects = self._read_rejects()
        self._served = self._servable_files()
        self._audit = audit
        self._audit_result: dict[str, Any] | None = None
        self._audit_lock = threading.Lock()

    # ------------------------------------------------------------ reading

    @staticmethod
    def _run_of(path: Path) -> RunStore | None:
        if path.is_dir() and RunStore(path).is_run():
            return RunStore(path)
        return RunStore.of_dataset(path) if path.is_dir() else None

    def _rows_path(self) -> Path | None:
        if self.run is not None and self.run.root == self.path:
            return self.run.rows_path()  # None: a run that makes no question rows (split, annotate)
        return self.path

    def _read_rows(self) -> tuple[pl.DataFrame, str]:
        from vdata.record import SCHEMA

        if self.rows_path is None:
            return pl.from_arrow(SCHEMA.empty_table()), "no question rows (this run makes none)"
        parquet = sorted((self.rows_path / "data").glob("*.parquet")) if self.rows_path.is_dir() else []
        if parquet:
            try:
                parts = [pl.read_parquet(p) for p in parquet]
                frame = pl.concat(parts, how="diagonal_relaxed")
            except pl.exceptions.PolarsError as exc:
                raise ViewError(f"{self.rows_path}: cannot read its Parquet files ({exc})") from exc
            if {"id", "problem"} <= set(frame.columns):
                starts = itertools.accumulate((len(part) for part in parts), initial=0)
                names = (str(p.relative_to(self.rows_path)) for p in parquet)
                self._file_starts = dict(zip(names, starts, strict=False))
                return frame, f"vdata rows from {len(parquet)} Parquet file(s)"
        return self._read_any()

    def _read_any(self) -> tuple[pl.DataFrame, str]:
        """Any file or folder vdata reads, mapped onto the record."""
        try:
            loaded = load_rows(self.rows_path)
        except DatasetReadError as exc:
            raise ViewError(str(exc)) from exc
        rows = [
            {**row, "split": row.get("split") or split or None}
            for row, split in zip(loaded.rows, loaded.splits, strict=True)
        ]
        try:
            return pl.from_arrow(rows_to_table(rows)), loaded.read_as
        except (ValueError, TypeError, pl.exceptions.PolarsError) as exc:  # ArrowInvalid is a ValueError
            raise ViewError(
                f"{self.rows_path}: its rows do not share one type per field ({exc}); "
                "`vdata validate` names the rows"
            ) from exc

    @staticmethod
    def _index(rows: pl.DataFrame) -> pl.DataFrame:
        """The columns the filters read, one row per dataset row, `_i` its number."""
        columns = rows.columns
        text = [pl.col("problem").fill_null("")]
        if "options" in columns and rows.schema["options"] == pl.List(pl.String):
            text.append(pl.col("options").list.join(" ").fill_null(""))
        pass_rate = (
            pl.col("difficulty").struct.field("pass_rate")
            if "difficulty" in columns and isinstance(rows.schema["difficulty"], pl.Struct)
            else pl.lit(None, dtype=pl.Float64)
        )
        facets = [
            (pl.col(name).cast(pl.String) if name in columns else pl.lit(None, dtype=pl.String)).alias(name)
            for name in FACETS
        ]
        return rows.select(
            pl.int_range(pl.len(), dtype=pl.Int64).alias("_i"),
            *facets,
            pass_rate.alias("pass_rate"),
            pl.concat_str(text, separator=" ").str.to_lowercase().alias("_text"),
        )

    def _read_rejects(self) -> pl.DataFrame:
        empty = pl.DataFrame(
            schema={"stage": pl.String, "reason": pl.String, "detail": pl.String, "input_ref": pl.String}
            | {"payload_json": pl.String}
        )
        if self.run is None or not self.run.rejects_dir.is_dir():
            return empty.with_row_index("_i")
        parts = []
        for path in sorted(self.run.rejects_dir.glob("*.parquet")):
            part = pl.read_parquet(path)
            for name in empty.columns:
                if name not in part.columns:
                    part = part.with_columns(pl.lit(None, dtype=pl.String).alias(name))
            parts.append(part.select([pl.col(c).cast(pl.String) for c in empty.columns]))
        frame = pl.concat(parts) if parts else empty
        return frame.with_row_index("_i")

    # ------------------------------------------------------------ rows

    def _plots(self) -> list[Path]:
        folders = (self.root / "plots", self.root / "dataset" / "plots")  # the card's, in a dataset or run
        return sorted(p for folder in folders for p in folder.glob("*.png")) if self.path.is_dir() else []

    def _servable_files(self) -> dict[str, Path]:
        """What /files/ may serve, by its path under the viewed root: the data files, the card
        and its plots; never a run's own files (run.json can hold an endpoint's password, the
        cache every prompt and answer)."""
        if not self.path.is_dir():
            return {self.path.name: self.path}
        rows = self.rows_path if self.rows_path is not None and self.rows_path.is_dir() else None
        found = self._plots()
        if rows is not None:
            found += sorted((rows / "data").glob("*.parquet")) + [rows / "README.md"]
        served = {}
        for path in found:
            with contextlib.suppress(OSError, RuntimeError):
                real = path.resolve(strict=True)
                if real.is_file() and real.is_relative_to(self.root) and not path.is_symlink():
                    served[path.relative_to(self.root).as_posix()] = real
        return served

    def summary(self) -> dict[str, Any]:
        plots = self._plots()
        return {
            "path": str(self.path),
            "read_as": self.read_as,
            "rows": self.rows.height,
            "is_run": self.run is not None,
            "rejects": self.rejects.height,
            "facets": self._all_counts,
            "plots": [str(p.relative_to(self.root)) for p in plots],
            "has_audit": self._audit is not None and self.rows_path is not None,
        }

    @staticmethod
    def _counts(frame: pl.DataFrame) -> dict[str, list[list[Any]]]:
        counts = {}
        for name in FACETS:
            grouped = frame.group_by(name).len().sort(["len", name], descending=[True, False])
            counts[name] = [[value, n] for value, n in grouped.iter_rows()]
        return counts

    def page(self, filters: dict[str, str], offset: int = 0, limit: int = 50) -> dict[str, Any]:
        """One page of rows matching `filters` (facet values, difficulty range, text `q`), with
        the counts per facet value among the matches."""
        limit = min(max(1, limit), MAX_PAGE)
        chosen = self.index
        for name in FACETS:
            value = filters.get(name)
            if value:
                chosen = chosen.filter(pl.col(name).is_null() if value == "(none)" else pl.col(name) == value)
        low, high = _number(filters.get("difficulty_min")), _number(filters.get("difficulty_max"))
        if low is not None:
            chosen = chosen.filter(pl.col("pass_rate") >= low)
        if high is not None:
            chosen = chosen.filter(pl.col("pass_rate") <= high)
        query = (filters.get("q") or "").strip().lower()
        if query:
            chosen = chosen.filter(pl.col("_text").str.contains(query, literal=True))
        counts = self._all_counts if chosen is self.index else self._counts(chosen)
        offset = min(max(0, offset), chosen.height)  # past the end: an empty page, whatever the number
        numbers = chosen["_i"].slice(offset, limit).to_list()
        shown = self.rows[numbers] if numbers else self.rows.head(0)
        rows = [_brief(i, row) for i, row in zip(numbers, shown.iter_rows(named=True), strict=True)]
        return {"total": chosen.height, "offset": offset, "rows": rows, "counts": counts}

    def row(self, number: int) -> dict[str, Any] | None:
        if not 0 <= number < self.rows.height:
            return None
        row = self.rows.row(number, named=True)
        row["meta"] = _loads(row.pop("meta_json", None))
        if isinstance(row.get("provenance"), dict):
            row["provenance"]["params"] = _loads(row["provenance"].pop("params_json", None))
        video = self.row_video(number)
        return {
            "number": number,
            "row": row,
            "trace": _trace(row.get("process"), row.get("solution")),
            "video": f"/media/row/{number}" if video else None,
            "video_missing": None if video or not row.get("path") else self._why_no_video(row["path"]),
            "window": _window(row),
        }

    def _where(self, name: str) -> Path:
        """Where a row's or reject's video name points, without following links: as given when
        absolute, else under the media root (every name, with --media-root)."""
        if Path(name).is_absolute() and self.given_root is None:
            return Path(os.path.normpath(name))
        return Path(os.path.normpath(self.media_root / rebased_path(name, self.media_root)))

    def _why_no_video(self, name: str) -> str:
        if "\x00" in name:
            return f"{name!r}: a path with a NUL character names no file"
        where = self._where(name)
        if not where.is_relative_to(self.media_root):
            return (
                f"{name}: outside {self.media_root}, which the viewer does not serve from "
                "(vdata view --media-root DIR serves the videos under DIR)"
            )
        if where.is_file():
            return f"{name}: not a video file ({where.suffix or 'no suffix'})"
        return f"{name}: not found at {where} (vdata view --media-root DIR reads paths under DIR)"

    def find(self, ref: str) -> int | None:
        """The number of the row that `ref` names: its id, or a report's name for it
        (`record.source_ref`: 'id X (FILE row N)', 'problem_id 7 (row 6)')."""
        named = _REF.match(ref)
        for key in (ref, named.group("id") if named and named.group("key") == "id" else None):
            if key and "id" in self.rows.columns:
                hits = self.rows.select(pl.arg_where(pl.col("id").cast(pl.String) == key)).to_series()
                if len(hits):
                    return int(hits[0])
        if named and named.group("n") is not None:
            start = self._file_starts.get(named.group("file") or "", None if self._file_starts else 0)
            if start is not None and 0 <= start + int(named.group("n")) < self.rows.height:
                return start + int(named.group("n"))
        return None

    def row_video(self, number: int) -> Path | None:
        if not 0 <= number < self.rows.height or "path" not in self.rows.columns:
            return None
        return self._video(self.rows["path"][number])

    def _video(self, name: Any) -> Path | None:
        """The video a row or reject names, resolved: only where the name leads inside the media
        root (a link the dataset holds may lead on, to its source) to a file with a video's
        suffix that starts like a video, never to whatever a '..' or an absolute path reaches."""
        if not isinstance(name, str) or not name.strip() or "\x00" in name:
            return None
        where = self._where(name)
        if not where.is_relative_to(self.media_root):
            return None
        try:
            real = where.resolve(strict=True)
        except (OSError, RuntimeError):
            return None
        if not real.is_file() or real.suffix.lower() not in VIDEO_SUFFIXES or not looks_like_video(real):
            return None
        return real

    # ------------------------------------------------------------ rejects

    def reject_groups(self) -> list[dict[str, Any]]:
        grouped = self.rejects.group_by(["stage", "reason"], maintain_order=True).len()
        return [{"stage": s, "reason": r, "count": n} for s, r, n in grouped.iter_rows()]

    def reject_page(self, stage: str, reason: str, offset: int = 0, limit: int = 20) -> dict[str, Any]:
        chosen = self.rejects
        if stage:
            chosen = chosen.filter(pl.col("stage") == stage)
        if reason:
            chosen = chosen.filter(pl.col("reason") == reason)
        offset, limit = min(max(0, offset), chosen.height), min(max(1, limit), MAX_PAGE)
        shown = []
        for item in chosen.slice(offset, limit).iter_rows(named=True):
            number = item.pop("_i")
            payload = _loads(item.pop("payload_json"))
            link = f"/media/reject/{number}" if self._reject_video(payload, item["input_ref"]) else None
            shown.append({**item, "number": number, "payload": payload, "video": link})
        return {"total": chosen.height, "offset": offset, "rejects": shown}

    def reject_video(self, number: int) -> Path | None:
        if not 0 <= number < self.rejects.height:
            return None
        return self._reject_video(
            _loads(self.rejects["payload_json"][number]), self.rejects["input_ref"][number]
        )

    def _reject_video(self, payload: Any, input_ref: Any) -> Path | None:
        """The video a reject names: in its payload (VIDEO_KEYS), else its input_ref."""
        names = [payload.get(key) for key in VIDEO_KEYS] if isinstance(payload, dict) else []
        for name in [*names, input_ref]:
            if isinstance(name, str) and Path(name).suffix.lower() in VIDEO_SUFFIXES:
                found = self._video(name)
                if found:
                    return found
        return None

    # ------------------------------------------------------------ audit and files

    def audit(self) -> dict[str, Any] | None:
        """The audit's findings (run once, on first request), each example with the number of
        the row it cites where one has that id."""
        if self._audit is None or self.rows_path is None:
            return None
        with self._audit_lock:
            if self._audit_result is None:
                result = self._audit(self.rows_path)
                for finding in result.get("findings", []):
                    finding["examples"] = [
                        {"ref": e["row"], "what": e["what"], "number": self.find(str(e["row"]))}
                        for e in finding.get("examples", [])
                    ]
                self._audit_result = result
        return self._audit_result

    def file(self, relative: str) -> Path | None:
        """One of the files the viewer serves (`_servable_files`: a viewed file alone, or the
        dataset's data files, card and plots), by its path under the viewed root; else None."""
        return self._served.get(relative)


def _number(text: str | None) -> float | None:
    try:
        return float(text) if text not in (None, "") else None
    except ValueError:
        return None


def _loads(text: Any) -> Any:
    if not isinstance(text, str) or not text:
        return text
    try:
        return json.loads(text)
    except (json.JSONDecodeError, RecursionError):  # shown as the text it is
        return text


def _jsonable(value: Any) -> Any:
    """A value JSON can carry: NaN and infinities (which JSON has no word for) as their text,
    so the page shows them instead of failing."""
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def _brief(number: int, row: dict[str, Any]) -> dict[str, Any]:
    difficulty = row.get("difficulty") or {}
    problem = row.get("problem") or ""
    return {
        "number": number,
        "id": row.get("id"),
        "split": row.get("split"),
        "category": row.get("category"),
        "problem_type": row.get("problem_type"),
        "recipe": row.get("recipe"),
        "problem": problem if len(problem) <= 300 else problem[:299] + "…",
        "solution": row.get("solution"),
        "pass_rate": difficulty.get("pass_rate") if isinstance(difficulty, dict) else None,
    }


def _window(row: dict[str, Any]) -> dict[str, float | None]:
    """The part of the video a row is about: its segment, else the whole video (a time that
    is not a finite number counts as not given: the player cannot seek to it)."""

    def finite(value: Any) -> float | None:
        return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None

    segment = row.get("segment") or {}
    video = row.get("video") or {}
    end = finite(segment.get("end_s"))
    return {
        "start_s": finite(segment.get("start_s")) or 0.0,
        "end_s": end if end is not None else finite(video.get("duration_s")),
    }


def _trace(process: Any, solution: Any) -> list[dict[str, Any]] | None:
    """A Video-Thinker trace's blocks (the recipe's own parser), for clickable times."""
    from vdata.thinker import parse

    if not isinstance(process, str) or "<time>" not in process:
        return None
    for text in (process, f"{process} {solution or ''}"):
        parsed = parse(text)
        if not isinstance(parsed, str):
            return [
                {"start_s": b.start_s, "end_s": b.end_s, "caption": b.caption, "think": b.think}
                for b in parsed.blocks
            ]
    return None


# ---------------------------------------------------------------- the server


LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")


def host_check(host: str) -> Callable[[str], bool]:
    """Which Host headers the viewer answers: the loopback names and the address it listens on;
    listening on every interface (0.0.0.0, ::), also this machine's name and any IP address
    (no page can make a browser send another machine's IP as the host of its own). Any other
    name (DNS rebinding: a web page points a name of its own at 127.0.0.1) gets 400."""
    import ipaddress
    import socket

    names = {*LOOPBACK_NAMES, host}
    wildcard = host in ("0.0.0.0", "::")
    if wildcard:
        names.add(socket.gethostname().lower())

    def allowed(header: str) -> bool:
        name = header.strip().lower()
        if name.startswith("["):  # [::1]:8000
            name = name[1 : name.find("]")] if "]" in name else ""
        elif name.count(":") == 1:
            name = name.split(":")[0]
        if name in names:
            return True
        with contextlib.suppress(ValueError):
            return wildcard and bool(ipaddress.ip_address(name))
        return False

    return allowed


class HostCheck:
    """ASGI middleware: 400 for a request whose Host header `allowed` refuses."""

    def __init__(self, app: Any, allowed: Callable[[str], bool]):
        self.app, self.allowed = app, allowed

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            headers = dict(scope.get("headers") or [])
            host = headers.get(b"host", b"").decode("latin-1")
            if not self.allowed(host):
                from starlette.responses import PlainTextResponse

                await PlainTextResponse("invalid host header", status_code=400)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def json_response(content: Any) -> Any:
    """A JSON answer that carries NaN and infinities as text (starlette's JSONResponse refuses
    them, and the page would fail on one odd value)."""
    from starlette.responses import Response

    body = json.dumps(_jsonable(content), ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return Response(body, media_type="application/json")


def make_app(data: ViewData, host: str = "127.0.0.1") -> Any:
    """The viewer's HTTP app: the page, its JSON API, and the files it may serve, answering
    requests addressed to the server listening on `host` only (`host_check`)."""
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.requests import Request
    from starlette.responses import FileResponse, Response
    from starlette.routing import Route

    def not_found() -> Response:
        return Response("not found", status_code=404, media_type="text/plain")

    def number(request: Request) -> int | None:
        try:
            return int(request.path_params["number"])
        except ValueError:
            return None

    def query_int(request: Request, name: str, default: int) -> int:
        try:
            return int(request.query_params.get(name, default))
        except ValueError:
            return default

    async def page(request: Request) -> Response:
        return FileResponse(PAGE_DIR / "index.html", headers={"cache-control": "no-store"})

    async def asset(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in ASSETS:
            return not_found()
        return FileResponse(PAGE_DIR / name, media_type=ASSETS[name])

    async def summary(request: Request) -> Response:
        return json_response(data.summary())

    async def rows(request: Request) -> Response:
        offset, limit = query_int(request, "offset", 0), query_int(request, "limit", 50)
        return json_response(data.page(dict(request.query_params), offset, limit))

    async def row(request: Request) -> Response:
        asked = number(request)
        found = data.row(asked) if asked is not None else None
        return json_response(found) if found else not_found()

    async def find(request: Request) -> Response:
        found = data.find(request.query_params.get("id", ""))
        return json_response({"number": found}) if found is not None else not_found()

    async def rejects(request: Request) -> Response:
        params = request.query_params
        return json_response(
            {
                "groups": data.reject_groups(),
                **data.reject_page(
                    params.get("stage", ""),
                    params.get("reason", ""),
                    query_int(request, "offset", 0),
                    query_int(request, "limit", 20),
                ),
            }
        )

    async def audit(request: Request) -> Response:
        import anyio

        found = await anyio.to_thread.run_sync(data.audit)
        return json_response(found) if found is not None else not_found()

    def media(find_video: Callable[[int], Path | None]) -> Callable[[Request], Any]:
        async def serve(request: Request) -> Response:
            found = number(request)
            video = find_video(found) if found is not None else None
            return FileResponse(video) if video else not_found()

        return serve

    async def file(request: Request) -> Response:
        found = data.file(request.path_params["path"])
        return FileResponse(found) if found else not_found()

    routes = [
        Route("/", page),
        Route("/assets/{name}", asset),
        Route("/api/summary", summary),
        Route("/api/rows", rows),
        Route("/api/row/{number}", row),
        Route("/api/find", find),
        Route("/api/rejects", rejects),
        Route("/api/audit", audit),
        Route("/media/row/{number}", media(data.row_video)),
        Route("/media/reject/{number}", media(data.reject_video)),
        Route("/files/{path:path}", file),
    ]
    return Starlette(routes=routes, middleware=[Middleware(HostCheck, allowed=host_check(host))])


ASSETS = {"app.js": "text/javascript", "style.css": "text/css"}
# how a test or a script drives the page in Debian's headless Chromium on a closed network
# (its background services would each try the internet and fail)
HEADLESS_CHROMIUM_ARGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--autoplay-policy=no-user-gesture-required",
)


def listen_address(host: str) -> str:
    """The IP address `--host` names ('localhost' is 127.0.0.1), checked as text before anything
    binds or looks a name up: a host name would be resolved, over the network."""
    import ipaddress

    if host.strip().lower() == "localhost":
        return "127.0.0.1"
    try:
        return str(ipaddress.ip_address(host.strip().strip("[]")))
    except ValueError:
        raise ViewError(
            f"--host {host!r} is not an IP address; give one of this machine's (127.0.0.1, the default; "
            "::1; 0.0.0.0 for every interface)"
        ) from None


def is_loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(
    data: ViewData, host: str = "127.0.0.1", port: int = 0, ready: Callable[[str], None] | None = None
) -> None:
    """Serves until Ctrl-C or SIGTERM; `ready` hears the URL once the socket listens (port 0:
    a free one)."""
    import signal
    import socket

    import uvicorn

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    bound = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    app = make_app(data, host)
    server = _server_class()(uvicorn.Config(app, log_level="warning", access_log=False))
    # Ctrl-C and SIGTERM stop it from the moment the URL is printed, and end it with status 0
    # (uvicorn would raise the signal again after shutting down)
    previous = {sig: signal.signal(sig, server.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        if ready is not None:
            ready(f"http://{shown}:{bound}/")
        server.run(sockets=[sock])
    finally:
        sock.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _server_class() -> Any:
    import uvicorn

    class OwnSignals(uvicorn.Server):
        """uvicorn's server leaving the signal handlers to `serve`."""

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

    return OwnSignals
