"""GRPO on CPU: the loss moves log-probs the right way, a tiny Qwen2-VL learns a trivial task,
runs resume, configs load. Models are random-init and built in the test: nothing is downloaded."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

torch = pytest.importorskip("torch", reason="the GRPO tests need the train extra: pip install -e '.[train]'")
pytest.importorskip("transformers", reason="the GRPO tests need the train extra: pip install -e '.[train]'")

from vdata.record import Record, to_table
from vdata.synth.cuts import write_shots_video
from vdata.trainers.config import ConfigError, GRPOConfig
from vdata.trainers.grpo import aggregate, clipped_policy_loss, group_advantages, k3_kl
from vdata.trainers.random_init import TINY_QWEN2_VL, word_tokenizer
from vdata.trainers.train import train

WORDS = ["A", "B", "C", "D", "Which", "letter", "red", "blue", "green", "gray"]


def letter_dataset(root: Path, videos: int = 4) -> Path:
    """A vdata dataset whose every question has answer B: trivially learnable."""
    (root / "videos").mkdir(parents=True)
    rows = []
    for i in range(videos):
        write_shots_video(root / "videos" / f"v{i}.mp4", [1.0], size=(56, 56), seed=i)
        rows.append(
            Record(
                recipe="test@1",
                path=f"videos/v{i}.mp4",
                problem="Which letter?",
                problem_type="multiple choice",
                options=["A. red", "B. blue", "C. green", "D. gray"],
                solution="<answer>B</answer>",
                split="rl",
            )
        )
    (root / "data").mkdir()
    pq.write_table(to_table(rows), root / "data" / "rl-00000-of-00001.parquet")
    return root


def tiny_config(tmp_path: Path, **overrides) -> GRPOConfig:
    if not (tmp_path / "tok").exists():
        word_tokenizer(WORDS, tmp_path / "tok")
    if not (tmp_path / "data").exists():
        letter_dataset(tmp_path / "data")
    values = dict(
        data=str(tmp_path / "data"),
        out=str(tmp_path / "run"),
        model_spec=TINY_QWEN2_VL,
        tokenizer=str(tmp_path / "tok"),
        frames=4,
        max_pixels=56 * 56,
        prompts_per_step=4,
        group_size=8,
        max_new_tokens=1,
        lr=2e-2,
        steps=3,
        tolerant_letters=True,
        seed=0,
    )
    return GRPOConfig(**{**values, **overrides})


def text_lm(tmp_path: Path, words: list[str] = WORDS, **generation) -> Path:
    """A random-init Qwen2 causal LM over `words`, saved with a generation config that carries
    `generation` (e.g. a repetition penalty), as checkpoints on the Hub do."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    tokenizer = word_tokenizer(words, tmp_path / "lm")
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(config)
    for key, value in generation.items():
        setattr(model.generation_config, key, value)
    model.save_pretrained(tmp_path / "lm")
    return tmp_path / "lm"


def text_rows(n: int) -> list[dict]:
    """Video-R1 rows whose answer is B, for text-only policies (the path is never read)."""
    return [
        {
            "problem_id": i,
            "problem": "Which letter?",
            "data_type": "video",
            "problem_type": "multiple choice",
            "options": ["A. red", "B. blue"],
            "solution": "<answer>B</answer>",
            "path": f"v{i}.mp4",
        }
        for i in range(n)
    ]


def text_run(tmp_path: Path, model: Path | str, rows: list[dict], **overrides) -> GRPOConfig:
    """A one-step run config of a text-only policy on `rows` (written to tmp_path/rows.json)."""
    (tmp_path / "rows.json").write_text(json.dumps(rows))
    values = dict(
        data=str(tmp_path / "rows.json"),
        split="",
        model=str(model),
        out=str(tmp_path / "run"),
        prompts_per_step=2,
        group_size=4,
        max_new_tokens=2,
        steps=1,
    )
    return GRPOConfig(**{**values, **overrides})


def test_group_advantages_with_and_without_std():
    rewards = torch.tensor([1.0, 0.0, 0.0, 1.0])
    assert torch.allclose(group_advantages(rewards, scale=False), torch.tensor([0.5, -0.5, -0.5, 0.5]))
    scaled = group_advantages(rewards)
    assert torch.allclose(scaled, torch.tensor([0.5, -0.5, -0.5, 0.5]) / rewards.std(), atol=1e-5)
    assert torch.all(group_advantages(torch.ones(4)) == 0)


def test_clip_low_and_high_and_k3():
    logp = torch.log(torch.tensor([[1.5, 0.5]]))
    old = torch.zeros(1, 2)
    loss, clipped = clipped_policy_loss(logp, old, torch.tensor([1.0]), clip_low=0.2, clip_high=0.28)
    assert torch.allclose(loss, torch.tensor([[-1.28, -0.5]])) and clipped.tolist() == [[1.0, 0.0]]
    loss, clipped = clipped_policy_loss(logp, old, torch.tensor([-1.0]), clip_low=0.2, clip_high=0.28)
    assert torch.allclose(loss, torch.tensor([[1.5, 0.8]])) and clipped.tolist() == [[0.0, 1.0]]
    assert torch.allclose(k3_kl(torch.zeros(3), torch.zeros(3)), torch.zeros(3))
    assert bool((k3_kl(torch.tensor([0.0, -1.0]), torch.tensor([-1.0, 0.0])) > 0).all())


def test_aggregation_modes():
    values = torch.tensor([[1.0, 1.0, 1.0], [4.0, 0.0, 0.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]])
    assert aggregate(values, mask, "token-mean", (4.0, 2.0)).item() == pytest.approx(7 / 4)
    assert aggregate(values, mask, "seq-mean-token-mean", (4.0, 2.0)).item() == pytest.approx((1 + 4) / 2)


def test_the_loss_moves_log_probs_with_the_sign_of_the_advantage(tmp_path):
    from vdata.trainers.policy import load_policy

    config = tiny_config(tmp_path)
    for sign in (1.0, -1.0):
        policy = load_policy(config)
        row = {
            "problem": "Which letter?",
            "problem_type": "multiple choice",
            "options": ["A. red", "B. blue"],
        }
        frames = torch.randint(0, 255, (4, 56, 56, 3), dtype=torch.uint8).numpy()
        prompt = policy.prompt(row, frames)
        responses = torch.tensor([[policy.tokenizer.convert_tokens_to_ids("B")]])
        before, _ = policy.log_probs(prompt, responses)
        loss, _ = clipped_policy_loss(
            before, before.detach(), torch.tensor([sign]), clip_low=0.2, clip_high=0.2
        )
        loss.mean().backward()
        torch.optim.SGD(policy.model.parameters(), lr=0.1).step()
        after, _ = policy.log_probs(prompt, responses)
        assert (after.item() - before.item()) * sign > 0, (sign, before.item(), after.item())


def test_training_log_probs_equal_the_samplers_with_left_padding(tmp_path):
    """Rollout and training must see the same sequence (video first, same positions): the
    log-probs recomputed for training equal the sampler's, for a short prompt padded on the
    left beside a long one (METHODS.md: MR-SP upstream placed the video differently)."""
    from vdata.trainers.policy import load_policy

    policy = load_policy(tiny_config(tmp_path))
    frames = torch.randint(0, 255, (4, 56, 56, 3), dtype=torch.uint8).numpy()
    short = {"problem": "Which?", "problem_type": "multiple choice", "options": ["A. red", "B. blue"]}
    long = {**short, "problem": "Which letter , red or blue or green or gray , which letter ?"}
    prompts = [policy.prompt(short, frames), policy.prompt(long, frames[::-1].copy())]
    assert prompts[0].input_ids.shape[1] < prompts[1].input_ids.shape[1]
    torch.manual_seed(0)
    sampled = policy.sample(prompts, 3, max_new_tokens=4, with_logprobs=True)
    for prompt, (responses, mask, sampler_logp) in zip(prompts, sampled, strict=True):
        with torch.no_grad():
            logp, entropy = policy.log_probs(prompt, responses, entropy=True)
        on = mask.bool()
        assert torch.allclose(logp[on], sampler_logp[on], atol=1e-4), (logp[on], sampler_logp[on])
        assert torch.isfinite(entropy).all()


@pytest.mark.slow
def test_a_resumed_run_equals_an_uninterrupted_one(tmp_path):
    wide = {"prompts_per_step": 8, "group_size": 8}  # reward spread in every step: real updates
    """Two steps, stopped after the first and resumed: the second step's metrics come from the
    first's weights, and the weights it leaves from the optimizer's moments and the scheduler
    too, so the final checkpoints must match (metrics alone miss a lost optimizer state)."""
    from safetensors.torch import load_file

    whole = train(tiny_config(tmp_path, steps=2, out=str(tmp_path / "whole"), **wide), log=lambda line: None)
    train(tiny_config(tmp_path, steps=1, out=str(tmp_path / "parts"), **wide), log=lambda line: None)
    resumed = train(
        tiny_config(tmp_path, steps=2, out=str(tmp_path / "parts"), **wide), log=lambda line: None
    )
    assert [m["step"] for m in resumed.metrics] == [2]
    assert all(m["grad_norm"] > 0 for m in whole.metrics), (
        "a comparison of steps that change nothing proves nothing"
    )
    assert resumed.metrics[0]["reward_mean"] == whole.metrics[1]["reward_mean"]
    assert resumed.metrics[0]["loss"] == pytest.approx(whole.metrics[1]["loss"], rel=1e-4, abs=1e-7)
    lines = (tmp_path / "parts" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [1, 2]
    weights = {
        name: load_file(tmp_path / name / "checkpoint" / "model" / "model.safetensors")
        for name in ("whole", "parts")
    }
    assert weights["whole"].keys() == weights["parts"].keys()
    for key, tensor in weights["whole"].items():
        torch.testing.assert_close(weights["parts"][key], tensor, rtol=1e-5, atol=1e-7, msg=key)


@pytest.mark.slow
def test_variants_and_kl_run(tmp_path):
    for algorithm in ("dapo", "tw-grpo", "reg-grpo"):
        config = tiny_config(
            tmp_path, steps=1, algorithm=algorithm, out=str(tmp_path / algorithm), kl_coef=0.05
        )
        (metrics,) = train(config, log=lambda line: None).metrics
        assert "skipped" in metrics or metrics["kl"] >= 0, (algorithm, metrics)
    dapo = tiny_config(tmp_path, steps=1, algorithm="dapo", max_new_tokens=1, tolerant_letters=False)
    assert dapo.clip_high == 0.28 and dapo.dynamic_sampling
    (metrics,) = train(
        dapo.__class__(**{**dapo.to_dict(), "out": str(tmp_path / "zero")}), log=lambda line: None
    ).metrics
    # strict letters and one token: no response can be right, every group has zero variance
    assert metrics["skipped"] and "zero reward variance" in metrics["skipped"]
    assert metrics["groups_short"] == 4


@pytest.mark.slow
def test_a_text_only_causal_lm_from_a_directory(tmp_path):
    rows = text_rows(3)
    essay = {**rows[0], "problem_id": 9, "problem_type": "essay", "options": []}
    run = text_run(tmp_path, text_lm(tmp_path), rows + [essay], tolerant_letters=True)
    lines: list[str] = []
    (metrics,) = train(run, log=lines.append).metrics
    assert metrics["groups"] == 2 and metrics["response_length"] >= 1
    assert "training on 3 rows; left out, no reward for them: 1 essay" in lines[0]
    # a Hub id goes through datasets.load_dataset; here a local folder stands in for the Hub
    (tmp_path / "hub").mkdir()
    (tmp_path / "hub" / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows + [essay]))
    hub = GRPOConfig(
        **{**run.to_dict(), "data": f"hf:{tmp_path / 'hub'}", "split": "train", "out": str(tmp_path / "h")}
    )
    (metrics,) = train(hub, log=lambda line: None).metrics
    assert metrics["groups"] == 2


def test_config_from_yaml_with_overrides_and_clear_errors(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model: some/model\nsteps: 5\nalgorithm: dapo\n")
    config = GRPOConfig.load(path, ["steps=7", "lr=1e-5", "scale_rewards=false"])
    assert (config.steps, config.lr, config.scale_rewards, config.clip_high) == (7, 1e-5, False, 0.28)
    with pytest.raises(ConfigError, match="unknown setting 'stpes' \\(did you mean 'steps'\\?\\)"):
        GRPOConfig.load(path, ["stpes=3"])
    with pytest.raises(ConfigError, match="algorithm 'ppo'"):
        GRPOConfig.load(path, ["algorithm=ppo"])
    with pytest.raises(ConfigError, match="not key=value"):
        GRPOConfig.load(path, ["steps"])


def test_an_unreadable_video_stops_the_run_naming_the_row(tmp_path):
    config = tiny_config(tmp_path, steps=1)
    (tmp_path / "data" / "videos" / "v0.mp4").write_bytes(b"not a video")
    (tmp_path / "data" / "videos" / "v1.mp4").write_bytes(b"not a video")
    (tmp_path / "data" / "videos" / "v2.mp4").write_bytes(b"not a video")
    (tmp_path / "data" / "videos" / "v3.mp4").write_bytes(b"not a video")
    with pytest.raises(ConfigError, match="fix or filter the row"):
        train(config, log=lambda line: None)


@pytest.mark.slow
def test_the_train_command_runs_a_config_with_overrides(tmp_path):
    import yaml

    from test_cli import vdata_cli

    config = tiny_config(tmp_path)
    (tmp_path / "run.yaml").write_text(yaml.safe_dump({**config.to_dict(), "steps": 5}))
    result = vdata_cli("train", "grpo", "--config", str(tmp_path / "run.yaml"), "steps=1", "group_size=4")
    assert result.returncode == 0, result.stderr
    assert "1 steps; metrics:" in result.stdout and "step 1: reward" in result.stderr
    (line,) = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert json.loads(line)["step"] == 1
    bad = vdata_cli("train", "grpo", "--config", str(tmp_path / "run.yaml"), "group_size=1")
    assert bad.returncode == 2 and "group_size 1" in bad.stderr
    missing = vdata_cli("train", "grpo", "--config", str(tmp_path / "nope.yaml"))
    assert missing.returncode == 2 and "nope.yaml: no such file" in missing.stderr


def test_tensorboard_logs_or_names_the_missing_package(tmp_path):
    config = tiny_config(tmp_path, steps=1, tensorboard=True)
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        with pytest.raises(ConfigError, match="pip install tensorboard"):
            train(config, log=lambda line: None)
        return
    train(config, log=lambda line: None)
    assert list((tmp_path / "run" / "tensorboard").glob("events.out.tfevents.*"))


def test_training_data_with_unreadable_lines_is_refused_not_thinned(tmp_path):
    from vdata.trainers.train import load_training_data

    good = {
        "problem": "Which?",
        "problem_type": "multiple choice",
        "options": ["A. x", "B. y"],
        "solution": "<answer>B</answer>",
        "path": "v.mp4",
        "data_type": "video",
    }
    (tmp_path / "rows.jsonl").write_text(json.dumps(good) + "\n{broken\n")
    config = GRPOConfig(data=str(tmp_path / "rows.jsonl"), split="", model="unused")
    with pytest.raises(ConfigError, match="1 lines or rows cannot be read; `vdata audit"):
        load_training_data(config)


def test_a_curriculum_reads_real_rows_before_counterexamples(tmp_path):
    # rows of stage 1 come first in the file; with curriculum: true the sampled prompts of the
    # first steps are all stage 0, then stage 1; without it the two are mixed
    def dataset(rows: list[Record]) -> str:
        folder = tmp_path / f"data{len(list(tmp_path.glob('data*')))}"
        (folder / "data").mkdir(parents=True)
        pq.write_table(to_table(rows), folder / "data" / "rl-00000-of-00001.parquet")
        return str(folder)

    rows = [
        Record(
            recipe="test@1",
            path=f"v{i}.mp4",
            problem=f"Which letter? stage {1 if i < 4 else 0} row {i}",
            problem_type="multiple choice",
            options=["A. red", "B. blue"],
            solution="<answer>B</answer>",
            split="rl",
            meta_json=json.dumps({"curriculum_stage": 1 if i < 4 else 0}),
        )
        for i in range(8)
    ]
    model = text_lm(tmp_path)
    order = {}
    for curriculum in (True, False):
        run = text_run(
            tmp_path,
            model,
            [],
            data=dataset(rows),
            split="rl",
            out=str(tmp_path / f"run-{curriculum}"),
            steps=4,
            prompts_per_step=2,
            log_samples=2,
            curriculum=curriculum,
            tolerant_letters=True,
        )
        train(run, log=lambda line: None)
        samples = [json.loads(line) for line in (tmp_path / f"run-{curriculum}" / "samples.jsonl").open()]
        order[curriculum] = [int(s["question"].split("stage ")[1][0]) for s in samples]
    assert order[True] == [0, 0, 0, 0, 1, 1, 1, 1]
    assert order[False] != sorted(order[False])
    rows[0].meta_json = "{}"
    data = dataset(rows)
    bad = text_run(tmp_path, model, [], data=data, split="rl", out=str(tmp_path / "bad"), curriculum=True)
    with pytest.raises(ConfigError, match="curriculum_stage on every row"):
        train(bad, log=lambda line: None)


def test_a_text_policy_reads_the_evidence_notes_and_answers_after_the_prefix(tmp_path):
    """A policy that reads no video gets the row's evidence notes before its question (the
    difficulty filter's text), and the response prefix opens every answer the reward reads."""
    from vdata.trainers.policy import load_policy
    from vdata.trainers.prompts import NOTES_HEADER, described_question, question_text
    from vdata.trainers.rewards import RewardConfig, reward

    row = {**text_rows(1)[0], "evidence": [{"start_s": 1.0, "end_s": 2.0, "text": "blue"}]}
    config = text_run(tmp_path, text_lm(tmp_path), [row], response_prefix="<answer>")
    policy = load_policy(config)
    assert described_question(row) == f"{NOTES_HEADER}\n[1.0s-2.0s] blue\n\n{question_text(row)}"
    bare = load_policy(GRPOConfig(**{**config.to_dict(), "describe": False, "response_prefix": ""}))
    with_notes = bare.chat_prompt(described_question(row)).input_ids[0].tolist()
    prompt = policy.prompt(row).input_ids[0].tolist()
    assert len(prompt) > len(with_notes) and prompt[: len(with_notes)] == with_notes  # then the prefix
    assert (
        bare.prompt(row).input_ids[0].tolist() == bare.chat_prompt(question_text(row)).input_ids[0].tolist()
    )
    ids = torch.tensor([policy.tokenizer("B", add_special_tokens=False).input_ids])
    (text,) = policy.decode(ids, torch.ones_like(ids))
    assert text == "<answer>B"
    # an answer the prefix opened and EOS ended is read when tolerant, never when strict
    assert reward(text, row, RewardConfig(tolerant_letters=True)).accuracy == 1.0
    assert reward(text, row, RewardConfig()).accuracy == 0.0
    (metrics,) = train(config, log=lambda line: None).metrics  # prompts_per_step 2 of one row
    assert metrics["groups"] == 2


def test_the_evaluation_draws_the_same_noise_for_runs_of_one_seed(tmp_path):
    """Two evaluations of one model at one seed and step, in a process whose random state moved
    in between (two variants of an ablation run one after another, or a resumed run): the
    same sampled answers (the eval samples are seeded by seed and step, not by what ran
    before). The score here is a function of the answer's text, so any other draw shows."""
    from types import SimpleNamespace

    from vdata.trainers.policy import load_policy
    from vdata.trainers.train import evaluate

    rows = text_rows(4)
    config = text_run(tmp_path, text_lm(tmp_path), rows, max_new_tokens=3, eval_temperature=1.0)
    policy = load_policy(config)
    texts: list[str] = []

    def score(text, row):
        texts.append(text)
        value = (sum(map(ord, text)) % 7) / 6
        return SimpleNamespace(accuracy=value, total=value)

    first = evaluate(policy, rows, lambda row: None, score, config, step=3)
    seen = list(texts)
    torch.rand(1000)
    texts.clear()
    assert evaluate(policy, rows, lambda row: None, score, config, step=3) == first and texts == seen
    texts.clear()
    evaluate(policy, rows, lambda row: None, score, config, step=4)
    assert texts != seen  # another step draws other samples
