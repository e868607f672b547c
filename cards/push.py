"""`vdata push`: a dataset to the Hugging Face Hub, through huggingface_hub.

What goes up is first laid out in a staging folder, which `--dry-run DIR` keeps:
the Parquet shards, the card and its plots, run.json with secrets stripped, and
with `--videos upload` the videos themselves (each row's path resolves under
videos/; only files that start like a video, and links out of the dataset only
when a sha256 or the recipe's record vouches for them). A dry run's DIR is new,
empty, or its own earlier layout (listed in DIR/.vdata-push.json, never
uploaded). The token comes from HF_TOKEN or the login cache and is never
printed or written anywhere.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, get_args

from vdata.publish import publishable
from vdata.runstore import OutputRefused, RunStore, atomic_write_json, read_json, refuse_overlap

VideoMode = Literal["reference", "upload"]  # leave videos out (rows name their paths), or upload them
VIDEO_MODES = get_args(VideoMode)


class PushError(RuntimeError):
    """A push that cannot happen; the message says what to do (and never holds the token)."""


@dataclass
class Staged:
    files: list[str]  # relative paths of what goes up, sorted
    notes: list[str] = field(default_factory=list)  # what was left out or followed, and why


STAGED = ".vdata-push.json"  # in a dry run's folder: the files vdata laid out there


def stage_files(
    dataset_dir: str | Path,
    staging: str | Path,
    videos: VideoMode,
    show_endpoints: bool = False,
) -> Staged:
    """Lays out exactly what would be uploaded, as copies (editing them never edits the dataset).
    `staging` is a new or empty folder, or one an earlier dry run laid out (its files are
    replaced); anything else is refused (PushError) before a file is written."""
    dataset_dir, staging = Path(dataset_dir), Path(staging)
    if not (dataset_dir / "data").is_dir():
        raise PushError(f"{dataset_dir}: no data/ folder of Parquet shards; is it a vdata dataset directory?")
    if not (dataset_dir / "README.md").exists():
        raise PushError(f"{dataset_dir}: no README.md card; write one first with `vdata card {dataset_dir}`")
    _claim_staging(staging, dataset_dir)
    notes: list[str] = []
    files: list[str] = []

    def lay_out(source: Path, relative: str) -> None:
        _copy(source, staging / relative)
        files.append(relative)

    for pattern in ("data/*.parquet", "README.md", "plots/*.png"):
        for source in sorted(dataset_dir.glob(pattern)):
            relative = str(source.relative_to(dataset_dir))
            if source.is_symlink() or not source.is_file():
                notes.append(f"{relative}: not a regular file of the dataset; left out")
                continue
            lay_out(source, relative)
    store = RunStore.of_dataset(dataset_dir)
    run = store.read_run() if store else None
    if run is not None:
        text = json.dumps(publishable(run, show_endpoints), indent=2, ensure_ascii=False) + "\n"
        (staging / "run.json").write_text(text)
        files.append("run.json")
    if videos == "upload":
        for relative, source in row_videos(dataset_dir, notes):
            lay_out(source, relative)
    atomic_write_json(staging / STAGED, sorted(files))
    return Staged(sorted(files), notes)


def _claim_staging(staging: Path, dataset_dir: Path) -> None:
    """A dry run writes only into a new or empty folder apart from the dataset, or one that an
    earlier dry run laid out, whose files (and only those) it removes first."""
    try:
        refuse_overlap(staging, [("the dataset", dataset_dir)])
    except OutputRefused as exc:
        raise PushError(f"--dry-run: {exc}") from None
    if staging.exists() and not staging.is_dir():
        raise PushError(f"--dry-run {staging} is a file; give a new or empty folder")
    present = sorted(str(p.relative_to(staging)) for p in staging.rglob("*") if not p.is_dir())
    if not present:
        staging.mkdir(parents=True, exist_ok=True)
        return
    earlier = set(read_json(staging / STAGED) or []) if (staging / STAGED).is_file() else None
    foreign = [name for name in present if name != STAGED and (earlier is None or name not in earlier)]
    if foreign:
        shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
        raise PushError(
            f"--dry-run {staging} holds files that vdata did not lay out ({shown}); give a new or empty "
            "folder (vdata never overwrites or deletes files it did not write)"
        )
    for name in present:
        (staging / name).unlink()


def row_videos(dataset_dir: Path, notes: list[str]) -> list[tuple[str, Path]]:
    """(path in the repository, file to read) of each video a row refers to. A path that is a
    link is followed only to the row's own video: its sha256 (or the source the recipe recorded)
    must match; a link that cannot be checked is followed and said so. Files of videos/ that no
    row refers to stay home (said so too), and nothing outside is read by accident."""
    from vdata.formats import load_rows
    from vdata.record import path_problems
    from vdata.video import looks_like_video, sha256_file

    root = dataset_dir.resolve()
    expected: dict[str, tuple[str, str]] = {}  # path -> (sha256, recorded source)
    for row in load_rows(dataset_dir).rows:
        path = row.get("path")
        if not isinstance(path, str) or path_problems(path):
            continue  # an unsafe or missing path: validation reports it; nothing to upload
        video = row.get("video") or {}
        try:
            meta = json.loads(row.get("meta_json") or "{}")
        except (TypeError, ValueError, RecursionError):
            meta = {}
        meta = meta if isinstance(meta, dict) else {}
        expected.setdefault(path, (video.get("sha256") or "", str(meta.get("source_video") or "")))
    chosen = []
    for relative, (sha, recorded) in sorted(expected.items()):
        link = dataset_dir / relative
        target = link.resolve()
        if not target.is_file():
            notes.append(f"{relative}: rows refer to it but it is missing; not uploaded")
            continue
        inside = target.is_relative_to(root)
        if not inside or link.is_symlink():
            if sha and sha256_file(target) != sha:
                raise PushError(
                    f"{link} points at {target}, whose content is not the rows' video (sha256 differs); "
                    "fix the link or rebuild the dataset"
                )
            if not sha and not (recorded and Path(recorded).resolve() == target):
                notes.append(
                    f"{relative}: a link to {target}, outside the dataset, that no sha256 or recorded "
                    "source vouches for; not uploaded (copy the video into the dataset, or record its sha256)"
                )
                continue
        if not looks_like_video(target):
            notes.append(f"{relative}: {target} does not start like a video file; not uploaded")
            continue
        chosen.append((relative, target))
    referenced = {relative for relative, _ in chosen}
    for extra in sorted((dataset_dir / "videos").rglob("*")) if (dataset_dir / "videos").is_dir() else []:
        relative = str(extra.relative_to(dataset_dir))
        if relative not in referenced and not extra.is_dir():
            notes.append(f"{relative}: no row refers to it; left out")
    return chosen


def _copy(source: Path, target: Path) -> None:
    """A copy that shares no inode with the source (never a hard link: editing the staged copy
    must not edit the dataset)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)


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
    videos: VideoMode = "reference",
    dry_run: str | Path | None = None,
    show_endpoints: bool = False,
) -> Staged:
    """Uploads the dataset (or, with dry_run, only lays it out there); returns what went up."""
    if dry_run is not None:
        return stage_files(dataset_dir, dry_run, videos, show_endpoints)
    token = hub_token()
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    with tempfile.TemporaryDirectory(prefix="vdata-push-") as staging:
        staged = stage_files(dataset_dir, staging, videos, show_endpoints)
        files = staged.files
        api = HfApi(token=token)
        try:
            api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
            data = [f for f in files if not f.startswith("videos/")]
            _commit(api, repo_id, staging, data, f"vdata push: {len(data)} files")
            upload_videos(api, repo_id, staging, [f for f in files if f.startswith("videos/")])
        except (HfHubHTTPError, OSError, ValueError) as exc:
            raise PushError(f"pushing to {repo_id} failed: {str(exc).replace(token, '[token]')}") from None
    return staged


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
