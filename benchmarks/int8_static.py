"""Static (batch-invariant) int8 against the former dynamic int8 on the full-size NLLB stand-in.

Issue 12 replaced ONNX Runtime's dynamic activation quantization (one scale per tensor per run)
by calibrated constant scales with SmoothQuant smoothing (transalign/export/quantize.py). This
measures what that costs in speed, in one run, interleaved: the same fp32 export quantized both
ways, the authors' Bambara-English pairs aligned with each graph in turn. It also checks the
property the change is for: the static graph's links are identical with batch budgets 256 and
2048, the dynamic graph's are not.

    python -m benchmarks.int8_static [--pairs 400] [--rounds 2] [--threads 2]

The dynamic graph is built here from the bundle's fp32 model for comparison only; bundles no
longer contain it. The 12x-the-reference figure of the full benchmark (benchmarks/run.py) scales
with the encoder time measured here.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from benchmarks.full_size import BAM, build_checkpoint
from transalign.engine.aligner import Aligner
from transalign.engine.session import open_session
from transalign.formats.text import read_sentences

WORK = Path("benchmarks/work")
LORA = Path(__file__).resolve().parents[1] / "data" / "reference" / "transalign-lora-nllb-600m"
LANGS = ("bam_Latn", "eng_Latn")


def build(work: Path) -> Path:
    """The full-size stand-in exported fp32 + static int8, plus the old dynamic int8 beside it."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from transalign.export.api import export_bundle

    bundle = work / "nllb-600m-static-int8"
    if not (bundle / "manifest.json").is_file():
        model = build_checkpoint(work / "nllb-600m-random")
        export_bundle(str(model), bundle, lora=LORA, layer=12,
                      precisions="fp32,int8", force=True)
    dynamic = work / "dynamic-int8" / "model.int8.onnx"
    if not dynamic.is_file():
        dynamic.parent.mkdir(parents=True, exist_ok=True)
        quantize_dynamic(str(bundle / "model.onnx"), str(dynamic), weight_type=QuantType.QInt8, per_channel=True,
                         op_types_to_quantize=["MatMul", "Gemm"], use_external_data_format=True)
    return bundle


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    bundle = build(WORK)
    src = read_sentences(BAM / "test-bam.txt", "conll")[:args.pairs]
    tgt = read_sentences(BAM / "test-translate-bam-en-preds.txt", "conll")[:args.pairs]
    aligner = Aligner.load(bundle, provider="cpu", precision="int8", threads=args.threads)
    sessions = {"static int8": aligner.session,
                "dynamic int8": open_session(WORK / "dynamic-int8" / "model.int8.onnx", "cpu", args.threads)}
    seconds = {name: [] for name in sessions}
    links = {}
    for _ in range(args.rounds):
        for name, session in sessions.items():
            aligner.session = session
            start = time.perf_counter()
            links[name] = [r.links for r in aligner.align(src, tgt, *LANGS)]
            seconds[name].append(time.perf_counter() - start)
    invariant = {}
    for name, session in sessions.items():
        aligner.session = session
        small = [r.links for r in aligner.align(src, tgt, *LANGS, batch_tokens=256)]
        invariant[name] = sum(a == b for a, b in zip(small, links[name])) / len(src)
    best = {name: min(values) for name, values in seconds.items()}
    report = {"pairs": len(src), "threads": args.threads, "seconds": seconds,
              "static_over_dynamic_time": best["static int8"] / best["dynamic int8"],
              "identical_pairs_budget_256_vs_2048": invariant,
              "identical_pairs_static_vs_dynamic": sum(a == b for a, b in zip(links["static int8"],
                                                                            links["dynamic int8"])) / len(src)}
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
