"""The int8 graph with each projection's dequantization fused (export/int8_fuse.py) against the
same graph unfused, on the full-size NLLB-600M stand-in, in one run.

Issue 27: the ONNX Runtime profile of the static int8 encoder showed ``Cast`` and ``Mul`` after
every ``MatMulInteger`` (and the bias ``Add``) taking about 16% of its time. This takes a bundle
exported before the fusion existed (or any int8 bundle whose graph still has ``MatMulInteger``),
fuses a copy of its int8 graph, and times the encoder alone on both graphs over the same
length-sorted batches of the authors' Bambara-English pairs (the engine's own plan), in
interleaved rounds, after checking that every batch's hidden states are equal bit for bit.

    python -m benchmarks.int8_fuse BUNDLE [--pairs N] [--rounds 4] [--out PATH]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"


def fused_copy(bundle: Path, folder: Path) -> tuple[Path, int]:
    """The bundle's int8 graph and weights copied into ``folder``, fused there."""
    from transalign.export.int8_fuse import fuse_integer_matmuls

    for name in ("model.int8.onnx", "model.int8.onnx.data"):
        shutil.copy(bundle / name, folder / name)
    path = folder / "model.int8.onnx"
    return path, fuse_integer_matmuls(path)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.int8_fuse", description=__doc__.split("\n\n")[0])
    p.add_argument("bundle", type=Path, help="a bundle with an unfused int8 graph (benchmarks/work/bundle-...)")
    p.add_argument("--pairs", type=int, default=1274, help="first N bam pairs that fit (default: all)")
    p.add_argument("--rounds", type=int, default=4, help="interleaved rounds (default 4)")
    p.add_argument("--out", type=Path, help="results JSON (default benchmarks/results/<date>-int8-fuse.json)")
    args = p.parse_args(argv)
    from benchmarks.serve_load import load_pairs
    from transalign.bench.machine import machine_info
    from transalign.engine.aligner import Aligner
    from transalign.engine.session import open_session

    load_start = os.getloadavg()
    aligner = Aligner.load(args.bundle, precision="int8", provider="cpu")
    pairs, langs = load_pairs(args.bundle, args.pairs)
    prepared = aligner.prepare([s for s, _ in pairs], [t for _, t in pairs], *langs)
    plan = aligner.encoder.plan(list(prepared.encoded), prepared.keep, aligner.batch_tokens)
    with tempfile.TemporaryDirectory(dir=args.bundle.parent, prefix=".fused-") as scratch:
        path, fused_count = fused_copy(args.bundle, Path(scratch))
        if not fused_count:
            raise SystemExit(f"{args.bundle}: its int8 graph has nothing left to fuse (exported with the fusion?)")
        sessions = {"unfused": aligner.session, "fused": open_session(path, "cpu", aligner.threads)}

        def run(name, batch):
            return sessions[name].run(["hidden"], {"input_ids": batch.ids, "attention_mask": batch.mask})[0]

        identical = all(np.array_equal(run("unfused", b)[b.mask.astype(bool)], run("fused", b)[b.mask.astype(bool)])
                        for b in plan.batches)
        seconds: dict[str, list[float]] = {name: [] for name in sessions}
        for rnd in range(args.rounds):
            for name in (("unfused", "fused") if rnd % 2 == 0 else ("fused", "unfused")):
                clock = time.perf_counter()
                for batch in plan.batches:
                    run(name, batch)
                seconds[name].append(time.perf_counter() - clock)
                print(f"round {rnd}: {name} {seconds[name][-1]:.2f} s", file=sys.stderr, flush=True)
    ratio = statistics.median(seconds["fused"]) / statistics.median(seconds["unfused"])
    report = {"benchmark": "int8_fuse", "date": dt.date.today().isoformat(), "machine": machine_info(),
              "loadavg_start": list(load_start), "loadavg_end": list(os.getloadavg()), "bundle": str(args.bundle),
              "pairs": len(pairs), "batches": len(plan.batches), "padded_tokens": plan.padded_tokens,
              "fused_matmuls": fused_count, "identical_hidden_states": identical, "seconds": seconds,
              "fused_over_unfused_median": ratio}
    out = args.out or RESULTS / f"{report['date']}-int8-fuse.json"
    out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"{len(pairs)} pairs, {len(plan.batches)} batches, {fused_count} projections fused, hidden states "
          f"{'identical' if identical else 'DIFFERENT'}; fused / unfused encoder time (median of {args.rounds}): "
          f"{ratio:.3f}\nresults: {out}")


if __name__ == "__main__":
    main()
