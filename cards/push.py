"""`vdata push`: a dataset to the Hugging Face Hub, through huggingface_hub.

What goes up is first laid out in a staging folder, which `--dry-run DIR` keeps:
the Parquet shards, the card and its plots, run.json with secrets stripped, and
with `--videos upload` the videos themselves (each row's path resolves under
videos/). The token comes from HF_TOKEN or the login cache and is never printed
or written anywhere.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Literal

from vdata.cards.card import strip_secrets
from vdata.runstore import read_json


class PushError(RuntimeError):
    """A push that cannot happen; the message says what to do (and never holds the token)."""


def stage_files(
    dataset_dir: str | Path, staging: str | Path, videos: Literal["upload", "reference"]
) -> list[str]:
    """Lays out exactly what would be uploaded; returns the paths, relative and sorted."""
    dataset_dir, staging = Path(dataset_dir), Path(staging)
    if not (dataset_dir / "data").is_dir():
        raise PushError(f"{dataset_dir}: no data/ folder of Parquet shards; is it a vdata dataset directory?")
    if not (dataset_dir / "README.md").exists():
        raise PushError(f"{dataset_dir}: no README.md card; write one first with `vdata card {dataset_dir}`")
    staging.mkdir(parents=True, exist_ok=True)
    for pattern in ("data/*.parquet", "README.md", "plots/*.png"):
        for source in sorted(dataset_dir.glob(pattern)):
            _copy(source, staging / source.relative_to(dataset_dir))
    run = read_json(dataset_dir.parent / "run.json")
    if run is not None:
        text = json.dumps(strip_secrets(run), indent=2, ensure_ascii=False) + "\n"
        (staging / "run.json").write_text(text)
    if videos == "upload":
        for source in sorted((dataset_dir / "videos").glob("*")):
            target = source.resolve()
            if not target.is_file():
                raise PushError(f"{source} points at {target}, which is not a file; rebuild or fix the link")
            _copy(target, staging / "videos" / source.name)
    return sorted(str(p.relative_to(staging)) for p in staging.rglob("*") if p.is_file())


def _copy(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)  # same disk: no copy of large files
    except OSError:
        shutil.copy2(source, target)


def hub_token() -> str:
    from huggingface_hub import get_token

    token = os.environ.get("HF_TOKEN") or get_token()
    if not token:
        raise PushError("no Hugging Face token: set HF_TOKEN, or run `hf auth login`")
    return token


def push(
    dataset_dir: str | Path,
    repo_id: str,
    *,
    private: bool = False,
    videos: Literal["upload", "reference"] = "reference",
    dry_run: str | Path | None = None,
) -> list[str]:
    """Uploads the dataset (or, with dry_run, only lays it out there); returns the files."""
    if dry_run is not None:
        return stage_files(dataset_dir, dry_run, videos)
    token = hub_token()
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    with tempfile.TemporaryDirectory(prefix="vdata-push-") as staging:
        files = stage_files(dataset_dir, staging, videos)
        api = HfApi(token=token)
        try:
            api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
            data = [f for f in files if not f.startswith("videos/")]
            _commit(api, repo_id, staging, data, f"vdata push: {len(data)} files")
            upload_videos(api, repo_id, staging, [f for f in files if f.startswith("videos/")])
        except (HfHubHTTPError, OSError, ValueError) as exc:
            raise PushError(f"pushing to {repo_id} failed: {str(exc).replace(token, '[token]')}") from None
    return files


VIDEO_BATCH = 50


def upload_videos(api, repo_id: str, staging: str | Path, videos: list[str]) -> int:
    """Videos in commits of VIDEO_BATCH, skipping those the repository already holds: a push cut
    off halfway resumes where it stopped. Returns how many were uploaded now."""
    if not videos:
        return 0
    present = set(api.list_repo_files(repo_id, repo_type="dataset"))
    missing = [v for v in videos if v not in present]
    for start in range(0, len(missing), VIDEO_BATCH):
        batch = missing[start : start + VIDEO_BATCH]
        _commit(
            api,
            repo_id,
            staging,
            batch,
            f"vdata push: videos {start + 1}-{start + len(batch)} of {len(missing)}",
        )
    return len(missing)


def _commit(api, repo_id: str, staging: str | Path, files: list[str], message: str) -> None:
    """One commit of the named files of the staging folder."""
    api.upload_folder(
        folder_path=staging,
        repo_id=repo_id,
        repo_type="dataset",
        allow_patterns=files,
        commit_message=message,
    )
