"""Pipelined against serial `Aligner.align_iter` on CPU, interleaved rounds in one run (issue 27).

The pipeline (engine/pipeline.py, ``LoadOptions.pipeline``) overlaps tokenizing, the encoder and
extraction; on CPU all three compete for the same cores, so the question is whether it costs
anything there (``pipeline="auto"`` stays off on CPU unless it helps). Per bundle, the same
Aligner (one ONNX Runtime session) aligns the same bam-en pairs four ways: serial and pipelined,
each with the default chunk of 4096 pairs (one chunk here: nothing to overlap, so the pipelined
run shows the pipeline's fixed cost) and with small chunks (``--chunk``) that give the pipeline
several chunks to overlap. The order of the four rotates every round, so drift in the machine's
load hits all alike; every run's links must equal the first serial run's (checked each round).
Each run also writes the links as Pharaoh text to memory, as the CLI would.

Bundles: ``--bundle PATH`` (repeatable). By default the NLLB-600M block shape (d_model 1024,
ffn 4096, 16 heads) with 2 layers and random weights (benchmarks/int8_fold.py builds it, fp32
export, a minute the first time): encoder-heavy, as full size is on CPU. A tiny bundle (e.g.
the tests' cached fixture under .cache/fixtures/tiny-bundle-*/bundle) shows the other extreme,
where tokenizing and extraction dominate.

    python -m benchmarks.pipeline_cpu [--bundle PATH ...] [--pairs 200] [--chunk 32] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import time
from pathlib import Path

import numpy as np

from benchmarks.full_size import BAM
from transalign.formats.text import read_sentences

WORK = Path("benchmarks/work")
LANGS = ("bam_Latn", "eng_Latn")
DEFAULT_CHUNK = 4096


def default_bundle() -> Path:
    """The 2-layer NLLB-shaped fp32 bundle of benchmarks/int8_fold.py (built once, reused)."""
    from benchmarks.int8_fold import build_checkpoint
    from transalign.export.api import export_bundle

    WORK.mkdir(parents=True, exist_ok=True)
    bundle = WORK / "nllb-shape-2-layers-bundle"
    if not (bundle / "manifest.json").is_file():
        model = build_checkpoint(WORK / "nllb-shape-2-layers", 2)
        export_bundle(str(model), bundle, layer=2, precisions="fp32", force=True)
    return bundle


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def one_run(aligner, pipelined: bool, chunk: int, src, tgt) -> tuple[float, str]:
    """Seconds to align and write every pair as Pharaoh lines, and the text written."""
    aligner.pipelined = pipelined
    langs = LANGS if aligner.manifest.tokenizer.lang_code_ids else (None, None)  # BERT family: no codes
    start = time.perf_counter()
    text = "".join(r.pharaoh() + "\n" for r in aligner.align_iter(src, tgt, *langs, chunk_pairs=chunk))
    return time.perf_counter() - start, text


def measure(bundle: Path, pairs: int, chunk: int, rounds: int, threads: int | None, precision: str) -> dict:
    from transalign.engine.aligner import Aligner
    from transalign.engine.options import LoadOptions

    aligner = Aligner.load(bundle, options=LoadOptions(provider="cpu", threads=threads, precision=precision))
    src = read_sentences(BAM / "test-bam.txt", "conll")[:pairs]
    tgt = read_sentences(BAM / "test-translate-bam-en-preds.txt", "conll")[:pairs]
    variants = [("serial", DEFAULT_CHUNK), ("pipelined", DEFAULT_CHUNK), ("serial", chunk), ("pipelined", chunk)]
    _, expected = one_run(aligner, False, DEFAULT_CHUNK, src, tgt)  # warm-up, and the links every run must give
    one_run(aligner, True, chunk, src, tgt)  # the pipeline's tokenizer is loaded once, then lent
    seconds = {f"{mode}@{c}": [] for mode, c in variants}
    for r in range(rounds):
        for mode, c in variants[r % len(variants):] + variants[:r % len(variants)]:
            elapsed, text = one_run(aligner, mode == "pipelined", c, src, tgt)
            assert text == expected, f"{mode} chunk {c}: links differ from the serial run"
            seconds[f"{mode}@{c}"].append(elapsed)
    aligner.pipelined = False
    stats = aligner.align(src, tgt, *(LANGS if aligner.manifest.tokenizer.lang_code_ids else (None, None))).stats
    median = {name: float(np.median(v)) for name, v in seconds.items()}
    return {"bundle": str(bundle), "precision": precision, "hidden_size": aligner.manifest.hidden_size,
            "layer": aligner.manifest.layer, "pairs": len(src), "encoder_tokens": stats.real_tokens,
            "serial_stage_seconds": {k: round(v, 4) for k, v in stats.seconds.items()},
            "seconds": seconds, "median_seconds": median,
            "pipelined_over_serial": {
                f"chunk {DEFAULT_CHUNK}": median[f"pipelined@{DEFAULT_CHUNK}"] / median[f"serial@{DEFAULT_CHUNK}"],
                f"chunk {chunk}": median[f"pipelined@{chunk}"] / median[f"serial@{chunk}"],
                f"chunk {chunk} vs serial chunk {DEFAULT_CHUNK}": median[f"pipelined@{chunk}"]
                / median[f"serial@{DEFAULT_CHUNK}"]},
            "per_round_pipelined_over_serial": [p / s for p, s in zip(seconds[f"pipelined@{chunk}"],
                                                                      seconds[f"serial@{chunk}"])],
            "links_identical": True}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", action="append", type=Path, help="a bundle (repeatable; default: the 2-layer "
                                                                    "NLLB-shaped bundle, built once)")
    parser.add_argument("--pairs", type=int, default=200, help="bam-en pairs per run (default 200)")
    parser.add_argument("--chunk", type=int, default=32, help="the small chunk, in pairs (default 32)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--precision", default="fp32", help="fp32 or int8 (default fp32)")
    parser.add_argument("--threads", type=int, default=None, help="ONNX Runtime and kernel threads (default: all)")
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    args = parser.parse_args()
    report = {"uptime_start": uptime(), "cpu_count": os.cpu_count(), "threads": args.threads,
              "affinity": len(os.sched_getaffinity(0)), "bundles": []}
    for bundle in args.bundle or [default_bundle()]:
        result = measure(bundle, args.pairs, args.chunk, args.rounds, args.threads, args.precision)
        report["bundles"].append(result)
        print(f"{bundle} ({args.precision}, d {result['hidden_size']}, layer {result['layer']}, {result['pairs']} pairs): "
              + ", ".join(f"{name} {v:.3f} s" for name, v in result["median_seconds"].items())
              + "; pipelined/serial " + ", ".join(f"{k}: {v:.3f}" for k, v in result["pipelined_over_serial"].items())
              + f"; per round, chunk {args.chunk}: "
              + " ".join(f"{v:.3f}" for v in result["per_round_pipelined_over_serial"]), flush=True)
    report["uptime_end"] = uptime()
    print(f"load: start [{report['uptime_start']}], end [{report['uptime_end']}]")
    text = json.dumps(report, indent=2)
    if args.out:
        args.out.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
