"""Prompts longer than CLIP's window: encoded in 75-token windows and concatenated, as A1111 does.

CLIP reads 77 tokens (a start token, 75 of text, an end token); diffusers' own encoding cuts the
rest off. Here each prompt's tokens are split into 75-token windows, each window is framed and
padded exactly as the tokenizer frames a short prompt, encoded on its own, and the hidden states
are concatenated (77 x windows positions). Prompts and negative prompts of a batch are padded with
empty windows to the same count, because the UNet takes one sequence length per batch. A prompt
that fits one window gives the same embedding as diffusers' own encoding.

SDXL does the same with each of its two text encoders (their penultimate hidden states, concatenated
along the features as diffusers does); its pooled embedding, which conditions the UNet beside the
sizes, is the second encoder's pooled output of the first window, as A1111 takes it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch


def _window_size(tokenizer: Any) -> int:
    return tokenizer.model_max_length - 2


def prompt_tokens(tokenizer: Any, text: str) -> list[int]:
    """The prompt's text tokens, without start/end tokens and without truncation."""
    return tokenizer(text, add_special_tokens=False, truncation=False, verbose=False).input_ids


def needs_windows(tokenizer: Any, texts: list[str]) -> bool:
    """True when some text has more tokens than one CLIP window holds (diffusers would truncate it)."""
    return any(len(prompt_tokens(tokenizer, text)) > _window_size(tokenizer) for text in texts)


def _framed_windows(tokenizer: Any, text: str, count: int) -> list[list[int]]:
    size = _window_size(tokenizer)
    tokens = prompt_tokens(tokenizer, text)
    windows = [tokens[start : start + size] for start in range(0, len(tokens), size)] or [[]]
    windows += [[]] * (count - len(windows))
    pad = tokenizer.pad_token_id
    return [[tokenizer.bos_token_id, *w, tokenizer.eos_token_id] + [pad] * (size - len(w)) for w in windows]


def window_count(tokenizer: Any, text: str) -> int:
    return max(1, -(-len(prompt_tokens(tokenizer, text)) // _window_size(tokenizer)))


def encode_in_windows(
    pipe: Any, prompts: list[str], negative_prompts: list[str], *, lora_scale: float | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(prompt_embeds, negative_prompt_embeds) for a Stable Diffusion 1.x/2.x pipeline, any prompt length."""
    tokenizer, encoder = pipe.tokenizer, pipe.text_encoder
    texts = [*prompts, *negative_prompts]
    count = max(window_count(tokenizer, text) for text in texts)
    ids = torch.tensor([_framed_windows(tokenizer, text, count) for text in texts], device=encoder.device)
    length = ids.shape[-1]
    with _lora_scaled(encoder, lora_scale):
        hidden = encoder(ids.view(-1, length))[0]
    hidden = hidden.to(dtype=encoder.dtype).reshape(len(texts), count * length, hidden.shape[-1])
    return hidden[: len(prompts)], hidden[len(prompts) :]


def encode_in_windows_xl(
    pipe: Any,
    prompts: list[str],
    negative_prompts: list[str],
    *,
    lora_scale: float | None = None,
    zero_empty_negatives: bool = False,
) -> dict[str, torch.Tensor]:
    """The four embeddings a Stable Diffusion XL pipeline takes (prompt_embeds, negative_prompt_embeds and their
    pooled forms), any prompt length.

    zero_empty_negatives: an empty negative prompt is all zeros rather than the encoding of "", per image; what
    diffusers does for a whole batch without negative prompts where the model's config says
    force_zeros_for_empty_prompt (SDXL-base does: it was trained so)."""
    encoders = ((pipe.tokenizer, pipe.text_encoder), (pipe.tokenizer_2, pipe.text_encoder_2))
    pairs = [(tokenizer, encoder) for tokenizer, encoder in encoders if encoder is not None]
    texts = [*prompts, *negative_prompts]
    count = max(window_count(tokenizer, text) for tokenizer, _ in pairs for text in texts)
    states, pooled = [], None
    for tokenizer, encoder in pairs:
        ids = torch.tensor([_framed_windows(tokenizer, text, count) for text in texts], device=encoder.device)
        length = ids.shape[-1]
        with _lora_scaled(encoder, lora_scale):
            output = encoder(ids.view(-1, length), output_hidden_states=True)
        states.append(output.hidden_states[-2].reshape(len(texts), count * length, -1))
        if output[0].ndim == 2:  # the projected pooled output (CLIPTextModelWithProjection), one per window
            pooled = output[0].reshape(len(texts), count, -1)[:, 0]
    hidden = torch.cat(states, dim=-1).to(dtype=pipe.text_encoder_2.dtype)
    if zero_empty_negatives:
        keep = torch.tensor([True] * len(prompts) + [text != "" for text in negative_prompts], device=hidden.device)
        hidden = hidden * keep[:, None, None].to(hidden.dtype)
        pooled = pooled * keep[:, None].to(pooled.dtype)
    split = len(prompts)
    return {
        "prompt_embeds": hidden[:split],
        "negative_prompt_embeds": hidden[split:],
        "pooled_prompt_embeds": pooled[:split],
        "negative_pooled_prompt_embeds": pooled[split:],
    }


@contextlib.contextmanager
def _lora_scaled(encoder: Any, lora_scale: float | None) -> Iterator[None]:
    """A LoRA's text-encoder layers take the job's scale, as the pipelines' own encode_prompt applies it."""
    from diffusers.utils import USE_PEFT_BACKEND, scale_lora_layers, unscale_lora_layers

    scaled = lora_scale is not None and USE_PEFT_BACKEND
    if scaled:
        scale_lora_layers(encoder, lora_scale)
    try:
        yield
    finally:
        if scaled:
            unscale_lora_layers(encoder, lora_scale)
