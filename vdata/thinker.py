"""Video-Thinker's trace format: blocks `<time>MM:SS-MM:SS</time> <caption>..</caption>
<think>..</think>`, then `<answer>X</answer>`. One home for reading and checking it: the
video-thinker recipe validates the traces it writes, the trainer's `thinker` format reward
scores responses, by the same rules."""

from __future__ import annotations

import re
from dataclasses import dataclass

from vdata.record import ANSWER_TAG

_BLOCK = re.compile(
    r"<time>\s*(?P<start>[0-9:.]+)\s*-\s*(?P<end>[0-9:.]+)\s*</time>\s*"
    r"<caption>(?P<caption>.*?)</caption>\s*<think>(?P<think>.*?)</think>\s*",
    re.DOTALL,
)
_ANSWER = re.compile(ANSWER_TAG + r"\s*$", re.DOTALL)  # a trace's answer: the tag that ends it
_TAG = re.compile(r"</?(time|caption|think|answer)>")
_CLOCK = re.compile(r"^(\d{1,3}):([0-5]\d(?:\.\d+)?)$")


@dataclass(frozen=True)
class Block:
    start_s: float
    end_s: float
    caption: str
    think: str


@dataclass(frozen=True)
class Trace:
    blocks: list[Block]
    answer: str


def clock(seconds: float) -> str:
    """75.4 -> '01:15': the trace's MM:SS (whole seconds, rounded down)."""
    whole = max(0, int(seconds))
    return f"{whole // 60:02d}:{whole % 60:02d}"


def seconds_of(text: str) -> float | None:
    """'01:15' -> 75.0; None when it is not MM:SS."""
    match = _CLOCK.match(text.strip())
    return int(match.group(1)) * 60 + float(match.group(2)) if match else None


def render(blocks: list[Block], answer: str | None = None) -> str:
    """The blocks in the tag format, then the answer (none: the blocks alone, as a record's
    `process`, to which exports add the solution)."""
    parts = [
        f"<time>{clock(b.start_s)}-{clock(b.end_s)}</time> <caption>{b.caption.strip()}</caption> "
        f"<think>{b.think.strip()}</think>"
        for b in blocks
    ]
    return " ".join(parts + ([f"<answer>{answer.strip()}</answer>"] if answer is not None else []))


def parse(text: str, duration_s: float | None = None) -> Trace | str:
    """The trace, or what is wrong with it: a block missing a tag, a time that is not MM:SS or
    runs backwards, blocks out of order, a time past the video's end (when `duration_s` is
    given), an answer inside a block, text between blocks, or no final answer."""
    text = text.strip()
    final = _ANSWER.search(text)
    if final is None:
        return "no <answer>...</answer> at the end"
    body, blocks, at = text[: final.start()], [], 0
    while at < len(body):
        match = _BLOCK.match(body, at)
        if match is None:
            return f"not a complete <time> <caption> <think> block at {body[at : at + 40]!r}"
        start, end = seconds_of(match["start"]), seconds_of(match["end"])
        if start is None or end is None:
            return f"time {match['start']}-{match['end']} is not MM:SS-MM:SS"
        if end < start:
            return f"time {match['start']}-{match['end']} runs backwards"
        if blocks and start < blocks[-1].start_s:
            return f"time {match['start']} comes before the previous block's {clock(blocks[-1].start_s)}"
        if duration_s is not None and end > duration_s + 1:
            return f"time {match['end']} is past the video's end ({clock(duration_s)})"
        if _TAG.search(match["caption"]) or _TAG.search(match["think"]):
            return "a tag inside a caption or think block (an answer inside the reasoning)"
        blocks.append(Block(start, end, match["caption"].strip(), match["think"].strip()))
        at = match.end()
    if not blocks:
        return "no <time> <caption> <think> block before the answer"
    if _TAG.search(final["answer"]):
        return "a tag inside the answer"
    return Trace(blocks, final["answer"].strip())
