"""The benchmark's workload: the bam-en pairs, and the model, scaled adapter and bundle they run
on (built once into benchmarks/work/ and reused while they match).

The checkpoint is NLLB-600M-shaped with random weights and a stand-in tokenizer
(benchmarks/full_size.py); the authors' LoRA gets lora_B scaled by ``--lora-scale`` (random
base weights plus the exact adapter collapse all vectors onto one direction); the bundle is
exported from both at layer 12. The reference and the engine use the very same scaled adapter.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from benchmarks.full_size import BAM, build_checkpoint
from transalign.formats.text import read_sentences

LORA = BAM.parent / "transalign-lora-nllb-600m"  # data/reference/, beside the sample
SRC_LANG, TGT_LANG, LAYER = "bam_Latn", "eng_Latn", 12


def load_pairs(n: int | None = None) -> tuple[list[list[str]], list[list[str]]]:
    """The first ``n`` (default all 1274) Bambara sentences and their English translations, as words."""
    src = read_sentences(BAM / "test-bam.txt", "conll")
    tgt = read_sentences(BAM / "test-translate-bam-en-preds.txt", "conll")
    assert len(src) == len(tgt), (len(src), len(tgt))
    return src[:n], tgt[:n]


def batch_tokens(requested: int | None, provider: str) -> int:
    """The engine / torch token budget: ``--batch-tokens`` or the engine's default for the provider."""
    if requested is not None:
        return requested
    from transalign.engine.defaults import DEFAULT_BATCH_TOKENS

    return DEFAULT_BATCH_TOKENS[provider]


def scaled_adapter(out: Path, scale: float, source: Path = LORA) -> Path:
    """A copy of the adapter with every lora_B multiplied by ``scale`` (reused when present)."""
    from safetensors.numpy import load_file, save_file

    from transalign.engine.bundle import sha256_file

    marker = {"scale": scale, "source": str(source), "source_sha256": sha256_file(source / "adapter_model.safetensors")}
    if (out / "scale.json").is_file() and json.loads((out / "scale.json").read_text()) == marker:
        return out
    out.mkdir(parents=True, exist_ok=True)
    tensors = load_file(str(source / "adapter_model.safetensors"))
    scaled = {k: (v * np.asarray(scale, v.dtype) if ".lora_B." in k else v) for k, v in tensors.items()}
    save_file(scaled, str(out / "adapter_model.safetensors"), metadata={"format": "pt"})
    (out / "adapter_config.json").write_bytes((source / "adapter_config.json").read_bytes())
    (out / "scale.json").write_text(json.dumps(marker))  # last: marks the copy complete
    return out


def ensure_bundle(model_dir: Path, lora_dir: Path, out: Path, precisions: tuple[str, ...],
                  reexport: bool = False) -> Path:
    """Export model + adapter at layer 12 unless a readable bundle of them with these precisions
    exists (a bundle this version of the engine refuses, e.g. an older format, is re-exported)."""
    from transalign.engine.bundle import BundleError, read_manifest, sha256_file

    try:
        manifest = read_manifest(out, verify_hashes=False)
    except BundleError:
        manifest = None
    if not reexport and manifest is not None and set(precisions) <= set(manifest.precisions) and manifest.layer == LAYER \
            and (manifest.lora or {}).get("sha256") == sha256_file(lora_dir / "adapter_model.safetensors"):
        return out
    from transalign.export.api import export_bundle

    print(f"exporting {model_dir} + {lora_dir} -> {out} ({','.join(precisions)})", file=sys.stderr)
    export_bundle(str(model_dir), out, lora=lora_dir, layer=LAYER, precisions=",".join(precisions), force=True)
    return out


def setup(work: Path, lora_scale: float, provider: str, reexport: bool = False) -> dict:
    """Build (or reuse) the checkpoint, the scaled adapter and the bundle; their paths."""
    model = build_checkpoint(work / "nllb-600m-random")
    lora = scaled_adapter(work / f"lora-x{lora_scale:g}", lora_scale)
    precisions = ("fp32", "int8", "fp16") if provider == "cuda" else ("fp32", "int8")
    bundle = ensure_bundle(model, lora, work / f"bundle-l{LAYER}-lora-x{lora_scale:g}", precisions, reexport)
    return {"model_dir": str(model), "lora_dir": str(lora), "bundle": str(bundle)}
