"""Where an int8 bundle's memory goes, and which ONNX Runtime memory setting keeps it near the weights.

Issue 27: e5-small int8 peaked at 1.04 GB aligning 1,000 csen pairs, several times its weights.
This prints what the graph holds (bytes per dtype of the initializers, the largest ones), then
aligns the same pairs once per memory mode of `transalign.engine.session.MEMORY_MODES`, each in a
fresh process (so peak RSS is that mode's own): RSS after load, peak RSS (VmHWM), the seconds of
a second, warm pass, and a hash of the links (every mode must give the same links).

    python -m benchmarks.int8_memory BUNDLE [--pairs 1000] [--precision int8] [--threads 2]
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CSEN = ROOT / "data" / "gold" / "csen"


def _status(field: str) -> float:
    with open("/proc/self/status", encoding="ascii") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024  # MB (kB / 1024)
    return float("nan")


def holdings(model_path: Path) -> dict:
    """Bytes of the graph's initializers per data type, and the five largest."""
    import onnx

    model = onnx.load(str(model_path), load_external_data=False)
    sizes = {}
    largest = []
    for init in model.graph.initializer:
        count = 1
        for d in init.dims:
            count *= d
        dtype = onnx.helper.tensor_dtype_to_np_dtype(init.data_type)
        nbytes = count * dtype.itemsize
        sizes[str(dtype)] = sizes.get(str(dtype), 0) + nbytes
        largest.append((nbytes, init.name, list(init.dims), str(dtype)))
    largest.sort(reverse=True)
    return {"mb_by_dtype": {k: v / 2**20 for k, v in sizes.items()},
            "largest": [{"mb": b / 2**20, "name": n, "dims": d, "dtype": t} for b, n, d, t in largest[:5]]}


def worker(bundle: str, precision: str, memory: str, pairs: int, threads: int, langs=(None, None)) -> dict:
    import transalign.engine.aligner  # noqa: F401 (the module whose open_session is patched)
    from transalign.engine import session
    from transalign.engine.aligner import Aligner
    from transalign.formats.text import read_sentences

    patched = functools.partial(session.open_session, memory=memory)
    for name in ("transalign.engine.aligner", "transalign.engine.encoder"):  # wherever the engine opens it
        module = sys.modules.get(name)
        if module is not None and hasattr(module, "open_session"):
            module.open_session = patched
    src = read_sentences(CSEN / "src.txt", "lines")
    tgt = read_sentences(CSEN / "tgt.txt", "lines")
    reps = -(-pairs // len(src))
    src, tgt = (src * reps)[:pairs], (tgt * reps)[:pairs]
    rss_start = _status("VmRSS")
    aligner = Aligner.load(bundle, provider="cpu", precision=precision, threads=threads)
    rss_load = _status("VmRSS")
    first = aligner.align(src, tgt, *langs, on_too_long="skip")
    start = time.perf_counter()
    second = aligner.align(src, tgt, *langs, on_too_long="skip")
    seconds = time.perf_counter() - start
    text = "\n".join(" ".join(f"{i}-{j}" for i, j in r.links) for r in second)
    assert [r.links for r in first] == [r.links for r in second]
    return {"memory": memory, "rss_start_mb": rss_start, "rss_after_load_mb": rss_load,
            "rss_end_mb": _status("VmRSS"), "peak_rss_mb": _status("VmHWM"), "seconds": seconds,
            "links_sha256": hashlib.sha256(text.encode()).hexdigest()}


def main() -> None:
    from transalign.engine.bundle import MODEL_FILES
    from transalign.engine.session import MEMORY_MODES

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("bundle")
    parser.add_argument("--pairs", type=int, default=1000)
    parser.add_argument("--precision", default="int8")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--modes", default=",".join(MEMORY_MODES))
    parser.add_argument("--langs", default="", help="SRC,TGT codes for NLLB bundles (csen is Czech-English)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        langs = tuple(args.langs.split(",")) if args.langs else (None, None)
        print(json.dumps(worker(args.bundle, args.precision, args.worker, args.pairs, args.threads, langs)))
        return
    path = Path(args.bundle) / MODEL_FILES[args.precision]
    report = {"bundle": args.bundle, "precision": args.precision, "pairs": args.pairs, "threads": args.threads,
              "load_average_start": os.getloadavg(), "graph": holdings(path),
              "data_file_mb": (path.with_name(path.name + ".data").stat().st_size / 2**20
                               if path.with_name(path.name + ".data").exists() else None), "modes": []}
    for mode in args.modes.split(","):
        proc = subprocess.run([sys.executable, "-m", "benchmarks.int8_memory", args.bundle, "--pairs", str(args.pairs),
                               "--precision", args.precision, "--threads", str(args.threads), "--langs", args.langs,
                               "--worker", mode],
                              capture_output=True, text=True, cwd=ROOT)
        if proc.returncode != 0:
            raise SystemExit(f"mode {mode} failed:\n{proc.stderr[-2000:]}")
        row = json.loads(proc.stdout.strip().splitlines()[-1])
        report["modes"].append(row)
        print(f"{mode:>18}: after load {row['rss_after_load_mb']:7.0f} MB, peak {row['peak_rss_mb']:7.0f} MB, "
              f"warm pass {row['seconds']:6.2f} s", file=sys.stderr, flush=True)
    shas = {row["links_sha256"] for row in report["modes"]}
    report["identical_links_across_modes"] = len(shas) == 1
    report["load_average_end"] = os.getloadavg()
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
