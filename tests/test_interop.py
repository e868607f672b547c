"""Each export read by the code of the trainer it names, as far as that code runs here.

For every format: the trainer's own loading (verl's RLHFDataset and LLaMA-Factory's dataset
loader and Qwen2-VL plugin, installed from PyPI; EasyR1's, Long-RL's, Video-R1's, TW-GRPO's and
VST's, which are not on PyPI, written here after their published code, cited at each), then a
real Qwen2-VL processor and model on the sample (one video part per video; the model itself
checks that the video tokens match the video features), then the trainer's reward: 1.0 for a
response with the right answer, 0.0 for a wrong one.

What cannot run here, and why: the trainers decode videos with qwen-vl-utils and process frames
with transformers' Qwen2-VL video processor, both of which need torchvision, which has no build
beside the CPU torch this machine runs; tests/consumers.py stands in for those two (frames by
vdata's sampler, patches in the processor's layout), and LLaMA-Factory's audio import
(torchaudio, the same reason) is stubbed: no row here has audio. Nothing else is replaced.
"""

from __future__ import annotations

import copy
import importlib.machinery
import json
import re
import sys
import types
from pathlib import Path

import datasets
import pyarrow.parquet as pq
import pytest

pytest.importorskip("torch", reason="the processor and model need the train extra")
mathruler = pytest.importorskip("mathruler.grader", reason="the interop extra (.ci/run installs it)")

from vdata.cards.exports import export
from vdata.formats import load_rows
from vdata.record import Record, solution_answer

from conftest import VALID_ROW
from consumers import decode, model_accepts, tiny_model, tiny_processor, video_tokens, words_of
from videos import make_video

ANSWER = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """A real 4 s video and rows about it: a choice question, a multi-answer one, a numerical
    one and a streaming one; a processor and a model that know their words."""
    folder = tmp_path_factory.mktemp("interop")
    (folder / "videos").mkdir()
    make_video(folder / "videos" / "kitchen.mp4", [2.0, 2.0], seed=0)
    base = copy.deepcopy(VALID_ROW)
    base["video"]["duration_s"], base["segment"] = 4.0, {"start_s": 0.0, "end_s": 4.0}
    base["evidence"] = [{"start_s": 1.0, "end_s": 2.0, "text": "opens the fridge"}]
    multi = {**copy.deepcopy(base), "problem_type": "multi-answer", "solution": "<answer>A,C</answer>"}
    number = {
        **copy.deepcopy(base),
        "problem_type": "numerical",
        "options": [],
        "solution": "<answer>3</answer>",
    }
    number["problem"] = "How many times does the fridge open?"
    stream = {
        **copy.deepcopy(base),
        "problem_type": "free-form",
        "options": [],
        "solution": "<answer>milk</answer>",
    }
    stream["stream"] = {
        "text_stream": [{"start_s": 0.0, "end_s": 2.0, "text": "A person walks to the fridge."}],
        "qa_stream": [{"start_s": 2.0, "end_s": 3.0, "question": "What comes out?", "answer": "milk"}],
    }
    stream["problem"] = "What comes out?"
    rows = [Record(**{**r, "id": ""}).to_row() for r in (base, multi, number, stream)]
    texts = [r["problem"] + " " + " ".join(r["options"]) for r in rows] + [
        "A conversation Question Options answer think reasoning process here tags letter single option "
        "Please provide only the numerical value within Output thinking final select letters separated "
        "by if multiple Time s walks comes out milk person fridge"
    ]
    processor = tiny_processor(words_of(*texts), folder / "tokenizer")
    return folder, rows, processor, tiny_model(processor)


def accepts(item_text: str, video_paths: list[Path], processor, model) -> int:
    """The prompt and its videos through the processor and one forward of the model; the
    number of video tokens the prompt carries."""
    inputs = processor(text=[item_text], videos=[decode(p) for p in video_paths] or None, return_tensors="pt")
    model_accepts(model, inputs, processor)
    return video_tokens(inputs, processor)


def video_parts(messages: list[dict]) -> list[dict]:
    return [
        p
        for m in messages
        if isinstance(m["content"], list)
        for p in m["content"]
        if p.get("type") == "video"
    ]


def gold(row: dict) -> str:
    return solution_answer(row["solution"]) or ""


def wrong(row: dict) -> str:
    """An answer that is not the row's: another letter, another number."""
    answer = gold(row)
    return {"B": "A", "A,C": "B,D", "3": "4"}.get(answer, "nothing")


# ---------------------------------------------------------------- EasyR1 and Long-RL


def easyr1_messages(prompt: str, format_prompt: str) -> list[dict]:
    """EasyR1's user turn (hiyouga/EasyR1 verl/utils/dataset.py, RLHFDataset._build_messages, its
    video branch, @b44b311): the prompt rendered through the format prompt (jinja, `content`),
    split at each <video>, a video part where each placeholder was."""
    from jinja2 import Template

    text = Template(format_prompt.strip()).render(content=prompt)
    content: list[dict] = []
    for i, piece in enumerate(text.split("<video>")):
        if i:
            content.append({"type": "video"})
        if piece:
            content.append({"type": "text", "text": piece})
    return [{"role": "user", "content": content}]


def r1v_accuracy(response: str, ground_truth: str, squeeze: bool = False) -> float:
    """The r1v reward's accuracy (EasyR1 examples/reward_function/r1v.py @b44b311; Long-RL's copy
    @97abc84 first removes spaces and newlines from the response): the response's <answer>
    content (or the whole response) graded against the ground truth by mathruler."""
    text = response.replace("\n", "").replace(" ", "") if squeeze else response
    found = ANSWER.search(text)
    given = found.group(1).strip() if found else response.strip()
    return 1.0 if mathruler.grade_answer(given, ground_truth.strip()) else 0.0


def test_easyr1_gets_one_video_part_per_video_and_its_reward_grades_the_answer(data, tmp_path):
    folder, rows, processor, model = data
    out = tmp_path / "easyr1.jsonl"
    report = export(rows, "easyr1", out)
    assert "r1v" in report.reward
    loaded = datasets.load_dataset("json", data_files=str(out), split="train")  # EasyR1 loads it so
    format_prompt = "{{ content | trim }} Think inside <think> </think>, answer inside <answer> </answer>."
    for item, row in zip(loaded, rows, strict=True):
        messages = easyr1_messages(item["problem"], format_prompt)
        assert len(video_parts(messages)) == len(item["videos"]) == 1, item["problem"]
        text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        assert accepts(text, [folder / v for v in item["videos"]], processor, model) > 0
        right = f"<think>I watched it.</think><answer>{gold(row)}</answer>"
        assert r1v_accuracy(right, item["answer"]) == 1.0, (item["answer"], row["solution"])
        assert r1v_accuracy(f"<think>x</think><answer>{wrong(row)}</answer>", item["answer"]) == 0.0


def long_rl_messages(example: dict) -> list[dict]:
    """Long-RL's user turn for a Qwen model (NVlabs/Long-RL verl/utils/dataset.py,
    RLHFDataset._build_messages, its video branch, @97abc84): `videos` must be one path (the
    loader asserts it), the video part first, then the question inside its own template."""
    video = example["videos"]
    assert isinstance(video, str), "Only support video path input"  # Long-RL's own assertion
    question = f"Think about the video first, then answer. Question: {example['problem']}"
    return [
        {"role": "user", "content": [{"type": "video", "video": video}, {"type": "text", "text": question}]}
    ]


def test_long_rl_reads_one_path_and_its_reward_grades_the_answer(data, tmp_path):
    folder, rows, processor, model = data
    out = tmp_path / "long_rl.jsonl"
    export(rows, "long-rl", out)
    for item, row in zip(
        datasets.load_dataset("json", data_files=str(out), split="train"), rows, strict=True
    ):
        messages = long_rl_messages(item)
        assert "<video>" not in item["problem"]  # the loader adds the video itself
        text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        assert accepts(text, [folder / item["videos"]], processor, model) > 0
        truth = item["answer"]  # Long-RL keeps what is inside <answer> when the answer has the tags
        truth = ANSWER.search(truth).group(1) if "<answer>" in truth else truth
        right = f"<think>so</think>\n<answer> {gold(row)} </answer>"
        assert r1v_accuracy(right, truth, squeeze=True) == 1.0
        assert r1v_accuracy(f"<answer>{wrong(row)}</answer>", truth, squeeze=True) == 0.0


# ---------------------------------------------------------------- verl


def test_verl_rlhf_dataset_builds_the_video_parts_and_the_custom_reward_grades(data, tmp_path):
    verl_dataset = pytest.importorskip("verl.utils.dataset.rl_dataset", reason="the interop extra")
    from omegaconf import OmegaConf
    from verl.trainer.ppo.reward import get_custom_reward_fn

    folder, rows, processor, model = data
    out = folder / "verl.parquet"  # beside the video: the rows' paths are relative to the data
    report = export(rows, "verl", out)
    assert "verl_compute_score" in report.reward
    config = OmegaConf.create({"filter_overlong_prompts": False, "cache_dir": str(tmp_path / "cache")})
    dataset = verl_dataset.RLHFDataset(str(out), processor.tokenizer, config, processor=processor)
    score = get_custom_reward_fn(  # verl's own loading of a custom reward, as its trainer does
        OmegaConf.create(
            {
                "reward": {
                    "custom_reward_function": {
                        "path": "pkg://vdata.trainers.rewards",
                        "name": "verl_compute_score",
                    }
                }
            }
        )
    )
    for index, row in enumerate(rows):
        item = dataset[index]
        parts = video_parts(item["raw_prompt"])
        assert len(parts) == 1 and parts[0]["fps"] > 0 and parts[0]["max_frames"] > 0
        text = processor.apply_chat_template(item["raw_prompt"], add_generation_prompt=True, tokenize=False)
        assert accepts(text, [folder / p["video"] for p in parts], processor, model) > 0
        truth, extra = item["reward_model"]["ground_truth"], item["extra_info"]
        right = score(
            data_source=item["data_source"],
            solution_str=f"<think>seen</think><answer>{gold(row)}</answer>",
            ground_truth=truth,
            extra_info=extra,
        )
        bad = score(
            data_source=item["data_source"],
            solution_str=f"<think>seen</think><answer>{wrong(row)}</answer>",
            ground_truth=truth,
            extra_info=extra,
        )
        assert (right["acc"], bad["acc"]) == (1.0, 0.0), (row["problem_type"], truth)


# ---------------------------------------------------------------- LLaMA-Factory


@pytest.fixture
def llamafactory(monkeypatch):
    """LLaMA-Factory's data package, imported as its trainer imports it: its version check is
    off (its pins name transformers <= 5.6; the train extra has a newer one, whose data path it
    uses unchanged), and its audio import (torchaudio: no build beside the CPU torch) stubbed."""
    monkeypatch.setenv("DISABLE_VERSION_CHECK", "1")
    stub = types.ModuleType("torchaudio")
    stub.__spec__ = importlib.machinery.ModuleSpec("torchaudio", None)
    monkeypatch.setitem(sys.modules, "torchaudio", sys.modules.get("torchaudio", stub))
    return pytest.importorskip("llamafactory.data.loader", reason="the interop extra (.ci/run installs it)")


def test_llamafactory_finds_the_export_by_name_and_its_qwen2_vl_plugin_takes_the_video(
    data, llamafactory, tmp_path
):
    from llamafactory.data import get_template_and_fix_tokenizer
    from llamafactory.hparams import DataArguments, ModelArguments
    from transformers import Seq2SeqTrainingArguments

    folder, rows, processor, model = data
    out = tmp_path / "sft.json"
    sft_rows = [{**r, "path": str(folder / r["path"])} for r in rows]  # where the trainer finds them
    report = export(sft_rows, "llamafactory", out, allow_unsafe_paths=True)
    assert report.also == [str(tmp_path / "dataset_info.json")]  # what llamafactory-cli looks up
    data_args = DataArguments(template="qwen2_vl", dataset="sft", dataset_dir=str(tmp_path), cutoff_len=4096)
    template = get_template_and_fix_tokenizer(processor.tokenizer, data_args)
    module = llamafactory.get_dataset(
        template,
        ModelArguments(model_name_or_path=str(folder / "tokenizer")),
        data_args,
        Seq2SeqTrainingArguments(output_dir=str(tmp_path / "run"), report_to=[]),
        stage="sft",
        tokenizer=processor.tokenizer,
        processor=processor,
    )
    train = module["train_dataset"]
    assert len(train) == len(rows)
    for item, row in zip(train, rows, strict=True):
        assert len(item["videos"]) == 1
        mm = template.mm_plugin.get_mm_inputs(
            images=[], videos=item["videos"], audios=[], imglens=[0], vidlens=[1], audlens=[0],
            batch_ids=[item["input_ids"]], processor=processor,
        )  # fmt: skip
        model_accepts(model, {"input_ids": item["input_ids"], **mm}, processor)
        assert video_tokens({"input_ids": item["input_ids"]}, processor) > 0
        target = processor.tokenizer.decode([t for t in item["labels"] if t >= 0])
        assert f"<answer>{gold(row)}</answer>" in target.replace(" ", "")  # SFT's target is the answer


# ---------------------------------------------------------------- Video-R1 and TW-GRPO


def video_r1_prompt(example: dict) -> list[dict]:
    """Video-R1's user turn (tulerfeng/Video-R1 src/r1-v/src/open_r1/grpo.py,
    make_conversation_image_and_video, @59d65c3): a part of the row's data_type, then the question
    (with "Options:" and the option lines for a choice question) in its template, followed by the
    instruction of the row's problem_type, looked up in its table of five types."""
    type_templates = {
        "multiple choice": " Please provide only the option letter within the <answer> </answer> tags.",
        "numerical": " Please provide the numerical value within the <answer> </answer> tags.",
        "OCR": " Please provide your text answer within the <answer> </answer> tags.",
        "free-form": " Please provide your text answer within the <answer> </answer> tags.",
        "regression": " Please provide the numerical value within the <answer> </answer> tags.",
    }
    question = example["problem"]
    if example["problem_type"] == "multiple choice":
        question += "Options:\n" + "".join(option + "\n" for option in example["options"])
    text = (
        f"{question} Output the thinking process in <think> </think> tags."
        + type_templates[example["problem_type"]]
    )
    return [{"role": "user", "content": [{"type": example["data_type"]}, {"type": "text", "text": text}]}]


def video_r1_accuracy(response: str, solution: str, problem_type: str) -> float:
    """Video-R1's accuracy reward (grpo.py, accuracy_reward) for the types here: the exact letter
    for a choice question; a number equal to 2 decimals, written with a decimal point only if
    the solution's is."""
    pattern = re.compile(r"<answer>\s*(.*?)\s*</answer>", re.DOTALL)

    def inside(text: str) -> str:
        found = pattern.search(text)
        return found.group(1).strip() if found else ""

    output, truth = inside(response), inside(solution)
    if problem_type != "numerical":
        return 1.0 if output == truth else 0.0
    if ("." in truth or "," in truth) != ("." in output or "," in output):
        return 0.0
    try:
        same = round(float(truth.replace(",", "")), 2) == round(float(output.replace(",", "")), 2)
    except ValueError:
        return 0.0
    return 1.0 if same else 0.0


def test_video_r1_prompts_and_rewards_every_row_it_is_given_and_reads_back(data, tmp_path):
    folder, rows, processor, model = data
    out = folder / "video_r1.json"  # its paths are "./..." under the data root
    report = export(rows, "video-r1", out)
    assert [r["id"] for r in report.not_expressed] == [rows[1]["id"]]  # multi-answer: no prompt there
    given = [r for r in rows if r["problem_type"] != "multi-answer"]
    loaded = datasets.load_dataset("json", data_files=str(out), split="train")
    for item, row in zip(loaded, given, strict=True):
        messages = video_r1_prompt(item)  # a KeyError here is Video-R1's dataset.map failing
        video = folder / item["path"][2:]  # Video-R1 joins its data root and the path after "./"
        text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        assert accepts(text, [video], processor, model) > 0
        right = f"<think>so</think><answer>{gold(row)}</answer>"
        assert video_r1_accuracy(right, item["solution"], item["problem_type"]) == 1.0
        assert (
            video_r1_accuracy(f"<answer>{wrong(row)}</answer>", item["solution"], item["problem_type"]) == 0.0
        )
    back = load_rows(out)
    fields = ("problem", "problem_type", "options", "solution")
    assert [{f: r[f] for f in fields} for r in back.rows] == [{f: r[f] for f in fields} for r in given]


def tw_grpo_accuracy(response: str, solution: str) -> float:
    """TW-GRPO's accuracy reward, its string part (longmalongma/TW-GRPO src/open_r1/grpo.py,
    accuracy_reward, @aa529ff): the letter sets of the response's and the solution's <answer>;
    a subset of the truth earns |answer| / |truth|, anything else 0."""

    def letters(text: str) -> set[str]:
        found = ANSWER.search(text)
        inside = found.group(1) if found else text
        return set(inside.replace(" ", "").split(","))

    truth, answer = letters(solution), letters(response)
    return len(answer) / len(truth) if answer <= truth else 0.0


def test_tw_grpo_reads_its_problem_and_video_and_its_reward_gives_partial_credit(data, tmp_path):
    folder, rows, processor, model = data
    out = folder / "tw.json"
    export(rows, "tw-grpo", out)
    choice = [r for r in rows if r["options"]]
    loaded = datasets.load_dataset("json", data_files=str(out), split="train")  # Dataset.from_json
    for item, row in zip(loaded, choice, strict=True):
        text = f"{item['problem']}  Think in <think> </think>, then answer in <answer> </answer>."
        messages = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": text}]}]
        prompt = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        assert accepts(prompt, [folder / item["video"]], processor, model) > 0
        assert tw_grpo_accuracy(f"<answer>{gold(row)}</answer>", item["solution"]) == 1.0
        assert tw_grpo_accuracy(f"<answer>{wrong(row)}</answer>", item["solution"]) == 0.0
    multi = next(item for item in loaded if "," in item["solution"])
    assert tw_grpo_accuracy("<answer>A</answer>", multi["solution"]) == 0.5  # one of two: half
    back = load_rows(out)
    assert [(r["problem"], r["options"], r["solution"]) for r in back.rows] == [
        (r["problem"], r["options"], r["solution"]) for r in choice
    ]


# ---------------------------------------------------------------- VST


def vst_conversations(path: Path) -> list[list[dict]]:
    """VST-SFT's reading (1ranGuan/VST VST-SFT/streaming_vlm/data/lmm_dataset.py, LMMDataset,
    @b6f4490): the seek index STEM_seeks.jsonl beside the JSONL file, a JSON list of offsets;
    each conversation the one line at its offset."""
    seeks = json.loads(path.with_name(f"{path.stem}_seeks.jsonl").read_text())
    conversations = []
    with path.open() as handle:
        for seek in seeks:
            handle.seek(seek)
            conversations.append(json.loads(handle.readline()))
    return conversations


def test_vst_sft_seeks_and_streams_and_vst_rl_reads_its_rows(data, tmp_path):
    folder, rows, processor, model = data
    out = folder / "vst.jsonl"
    report = export(rows, "vst", out)
    assert len(report.not_expressed) == len(rows) - 1
    (conversation,) = vst_conversations(out)
    user, assistant = conversation  # LMMDataset.preprocess_conversation_stream unpacks these...
    video, query = user["content"]  # ...and a video part, then a query part
    streams = assistant["content"][0]
    assert {"video", "video_start", "video_end"} <= set(video) and video["video_end"] == 4.0
    assert streams["text_stream"] == [[0.0, 2.0, "A person walks to the fridge."]]
    # a question is asked in the clip whose window holds its end time (qa[1]), as VST plays it
    question_clip = [s for s in (0.0, 2.0) if s < streams["qa_stream"][0][1] <= s + 2.0]
    assert question_clip == [2.0] and streams["qa_stream"][0][2:] == ["What comes out?", "milk"]
    clip = f"Time=2.0-4.0s {streams['qa_stream'][0][2]}"
    messages = [{"role": "user", "content": [{"type": "text", "text": clip}, {"type": "video"}]}]
    prompt = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert accepts(prompt, [folder / video["video"]], processor, model) > 0
    # VST-RL (VST-RL/recurrent/impls/video_memory.py, VideoMemoryDataset.__getitem__): text it
    # tokenizes as `prompt` and `question`, one path as `video_context`, the duration and index
    (rl,) = pq.read_table(folder / "vst-rl.parquet").to_pylist()
    assert isinstance(rl["prompt"], str) and isinstance(rl["question"], str) and rl["question"]
    assert isinstance(rl["video_context"], str) and (folder / rl["video_context"]).is_file()
    assert rl["extra_info"]["duration"] == 4.0 and rl["extra_info"]["index"] is not None
    assert rl["reward_model"]["ground_truth"] == "milk"
    (back,) = load_rows(out).rows  # vdata reads VST's layout back with the same labels
    assert back["stream"] == rows[-1]["stream"] and back["solution"] == rows[-1]["solution"]
    assert back["problem"] == rows[-1]["problem"] and back["path"] == rows[-1]["path"]
