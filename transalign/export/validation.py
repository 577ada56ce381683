"""Check an exported graph against PyTorch before anything is written.

The reference is the *untruncated* encoder's ``hidden_states[layer]`` (output_hidden_states=True),
so the check covers the truncation as well as the export. The batch is fixed, multilingual,
padded, with varied lengths; only real (unpadded) token positions are compared.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from transalign.export.errors import ExportError

# (text, NLLB language code); BERT-family tokenizers ignore the code.
VALIDATION_SENTENCES = (
    ("The committee approved the new budget on Tuesday after a long debate .", "eng_Latn"),
    ("Právě z toho důvodu se ministryně vyjádřila tak obezřetně .", "ces_Latn"),
    ("Mali ye jamana ye min bɛ Afiriki tilebinyanfan fɛ .", "bam_Latn"),
    ("Der schnelle braune Fuchs springt über den faulen Hund , und dann läuft er weiter in den Wald "
     "hinein , wo ihn niemand mehr sehen kann .", "deu_Latn"),
    ("敏捷的棕色狐狸跳过了懒狗 。", "zho_Hans"),
    ("Hi", "eng_Latn"),
)

# fp32 must reproduce PyTorch; deviations are relative to the largest activation magnitude.
FP32_MAX_REL_DIFF = 1e-4
FP32_MIN_COSINE = 0.99999


@dataclass(frozen=True)
class Deviation:
    precision: str
    max_abs_diff: float | None  # None when not validated (JSON null, readable everywhere)
    max_rel_diff: float | None  # max_abs_diff / max |reference activation|
    min_cosine: float | None  # smallest per-token cosine similarity
    mean_cosine: float | None
    tokens: int
    validated: bool = True
    note: str = ""

    def to_json(self) -> dict:
        return asdict(self)


def validation_batch(tokenizer, arch_name: str, limit: int | None = None):
    """Padded int64 (input_ids, attention_mask) from the fixed sentences.

    Rows longer than ``limit`` (the model's maximum positions) are cut to fit, keeping the final
    special token, so models with short position tables can still be validated.
    """
    if limit is not None and limit < 3:
        raise ExportError(f"the model accepts only {limit} positions; at least 3 are needed to align anything")
    rows = []
    for text, lang in VALIDATION_SENTENCES:
        if arch_name == "m2m100":
            tokenizer.src_lang = lang  # NLLB: sequence starts with this language code
        row = list(tokenizer(text.split(), is_split_into_words=True)["input_ids"])
        rows.append(row if limit is None or len(row) <= limit else row[:limit - 1] + row[-1:])
    width = max(len(r) for r in rows)
    pad = tokenizer.pad_token_id
    ids = np.full((len(rows), width), pad, dtype=np.int64)
    mask = np.zeros((len(rows), width), dtype=np.int64)
    for k, row in enumerate(rows):
        ids[k, : len(row)] = row
        mask[k, : len(row)] = 1
    return ids, mask


def reference_hidden(encoder, ids: np.ndarray, mask: np.ndarray, layer: int) -> np.ndarray:
    import torch

    with torch.no_grad():
        out = encoder(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask),
                      output_hidden_states=True)
    return out.hidden_states[layer].float().numpy()


def run_onnx(path: Path, ids: np.ndarray, mask: np.ndarray, provider: str = "CPUExecutionProvider") -> np.ndarray:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), options, providers=[provider])
    return session.run(None, {"input_ids": ids, "attention_mask": mask})[0].astype(np.float32)


def compare(precision: str, reference: np.ndarray, candidate: np.ndarray, mask: np.ndarray) -> Deviation:
    real = mask.astype(bool)
    ref, got = reference[real].astype(np.float64), candidate[real].astype(np.float64)
    diff = np.abs(ref - got)
    scale = max(float(np.abs(ref).max()), 1e-12)
    cos = (ref * got).sum(1) / np.maximum(np.linalg.norm(ref, axis=1) * np.linalg.norm(got, axis=1), 1e-30)
    return Deviation(precision, float(diff.max()), float(diff.max() / scale), float(cos.min()), float(cos.mean()),
                     int(real.sum()))


def fp32_problems(dev: Deviation) -> list[str]:
    problems = []
    if not dev.max_rel_diff <= FP32_MAX_REL_DIFF:
        problems.append(f"fp32 max relative difference {dev.max_rel_diff:.3g} > {FP32_MAX_REL_DIFF:g} "
                        f"(max abs diff {dev.max_abs_diff:.3g})")
    if not dev.min_cosine >= FP32_MIN_COSINE:
        problems.append(f"fp32 min token cosine {dev.min_cosine:.7f} < {FP32_MIN_COSINE}")
    return problems


def not_validated(precision: str, note: str) -> Deviation:
    return Deviation(precision, None, None, None, None, 0, validated=False, note=note)
