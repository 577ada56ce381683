"""`transalign export`: Hugging Face checkpoint (+ LoRA) -> ONNX bundle."""

from __future__ import annotations

import argparse
import json

from transalign.kernels.names import METHODS, WORD_LEVELS


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
    p.add_argument("--method", choices=METHODS,
                   help="the bundle's default extraction method, used when `align` is given none (default: the "
                        "family's, softmax: the paper's rule; `transalign tune --write` can store a measured one)")
    p.add_argument("--word-level", choices=WORD_LEVELS,
                   help="the bundle's default word level (default: the family's, any)")
    p.add_argument("--threshold", type=float, help="the bundle's default softmax threshold, in [0, 1) (default: "
                                                   "the family's reference value, 0.001 for NLLB)")
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
    p.add_argument("--json", action="store_true", help="print the written manifest as JSON instead of a summary")
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
                             force=args.force, threshold=args.threshold, method=args.method,
                             word_level=args.word_level, lora_extra_scale=args.lora_extra_scale,
                             int8_fp32_blocks=args.int8_fp32_blocks, calibration=args.calibration,
                             int8_smoothing=args.int8_smoothing)
    if args.json:
        print(json.dumps({"bundle": args.output, "manifest": manifest.to_json()}, indent=2))
    else:
        print(summary(args.output, manifest))
    return 0


def summary(out: str, m) -> str:
    """What a person needs after an export: what was written, how it checked out, what to run next."""
    lines = [f"wrote bundle {out}",
             f"  model      {m.base_model} ({m.family or m.architecture}), layer {m.layer} of {m.num_layers}, "
             f"hidden size {m.hidden_size}, up to {m.max_positions} tokens per sentence"
             + (", LoRA merged" if m.lora else ""),
             f"  default    {extraction_text(m)} (used when `align` is given no --method/--word-level/--threshold)"]
    for precision, info in m.precisions.items():
        v = info["validation"]
        if not v.get("validated"):
            lines.append(f"  {precision:<10} {v.get('note') or 'not validated'}")
            continue
        facts = [f"{key.replace('_', ' ')} {v[key]:{form}}" for key, form in
                 (("max_rel_diff", ".2g"), ("mean_cosine", ".5f"), ("min_cosine", ".5f"))
                 if isinstance(v.get(key), (int, float))]
        how = f" ({v['check']})" if v.get("check") else ""
        lines.append(f"  {precision:<10} validated against PyTorch{how}: {', '.join(facts)}")
    langs = "" if not m.tokenizer.lang_code_ids else " --src-lang CODE --tgt-lang CODE"
    lines.append(f"next: transalign align {out} --src SRC.txt --tgt TGT.txt{langs}   (--json: the whole manifest)")
    return "\n".join(lines)


def extraction_text(m) -> str:
    """The bundle's default extraction in words, e.g. 'softmax, word level any, threshold 0.001'."""
    text = f"{m.default_method}, word level {m.default_word_level}"
    return text + f", threshold {m.default_threshold:g}" if m.default_method == "softmax" else text
