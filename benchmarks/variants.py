"""The benchmarked variants, each run inside its own worker process (benchmarks/worker.py).

``run(src, tgt, first_id)`` aligns the pairs once and returns the wall time (``e2e``), the time
per section, the links as ``ID<TAB>i-j ...`` text, the token count of every sentence
(``lengths``: all sources, then all targets, special tokens included) and the padded tokens.
"""

from __future__ import annotations

import io
import time
from collections import defaultdict
from contextlib import contextmanager

from benchmarks.workload import LAYER, SRC_LANG, TGT_LANG
from transalign.bench.measure import measure_run

PRECISION = {"reference": "fp32", "engine-fp32": "fp32", "engine-int8": "int8", "engine-fp16": "fp16",
             "torch-int8": "int8", "torch-fp32": "fp32", "torch-fp16": "fp16"}


class Clock:
    """``with clock("encode"): ...`` adds the block's wall time to ``clock.seconds["encode"]``."""

    def __init__(self):
        self.seconds: dict[str, float] = defaultdict(float)

    @contextmanager
    def __call__(self, name: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] += time.perf_counter() - start


class TokenCounter:
    """The aligner's tokenizer, remembering each sentence's token count as the aligner tokenizes
    it, so the engine variant reports per-sentence lengths without tokenizing the pairs again.
    Inside the timed pass it adds one ``len`` per sentence; everything else is forwarded."""

    def __init__(self, tokenizer):
        self._inner = tokenizer
        self._calls: list[tuple[object, list, list[int]]] = []

    def __getattr__(self, name: str):
        return getattr(self._inner, name)

    def encode_batch(self, sentences, lang):
        encoded = list(self._inner.encode_batch(sentences, lang))
        self._calls.append((lang, sentences, [len(ids) for ids, _ in encoded]))
        return encoded

    def take_lengths(self, src, tgt, src_lang, tgt_lang) -> list[int]:
        """Token counts of ``src`` then ``tgt`` from the calls since the last take (a sentence the
        aligner did not tokenize as given, e.g. one far too long, is tokenized here)."""
        seen = {(lang, tuple(words)): count for lang, sentences, counts in self._calls
                for words, count in zip(sentences, counts)}
        self._calls.clear()

        def count(words, lang) -> int:
            known = seen.get((lang, tuple(words)))
            return known if known is not None else len(self._inner.encode_batch([list(words)], lang)[0][0])

        return [count(w, src_lang) for w in src] + [count(w, tgt_lang) for w in tgt]


class EngineVariant:
    def __init__(self, spec: dict):
        from transalign.engine.aligner import Aligner

        self.aligner = Aligner.load(spec["bundle"], provider=spec["provider"], precision=PRECISION[spec["variant"]],
                                    threads=spec["threads"])
        self.tokens = self.aligner.tokenizer = TokenCounter(self.aligner.tokenizer)
        self.batch_tokens = spec["batch_tokens"]

    def run(self, src, tgt, first_id: int) -> dict:
        run = measure_run(self.aligner, src, tgt, SRC_LANG, TGT_LANG, batch_tokens=self.batch_tokens,
                          first_id=first_id)  # the same timed pass as `transalign bench`
        return {"e2e": run["e2e"], "seconds": run["seconds"], "text": run["text"],
                "lengths": self.tokens.take_lengths(src, tgt, SRC_LANG, TGT_LANG),
                "padded_tokens": run["padded_tokens"]}


class ReferenceVariant:
    def __init__(self, spec: dict):
        import torch

        from benchmarks.reference_baseline import ReferenceAligner

        torch.set_num_threads(spec["threads"])
        self.ref = ReferenceAligner(spec["model_dir"], spec["lora_dir"], SRC_LANG, TGT_LANG, layer=LAYER,
                                    device="cuda" if spec["provider"] == "cuda" else "cpu")

    def run(self, src, tgt, first_id: int) -> dict:
        clock, out = Clock(), io.StringIO()
        start = time.perf_counter()
        content = self.ref.align(src, tgt, out, clock, first_id)
        e2e = time.perf_counter() - start
        padded = sum(len(b) * (max(b) + 2) for side in (0, 1)
                     for b in ([c[side] for c in content[k:k + 100]] for k in range(0, len(content), 100)))
        return {"e2e": e2e, "seconds": dict(clock.seconds), "text": out.getvalue(),
                "lengths": [c[0] + 2 for c in content] + [c[1] + 2 for c in content], "padded_tokens": padded}


class TorchVariant:
    def __init__(self, spec: dict):
        import torch

        from benchmarks.torch_baseline import TorchAligner

        torch.set_num_threads(spec["threads"])
        self.aligner = TorchAligner(spec["model_dir"], spec["lora_dir"], SRC_LANG, TGT_LANG,
                                    precision=PRECISION[spec["variant"]], batch_tokens=spec["batch_tokens"],
                                    device="cuda" if spec["provider"] == "cuda" else "cpu")

    def run(self, src, tgt, first_id: int) -> dict:
        clock, out = Clock(), io.StringIO()
        padded_before = self.aligner.padded_tokens
        start = time.perf_counter()
        links = self.aligner.align(src, tgt, clock)
        with clock("output"):
            for k, line in enumerate(links):
                out.write(f"{first_id + k}\t{line}\n")
        return {"e2e": time.perf_counter() - start, "seconds": dict(clock.seconds), "text": out.getvalue(),
                "lengths": self.aligner.lengths, "padded_tokens": self.aligner.padded_tokens - padded_before}


KINDS = {"reference": ReferenceVariant, "engine": EngineVariant, "torch": TorchVariant}


def make_variant(spec: dict):
    """The variant named ``spec["variant"]`` ("engine-int8": an EngineVariant at int8), loaded."""
    return KINDS[spec["variant"].split("-")[0]](spec)
