"""The reference: TransAlign exactly as the authors run it (DESIGN.md steps 1-5).

A faithful, short restatement of ``TransAlign/align.py`` from the authors' repository
(bebing93/transalign): transformers + PEFT in eager PyTorch fp32; one tokenizer per language
(``src_lang`` set, ``add_prefix_space=True``); the whole corpus tokenized once without special
tokens for subword counts and word ids; batches of 100 pairs in file order, each side padded to
its longest; ``output_hidden_states`` and ``hidden_states[layer][:, 1:-1]``; per pair both
softmaxes of ``x @ y.T`` thresholded, and the Python double loop over the subword matrix into
a set of "i-j" strings, written sorted.

Deviations, none of which changes the work done per token:
- the stand-in checkpoint holds only the encoder, so ``M2M100Encoder.from_pretrained`` replaces
  ``AutoModel.from_pretrained(...).get_encoder()`` (no decoder weights in memory: the authors'
  process is larger by the decoder, about 0.8 GB);
- the device is passed in (the authors pick CUDA whenever it exists);
- ``clock(name)`` sections (a context manager factory, see benchmarks.variants.Clock) split the time
  into tokenize / encode / extract / output.
"""

from __future__ import annotations


class ReferenceAligner:
    def __init__(self, model_dir: str, lora_dir: str, lang1: str, lang2: str, layer: int = 12,
                 threshold: float = 0.001, device: str = "cpu"):
        import torch
        from peft import PeftModel
        from transformers import AutoConfig, AutoTokenizer
        from transformers.models.m2m_100.modeling_m2m_100 import M2M100Encoder

        config = AutoConfig.from_pretrained(model_dir, output_hidden_states=True)
        model = M2M100Encoder.from_pretrained(model_dir, config=config).eval().to(device)
        self.model = PeftModel.from_pretrained(model, lora_dir).eval().to(device)
        self.tokenizer_lang1 = AutoTokenizer.from_pretrained(model_dir, src_lang=lang1, add_prefix_space=True)
        self.tokenizer_lang2 = AutoTokenizer.from_pretrained(model_dir, src_lang=lang2, add_prefix_space=True)
        self.device, self.layer, self.threshold, self.torch = torch.device(device), layer, threshold, torch

    def get_hidden_states(self, sent_batch, is_lang1: bool, clock):
        torch = self.torch
        with torch.no_grad():
            tokenizer = self.tokenizer_lang1 if is_lang1 else self.tokenizer_lang2
            with clock("tokenize"):
                inputs = tokenizer(sent_batch, is_split_into_words=True, padding=True, truncation=True,
                                   return_tensors="pt")
            with clock("encode"):
                return self.model(**inputs.to(self.device))["hidden_states"]

    def get_softmax(self, x, y):
        torch = self.torch
        forward = torch.softmax(torch.matmul(x, y.T), dim=1)
        backward = torch.softmax(torch.matmul(x, y.T), dim=0)
        return (forward > self.threshold) * (backward > self.threshold)

    def align(self, corpus_lang1, corpus_lang2, out, clock, first_id: int = 0, batch_size: int = 100):
        """Align the pairs; write ``ID<TAB>i-j ...`` lines to ``out``, IDs from ``first_id``."""
        with clock("tokenize"):
            tokens_lang1_all = self.tokenizer_lang1(corpus_lang1, is_split_into_words=True,
                                                    add_special_tokens=False, padding=False)
            tokens_lang2_all = self.tokenizer_lang2(corpus_lang2, is_split_into_words=True,
                                                    add_special_tokens=False, padding=False)
            lengths, b2w = [], []
            for sent_id in range(len(corpus_lang1)):
                lengths.append([len(tokens_lang1_all["input_ids"][sent_id]),
                                len(tokens_lang2_all["input_ids"][sent_id])])
                b2w.append([tokens_lang1_all.word_ids(sent_id), tokens_lang2_all.word_ids(sent_id)])

        for start in range(0, len(corpus_lang1), batch_size):
            ids = range(start, min(start + batch_size, len(corpus_lang1)))
            hidden1 = self.get_hidden_states([corpus_lang1[i] for i in ids], True, clock)[self.layer][:, 1:-1, :]
            hidden2 = self.get_hidden_states([corpus_lang2[i] for i in ids], False, clock)[self.layer][:, 1:-1, :]
            for in_batch_id, sent_id in enumerate(ids):
                with clock("extract"):
                    x = hidden1[in_batch_id, :lengths[sent_id][0]]
                    y = hidden2[in_batch_id, :lengths[sent_id][1]]
                    alignment_mat = self.get_softmax(x, y)
                    b2w_aligns = set()
                    for i in range(alignment_mat.shape[0]):
                        for j in range(alignment_mat.shape[1]):
                            if alignment_mat[i, j] > 0:
                                b2w_aligns.add(f"{b2w[sent_id][0][i]}-{b2w[sent_id][1][j]}")
                with clock("output"):
                    out.write(str(first_id + sent_id) + "\t" + " ".join(sorted(b2w_aligns)) + "\n")
        return lengths
