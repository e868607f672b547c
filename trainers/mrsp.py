"""MR-SP for the GRPO trainer (Long-RL's multi-modal sequence parallelism; ../shared/MRSP.md).

Four pieces, each exact against the plain path (tests/test_mrsp.py):

1. Stage 1, encode once. A video's temporal patches are split over the sequence-parallel
   ranks (contiguous, uneven counts allowed), each rank runs the vision tower on its own
   patches, and the merged tokens are all-gathered in rank order. Qwen-VL's vision tower is
   frame-local (one attention segment per temporal patch, spatial-only rotary positions),
   so the gathered tokens equal the whole video's. They serve the whole step: the rollout
   and the old, reference and update forwards (`cache_video`). The vision tower is frozen
   then; with `train_vision` the update encodes again, with gradients through the gather.
2. The rollout from the cached tokens: one prompt at a time, its prompt prefilled once and
   its key/value cache repeated for the G responses (instead of G prefills), decoded by
   our own loop with explicit positions (the reference rule of trainers/positions.py; no
   position is ever derived from transformers' rope deltas), group_size / sp responses
   per rank, gathered in rank order.
3. Stage 2, Ulysses. In the long forwards each rank holds one contiguous, equal shard of
   the sequence [prompt | response] (right-padded to a multiple of sp); an attention
   function registered with transformers' AttentionInterface (on the language model only)
   exchanges the shards for head groups by an all-to-all, runs causal SDPA over the whole
   sequence, and exchanges back; both exchanges are autograd functions whose backward is
   the inverse exchange. Each rank computes logits only at the response positions of its
   shard; the log-probs are assembled on every rank (the backward returns each rank its own
   part), every rank computes the same loss, and the parameter gradients are summed over
   the ranks before clipping, so the replicas stay identical (checked by a checksum).
4. Shared prefix (`shared_prefix`): a forward packs [prompt | r1 | ... | rK], each response
   attending to the one prompt and causally to itself, so the long prompt is computed once
   per forward instead of once per response; it composes with Ulysses (the layout is
   applied after the exchange, over the whole sequence). On by default with cache_video:
   3.4x faster steps than one forward per response at 512 frames on an H200.

Launch with torchrun (README: "Long videos: MR-SP"): one process per rank, `sp` ranks.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from vdata.trainers.video_inputs import VideoInputs

ATTENTION = "vdata_ulysses"  # the name registered with transformers' AttentionInterface

# the benchmark's clocks (microseconds of encode, prefill, decode and all-to-all, kept only
# while TIMED is on: timing synchronises the GPU) and the number of all-to-all exchanges
STATS: Counter = Counter()
TIMED = {"on": False}


@dataclass(frozen=True)
class SPGroup:
    """This process's place in a sequence-parallel group (size 1: no parallelism)."""

    rank: int = 0
    size: int = 1
    group: Any = None  # a torch.distributed process group; None: the default (world) group

    @classmethod
    def world(cls) -> SPGroup:
        """The whole torch.distributed world as one group (torchrun), or size 1 without it."""
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()):
            return cls()
        return cls(dist.get_rank(), dist.get_world_size())


def _clock(device: Any = None) -> float:
    """perf_counter, after the GPU's queued work when the counters are timed."""
    if TIMED["on"] and torch.cuda.is_available():
        torch.cuda.synchronize(device)
    return time.perf_counter()


# ---------------------------------------------------------------- setup


def valid_sp_sizes(heads: int, kv_heads: int) -> list[int]:
    """The sequence-parallel sizes Ulysses attention can split: the query heads divide evenly,
    and the KV heads either divide evenly or are replicated to `size` (size a multiple of them)."""
    return [n for n in range(1, heads + 1) if heads % n == 0 and (kv_heads % n == 0 or n % kv_heads == 0)]


def check_heads(text_config: Any, size: int) -> None:
    """Refuses a sequence-parallel size the language model's heads cannot be split over,
    naming the sizes that work."""
    heads = text_config.num_attention_heads
    kv_heads = getattr(text_config, "num_key_value_heads", None) or heads
    valid = valid_sp_sizes(heads, kv_heads)
    if size not in valid:
        raise ValueError(
            f"sp={size}: the language model's {heads} attention heads ({kv_heads} key/value heads) cannot "
            f"be split over {size} ranks; sp can be {', '.join(map(str, valid))}"
        )


def start(size: int, device: str) -> tuple[SPGroup, str]:
    """The sequence-parallel group of a run of `size` ranks, and this rank's device. Under
    torchrun (or in a test that made the process group) the world is the group; size 1 is no
    parallelism and needs no launcher."""
    if size == 1:
        return SPGroup(), device
    import torch.distributed as dist

    if not dist.is_initialized():
        if "WORLD_SIZE" not in os.environ:
            raise ValueError(
                f"sp={size} runs one process per rank: launch with "
                f"`torchrun --nproc-per-node {size} -m vdata train grpo ...`"
            )
        use_cuda = torch.cuda.is_available() and device != "cpu"
        dist.init_process_group("nccl" if use_cuda else "gloo")
    world = dist.get_world_size()
    if world != size:
        raise ValueError(
            f"sp={size} but {world} processes were started; sequence parallelism uses every process "
            f"(torchrun --nproc-per-node {size}); data parallelism beside it is not supported"
        )
    if torch.cuda.is_available() and device != "cpu":
        local = int(os.environ.get("LOCAL_RANK", dist.get_rank()))
        torch.cuda.set_device(local)
        device = f"cuda:{local}"
    return SPGroup(dist.get_rank(), world), device


def finish() -> None:
    """Ends this process's group, if there is one: every rank waits for the others (none leaves
    while another still sends to it), then the group is torn down. A group left to the
    interpreter's exit can abort the process ("terminate called without an active exception")."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def enable(model: Any, sp: SPGroup) -> None:
    """Puts Ulysses attention on the language model (the vision tower keeps its own), after
    checking that its heads can be split over `sp`."""
    config = _text_config(model)
    check_heads(config, sp.size)
    _register()
    config._attn_implementation = ATTENTION


def _text_config(model: Any) -> Any:
    """The language model's config (the text config of a vision-language model)."""
    config = _base(model).config
    return getattr(config, "text_config", None) or config


def _register() -> None:
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(ATTENTION, ulysses_attention)
    AttentionMaskInterface.register(ATTENTION, sdpa_mask)  # the rollout's masks, as for sdpa


# ---------------------------------------------------------------- 1. encode once


def frame_shards(temporal_patches: int, size: int) -> list[tuple[int, int]]:
    """Each rank's [start, end) of a video's temporal patches: contiguous, the first
    `temporal_patches % size` ranks one more; a rank past the end gets an empty range."""
    if size < 1:
        raise ValueError(f"sequence-parallel size {size}: at least 1")
    base, extra = divmod(temporal_patches, size)
    shards, first = [], 0
    for rank in range(size):
        end = first + base + (rank < extra)
        shards.append((first, end))
        first = end
    return shards


def _base(model: Any) -> Any:
    """The transformers model under a peft wrapper (or the model itself)."""
    return getattr(model, "get_base_model", lambda: model)()


def encode_patches(model: Any, video: VideoInputs, first: int, end: int) -> torch.Tensor:
    """The merged video tokens of temporal patches [first, end) of `video` (rows of
    `pixel_values_videos` are temporal-patch major, so they are one contiguous block)."""
    t, h, w = (int(x) for x in video.video_grid_thw[0].tolist())
    if not 0 <= first <= end <= t:
        raise ValueError(f"temporal patches [{first}, {end}) outside the video's {t}")
    base = _base(model)
    merge = base.config.vision_config.spatial_merge_size
    device = next(base.parameters()).device
    if end == first:
        return torch.zeros(0, _hidden(model), dtype=_dtype(model), device=device)
    rows = video.pixel_values_videos[first * h * w : end * h * w].to(device)
    grid = torch.tensor([[end - first, h, w]], device=device)
    tokens = base.get_video_features(rows, grid).pooler_output[0]
    if tokens.shape[0] != (end - first) * h * w // merge**2:
        raise RuntimeError(
            f"the vision tower gave {tokens.shape[0]} tokens for {end - first} temporal patches"
        )
    return tokens


def encode_video(
    model: Any, video: VideoInputs, sp: SPGroup | None = None, *, grad: bool = False
) -> torch.Tensor:
    """Stage 1: the video's merged tokens (tokens, hidden), each rank encoding its share of
    the temporal patches, gathered in rank order on every rank. `grad=False` (a frozen
    vision tower) encodes without autograd; `grad=True` keeps the graph, and the gather's
    backward sums every rank's gradient for this rank's tokens."""
    sp = sp or SPGroup()
    started = _clock()
    t, h, w = (int(x) for x in video.video_grid_thw[0].tolist())
    shards = frame_shards(t, sp.size)
    first, end = shards[sp.rank]
    with torch.set_grad_enabled(grad):
        tokens = encode_patches(model, video, first, end)
        if sp.size > 1:
            per_patch = h * w // _base(model).config.vision_config.spatial_merge_size ** 2
            counts = [(e - s) * per_patch for s, e in shards]
            tokens = _GatherTokens.apply(tokens, counts, sp)
    STATS["encode_us"] += int((_clock() - started) * 1e6)
    return tokens


class _GatherTokens(torch.autograd.Function):
    """All-gather of each rank's tokens (uneven counts) in rank order; backward: every rank
    used the whole tensor, so this rank's tokens get the sum of all ranks' gradients."""

    @staticmethod
    def forward(ctx: Any, local: torch.Tensor, counts: list[int], sp: SPGroup) -> torch.Tensor:
        import torch.distributed as dist

        ctx.counts, ctx.sp = counts, sp
        padded = local.new_zeros(max(counts), local.shape[1])
        padded[: local.shape[0]] = local
        gathered = [torch.empty_like(padded) for _ in counts]
        dist.all_gather(gathered, padded.contiguous(), group=sp.group)
        return torch.cat([part[:count] for part, count in zip(gathered, counts, strict=True)])

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, None, None]:
        import torch.distributed as dist

        total = grad.contiguous().clone()
        dist.all_reduce(total, group=ctx.sp.group)
        first = sum(ctx.counts[: ctx.sp.rank])
        return total[first : first + ctx.counts[ctx.sp.rank]], None, None


def _hidden(model: Any) -> int:
    """The width of a merged video token: the language model's (the tokens replace its embeddings)."""
    return _base(model).config.text_config.hidden_size


def _dtype(model: Any) -> torch.dtype:
    return next(_base(model).parameters()).dtype


# ---------------------------------------------------------------- inputs of the long sequence


def embed(model: Any, ids: torch.Tensor, video: torch.Tensor | None, first: int = 0, end: int | None = None):
    """Input embeddings of ids[:, first:end], the video's tokens at its <|video_pad|> slots.
    Every row shares the prompt (so its slots); `video` holds the whole video's tokens, of
    which the slice's slots take their share (a rank's shard holds part of the video)."""
    base = _base(model)
    end = ids.shape[1] if end is None else end
    local = ids[:, first:end]
    embeds = base.get_input_embeddings()(local)
    if video is None:
        return embeds
    slot = base.config.video_token_id
    here = local == slot
    count = int(here[0].sum())
    if bool((here.sum(1) != count).any()):
        raise ValueError("rows of one group place the video differently")
    before = int((ids[0, :first] == slot).sum())
    if before + count > video.shape[0]:
        raise ValueError(f"{video.shape[0]} video tokens for {before + count} video positions")
    part = video[before : before + count].to(embeds.device, embeds.dtype).repeat(local.shape[0], 1)
    return embeds.masked_scatter(here.unsqueeze(-1).expand_as(embeds), part)


def positions(model: Any, prompt: Any, length: int) -> torch.Tensor:
    """Positions of [prompt | `length` more text tokens]: for a Qwen-VL model (4, 1, L), a
    plain text row (which transformers reads for masks) then the 3D rotary rows by the
    reference rule; for a text model (1, L)."""
    from vdata.trainers.positions import rope_index

    ids = prompt.input_ids
    total = ids.shape[1] + length
    text = torch.arange(total).unsqueeze(0)
    if prompt.video is None and not hasattr(_base(model).config, "vision_config"):
        return text
    filler = ids[:, -1:].expand(1, length)  # the prompt ends in text: more text
    full = torch.cat([ids, filler], dim=1)
    video = prompt.video
    seconds = None
    if video is not None and prompt.seconds:
        seconds = torch.tensor([video.second_per_grid or 1.0])
    rotary, _ = rope_index(
        _base(model),
        full,
        video_grid_thw=video.video_grid_thw if video is not None else None,
        second_per_grid_ts=seconds,
    )
    return torch.cat([text.unsqueeze(0), rotary])


def _cache_keyword(model: Any) -> str:
    """transformers 5.24 names the key/value cache `cache`, 5.17 `past_key_values`."""
    import inspect

    return "cache" if "cache" in inspect.signature(_base(model).forward).parameters else "past_key_values"


def _cache_of(output: Any) -> Any:
    cache = getattr(output, "cache", None)
    return cache if cache is not None else output.past_key_values


# ---------------------------------------------------------------- 2. rollout: prefill once


@torch.no_grad()
def sample_group(
    policy: Any,
    prompt: Any,
    video: torch.Tensor | None,
    n: int,
    *,
    max_new_tokens: int,
    sp: SPGroup | None = None,
    greedy: bool = False,
    temperature: float | None = None,
    with_logprobs: bool = False,
) -> tuple[torch.Tensor, ...]:
    """n responses to one prompt from the policy's distribution (Policy.sample's contract for
    one prompt): the prompt, with `video`'s tokens in place, is prefilled once, its cache
    repeated, and n / sp responses decoded on each rank (seeded apart), gathered in rank
    order. Returns (ids (n, L), mask (n, L)[, log-probs of the tokens (n, L)])."""
    sp = sp or SPGroup()
    if n % sp.size:
        raise ValueError(f"{n} responses cannot be split over {sp.size} ranks")
    model, device = policy.model, policy.device
    local = n // sp.size
    ids = prompt.input_ids.to(device)
    position = positions(model, prompt, 0).to(device)
    generator = None
    if sp.size > 1 and not greedy:  # the ranks draw apart, from the run's seeded stream
        seed = int(torch.randint(0, 2**62, (1,)).item()) + sp.rank
        generator = torch.Generator(device).manual_seed(seed)
    model.eval()
    started = _clock()
    output = model(
        inputs_embeds=embed(model, ids, video),
        position_ids=position,
        use_cache=True,
        logits_to_keep=1,
    )
    cache = _cache_of(output)
    cache.batch_repeat_interleave(local)
    logits = output.logits[:, -1].float().expand(local, -1)
    STATS["prefill_us"] += int((_clock() - started) * 1e6)
    started = _clock()
    step_position = position[..., -1:].expand(-1, local, -1) + 1
    keyword = _cache_keyword(model)
    pad = policy.tokenizer.pad_token_id
    stops = torch.tensor(sorted(policy.stop_ids), device=device)
    done = torch.zeros(local, dtype=torch.bool, device=device)
    drawn, scores = [], []
    for step in range(max_new_tokens):
        processed = _processed(policy, logits, greedy, temperature)
        if greedy:
            token = processed.argmax(-1)
        else:
            token = torch.multinomial(processed.softmax(-1), 1, generator=generator).squeeze(1)
        token = torch.where(done, torch.full_like(token, pad), token)
        drawn.append(token)
        if with_logprobs:
            scores.append(torch.log_softmax(processed, -1).gather(-1, token.unsqueeze(-1)).squeeze(-1))
        done |= torch.isin(token, stops)
        if bool(done.all()) or step == max_new_tokens - 1:
            break
        output = model(
            input_ids=token.unsqueeze(1),
            position_ids=step_position + step,
            use_cache=True,
            **{keyword: cache},
        )
        cache = _cache_of(output)
        logits = output.logits[:, -1].float()
    STATS["decode_us"] += int((_clock() - started) * 1e6)
    responses = torch.stack(drawn, 1)
    parts = [responses] + ([torch.stack(scores, 1)] if with_logprobs else [])
    if sp.size > 1:
        parts = [_gather_rows(part, sp, pad if i == 0 else 0.0) for i, part in enumerate(parts)]
    responses = parts[0].cpu()
    from vdata.trainers.policy import stop_lengths

    ends = stop_lengths(responses, policy.stop_ids, policy.tokenizer, policy.stop)
    mask = (torch.arange(responses.shape[1]).unsqueeze(0) < ends.unsqueeze(1)).int()
    result = [responses.masked_fill(mask == 0, pad), mask]
    if with_logprobs:
        result.append(parts[1].cpu())
    return tuple(result)


def _processed(policy: Any, logits: torch.Tensor, greedy: bool, temperature: float | None) -> torch.Tensor:
    """The sampler's scores, as transformers' generate makes them for Policy.sample: banned
    (vision) tokens out, then temperature, top-k and top-p when sampling."""
    scores = logits.clone()
    if policy.banned:
        scores[:, [ids[0] for ids in policy.banned]] = float("-inf")
    if greedy:
        return scores
    from transformers import TopKLogitsWarper, TopPLogitsWarper

    scores = scores / (temperature or policy.temperature)
    if policy.top_k:
        scores = TopKLogitsWarper(policy.top_k)(None, scores)
    if policy.top_p < 1.0:
        scores = TopPLogitsWarper(policy.top_p)(None, scores)
    return scores


def _gather_rows(part: torch.Tensor, sp: SPGroup, fill: Any) -> torch.Tensor:
    """Every rank's rows (uneven widths padded with `fill`) stacked in rank order."""
    import torch.distributed as dist

    width = torch.tensor([part.shape[1]], device=part.device)
    widths = [torch.zeros_like(width) for _ in range(sp.size)]
    dist.all_gather(widths, width, group=sp.group)
    longest = int(max(w.item() for w in widths))
    padded = F.pad(part, (0, longest - part.shape[1]), value=fill)
    gathered = [torch.empty_like(padded) for _ in range(sp.size)]
    dist.all_gather(gathered, padded.contiguous(), group=sp.group)
    return torch.cat(gathered)


# ---------------------------------------------------------------- 3. Ulysses


def _exchange(x: torch.Tensor, sp: SPGroup, scatter: int, gather: int) -> torch.Tensor:
    """All-to-all: x split in sp parts along `scatter`, part j sent to rank j; the parts
    received concatenated in rank order along `gather`."""
    import torch.distributed as dist

    started = _clock()
    sent = torch.stack(x.chunk(sp.size, dim=scatter)).contiguous()
    received = torch.empty_like(sent)
    dist.all_to_all_single(received, sent, group=sp.group)
    result = torch.cat(received.unbind(0), dim=gather)
    STATS["all_to_all"] += 1
    if TIMED["on"]:
        STATS["all_to_all_us"] += int((_clock() - started) * 1e6)
    return result


class _Exchange(torch.autograd.Function):
    """The all-to-all as an autograd function: its backward is the inverse exchange."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, sp: SPGroup, scatter: int, gather: int) -> torch.Tensor:
        ctx.sp, ctx.scatter, ctx.gather = sp, scatter, gather
        return _exchange(x, sp, scatter, gather)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None, None]:
        return _exchange(grad.contiguous(), ctx.sp, ctx.gather, ctx.scatter), None, None, None


def ulysses_attention(
    module: Any,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    ulysses: SPGroup | None = None,
    shared_prefix: tuple[int, int, int] | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """transformers' attention-function contract (q (b, H, s, d), k and v (b, Hkv, s, d) ->
    (b, s, H, d)). With `ulysses` (the long forwards pass it), the shards become head groups
    over the whole sequence, attention runs, and they go back; with `shared_prefix`, the
    sequence is one prompt then several responses (`_attend`); with neither (the rollout,
    evaluation), plain SDPA with transformers' mask."""
    if ulysses is None or ulysses.size == 1:
        if shared_prefix is None:
            from transformers.integrations.sdpa_attention import sdpa_attention_forward

            return sdpa_attention_forward(
                module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs
            )
        return _attend(query, key, value, scaling, shared_prefix).transpose(1, 2).contiguous(), None
    size = ulysses.size
    if key.shape[1] < size:  # fewer KV heads than ranks: each rank gets a copy of its group's
        key = key.repeat_interleave(size // key.shape[1], dim=1)
        value = value.repeat_interleave(size // value.shape[1], dim=1)
    q, k, v = (_Exchange.apply(t, ulysses, 1, 2) for t in (query, key, value))
    out = _attend(q, k, v, scaling, shared_prefix)
    return _Exchange.apply(out, ulysses, 2, 1).transpose(1, 2).contiguous(), None


def _attend(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    scaling: float | None,
    layout: tuple[int, int, int] | None,
) -> torch.Tensor:
    """Causal attention over whole sequences (b, H, S, d). With `layout` (P, n, L), one
    sequence [prompt (P) | response 1 (L) | ... | response n (L) | padding]: the prompt attends
    causally to itself, each response to the whole prompt and causally to itself (never to
    another response), the padding to itself; the same as n separate [prompt | response]
    sequences, with the prompt computed once."""
    gqa = q.shape[1] != k.shape[1]

    def causal(part: slice) -> torch.Tensor:
        return F.scaled_dot_product_attention(
            q[:, :, part], k[:, :, part], v[:, :, part], is_causal=True, scale=scaling, enable_gqa=gqa
        )

    if layout is None:
        return causal(slice(None))
    prompt, n, length = layout
    if q.shape[0] != 1:
        raise ValueError("a shared-prefix forward holds one sequence")
    body = prompt + n * length
    parts = [
        F.scaled_dot_product_attention(
            q[:, :, :prompt],
            k[:, :, :prompt],
            v[:, :, :prompt],
            is_causal=True,
            scale=scaling,
            enable_gqa=gqa,
        )
    ]

    def per_response(x: torch.Tensor) -> torch.Tensor:  # (1, h, nL, d) -> (n, h, L, d)
        return x[:, :, prompt:body].unflatten(2, (n, length)).transpose(1, 2).flatten(0, 1)

    keys = torch.cat([k[:, :, :prompt].expand(n, -1, -1, -1), per_response(k)], dim=2)
    values = torch.cat([v[:, :, :prompt].expand(n, -1, -1, -1), per_response(v)], dim=2)
    column = torch.arange(prompt + length, device=q.device)
    allowed = (column < prompt).unsqueeze(0) | (
        column.unsqueeze(0) - prompt <= torch.arange(length, device=q.device).unsqueeze(1)
    )
    out = F.scaled_dot_product_attention(
        per_response(q), keys, values, attn_mask=allowed, scale=scaling, enable_gqa=gqa
    )
    parts.append(out.unflatten(0, (1, n)).transpose(1, 2).flatten(2, 3))
    if q.shape[2] > body:
        parts.append(causal(slice(body, None)))
    return torch.cat(parts, dim=2)


class _Place(torch.autograd.Function):
    """Values for the `own` entries of an (n, L, ...) tensor, the other entries coming from the
    other ranks (each entry is one rank's): the whole on every rank; backward: own entries."""

    @staticmethod
    def forward(ctx: Any, values: torch.Tensor, own: torch.Tensor, sp: SPGroup) -> torch.Tensor:
        ctx.save_for_backward(own)
        whole = values.new_zeros(*own.shape, *values.shape[1:])
        whole[own] = values
        if sp.size > 1:
            import torch.distributed as dist

            dist.all_reduce(whole, group=sp.group)
        return whole

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        (own,) = ctx.saved_tensors
        return grad[own], None, None


def log_probs(
    policy: Any,
    prompt: Any,
    responses: torch.Tensor,
    *,
    model: Any = None,
    entropy: bool = False,
    distributions: bool = False,
) -> tuple[torch.Tensor, ...]:
    """Policy.log_probs from the prompt's cached video tokens, the sequence sharded over the
    policy's sp ranks (one shard: the whole sequence). `model` is the reference when given
    (a model, or the policy with its adapters off). With the policy's `shared_prefix`, the n
    responses ride one sequence after one copy of the prompt (`_attend`), else each its own."""
    sp = policy.sp
    model = model if model is not None else policy.model
    from vdata.trainers.policy import AdaptersOff

    adapters_off = model.off if isinstance(model, AdaptersOff) else None
    network = model.model if adapters_off else model
    video = prompt.video_tokens
    if prompt.video is not None and (video is None or (policy.train_vision and torch.is_grad_enabled())):
        video = encode_video(network, prompt.video, sp, grad=policy.train_vision and torch.is_grad_enabled())
    elif prompt.video is not None and policy.train_vision and network is not policy.model:
        video = encode_video(network, prompt.video, sp)  # a separate reference has its own tower
    n, length = responses.shape
    device = policy.device
    prompt_length = prompt.input_ids.shape[1]
    packed = policy.shared_prefix and n > 1
    if packed and _text_config(network)._attn_implementation != ATTENTION:
        raise RuntimeError(
            "shared_prefix packs responses after one prompt, which needs MR-SP's attention on the "
            "language model: call vdata.trainers.mrsp.enable(model, SPGroup()) (load_policy does)"
        )
    responses = responses.to(device)
    prompt_ids = prompt.input_ids.to(device)
    base_position = positions(network, prompt, length).to(device)
    step = torch.arange(length, device=device)
    if packed:  # [prompt | r1 | ... | rn]: r_i's token j is predicted at P - 1 (j = 0) or P + iL + j - 1
        ids = torch.cat([prompt_ids[0], responses.reshape(-1)]).unsqueeze(0)
        position = torch.cat(
            [base_position[..., :prompt_length], base_position[..., prompt_length:].tile((n,))], dim=-1
        )
        starts = prompt_length + torch.arange(n, device=device).unsqueeze(1) * length
        index = torch.where(step == 0, prompt_length - 1, starts + step - 1)
        rows = torch.zeros_like(index)
        layout = {"shared_prefix": (prompt_length, n, length)}
    else:
        ids = torch.cat([prompt_ids.expand(n, -1), responses], dim=1)
        position = base_position
        index = (prompt_length - 1 + step).expand(n, -1)
        rows = torch.arange(n, device=device).unsqueeze(1).expand(-1, length)
        layout = {}
    real = ids.shape[1]
    total = -(-real // sp.size) * sp.size  # right-padded to a multiple of sp
    ids = F.pad(ids, (0, total - real), value=policy.tokenizer.pad_token_id)
    position = torch.cat(
        [position, position[..., -1:] + torch.arange(1, total - real + 1, device=device)], -1
    )
    if position.dim() == 3:  # transformers reads the text row for masks: keep it a plain count
        position[0] = torch.arange(total, device=device)
    shard = total // sp.size
    first, end = sp.rank * shard, (sp.rank + 1) * shard
    position = position[..., first:end].expand(*position.shape[:-2], ids.shape[0], -1)
    base = _base(network)
    language = base.model.language_model if hasattr(base.model, "language_model") else base.model
    extra = {"ulysses": sp} if sp.size > 1 else {}
    own = (index >= first) & (index < end)
    with adapters_off() if adapters_off else contextlib.nullcontext():
        hidden = language(
            inputs_embeds=embed(network, ids, video, first, end),
            position_ids=position,
            use_cache=False,
            **extra,
            **layout,
        ).last_hidden_state
        logits = base.lm_head(hidden[rows[own], index[own] - first])
    taken, spread, *dists = policy.token_log_probs(
        logits.unsqueeze(0), responses[own].unsqueeze(0), entropy, distributions
    )
    parts = [_Place.apply(taken[0], own, sp)]
    for part in (spread, *dists):
        parts.append(None if part is None else _Place.apply(part[0].detach(), own, sp))
    return tuple(parts)


# ---------------------------------------------------------------- the replicas


def reduce_gradients(parameters: list[torch.Tensor], sp: SPGroup, bucket_mb: int = 256) -> None:
    """Sums the parameters' gradients over the ranks (each rank's backward saw its shard), in
    buckets of one dtype; a parameter no rank reached keeps no gradient, alike on every rank."""
    import torch.distributed as dist

    if sp.size == 1:
        return
    buckets: list[list[torch.Tensor]] = []
    size = 0
    for grad in (p.grad for p in parameters if p.grad is not None):
        if not buckets or grad.dtype != buckets[-1][0].dtype or size >= bucket_mb * 2**20:
            buckets.append([])
            size = 0
        buckets[-1].append(grad)
        size += grad.numel() * grad.element_size()
    for bucket in buckets:
        flat = torch.cat([g.reshape(-1) for g in bucket])
        dist.all_reduce(flat, group=sp.group)
        offset = 0
        for grad in bucket:
            grad.copy_(flat[offset : offset + grad.numel()].view_as(grad))
            offset += grad.numel()


def replica_spread(parameters: list[torch.Tensor], sp: SPGroup) -> float:
    """How far apart the ranks' copies of the trainable weights are: the largest difference
    between the ranks' sums of them (0.0 while the replicas are identical)."""
    import torch.distributed as dist

    if sp.size == 1:
        return 0.0
    total = torch.zeros(1, dtype=torch.float64, device=parameters[0].device)
    for parameter in parameters:
        total += parameter.detach().double().sum()
    sums = [torch.empty_like(total) for _ in range(sp.size)]
    dist.all_gather(sums, total, group=sp.group)
    values = [float(s.item()) for s in sums]
    return max(values) - min(values)
