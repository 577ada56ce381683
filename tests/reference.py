"""The TransAlign reference procedure, restated in a few obviously-correct lines.

This is the oracle every output path is compared with (DESIGN.md, "The method, exactly"):
HF tokenizer with is_split_into_words, the encoder with the PEFT adapter applied the way the
authors load it (PeftModel, not merged), hidden_states[layer][:, 1:-1], S = X @ Y.T, both
softmaxes, strict threshold on both, and the double loop to word pairs. Nothing from the
transalign package is used here.
"""

from __future__ import annotations

import numpy as np


def load_reference_encoder(model_dir, lora_dir=None):
    """The encoder as the authors run it: transformers + (optionally) PeftModel on the encoder."""
    import torch
    from transformers import AutoModel

    model = AutoModel.from_pretrained(model_dir, dtype=torch.float32, attn_implementation="eager").eval()
    encoder = model.get_encoder() if hasattr(model, "get_encoder") and model.config.model_type == "m2m_100" \
        else model
    if lora_dir is not None:
        from peft import PeftModel

        encoder = PeftModel.from_pretrained(encoder, str(lora_dir)).eval()
    return encoder


def reference_hidden(encoder, input_ids, attention_mask, layer: int) -> np.ndarray:
    import torch

    with torch.no_grad():
        out = encoder(input_ids=torch.as_tensor(input_ids), attention_mask=torch.as_tensor(attention_mask),
                      output_hidden_states=True)
    return out.hidden_states[layer].numpy()


def embed_words(tokenizer, encoder, words: list[str], lang: str | None, layer: int):
    """(subword vectors without the two specials, word index of each subword)."""
    if lang is not None:
        tokenizer.src_lang = lang
    enc = tokenizer(words, is_split_into_words=True, return_tensors="pt")
    hidden = reference_hidden(encoder, enc["input_ids"], enc["attention_mask"], layer)[0, 1:-1]
    word_ids = enc.word_ids()[1:-1]
    return hidden, word_ids


def reference_links(x: np.ndarray, y: np.ndarray, src_words: list[int], tgt_words: list[int], threshold: float):
    """Word links of one pair, exactly as align.py computes them."""
    if len(x) == 0 or len(y) == 0:
        return set()
    sim = x.astype(np.float32) @ y.astype(np.float32).T
    forward = np.exp(sim - sim.max(axis=1, keepdims=True))
    forward /= forward.sum(axis=1, keepdims=True)
    backward = np.exp(sim - sim.max(axis=0, keepdims=True))
    backward /= backward.sum(axis=0, keepdims=True)
    links = set()
    for i in range(sim.shape[0]):
        for j in range(sim.shape[1]):
            if forward[i, j] > threshold and backward[i, j] > threshold:
                links.add((src_words[i], tgt_words[j]))
    return links


def reference_margin(x, y, threshold: float) -> np.ndarray:
    """|min(F, B) - t| per subword pair: how far each decision is from the threshold."""
    sim = x.astype(np.float64) @ y.astype(np.float64).T
    forward = np.exp(sim - sim.max(axis=1, keepdims=True))
    forward /= forward.sum(axis=1, keepdims=True)
    backward = np.exp(sim - sim.max(axis=0, keepdims=True))
    backward /= backward.sum(axis=0, keepdims=True)
    return np.abs(np.minimum(forward, backward) - threshold)
