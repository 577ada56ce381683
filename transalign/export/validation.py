"""Check an exported graph against PyTorch before anything is written.

The reference is the *untruncated* encoder's ``hidden_states[layer]`` (output_hidden_states=True),
so the check covers the truncation as well as the export. The batch is fixed, multilingual,
padded, with varied lengths; only real (unpadded) token positions are compared.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from transalign.export.architectures import Architecture
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
# int8 / fp16 are approximations; below this mean token cosine the graph is broken, not merely
# approximate (real e5-small int8: 0.996), and the export is refused instead of recording it as
# validated (see derived_problems). Per-token minima are recorded, not gated: on tiny random
# models single tokens fall far lower (tiny XLM-R int8: -0.2) while their links stay usable.
DERIVED_MIN_MEAN_COSINE = 0.95


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
    # how the graph was run: "cpu-onnxruntime" (ONNX Runtime's CPU provider), "cuda" (its CUDA
    # provider) or "onnx-reference-fp16" (onnx.reference: every fp16 op computed and rounded in
    # float16, as CUDA does); ``also``: the other checks that ran, each a Deviation's JSON
    check: str = "cpu-onnxruntime"
    also: tuple = ()

    def to_json(self) -> dict:
        return asdict(self)


# Extra calibration text for the static int8 scales (with the validation sentences above):
# varied scripts, lengths, numbers and punctuation, so every activation channel meets a
# realistic range. Written for this project; a user file can replace it (export --calibration).
CALIBRATION_SENTENCES = (
    ("In 2019 , the company reported revenue of $ 4.2 billion , up 12 % from the previous year .", "eng_Latn"),
    ("She asked whether the train to Geneva would leave on time , but nobody knew .", "eng_Latn"),
    ("Die Regierung hat am Montag neue Regeln für den Schutz der Wälder beschlossen .", "deu_Latn"),
    ("Le musée ouvrira ses portes au public le 3 mars , après deux ans de travaux .", "fra_Latn"),
    ("El presidente viajará a Lima la próxima semana para reunirse con los ministros .", "spa_Latn"),
    ("Vláda v pondělí schválila nový zákon o ochraně přírody a krajiny .", "ces_Latn"),
    ("Ni bɛ taa sugu la sini , i bɛ se ka na wa ?", "bam_Latn"),
    ("Москва и Санкт-Петербург — крупнейшие города России .", "rus_Cyrl"),
    ("東京は日本の首都であり 、 多くの人が住んでいる 。", "jpn_Jpan"),
    ("وقال المتحدث إن المحادثات ستستأنف الأسبوع المقبل في القاهرة .", "arb_Arab"),
    ("भारत में मानसून जून में शुरू होता है और सितंबर तक चलता है ।", "hin_Deva"),
    ("Watu wengi walihudhuria mkutano huo mjini Nairobi jana jioni .", "swh_Latn"),
    ("Yes .", "eng_Latn"),
    ("OK", "eng_Latn"),
    ("The patient , a 54-year-old man , was admitted with fever , cough and shortness of breath ; tests "
     "confirmed pneumonia , and he was treated with antibiotics for ten days before being discharged .", "eng_Latn"),
    ("Kiedy wróciliśmy do domu , było już ciemno i zimno .", "pol_Latn"),
    ("Türkiye'nin başkenti Ankara'dır , en büyük şehri ise İstanbul'dur .", "tur_Latn"),
    ("Η Αθήνα είναι η πρωτεύουσα της Ελλάδας .", "ell_Grek"),
)


def token_rows(tokenizer, arch: Architecture, sentences, limit: int | None = None) -> list[list[int]]:
    """Token ids of each ``(text, language code)`` as the reference tokenizes pre-split words
    (the code is set as ``src_lang`` when the architecture's tokenizer takes the language).

    Rows longer than ``limit`` (the model's maximum positions) are cut to fit, keeping the final
    special token, so models with short position tables can still be validated.
    """
    if limit is not None and limit < 3:
        raise ExportError(f"the model accepts only {limit} positions; at least 3 are needed to align anything")
    rows = []
    for text, lang in sentences:
        if arch.tokenizer_takes_lang:
            try:
                tokenizer.src_lang = lang  # NLLB: sequence starts with this language code
            except (KeyError, ValueError) as exc:
                raise ExportError(f"calibration sentence {text[:40]!r}: language code {lang!r} is not known "
                                  f"to the tokenizer ({exc})") from None
        row = list(tokenizer(text.split(), is_split_into_words=True)["input_ids"])
        rows.append(row if limit is None or len(row) <= limit else row[:limit - 1] + row[-1:])
    return rows


def validation_batch(tokenizer, arch: Architecture, limit: int | None = None):
    """Padded int64 (input_ids, attention_mask) from the fixed validation sentences."""
    rows = token_rows(tokenizer, arch, VALIDATION_SENTENCES, limit)
    width = max(len(r) for r in rows)
    pad = tokenizer.pad_token_id
    ids = np.full((len(rows), width), pad, dtype=np.int64)
    mask = np.zeros((len(rows), width), dtype=np.int64)
    for k, row in enumerate(rows):
        ids[k, : len(row)] = row
        mask[k, : len(row)] = 1
    return ids, mask


def read_calibration_file(path: Path, default_lang: str = "eng_Latn") -> list[tuple[str, str]]:
    """``(text, language code)`` per non-empty line of a UTF-8 file: ``TEXT`` or ``CODE<TAB>TEXT``."""
    from transalign.formats.text import InputError, iter_text_lines

    out = []
    try:
        for number, line in iter_text_lines(path):
            lang, tab, text = line.partition("\t")
            text, lang = (text, lang.strip()) if tab else (line, default_lang)
            if tab and not lang:
                raise ExportError(f"{path}, line {number}: empty language code before the tab (expected CODE<TAB>TEXT)")
            if text.split():
                out.append((text, lang))
    except InputError as exc:
        raise ExportError(f"--calibration: {exc}") from None
    if not out:
        raise ExportError(f"--calibration {path}: no sentences (one sentence per line, optionally CODE<TAB>TEXT)")
    return out


def reference_hidden(encoder, ids: np.ndarray, mask: np.ndarray, layer: int) -> np.ndarray:
    import torch

    with torch.no_grad():
        out = encoder(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask),
                      output_hidden_states=True)
    return out.hidden_states[layer].float().numpy()


def run_onnx(path: Path, ids: np.ndarray, mask: np.ndarray, provider: str = "cpu") -> np.ndarray:
    """The graph's hidden states for the batch, in a session made as the engine makes its own
    (``provider``: "cpu" or "cuda"; ONNX Runtime's default thread count)."""
    from transalign.engine.session import open_session

    session = open_session(path, provider)
    return session.run(None, {"input_ids": ids, "attention_mask": mask})[0].astype(np.float32)


def compare(precision: str, reference: np.ndarray, candidate: np.ndarray, mask: np.ndarray,
            check: str = "cpu-onnxruntime") -> Deviation:
    real = mask.astype(bool)
    ref, got = reference[real].astype(np.float64), candidate[real].astype(np.float64)
    diff = np.abs(ref - got)
    scale = max(float(np.abs(ref).max()), 1e-12)
    cos = (ref * got).sum(1) / np.maximum(np.linalg.norm(ref, axis=1) * np.linalg.norm(got, axis=1), 1e-30)
    return Deviation(precision, float(diff.max()), float(diff.max() / scale), float(cos.min()), float(cos.mean()),
                     int(real.sum()), check=check)


# fp16 checks. ONNX Runtime's CPU provider has few fp16 kernels: it inserts casts and computes
# most ops in float32, which hides overflow (an intermediate above 65504 becomes inf in fp16,
# not on the CPU). onnx.reference evaluates every op in the graph's own types (numpy float16),
# so it sees what CUDA would; it is slow (numpy, no BLAS for float16), so it runs when the graph's
# matrix weights are at most this many values (tiny models, e5-small's 21M; NLLB-600M's 150M not).
REFERENCE_FP16_MAX_WEIGHTS = 40_000_000
FP16_CHECKS = ("cuda", "onnx-reference-fp16", "cpu-onnxruntime")


def run_reference(path: Path, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The graph's hidden states computed by `onnx.reference` (every op in its own dtype)."""
    import onnx
    from onnx.reference import ReferenceEvaluator

    evaluator = ReferenceEvaluator(onnx.load(str(path)))
    return np.asarray(evaluator.run(None, {"input_ids": ids, "attention_mask": mask})[0], np.float32)


def matmul_weight_count(path: Path) -> int:
    """Values in the 2-D initializers MatMul nodes read (the work a reference run must do)."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    sizes = {init.name: int(np.prod(init.dims)) for init in graph.initializer if len(init.dims) == 2}
    read = {node.input[1] for node in graph.node if node.op_type == "MatMul" and len(node.input) > 1}
    return sum(sizes[name] for name in read if name in sizes)


def validate_fp16(path: Path, reference: np.ndarray, ids: np.ndarray, mask: np.ndarray,
                  cuda: bool | None = None) -> Deviation:
    """Check the fp16 graph against PyTorch's fp32 hidden states the strictest way this machine
    allows, recording which (`Deviation.check`, the others in ``also``).

    With CUDA: on the CUDA provider, where the graph is meant to run. Without: on ONNX Runtime's
    CPU provider, and also with `onnx.reference` in true float16 when the graph is small enough
    (REFERENCE_FP16_MAX_WEIGHTS); the reference run is then the recorded check, being the one
    that computes like CUDA. ``cuda``: None = whether this onnxruntime lists the CUDA provider.
    """
    from transalign.engine.session import available_providers

    if cuda is None:
        cuda = "CUDAExecutionProvider" in available_providers()
    if cuda:
        return compare("fp16", reference, run_onnx(path, ids, mask, provider="cuda"), mask, check="cuda")
    cpu = compare("fp16", reference, run_onnx(path, ids, mask), mask, check="cpu-onnxruntime")
    weights = matmul_weight_count(path)
    if weights > REFERENCE_FP16_MAX_WEIGHTS:
        note = (f"CPU only: onnx.reference in float16 skipped ({weights:,} matrix weights > "
                f"{REFERENCE_FP16_MAX_WEIGHTS:,}); ONNX Runtime's CPU provider computes many fp16 ops in "
                "float32, so overflow would not show here: check on CUDA (benchmarks/device_check.py)")
        return Deviation(**{**cpu.to_json(), "note": note})
    exact = compare("fp16", reference, run_reference(path, ids, mask), mask, check="onnx-reference-fp16")
    return Deviation(**{**exact.to_json(), "also": (cpu.to_json(),)})


def fp32_problems(dev: Deviation) -> list[str]:
    problems = []
    if not dev.max_rel_diff <= FP32_MAX_REL_DIFF:
        problems.append(f"fp32 max relative difference {dev.max_rel_diff:.3g} > {FP32_MAX_REL_DIFF:g} "
                        f"(max abs diff {dev.max_abs_diff:.3g})")
    if not dev.min_cosine >= FP32_MIN_COSINE:
        problems.append(f"fp32 min token cosine {dev.min_cosine:.7f} < {FP32_MIN_COSINE}")
    return problems


def derived_problems(dev: Deviation) -> list[str]:
    """Why an int8 / fp16 graph is too far from PyTorch to ship (empty when it is fine)."""
    if not dev.validated:
        return []
    problems = []
    for check in (dev.to_json(), *dev.also):
        if not check["mean_cosine"] >= DERIVED_MIN_MEAN_COSINE:  # NaN (an overflow) fails too
            problems.append(f"{dev.precision} mean token cosine {check['mean_cosine']:.4f} < {DERIVED_MIN_MEAN_COSINE} "
                            f"({check['check']})")
    return problems


def not_validated(precision: str, note: str) -> Deviation:
    return Deviation(precision, None, None, None, None, 0, validated=False, note=note)
