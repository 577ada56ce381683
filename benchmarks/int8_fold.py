"""Static int8 with the SmoothQuant Mul folded against unfolded, on a full-size-like encoder.

Issue 27: the static (batch-invariant) int8 graph put a ``Mul`` by 1/s before every quantized
projection; export/quantize.py now folds it into the LayerNorm (q/k/v, fc1) and into fc1's
output columns (fc2). This measures what that saves, in one run, interleaved: the NLLB-600M
block shape (d_model 1024, 16 heads, ffn 4096, ReLU) with fewer blocks and a smaller
vocabulary so it builds in a minute, the same fp32 export quantized both ways from the same
calibration, the encoder run alone on the authors' Bambara-English sentences in length-sorted
batches of at most ``--batch-tokens`` padded tokens. It also checks that the two graphs give the
same hidden states and that the folded one is batch-invariant (rows alone = rows in a batch).

    python -m benchmarks.int8_fold [--layers 2] [--sentences 300] [--rounds 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

from benchmarks.full_size import BAM, NLLB_600M, save_checkpoint
from transalign.formats.text import read_sentences

WORK = Path("benchmarks/work")
LANGS = ("bam_Latn", "eng_Latn")


def build_checkpoint(out: Path, layers: int, vocab: int = 8192, seed: int = 0) -> Path:
    """NLLB-600M block shapes with ``layers`` encoder blocks, random N(0, 0.02) weights."""
    if (out / ".complete").exists():
        return out
    import torch
    from transformers import M2M100Config
    from transformers.models.m2m_100.modeling_m2m_100 import M2M100Encoder

    config = M2M100Config(**{**NLLB_600M, "encoder_layers": layers, "vocab_size": vocab}, init_std=0.02)
    config._attn_implementation = "eager"
    torch.manual_seed(seed)
    return save_checkpoint(M2M100Encoder(config).eval(), config, out)


def build(work: Path, layers: int) -> tuple[Path, dict[str, Path]]:
    """The fp32 bundle and its int8 graph quantized with and without folding."""
    import onnx

    from transalign.engine.bundle import read_manifest
    from transalign.engine.tokenizers import load_tokenizer
    from transalign.export import quantize
    from transalign.export.api import export_bundle
    from transalign.export.validation import CALIBRATION_SENTENCES, VALIDATION_SENTENCES

    work.mkdir(parents=True, exist_ok=True)
    model = build_checkpoint(work / f"nllb-shape-{layers}-layers", layers)
    bundle = work / f"nllb-shape-{layers}-layers-bundle"
    if not (bundle / "manifest.json").is_file():
        export_bundle(str(model), bundle, layer=layers, precisions="fp32", force=True)
    graphs = {"unfolded": bundle / "unfolded" / "model.int8.onnx", "folded": bundle / "folded" / "model.int8.onnx"}
    if not all(p.is_file() for p in graphs.values()):
        tokenizer = load_tokenizer(bundle, read_manifest(bundle).tokenizer)
        rows = [tokenizer.encode(text.split(), lang)[0] for text, lang in VALIDATION_SENTENCES + CALIBRATION_SENTENCES
                if lang in tokenizer.languages]
        for name, path in graphs.items():
            path.parent.mkdir(exist_ok=True)
            facts = quantize.quantize_static_int8(bundle / "model.onnx", path, [], rows, fold=name == "folded")
            print(name, facts["smoothing_folded"], flush=True)
        assert onnx.load(str(graphs["folded"]), load_external_data=False)  # readable
    return bundle, graphs


def batches(bundle: Path, n: int, budget: int) -> list[dict]:
    """Length-sorted padded batches of both sides of the first ``n`` bam-en pairs."""
    from transalign.engine.bundle import read_manifest
    from transalign.engine.tokenizers import load_tokenizer

    tokenizer = load_tokenizer(bundle, read_manifest(bundle).tokenizer)
    src = read_sentences(BAM / "test-bam.txt", "conll")[:n]
    tgt = read_sentences(BAM / "test-translate-bam-en-preds.txt", "conll")[:n]
    rows = sorted([ids for ids, _ in tokenizer.encode_batch(src, LANGS[0]) + tokenizer.encode_batch(tgt, LANGS[1])],
                  key=len)
    out, start = [], 0
    while start < len(rows):
        width = len(rows[start])
        stop = start + 1
        while stop < len(rows) and len(rows[stop]) * (stop + 1 - start) <= budget:
            stop += 1
        width = len(rows[stop - 1])
        ids = np.ones((stop - start, width), np.int64)
        mask = np.zeros_like(ids)
        for k, row in enumerate(rows[start:stop]):
            ids[k, :len(row)], mask[k, :len(row)] = row, 1
        out.append({"input_ids": ids, "attention_mask": mask})
        start = stop
    return out


def main() -> None:
    from transalign.engine.session import open_session

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--sentences", type=int, default=300, help="bam-en pairs (both sides are encoded)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-tokens", type=int, default=2048)
    args = parser.parse_args()
    load_start = os.getloadavg()
    bundle, graphs = build(WORK, args.layers)
    work = batches(bundle, args.sentences, args.batch_tokens)
    sessions = {name: open_session(path, "cpu", args.threads) for name, path in graphs.items()}
    outputs = {name: [s.run(None, feed)[0] for feed in work] for name, s in sessions.items()}  # warm-up too
    seconds = {name: [] for name in sessions}
    cpu = {name: [] for name in sessions}  # process CPU seconds: less hurt by a busy machine than wall time
    for _ in range(args.rounds):
        for name, session in sessions.items():
            start, start_cpu = time.perf_counter(), time.process_time()
            for feed in work:
                session.run(None, feed)
            seconds[name].append(time.perf_counter() - start)
            cpu[name].append(time.process_time() - start_cpu)
    real = [feed["attention_mask"].astype(bool) for feed in work]
    diff = max(float(np.abs(a[m] - b[m]).max()) for a, b, m in zip(outputs["folded"], outputs["unfolded"], real))
    scale = max(float(np.abs(a[m]).max()) for a, m in zip(outputs["unfolded"], real))
    invariant = True
    for k in (0, len(work) // 2, len(work) - 1):  # rows alone vs in their batch, folded graph
        feed = work[k]
        for r in (0, len(feed["input_ids"]) - 1):
            n = int(feed["attention_mask"][r].sum())
            alone = sessions["folded"].run(None, {"input_ids": feed["input_ids"][r:r + 1, :n],
                                                  "attention_mask": feed["attention_mask"][r:r + 1, :n]})[0]
            invariant &= bool(np.array_equal(alone[0], outputs["folded"][k][r, :n]))
    best = {name: min(v) for name, v in seconds.items()}
    tokens = int(sum(m.sum() for m in real))
    report = {"layers": args.layers, "d_model": NLLB_600M["d_model"], "ffn": NLLB_600M["encoder_ffn_dim"],
              "sequences": sum(len(f["input_ids"]) for f in work), "real_tokens": tokens,
              "padded_tokens": int(sum(f["input_ids"].size for f in work)), "batches": len(work),
              "threads": args.threads, "seconds": seconds, "cpu_seconds": cpu,
              "cpu_median_ratio": float(np.median(cpu["folded"]) / np.median(cpu["unfolded"])),
              "tokens_per_s_best": {name: tokens / t for name, t in best.items()},
              "folded_over_unfolded_time": best["folded"] / best["unfolded"],
              "median_ratio": float(np.median(seconds["folded"]) / np.median(seconds["unfolded"])),
              "hidden_max_rel_diff_folded_vs_unfolded": diff / scale, "folded_batch_invariant": invariant,
              "load_average_start": load_start, "load_average_end": os.getloadavg(), "cpu_count": os.cpu_count()}
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
