"""Prompts longer than CLIP's window: encoded in 75-token windows and concatenated, as A1111 does.

CLIP reads 77 tokens (a start token, 75 of text, an end token); diffusers' own encoding cuts the
rest off. Here each prompt's tokens are split into 75-token windows, each window is framed and
padded exactly as the tokenizer frames a short prompt, encoded on its own, and the hidden states
are concatenated (77 x windows positions). Prompts and negative prompts of a batch are padded with
empty windows to the same count, because the UNet takes one sequence length per batch. A prompt
that fits one window gives the same embedding as diffusers' own encoding.
"""

from __future__ import annotations

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
    from diffusers.utils import USE_PEFT_BACKEND, scale_lora_layers, unscale_lora_layers

    tokenizer, encoder = pipe.tokenizer, pipe.text_encoder
    texts = [*prompts, *negative_prompts]
    count = max(window_count(tokenizer, text) for text in texts)
    ids = torch.tensor([_framed_windows(tokenizer, text, count) for text in texts], device=encoder.device)
    length = ids.shape[-1]
    # A LoRA's text-encoder layers take the job's scale, as the pipeline's own encode_prompt applies it.
    scaled = lora_scale is not None and USE_PEFT_BACKEND
    if scaled:
        scale_lora_layers(encoder, lora_scale)
    try:
        hidden = encoder(ids.view(-1, length))[0]
    finally:
        if scaled:
            unscale_lora_layers(encoder, lora_scale)
    hidden = hidden.to(dtype=encoder.dtype).reshape(len(texts), count * length, hidden.shape[-1])
    return hidden[: len(prompts)], hidden[len(prompts) :]
