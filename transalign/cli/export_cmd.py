"""`transalign export`: Hugging Face checkpoint (+ LoRA) -> ONNX bundle."""

from __future__ import annotations

import argparse
import json


def register(sub) -> None:
    p = sub.add_parser(
        "export",
        help="export a Hugging Face encoder (+ LoRA) to an ONNX bundle",
        description="Merge an optional PEFT LoRA adapter, cut the encoder at the alignment layer, export it to "
                    "ONNX in the requested precisions, validate against PyTorch and write a bundle. "
                    "Needs the `export` extra (torch, transformers, peft).",
    )
    p.add_argument("model", help="local Hugging Face checkpoint directory or hub id "
                                 "(e.g. facebook/nllb-200-distilled-600M)")
    p.add_argument("-o", "--output", required=True, help="bundle directory to create")
    p.add_argument("--lora", help="PEFT LoRA adapter directory to merge (adapter_config.json + weights)")
    p.add_argument("--layer", type=int, help="hidden_states index to align with (default: the model "
                                             "family's reference layer, 12 for NLLB-600M)")
    p.add_argument("--threshold", type=float, help="default alignment threshold stored in the bundle "
                                                   "(default: the family's reference value, 0.001 for NLLB)")
    p.add_argument("--precision", default="fp32,int8",
                   help="comma-separated precisions: fp32, int8 (CPU), fp16 (CUDA); default fp32,int8")
    p.add_argument("--int8-fp32-blocks", type=int, metavar="N",
                   help="int8 only: keep the FFN output projection of the last N blocks in fp32 (accuracy for "
                        "a little speed; default 2 for BERT-family models, 0 for NLLB)")
    p.add_argument("--calibration", metavar="FILE",
                   help="int8 only: text whose activation ranges fix the int8 graph's constant scales, one sentence "
                        "per line, optionally CODE<TAB>TEXT for NLLB (default: built-in multilingual sentences)")
    p.add_argument("--int8-smoothing", metavar="ALPHA", default="auto", type=_smoothing,
                   help="int8 only: SmoothQuant strength in [0, 1], moving activation outliers into the weights; "
                        "'off' for none; 'auto' builds 0.5 and off and keeps the one closer to PyTorch "
                        "(default: auto)")
    p.add_argument("--force", action="store_true",
                   help="replace an existing bundle (a non-empty directory that is not a bundle is never replaced)")
    p.add_argument("--lora-extra-scale", type=float, default=1.0, help=argparse.SUPPRESS)
    p.set_defaults(func=run)


def _smoothing(text: str):
    if text in ("auto", "off"):
        return None if text == "off" else text
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not auto, off or a number in [0, 1]") from None


def run(args) -> int:
    from transalign.export.api import export_bundle

    manifest = export_bundle(args.model, args.output, lora=args.lora, layer=args.layer, precisions=args.precision,
                             force=args.force, threshold=args.threshold, lora_extra_scale=args.lora_extra_scale,
                             int8_fp32_blocks=args.int8_fp32_blocks, calibration=args.calibration,
                             int8_smoothing=args.int8_smoothing)
    summary = {p: info["validation"] for p, info in manifest.precisions.items()}
    print(f"wrote bundle {args.output}: {manifest.architecture}, layer {manifest.layer}/{manifest.num_layers}, "
          f"hidden {manifest.hidden_size}, threshold {manifest.default_threshold}")
    print(json.dumps(summary, indent=2))
    return 0
