"""Small datasets written the way the public releases write them (METHODS.md), with or without
the defects the audit looks for. Each builder returns rows; `write` stores them as the format's
file type."""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path
from typing import Any

SUBJECTS = ["man", "woman", "child", "dog", "chef", "driver", "player", "teacher", "cyclist", "robot"]
VERBS = ["opens", "closes", "lifts", "throws", "paints", "carries", "drops", "washes", "counts", "moves"]
OBJECTS = ["door", "box", "ball", "cup", "chair", "window", "book", "bottle", "plate", "kite"]
PLACES = ["kitchen", "garden", "street", "garage", "classroom", "park", "office", "beach", "hall", "yard"]


def question(i: int) -> str:
    """A distinct, natural question for each i (different words, not one template)."""
    rng = random.Random(i)
    s, v, o, p = (rng.choice(x) for x in (SUBJECTS, VERBS, OBJECTS, PLACES))
    return f"In scene {i}, the {s} {v} the {o} near the {p}. What does the {s} do after scene {i}?"


def options(i: int, k: int = 4) -> list[str]:
    rng = random.Random(1000 + i)
    texts = rng.sample([f"{v} the {o}" for v in VERBS for o in OBJECTS], k)
    return [f"{chr(65 + j)}. {t}" for j, t in enumerate(texts)]


def video_r1_rows(n: int, *, letters: str = "ABCD", video: str = "videos/v{i}.mp4") -> list[dict[str, Any]]:
    """Video-R1 rows; answer letters cycle through `letters` (skew them with e.g. 'BBBA')."""
    return [
        {
            "problem_id": i,
            "problem": question(i),
            "data_type": "video",
            "problem_type": "multiple choice",
            "options": options(i),
            "solution": f"<answer>{letters[i % len(letters)]}</answer>",
            "path": "./" + video.format(i=i),
            "data_source": "tests",
        }
        for i in range(n)
    ]


def longvideo_reason_rows(n: int) -> list[dict[str, Any]]:
    """LongVideo-Reason / Long-RL (EasyR1) rows: options inline, category in problem_type."""
    rows = []
    for i in range(n):
        inline = "\n".join([question(i), *options(i)])
        rows.append(
            {
                "problem_id": i,
                "problem": inline,
                "data_type": "video",
                "problem_type": ["temporal", "goal", "spatial", "plot"][i % 4],
                "reasoning": f"Checking the video, the action at part {i} settles it.",
                "videos": f"videos/long{i}.mp4",
                "answer": f"<answer>{'ABCD'[i % 4]}</answer>",
            }
        )
    return rows


def tw_grpo_rows(n: int, *, unnegated: int = 0) -> list[dict[str, Any]]:
    """TW-GRPO's NExT-GQA rows after question-answer inversion, in the layout of its release
    (../shared/real-data/twgrpo_nextgqa_val_raw.json: id, video, question, options "(A) text",
    duration, glue, type, answer "(A),(C)", problem with "A text" lines, solution, is_negated):
    "what didn't" questions whose answers are every option but the original one. The first
    `unnegated` rows keep the original question while their labels are inverted anyway
    (upstream's silent bug), with is_negated false."""
    rows = []
    for i in range(n):
        texts = [o.split(". ", 1)[1] for o in options(i)]
        original = i % 4
        letters = [chr(65 + j) for j in range(4) if j != original]
        text = question(i)
        if i >= unnegated:
            text = text.replace("What does the", "What doesn't the")
        rows.append(
            {
                "id": f"{4800000000 + i}_{i % 5}",
                "video": f"/NExTQA/videos/{4800000000 + i}.mp4",
                "question": text,
                "options": [f"({chr(65 + j)}) {t}" for j, t in enumerate(texts)],
                "duration": 60,
                "glue": [[1.5 + i % 7, 9.0 + i % 7]],
                "type": ["CW", "TN", "CH", "TC"][i % 4],
                "answer": ",".join(f"({letter})" for letter in letters),
                "problem": "\n".join([text, *(f"{chr(65 + j)} {t}" for j, t in enumerate(texts))]),
                "solution": f"<answer>{','.join(letters)}</answer>",
                "is_negated": i >= unnegated,
            }
        )
    return rows


def videohallu_rows(n: int, *, null_questions: int = 0) -> list[dict[str, Any]]:
    """VideoHallu-style rows: video, question, free-form answer, category; some questions null."""
    return [
        {
            "video_name": f"hallu{i}.mp4",
            "question": None
            if i < null_questions
            else f"Is the {OBJECTS[i % 10]} in clip {i} falling upwards?",
            "answer": "No, it stays where it is." if i % 2 else "Yes, against gravity.",
            "category": "physics",
        }
        for i in range(n)
    ]


def with_copies(rows: list[dict[str, Any]], first_id: int) -> list[dict[str, Any]]:
    """`rows` and three more: an exact copy of row 2 (case and punctuation changed), a
    near-copy of row 6 (two words added), and row 8's question about another video."""
    exact = rows[2] | {"problem_id": first_id, "problem": rows[2]["problem"].upper() + "!"}
    near_text = rows[6]["problem"].replace(" after scene", " afterwards in scene")
    near = rows[6] | {"problem_id": first_id + 1, "problem": near_text}
    other_video = rows[8] | {"problem_id": first_id + 2, "path": "./videos/elsewhere.mp4"}
    return rows + [exact, near, other_video]


def write(path: Path, rows: list[dict[str, Any]]) -> Path:
    """Rows as .json (a list), .jsonl or .csv (null cells empty), by the file name."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".json":
        path.write_text(json.dumps(rows))
    elif path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    elif path.suffix == ".csv":
        with path.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    else:
        raise ValueError(path)
    return path
