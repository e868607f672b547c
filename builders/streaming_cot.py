"""Streaming chain-of-thought from a video knowledge graph (VST, Video Streaming Thinking).

The recipe, as stages (METHODS.md):
  ingest    probe the videos; bad files become rejects
  segment   scene clips (bounded length), fixed clips, or the clips of an imported captions file
  group     one row per video with its clips in time order
  extract   the clips stream through a sliding window of `window` clips; per new clip the
            annotator is shown the entity bank so far and adds entities and
            subject-relation-object events (no pronouns); the bank is saved after every clip,
            so a resumed run continues the stream where it stopped. `--annotator synth-truth`
            reads the events of a `vdata synth` world instead (an oracle)
  clean     entity names normalised and merged (the same name after normalising; near-identical
            names by the packaged MiniLM's embeddings), on-screen text dropped; every merge kept
  graph     a networkx graph per video: nodes are time-stamped events, edges join events that
            share an entity; written as node-link JSON (DIR/graphs/)
  chains    seeded DFS evidence chains of 3-6 nodes; chains of one video share less than
            `max_overlap` of their entities (Jaccard); rejected candidates counted
  qa        per chain the writer asks a question that needs several of its nodes; the answer's
            times come from the nodes, the entry is placed when the last needed node is seen
  thoughts  per clip the writer writes one short incremental thought from the bank's events up
            to the clip's end only, never the question (query-agnostic; `--query-aware` shows
            the video's questions, as VST's released data does, and the card says so)
  filter    format and repetition by rule; future information by a rule over times (a thought
            naming an entity first seen after its clip ends); world-knowledge leak and logical
            consistency by the judge; with `--policy`, filters' blind check too (the policy
            answers each question without the video; a pass rate guessing cannot explain is a leak)
  record    one row per question: `stream` = the thoughts up to the question and the question
  split     by video

The bank, the graph and the chains are data, not prompts: the times of every thought and
answer come from the clips and nodes, never from the model's text.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import os
import re
import statistics
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, Field, create_model, model_validator

from vdata.annotators.stage import AnnotationStage, for_each_row, stage_output
from vdata.builders import build as build_recipe
from vdata.captions import CaptionsError, captions_of, imported_clips
from vdata.clips import SplitConfig, probe_row, segment_row
from vdata.filters.models import Sampling, blind_stage
from vdata.filters.splits import split_by_video
from vdata.prompts import Prompts, fill
from vdata.recipe import Prepared, Recipe, Role
from vdata.record import answer_tag, record_id, row_meta
from vdata.report import counts
from vdata.runstore import RunStore, atomic_write_bytes
from vdata.segment import discover_videos
from vdata.settings import Settings
from vdata.stages import STAGE_ERROR, DatasetStage, MapStage, Reject, ShardStage, StageContext, StageOutput
from vdata.usage import Usage, UsageLedger

RECIPE_ID = "streaming-cot@1"
PRONOUNS = {"it", "he", "she", "they", "them", "him", "her", "this", "that", "someone", "something"}
ON_SCREEN_TEXT = re.compile(r"\b(text|caption|title|subtitle|logo|watermark|shot \d+)\b", re.I)
_ARTICLES = re.compile(r"^(the|a|an)\s+", re.I)
_TIMESTAMP = re.compile(r"\b\d+(\.\d+)?\s?(s|sec|seconds)\b|\b\d{1,2}:\d{2}\b")


class StreamingCoTPrompts(Prompts):
    """What the recipe asks its models; each a template (vdata.prompts) with today's text as default."""

    extract: str = Field(
        "You are watching a video as a stream. The newest clip runs from {start}s to "
        "{end}s. Entities seen so far: {known}.\n"
        "List the events of the newest clip only, as subject, relation, object and a short description. "
        "Use an entity's known name when it is the same thing; name new ones by what they look like. "
        "Any physical relation counts (moves, hits, enters, leaves, passes behind, changes colour), not "
        "only human actions. Never use pronouns (it, he, she, they) as a subject or object. "
        "At most 6 events.",
        description="The annotator's rules, after the window's clips (frames or captions): the newest clip's "
        "{start} and {end} seconds, the entities {known} so far.",
    )
    question: str = Field(
        "Events seen in a video, in time order:\n{events}\n\nWrite one question about the video that "
        "can only be answered by combining at least two of these events (not by any one alone, and not "
        "from general knowledge), its short answer, and the numbers of the events it needs. Do not put "
        "times in the question.",
        description="The writer's request for a chain's question: its {events}, numbered.",
    )
    thought: str = Field(
        "You are thinking while you watch a video. Earlier: {earlier}.\nJust now: {now}.\n"
        "Your last thought: {previous}\n"
        "Write your next thought in one or two sentences: what changed just now and what it means. Do "
        "not repeat your last thought, do not give times, and say nothing about what has not happened yet.",
        description="The writer's request for a clip's thought: the events {earlier} and {now}, the "
        "{previous} thought (with --query-aware, the questions follow).",
    )
    judge: str = Field(
        "Events seen in a video:\n{events}\n\nQuestion: {question}\nAnswer: {answer}\n"
        "Could someone answer this question correctly without the video, from general knowledge "
        "alone? Does the answer follow from the events?",
        description="The judge's request: the chain's {events}, the {question} and its {answer}.",
    )


_DEFAULTS = StreamingCoTPrompts()


class StreamingCoTConfig(Settings):
    """Everything a run depends on; loadable from YAML, overridable by flags."""

    videos: list[str] = Field(description="Video files or folders (repeatable).")
    out: str = Field(description="Run directory; rerun to resume.")
    captions: str | None = Field(
        None,
        description="Clip captions (JSONL: video, start_s, end_s, caption): a text annotator reads them.",
    )
    annotator_from_truth: bool = Field(
        False, description="A vdata synth world's recorded events as the annotator (--annotator synth-truth)."
    )
    window: int = Field(4, ge=1, description="Clips in the sliding window.")
    chains_per_video: int = Field(3, ge=1, description="Evidence chains per video.")
    max_overlap: float = Field(
        0.1, ge=0, le=1, description="Entity overlap (Jaccard) allowed between a video's chains."
    )
    min_nodes: int = Field(3, ge=2, description="Events in a chain at least.")
    max_nodes: int = Field(6, ge=2, description="Events in a chain at most.")
    query_aware: bool = Field(
        False, description="Show the questions to the thoughts (VST's released data; off by default)."
    )
    scenes: bool = Field(True, description="Scene clips (off when --clip-seconds is given).")
    clip_seconds: float = Field(10.0, gt=0, description="Fixed clips of this length instead of scenes.")
    max_clip_seconds: float = Field(20.0, gt=0, description="Scene clips longer than this are cut.")
    ask_judge: bool = Field(
        True,
        description="Ask the judge about leaks and consistency (--judge none: rules only, said in the card).",
    )
    blind_samples: int = Field(
        0, ge=0, description="Blind answers per question by the policy (4 when --policy is given; 0: off)."
    )
    eval_fraction: float = Field(0.0, ge=0, lt=1, description="Share of videos held out.")
    seed: int = Field(0, description="Seed for chains, splits and sampling.")
    max_tokens: int = Field(300, description="Reply length at most, in tokens.")
    prompts: StreamingCoTPrompts = Field(
        default_factory=StreamingCoTPrompts,
        description="The prompts, each a text or a .txt file (YAML: prompts: {thought: my.txt}).",
    )

    @model_validator(mode="before")
    @classmethod
    def _fixed_clips(cls, values: Any) -> Any:
        """A clip length given and scenes not mentioned: fixed clips of that length."""
        if isinstance(values, Mapping) and values.get("clip_seconds") is not None and "scenes" not in values:
            return {**values, "scenes": False}
        return values

    def inputs(self) -> list[tuple[str, Any]]:
        return [*(("--videos", v) for v in self.videos), ("--captions", self.captions)]


# ---------------------------------------------------------------- the bank


def normal_name(name: str) -> str:
    """'The Red  Circle' -> 'red circle'."""
    return _ARTICLES.sub("", " ".join(str(name).lower().split())).strip(" .,;:")


class Event(BaseModel):
    subject: Annotated[str, Field(min_length=1, max_length=60)]
    relation: Annotated[str, Field(min_length=1, max_length=40)]
    object: Annotated[str, Field(max_length=60)] = ""
    description: Annotated[str, Field(max_length=200)] = ""


class Extraction(BaseModel):
    events: Annotated[list[Event], Field(max_length=6)]


def truth_events(video: str, start: float, end: float) -> list[dict[str, Any]]:
    """The events a `vdata synth` world recorded in [start, end): the oracle annotator."""
    from vdata.synth.questions import event_phrase
    from vdata.synth.truth import load_truth, relation
    from vdata.synth.world import Event as WorldEvent

    path = Path(video)
    truth_file = path.parent.parent / "truth" / f"{path.stem}.json"
    if not truth_file.is_file():
        raise ValueError(f"{video}: no synth truth at {truth_file} (--annotator synth-truth reads it)")
    truth = load_truth(str(truth_file))
    out = []
    for event in truth["events"] + truth["violations"]:
        if start <= event["start_s"] < end:
            subject, verb, obj, _, _ = relation(WorldEvent(**event))
            out.append(
                {
                    "subject": subject,
                    "relation": verb,
                    "object": obj or "",
                    "description": event_phrase(event),
                }
            )
    return out


def extraction_prompt(
    clips: list[dict[str, Any]],
    index: int,
    bank: dict[str, Any],
    window: int,
    template: str = _DEFAULTS.extract,
) -> list[dict]:
    """The new clip in its window, what the bank knows, and the rules."""
    from vdata.annotators.messages import video_segment

    clip = clips[index]
    known = ", ".join(sorted(bank["entities"])) or "none yet"
    rules = fill(template, start=f"{clip['start_s']:.1f}", end=f"{clip['end_s']:.1f}", known=known)
    earlier = clips[max(0, index - window + 1) : index + 1]
    if all(c.get("caption") for c in earlier):
        told = "\n".join(
            f"[{c['start_s']:.1f}s-{c['end_s']:.1f}s]{' (newest)' if c is clip else ''} {c['caption']}"
            for c in earlier
        )
        return [{"role": "user", "content": f"Descriptions of the clips in the window:\n{told}\n\n{rules}"}]
    parts: list[dict[str, Any]] = []
    for c in earlier:
        parts.append({"type": "text", "text": f"Clip {c['start_s']:.1f}s-{c['end_s']:.1f}s:"})
        parts.append(video_segment(c["video"], c["start_s"], c["end_s"], max_frames=4))
    return [{"role": "user", "content": [*parts, {"type": "text", "text": rules}]}]


def add_events(bank: dict[str, Any], clip: dict[str, Any], events: list[dict[str, Any]]) -> int:
    """The clip's events into the bank with the clip's times; pronoun events are dropped (counted)."""
    dropped = 0
    for event in events:
        subject, obj = event["subject"].strip(), (event.get("object") or "").strip()
        if normal_name(subject) in PRONOUNS or normal_name(obj) in PRONOUNS:
            dropped += 1
            continue
        bank["events"].append(
            {
                "id": len(bank["events"]),
                "subject": subject,
                "relation": event["relation"].strip(),
                "object": obj,
                "description": event.get("description", "").strip(),
                "start_s": clip["start_s"],
                "end_s": clip["end_s"],
                "clip": clip["clip_index"],
            }
        )
        for name in (subject, obj):
            if name and name not in bank["entities"]:
                bank["entities"].append(name)
    bank["dropped_pronouns"] = bank.get("dropped_pronouns", 0) + dropped
    return dropped


async def _extract_video(
    row: dict[str, Any], client: Any, *, window: int, from_truth: bool, folder: Path, sampling, template: str
):
    """Streams one video's clips through the annotator, saving the bank after every clip."""
    clips = json.loads(row["clips"])
    # one bank per video file: two copies of one video are two streams (the path is in the key)
    key = hashlib.sha256(f"{row['video']}|{row['sha256']}".encode()).hexdigest()[:24]
    bank_file = folder / f"{key}.json"
    fresh = {"video": row["video"], "sha256": row["sha256"], "entities": [], "events": [], "done": 0}
    bank = json.loads(bank_file.read_text()) if bank_file.is_file() else fresh
    for index in range(bank["done"], len(clips)):
        clip = clips[index]
        if from_truth:
            events = truth_events(clip["video"], clip["start_s"], clip["end_s"])
        else:
            reply = await client.chat(
                extraction_prompt(clips, index, bank, window, template), response_model=Extraction, **sampling
            )
            if not reply.ok:
                return Reject(reply.reason, f"clip {index} ({clip['start_s']:.1f}s): {reply.error}")
            events = [e.model_dump() for e in reply.value.events]
        add_events(bank, clip, events)
        bank["done"] = index + 1
        atomic_write_bytes(bank_file, json.dumps(bank, ensure_ascii=False).encode())
    if not bank["events"]:
        return Reject("no_events", f"{row['video']}: the annotator found no event in {len(clips)} clips")
    return {**row, "bank": json.dumps(bank, ensure_ascii=False)}


def _per_video(work, role: str | None):
    """A shard function that runs `work(row, client)` for every video row (one client of `role`)."""

    work = _guarded(work)

    def run(rows: list[dict[str, Any]], ctx: StageContext) -> StageOutput:
        if role is None:
            return stage_output(rows, asyncio.run(_all(rows, lambda row: work(row, None, ctx))))
        usage = Usage(
            UsageLedger(RunStore(ctx.run_dir).usage_log, invocation=ctx.invocation, stage=ctx.stage)
        )
        pool = ctx.resources["models"]
        results = asyncio.run(for_each_row(pool, role, rows, ctx, usage, lambda row, c: work(row, c, ctx)))
        return stage_output(rows, results)

    return run


async def _all(rows, one):
    return [await one(row) for row in rows]


def _guarded(work):
    """work(row, client, ctx), with an exception as the row's `stage_error` reject (one video
    that cannot be read must not end the stage for the others)."""

    async def run(row, client, ctx):
        try:
            return await work(row, client, ctx)
        except Exception as exc:
            return Reject(STAGE_ERROR, f"{row.get('video')}: {type(exc).__name__}: {exc}")

    return run


def extract_stage(config: StreamingCoTConfig) -> Any:
    sampling = {"temperature": 0.0, "max_tokens": config.max_tokens, "seed": config.seed}
    settings = {"window": config.window, "from_truth": config.annotator_from_truth, "sampling": sampling}
    if not config.annotator_from_truth:
        settings["prompt"] = config.prompts.extract
    key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]

    async def work(row, client, ctx):
        folder = Path(ctx.run_dir) / "banks" / key
        folder.mkdir(parents=True, exist_ok=True)
        return await _extract_video(
            row,
            client,
            window=config.window,
            from_truth=config.annotator_from_truth,
            folder=folder,
            sampling=sampling,
            template=config.prompts.extract,
        )

    if config.annotator_from_truth:
        return ShardStage("extract", _per_video(work, None), config=settings)
    return AnnotationStage("extract", _per_video(work, "annotator"), config=settings, role="annotator")


# ---------------------------------------------------------------- clean, graph, chains


def clean_bank(row: dict[str, Any], ctx: StageContext, *, threshold: float = 0.92) -> dict[str, Any] | Reject:
    """Entity names merged (the same after normalising, then near-identical embeddings) and
    on-screen text dropped; the events renamed to the kept names; every merge recorded."""
    bank = json.loads(row["bank"])
    names = list(dict.fromkeys(n for e in bank["events"] for n in (e["subject"], e["object"]) if n))
    canonical: dict[str, str] = {}
    merges: list[list[str]] = []
    by_normal: dict[str, str] = {}
    for name in names:
        key = normal_name(name)
        if key in by_normal and by_normal[key] != name:
            merges.append([name, by_normal[key], "same name"])
        canonical[name] = by_normal.setdefault(key, name)
    kept = list(dict.fromkeys(canonical.values()))
    embedded = "not run"
    if len(kept) > 1:
        try:
            from vdata.embeddings import sentence_embeddings

            vectors = sentence_embeddings([normal_name(k) for k in kept])
            embedded = "run"
            for i in range(len(kept)):
                for j in range(i):
                    if float(vectors[i] @ vectors[j]) >= threshold and _root(canonical, kept[j]) != kept[i]:
                        merges.append(
                            [
                                kept[i],
                                _root(canonical, kept[j]),
                                f"embedding {float(vectors[i] @ vectors[j]):.2f}",
                            ]
                        )
                        for name, target in list(canonical.items()):
                            if target == kept[i]:
                                canonical[name] = _root(canonical, kept[j])
                        break
        except RuntimeError:
            embedded = "not run (no embed extra)"
    dropped = [n for n in kept if ON_SCREEN_TEXT.search(n)]
    events = []
    for event in bank["events"]:
        subject, obj = (
            canonical.get(event["subject"], event["subject"]),
            canonical.get(event["object"], event["object"]),
        )
        if subject in dropped or obj in dropped:
            continue
        events.append({**event, "subject": subject, "object": obj})
    if not events:
        return Reject("no_events", f"{row['video']}: no event left after cleaning")
    cleaned = {
        "entities": sorted({n for e in events for n in (e["subject"], e["object"]) if n}),
        "events": events,
    }
    report = {"merges": merges, "dropped_text_entities": dropped, "embedding_merge": embedded}
    return {**row, "bank": json.dumps(cleaned, ensure_ascii=False), "clean": json.dumps(report)}


def _root(canonical: dict[str, str], name: str) -> str:
    seen = set()
    while canonical.get(name, name) != name and name not in seen:
        seen.add(name)
        name = canonical[name]
    return name


def event_graph(events: list[dict[str, Any]]):
    """Nodes are events (with their times); an edge joins two events that share an entity, and
    consecutive events of one entity are marked `next`."""
    import networkx as nx

    graph = nx.Graph()
    for event in events:
        graph.add_node(event["id"], **event)
    by_entity: dict[str, list[dict[str, Any]]] = {}
    for event in events:
        for name in {event["subject"], event["object"]} - {""}:
            by_entity.setdefault(name, []).append(event)
    for name, members in by_entity.items():
        members.sort(key=lambda e: (e["start_s"], e["id"]))
        for i, a in enumerate(members):
            for b in members[i + 1 :]:
                graph.add_edge(a["id"], b["id"], entity=name, next=b is members[i + 1])
    return graph


def graph_row(row: dict[str, Any], ctx: StageContext) -> dict[str, Any]:
    """The video's graph as node-link JSON under DIR/graphs/, named in the row."""
    import networkx as nx

    graph = event_graph(json.loads(row["bank"])["events"])
    relative = f"graphs/{Path(row['video']).stem}-{row['sha256'][:8]}.json"
    data = nx.node_link_data(graph, edges="edges")
    atomic_write_bytes(
        Path(ctx.run_dir) / relative, json.dumps(data, ensure_ascii=False, default=str).encode()
    )
    return {**row, "graph": relative}


def entities_of(events: list[dict[str, Any]]) -> set[str]:
    return {n for e in events for n in (e["subject"], e["object"]) if n}


def jaccard(a: set[str], b: set[str]) -> float:
    return len(a & b) / len(a | b) if a | b else 0.0


def sample_chains(
    events: list[dict[str, Any]], rng: Any, *, count: int, min_nodes: int, max_nodes: int, max_overlap: float
) -> tuple[list[list[dict[str, Any]]], int]:
    """Seeded DFS walks forward in time from random starts; a chain is kept when its entities
    overlap every kept chain's by less than `max_overlap` (Jaccard). Returns the chains and the
    number of candidates rejected for overlap."""
    graph = event_graph(events)
    starts = sorted(graph.nodes)
    rng.shuffle(starts)
    chains: list[list[dict[str, Any]]] = []
    rejected = 0
    for start in starts:
        if len(chains) >= count:
            break
        path = _dfs(graph, [start], rng.randint(min_nodes, max_nodes))
        if len(path) < min_nodes:
            continue
        nodes = [graph.nodes[n] for n in path]
        names = entities_of(nodes)
        if any(jaccard(names, entities_of(c)) >= max_overlap for c in chains):
            rejected += 1
            continue
        chains.append(nodes)
    return chains, rejected


def _dfs(graph: Any, path: list[int], length: int) -> list[int]:
    """The longest path up to `length` nodes from path[-1], each node later (or as late) than the last."""
    if len(path) == length:
        return path
    best = path
    here = graph.nodes[path[-1]]
    for nxt in sorted(graph.neighbors(path[-1])):
        there = graph.nodes[nxt]
        if nxt in path or (there["start_s"], nxt) < (here["start_s"], path[-1]):
            continue
        found = _dfs(graph, [*path, nxt], length)
        if len(found) > len(best):
            best = found
        if len(best) == length:
            break
    return best


def chains_row(
    row: dict[str, Any], ctx: StageContext, *, config: StreamingCoTConfig
) -> dict[str, Any] | Reject:
    events = json.loads(row["bank"])["events"]
    chains, rejected = sample_chains(
        events,
        ctx.rng("chains", row["sha256"]),
        count=config.chains_per_video,
        min_nodes=config.min_nodes,
        max_nodes=config.max_nodes,
        max_overlap=config.max_overlap,
    )
    if not chains:
        return Reject("no_chain", f"{row['video']}: no chain of {config.min_nodes}+ linked events")
    return {
        **row,
        "chains": json.dumps({"chains": [[n["id"] for n in c] for c in chains], "rejected": rejected}),
    }


# ---------------------------------------------------------------- questions and thoughts


def qa_schema(n_nodes: int) -> type[BaseModel]:
    return create_model(
        "ChainQuestion",
        question=(Annotated[str, Field(min_length=10, max_length=300)], ...),
        answer=(Annotated[str, Field(min_length=1, max_length=200)], ...),
        nodes_used=(
            Annotated[list[Annotated[int, Field(ge=1, le=n_nodes)]], Field(min_length=2, max_length=n_nodes)],
            ...,
        ),
    )


def qa_prompt(nodes: list[dict[str, Any]], template: str = _DEFAULTS.question) -> list[dict[str, Any]]:
    listed = "\n".join(f"{i}. {_event_text(n)}" for i, n in enumerate(nodes, 1))
    return [{"role": "user", "content": fill(template, events=listed)}]


def _event_text(event: Mapping[str, Any]) -> str:
    words = " ".join(w for w in (event["subject"], event["relation"], event["object"]) if w)
    return words + (f" ({event['description']})" if event.get("description") else "")


class Thought(BaseModel):
    thought: Annotated[str, Field(min_length=5, max_length=300)]


def thought_prompt(
    clip: dict[str, Any],
    seen: list[dict[str, Any]],
    previous: str,
    questions: list[str],
    template: str = _DEFAULTS.thought,
) -> list[dict]:
    now = [e for e in seen if e["clip"] == clip["clip_index"]]
    before = [e for e in seen if e["clip"] != clip["clip_index"]][-8:]
    text = fill(
        template,
        earlier="; ".join(_event_text(e) for e in before) or "nothing yet",
        now="; ".join(_event_text(e) for e in now) or "nothing new",
        previous=previous or "none",
    )
    if questions:
        text += "\nQuestions you will be asked: " + " ".join(questions)
    return [{"role": "user", "content": text}]


def writer_stage(config: StreamingCoTConfig) -> Any:
    """Per video: the chain questions, then one thought per clip (each sees only what happened
    by its clip's end; with `query_aware`, the video's questions too)."""
    sampling = {"temperature": 0.0, "max_tokens": config.max_tokens, "seed": config.seed}

    async def work(row, client, ctx):
        events = {e["id"]: e for e in json.loads(row["bank"])["events"]}
        chains = json.loads(row["chains"])["chains"]
        qas, problems = [], []
        for chain_index, ids in enumerate(chains):
            nodes = [events[i] for i in ids]
            reply = await client.chat(
                qa_prompt(nodes, config.prompts.question), response_model=qa_schema(len(nodes)), **sampling
            )
            if not reply.ok:
                problems.append(f"chain {chain_index}: {reply.reason}: {reply.error}")
                continue
            used = sorted({nodes[i - 1]["id"] for i in reply.value.nodes_used})
            needed = [events[i] for i in used]
            qas.append(
                {
                    "chain": chain_index,
                    "nodes": ids,
                    "used": used,
                    "question": reply.value.question.strip(),
                    "answer": reply.value.answer.strip(),
                    "start_s": max(e["end_s"] for e in needed),  # asked once the last evidence is seen
                    "end_s": max(e["end_s"] for e in needed),
                }
            )
        if not qas:
            return Reject("no_question", "; ".join(problems)[:500])
        clips = json.loads(row["clips"])
        thoughts, previous = [], ""
        asked = [q["question"] for q in qas] if config.query_aware else []
        for clip in clips:
            seen = [e for e in events.values() if e["end_s"] <= clip["end_s"] + 1e-6]
            reply = await client.chat(
                thought_prompt(clip, seen, previous, asked, config.prompts.thought),
                response_model=Thought,
                **sampling,
            )
            if not reply.ok:
                return Reject(reply.reason, f"thought for clip {clip['clip_index']}: {reply.error}")
            previous = reply.value.thought.strip()
            thoughts.append({"start_s": clip["start_s"], "end_s": clip["end_s"], "text": previous})
        return {**row, "qas": json.dumps(qas), "thoughts": json.dumps(thoughts)}

    settings = {
        "sampling": sampling,
        "query_aware": config.query_aware,
        "prompt": {"question": config.prompts.question, "thought": config.prompts.thought},
    }
    return AnnotationStage("write", _per_video(work, "writer"), config=settings, role="writer")


# ---------------------------------------------------------------- filter


class Verdict(BaseModel):
    answerable_without_video: bool
    answer_follows_from_events: bool


def future_mentions(thought: dict[str, Any], events: list[dict[str, Any]]) -> list[str]:
    """Entities a thought names that the bank first sees after the thought's clip ends."""
    first: dict[str, float] = {}
    for event in events:
        for name in (event["subject"], event["object"]):
            if name:
                first[name] = min(first.get(name, event["start_s"]), event["start_s"])
    text = normal_name(thought["text"])
    return sorted(
        name
        for name, at in first.items()
        if at >= thought["end_s"] - 1e-6 and len(normal_name(name)) > 2 and normal_name(name) in text
    )


def trigram_overlap(a: str, b: str) -> float:
    grams = lambda t: {tuple(t[i : i + 3]) for i in range(len(t) - 2)}  # noqa: E731
    x, y = grams(a.lower().split()), grams(b.lower().split())
    return len(x & y) / min(len(x), len(y)) if x and y else 0.0


def rule_checks(row: dict[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[str]]:
    """(thoughts kept, questions kept, what was dropped and why) by rule: timestamps in a thought,
    a thought repeating the last one, a thought naming what it has not seen yet; a question
    whose times lie outside its chain."""
    events = json.loads(row["bank"])["events"]
    by_id = {e["id"]: e for e in events}
    thoughts, dropped = [], []
    for thought in json.loads(row["thoughts"]):
        future = future_mentions(thought, events)
        if future:
            dropped.append(f"future_information {thought['start_s']:.1f}s: {', '.join(future)}")
        elif _TIMESTAMP.search(thought["text"]):
            dropped.append(f"format {thought['start_s']:.1f}s: a timestamp in the thought")
        elif thoughts and trigram_overlap(thought["text"], thoughts[-1]["text"]) > 0.5:
            dropped.append(f"repetition {thought['start_s']:.1f}s")
        else:
            thoughts.append(thought)
    qas = []
    for qa in json.loads(row["qas"]):
        chain = [by_id[i] for i in qa["nodes"]]
        inside = min(e["start_s"] for e in chain) <= qa["start_s"] <= max(e["end_s"] for e in chain)
        if not qa["question"].rstrip().endswith("?"):
            dropped.append(f"format chain {qa['chain']}: the question does not end with '?'")
        elif not inside or len(qa["used"]) < 2:
            dropped.append(f"format chain {qa['chain']}: times outside the chain or one node")
        else:
            qas.append(qa)
    return thoughts, qas, dropped


def filter_stage(config: StreamingCoTConfig) -> Any:
    sampling = {"temperature": 0.0, "max_tokens": 80, "seed": config.seed}

    async def work(row, client, ctx):
        thoughts, qas, dropped = rule_checks(row)
        events = {e["id"]: e for e in json.loads(row["bank"])["events"]}
        kept = []
        for qa in qas:
            if client is not None:
                listed = "\n".join(_event_text(events[i]) for i in qa["nodes"])
                prompt = fill(
                    config.prompts.judge, events=listed, question=qa["question"], answer=qa["answer"]
                )
                reply = await client.chat(
                    [{"role": "user", "content": prompt}], response_model=Verdict, **sampling
                )
                if not reply.ok:
                    dropped.append(f"judge chain {qa['chain']}: {reply.reason}")
                    continue
                if reply.value.answerable_without_video:
                    dropped.append(f"world_knowledge_leak chain {qa['chain']}")
                    continue
                if not reply.value.answer_follows_from_events:
                    dropped.append(f"inconsistent chain {qa['chain']}")
                    continue
            kept.append(qa)
        if not kept or not thoughts:
            return Reject("filtered_out", "; ".join(dropped)[:800] or "no thought or question left")
        return {
            **row,
            "thoughts": json.dumps(thoughts),
            "qas": json.dumps(kept),
            "dropped": json.dumps(dropped),
        }

    settings = {"sampling": sampling, "judge": config.ask_judge}
    if config.ask_judge:
        settings["prompt"] = config.prompts.judge
    if not config.ask_judge:
        return ShardStage("filter", _per_video(work, None), config=settings)
    return AnnotationStage("filter", _per_video(work, "judge"), config=settings, role="judge")


# ---------------------------------------------------------------- records


def to_records(row: dict[str, Any], ctx: StageContext, *, query_aware: bool) -> list[dict[str, Any]]:
    events = {e["id"]: e for e in json.loads(row["bank"])["events"]}
    thoughts = json.loads(row["thoughts"])
    records = []
    for qa in json.loads(row["qas"]):
        stream = {
            "text_stream": [t for t in thoughts if t["end_s"] <= qa["start_s"] + 1e-6],
            "qa_stream": [{k: qa[k] for k in ("start_s", "end_s", "question", "answer")}],
        }
        meta = {
            "chain": qa["nodes"],
            "used": qa["used"],
            "graph": row["graph"],
            "chains_rejected_for_overlap": json.loads(row["chains"])["rejected"],
            "query_aware": query_aware,
            "clean": json.loads(row.get("clean") or "{}"),
            "dropped": json.loads(row.get("dropped") or "[]"),
            "source_video": row["video"],
        }
        record = {
            "data_type": "video",
            "path": f"videos/{Path(row['video']).name}",
            "video": {
                "sha256": row["sha256"],
                "duration_s": row["video_duration_s"],
                "fps": float(row["fps"]),
                "width": row["width"],
                "height": row["height"],
            },
            "segment": None,
            "problem": qa["question"],
            "problem_type": "free-form",
            "options": [],
            "solution": answer_tag(qa["answer"]),
            "category": "streaming",
            "process": None,
            "evidence": [
                {"start_s": events[i]["start_s"], "end_s": events[i]["end_s"], "text": _event_text(events[i])}
                for i in qa["used"]
            ],
            "stream": stream,
            "split": "",
            "data_source": "vdata-streaming-cot",
            "difficulty": None,
            "recipe": RECIPE_ID,
            "meta_json": json.dumps(meta, ensure_ascii=False),
        }
        record["id"] = record_id(RECIPE_ID, row["sha256"], qa["question"], [], None)
        records.append(record)
    return records


# ---------------------------------------------------------------- the recipe


def group_videos(rows: list[dict[str, Any]], ctx: StageContext) -> StageOutput:
    by_video: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_video.setdefault(row["video"], []).append(row)
    out = StageOutput()
    for _, clips in sorted(by_video.items()):
        clips.sort(key=lambda c: c["start_s"])
        first = clips[0]
        keep = ("video", "sha256", "video_duration_s", "fps", "width", "height")
        out.rows.append(
            {**{k: first[k] for k in keep}, "clips": json.dumps(clips, ensure_ascii=False, default=str)}
        )
    return out


def stages(run: Prepared) -> list[Any]:
    """The recipe, top to bottom."""
    config = run.config
    workers = os.cpu_count() or 1
    captions = captions_of(config.captions, run.inputs) if config.captions else None
    split_config = SplitConfig(
        mode="scene" if config.scenes else "fixed",
        clip_seconds=config.clip_seconds,
        max_clip_seconds=config.max_clip_seconds,
        workers=workers,
    )
    if captions is not None:
        segment = MapStage(
            "segment", functools.partial(imported_clips, captions=captions), config={"captions": captions}
        )
    else:
        segment = MapStage(
            "segment",
            functools.partial(segment_row, config=split_config),
            config=split_config.segment_config(),
        )
    steps: list[Any] = [
        MapStage("ingest", probe_row, workers=workers),
        segment,
        DatasetStage("group", group_videos),
        extract_stage(config),
        MapStage("clean", clean_bank),
        MapStage("graph", graph_row),
        MapStage(
            "chains",
            functools.partial(chains_row, config=config),
            config=_chain_settings(config),
            seeded=True,
        ),
        writer_stage(config),
        filter_stage(config),
        MapStage("record", functools.partial(to_records, query_aware=config.query_aware)),
        *(
            [blind_stage(Sampling(samples=config.blind_samples, max_tokens=config.max_tokens, video=False))]
            if config.blind_samples
            else []
        ),
        DatasetStage(
            "split",
            functools.partial(split_by_video, eval_fraction=config.eval_fraction, sft_share=1.0),
            config={"eval_fraction": config.eval_fraction},
            seeded=True,
        ),
    ]
    return steps


def _chain_settings(config: StreamingCoTConfig) -> dict[str, Any]:
    return {
        "count": config.chains_per_video,
        "min_nodes": config.min_nodes,
        "max_nodes": config.max_nodes,
        "max_overlap": config.max_overlap,
    }


def find_videos(config: StreamingCoTConfig) -> list[dict[str, Any]]:
    if config.min_nodes > config.max_nodes:
        raise ValueError(f"min_nodes {config.min_nodes} > max_nodes {config.max_nodes}")
    inputs = discover_videos(config.videos)
    if not inputs:
        raise ValueError(f"no videos found in {', '.join(config.videos)}")
    return inputs


def card_lines(rows: list[Any], run: Mapping[str, Any]) -> list[str]:
    """Thoughts and questions, evidence nodes per question, what the filters dropped, whether the
    thoughts saw the questions, where the graphs are."""
    metas = [(row, meta) for row in rows if "chain" in (meta := row_meta(row)) and "query_aware" in meta]
    if not metas:
        return []
    thoughts = [len((row.get("stream") or {}).get("text_stream") or []) for row, _ in metas]
    used = Counter(len(m["used"]) for _, m in metas)
    videos = {m["graph"]: m for _, m in metas}  # a video's bank and filter report, once
    dropped = Counter(d.split(" ")[0] for m in videos.values() for d in m["dropped"])
    merges = sum(len(m["clean"].get("merges", [])) for m in videos.values())
    overlapping = sum(m.get("chains_rejected_for_overlap", 0) for m in videos.values())
    aware = any(m["query_aware"] for _, m in metas)
    return [
        f"Streaming: {len(metas)} questions about {len(videos)} videos; thoughts "
        f"before each question: median {statistics.median(thoughts):.0f}; evidence nodes a question needs: "
        f"{counts(used)}; entity merges {merges}; chain candidates rejected for sharing entities "
        f"{overlapping}; dropped by the filters: {counts(dropped) or 'nothing'}.",
        "",
        "Thoughts: query-aware (`--query-aware`): each thought was written knowing the video's questions, as "
        "VST's released data was; a model at inference does not see them."
        if aware
        else "Thoughts: query-agnostic. Each was written from the events seen by its clip's end, never from "
        "the question, as the model meets the stream at inference.",
        "",
        "Leaks (questions answerable without the video): "
        + (
            "the judge's verdict, and filters' blind check (the policy answered each question "
            "without the video)."
            if "blind" in {s["name"] for s in (run or {}).get("stages", [])}
            else "the judge's verdict only (no `--policy`: the blind check did not run)."
        ),
        "",
        "Graphs: one node-link JSON per video in the run's `graphs/` folder (`meta_json.graph`).",
        "",
    ]


RECIPE = Recipe(
    name="streaming-cot",
    version=1,
    summary="a knowledge graph per video, evidence chains, one thought per clip, multi-hop questions",
    paper="Video Streaming Thinking: VideoLLMs Can Watch and Think Simultaneously (VST)",
    config=StreamingCoTConfig,
    inputs=find_videos,
    stages=stages,
    splits=lambda config: ["sft"] + (["eval"] if config.eval_fraction else []),
    roles=(
        Role("writer", "Writes the questions and the streaming thoughts."),
        Role(
            "annotator",
            "Extracts entities and events per clip (a VLM; a text model with --captions; synth-truth: a "
            "vdata synth world's recorded events, an oracle).",
            used=lambda config: not config.annotator_from_truth,
            vision=lambda config: not config.captions,
            oracle=("synth-truth", "annotator_from_truth"),
        ),
        Role(
            "judge",
            "Checks leaks and consistency (none: rules only, said in the card).",
            used=lambda config: config.ask_judge,
            none="ask_judge",
        ),
        Role(
            "policy",
            "Answers each question without the video, 4 times (filters' blind check; off without it).",
            used=lambda config: config.blind_samples > 0,
            given={"blind_samples": 4},
        ),
    ),
    help="""Streaming chain-of-thought (VST): a knowledge graph per video, evidence chains, one thought
    per clip, multi-hop questions.

    Stages: ingest, segment (scenes, or --clip-seconds, or the --captions clips), group, extract
    (sliding window; the bank saved after every clip), clean (merge entities, drop on-screen text),
    graph (DIR/graphs/*.json), chains (DFS, under --max-overlap), write (questions, then thoughts that
    see only the past), filter (rules, and the judge), record, blind (with --policy), split.
    """,
    shard_rows=8,
    card=card_lines,
    summary_lines=lambda rows, run, store: [line for line in card_lines(rows, run) if line],
    limitations=(
        "Questions and reasoning are written by models from captions; checks reject malformed rows, "
        "but a kept row can still be wrong.",
    ),
    provenance=lambda config: {
        "problem": "write",
        "solution": "write",
        "stream": "write",
        "evidence": "source: the vdata synth world's recorded events (--annotator synth-truth)"
        if config.annotator_from_truth
        else "extract",
        "video": "source: the input video (probed)",
    },
    errors=(CaptionsError,),
)
build = functools.partial(build_recipe, RECIPE)  # build(config, endpoints, **options)
