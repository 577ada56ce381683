"""`transalign finetune`: train a TransAlign LoRA adapter on gold word alignments and/or on
parallel text without gold (self-training, `--parallel`)."""

from __future__ import annotations

import json


def register(sub) -> None:
    p = sub.add_parser(
        "finetune",
        help="train a LoRA adapter on gold word alignments or parallel text (for export --lora)",
        description="Fine-tune a PEFT LoRA on the encoder so that the alignment layer's similarity softmaxes "
                    "match gold subword alignments (--gold-dir) or, on parallel text without gold (--parallel), "
                    "the model's own alignments of each pair by the paper's rule (self-training); writes an "
                    "adapter directory that `transalign export --lora` merges. Needs the `train` extra (torch, "
                    "transformers, peft).",
    )
    p.add_argument("model", help="local Hugging Face checkpoint directory or hub id")
    p.add_argument("--gold-dir", action="append", default=[], metavar="DIR",
                   help="gold set: src.txt, tgt.txt, gold.txt (i-j sure, ipj possible) and optional meta.json "
                        "(src_lang/tgt_lang, NLLB codes); repeat for several language pairs")
    p.add_argument("--parallel", action="append", default=[], metavar="FILE",
                   help="parallel text without gold for self-training: 'source ||| target' or 'source<TAB>target' "
                        "lines ('-': stdin); repeatable, may be mixed with --gold-dir; malformed, empty and too "
                        "long rows are skipped and reported as FILE:LINE on stderr")
    p.add_argument("--src-lang", help="NLLB code of the --parallel files' source side (and of gold sets without "
                                      "meta.json); ignored by BERT-family models")
    p.add_argument("--tgt-lang", help="NLLB code of the --parallel files' target side (likewise)")
    p.add_argument("--self-threshold", type=float,
                   help="self-training target: cells above this in both softmaxes of the model's own S "
                        "(default: the dev threshold, i.e. the family's reference, 0.001 for NLLB and e5)")
    p.add_argument("-o", "--output", required=True, help="adapter directory to create")
    p.add_argument("--dev-dir", metavar="DIR",
                   help="gold set scored (AER) before training and after each epoch; the best epoch is kept")
    p.add_argument("--layer", type=int, help="alignment layer (default: the family's reference layer)")
    p.add_argument("--threshold", type=float, help="dev extraction threshold (default: the family's reference)")
    p.add_argument("--objective", choices=("symmetric", "authors"), default="symmetric",
                   help="symmetric: forward and backward softmax (default); authors: their script as written "
                        "(only the forward softmax is trained)")
    p.add_argument("--epochs", type=int, default=3, help="default 3")
    p.add_argument("--batch-size", type=int, default=8, help="sentence pairs per step, default 8")
    p.add_argument("--lr", type=float, default=1e-4, help="AdamW learning rate, default 1e-4")
    p.add_argument("--seed", type=int, default=0, help="default 0; same seed, same adapter")
    p.add_argument("--lora-r", type=int, default=8, help="LoRA rank, default 8")
    p.add_argument("--lora-alpha", type=float, default=32.0, help="LoRA alpha, default 32")
    p.add_argument("--lora-dropout", type=float, default=0.1, help="default 0.1")
    p.add_argument("--links", choices=("all", "sure"), default="all",
                   help="gold links to train on: sure and possible (default) or sure only")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="default auto (CUDA if torch sees a GPU, else CPU)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    p.add_argument("--force", action="store_true", help="replace an existing non-empty output directory")
    p.add_argument("--json", action="store_true", help="print the per-epoch history as JSON instead of one line "
                   "per epoch")
    p.set_defaults(func=run)


def run(args) -> int:
    from transalign.cli import UserError
    from transalign.train.loop import finetune

    if not args.gold_dir and not args.parallel:
        raise UserError("nothing to train on: give --gold-dir DIR (gold alignments) and/or --parallel FILE "
                        "(parallel text, self-training)")
    result = finetune(args.model, args.gold_dir, args.output, dev_dir=args.dev_dir, layer=args.layer,
                      parallel=args.parallel, src_lang=args.src_lang, tgt_lang=args.tgt_lang,
                      self_threshold=args.self_threshold,
                      threshold=args.threshold, objective=args.objective, epochs=args.epochs,
                      batch_size=args.batch_size, lr=args.lr, seed=args.seed, r=args.lora_r,
                      alpha=args.lora_alpha, dropout=args.lora_dropout, links=args.links, device=args.device,
                      progress=not args.no_progress, force=args.force)
    for record in result.info["parallel"]:
        print(f"parallel {record['path']}: {record['rows_used']} pairs used, {record['rows_skipped']} rows skipped"
              + (f" ({', '.join(f'{k} {v}' for k, v in record['skipped_by_reason'].items())})"
                 if record["rows_skipped"] else ""))
    if args.json:
        print(json.dumps(list(result.history), indent=2))
        return 0
    for entry in result.history:
        print(_epoch_line(entry))
    print(f"wrote adapter {result.out}: best epoch {result.best_epoch} of {len(result.history) - 1}, "
          f"{result.seconds:.1f} s (every figure: {result.out}/training.json, or --json)")
    return 0


def _epoch_line(entry: dict) -> str:
    """'epoch 1: loss 0.4321, dev AER 0.1462 (argmax 0.0955)': one line per epoch for people."""
    parts = [f"epoch {entry['epoch']}:"]
    for key, value in entry.items():
        if key != "epoch" and isinstance(value, (int, float)) and not isinstance(value, bool):
            parts.append(f"{key} {value:.4g}")
    dev = entry.get("dev")
    if isinstance(dev, dict) and "aer" in dev:
        parts.append(f"dev AER {dev['aer']:.4f}")
        argmax = entry.get("dev_argmax") or dev.get("argmax")
        if isinstance(argmax, dict) and "aer" in argmax:
            parts.append(f"(argmax {argmax['aer']:.4f})")
    return " ".join(parts)
