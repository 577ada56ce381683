"""A second baseline: the same model in PyTorch, done well.

What a careful PyTorch user would write without building an engine: the LoRA merged into the
weights, ``torch.ao.quantization.quantize_dynamic`` int8 Linear layers (fbgemm) on CPU or fp16
on CUDA, SDPA attention, ``inference_mode``, both sides of all pairs tokenized in one fast
tokenizer call each, sequences sorted by length and packed under a padded-token budget, only
``last_hidden_state`` (= hidden_states[12] for NLLB-600M: layer 12 is the last), and per-pair
numpy extraction (both softmaxes, the threshold mask, ``np.nonzero`` and a unique over word
pairs) instead of the Python double loop.
"""

from __future__ import annotations

import numpy as np

PRECISIONS = ("int8", "fp32", "fp16")


class TorchAligner:
    def __init__(self, model_dir: str, lora_dir: str, src_lang: str, tgt_lang: str, precision: str = "int8",
                 batch_tokens: int = 4096, threshold: float = 0.001, device: str = "cpu"):
        import torch
        from peft import PeftModel
        from transformers import AutoTokenizer
        from transformers.models.m2m_100.modeling_m2m_100 import M2M100Encoder

        if precision not in PRECISIONS:
            raise ValueError(f"precision {precision!r} is not one of {', '.join(PRECISIONS)}")
        encoder = M2M100Encoder.from_pretrained(model_dir, attn_implementation="sdpa").eval()
        encoder = PeftModel.from_pretrained(encoder, lora_dir).merge_and_unload().eval()
        if precision == "int8":
            encoder = torch.ao.quantization.quantize_dynamic(encoder, {torch.nn.Linear}, dtype=torch.qint8)
        elif precision == "fp16":
            encoder = encoder.half()
        self.encoder = encoder.to(device)
        self.tokenizers = {lang: AutoTokenizer.from_pretrained(model_dir, src_lang=lang) for lang in (src_lang, tgt_lang)}
        self.src_lang, self.tgt_lang, self.torch, self.device = src_lang, tgt_lang, torch, device
        self.batch_tokens, self.threshold = batch_tokens, threshold
        self.pad_id = self.tokenizers[src_lang].pad_token_id
        self.padded_tokens = 0
        self.lengths: list[int] = []  # token counts (specials included) of the last align call

    def _tokenize(self, sentences, lang):
        enc = self.tokenizers[lang](sentences, is_split_into_words=True)
        return [(ids, np.array([-1 if w is None else w for w in enc.word_ids(k)], dtype=np.int64))
                for k, ids in enumerate(enc["input_ids"])]

    def _encode(self, sequences: list[list[int]]) -> list[np.ndarray]:
        """Content rows (specials dropped) of every sequence, via length-sorted token-budget batches."""
        torch = self.torch
        order = sorted(range(len(sequences)), key=lambda k: -len(sequences[k]))
        out: list[np.ndarray | None] = [None] * len(sequences)
        start = 0
        while start < len(order):
            width = len(sequences[order[start]])
            batch = order[start:start + max(1, self.batch_tokens // width)]
            ids = torch.full((len(batch), width), self.pad_id, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for row, k in enumerate(batch):
                ids[row, :len(sequences[k])] = torch.tensor(sequences[k])
                mask[row, :len(sequences[k])] = 1
            with torch.inference_mode():
                hidden = self.encoder(input_ids=ids.to(self.device), attention_mask=mask.to(self.device))
                hidden = hidden.last_hidden_state.float().cpu().numpy()
            for row, k in enumerate(batch):
                out[k] = hidden[row, 1:len(sequences[k]) - 1]
            self.padded_tokens += len(batch) * width
            start += len(batch)
        return out

    def align(self, src, tgt, clock) -> list[str]:
        """Pharaoh strings ("i-j ...", numerically sorted), one per pair."""
        with clock("tokenize"):
            seqs = self._tokenize(src, self.src_lang) + self._tokenize(tgt, self.tgt_lang)
        self.lengths = [len(ids) for ids, _ in seqs]
        with clock("encode"):
            hidden = self._encode([ids for ids, _ in seqs])
        with clock("extract"):
            n = len(src)
            links = [pair_links(hidden[k], hidden[n + k], seqs[k][1][1:-1], seqs[n + k][1][1:-1], self.threshold)
                     for k in range(n)]
        return links


def pair_links(x: np.ndarray, y: np.ndarray, src_words: np.ndarray, tgt_words: np.ndarray, threshold: float) -> str:
    if len(x) == 0 or len(y) == 0:
        return ""
    sim = x @ y.T
    forward = np.exp(sim - sim.max(axis=1, keepdims=True))
    forward /= forward.sum(axis=1, keepdims=True)
    backward = np.exp(sim - sim.max(axis=0, keepdims=True))
    backward /= backward.sum(axis=0, keepdims=True)
    i, j = np.nonzero((forward > threshold) & (backward > threshold))
    width = int(tgt_words.max()) + 1
    codes = np.unique(src_words[i] * width + tgt_words[j])
    return " ".join(f"{c // width}-{c % width}" for c in codes.tolist())
