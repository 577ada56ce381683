"""C vs Python on the same bundle and pairs, same run: load time, throughput, single-pair p50, peak RSS.

    python c/bench/compare.py BUNDLE [--precision fp32] [--pairs N]      (after `make c`)

Pairs: the authors' Bambara-English sample (data/reference/bam-sample). Each engine runs in
its own fresh process (so peak RSS is that engine's alone), C first then Python, alternating for
--rounds rounds; the table gives the median of the rounds. Links are checked equal before timing.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PYTHON_SIDE = r"""
import json, resource, sys, time
t0 = time.perf_counter()
from transalign import Aligner
bundle, precision, src_path, tgt_path, src_lang, tgt_lang, repeat = sys.argv[1:8]
src = [l.split() for l in open(src_path, encoding="utf-8").read().splitlines()]
tgt = [l.split() for l in open(tgt_path, encoding="utf-8").read().splitlines()]
t0 = time.perf_counter()
aligner = Aligner.load(bundle, provider="cpu", precision=precision)
aligner.align(src[:1], tgt[:1], src_lang, tgt_lang)  # numba kernels compiled or loaded from cache
load = time.perf_counter() - t0
t0 = time.perf_counter()
aligner.align(src, tgt, src_lang, tgt_lang)
align = time.perf_counter() - t0
single = []
for k in range(min(int(repeat), len(src))):
    t0 = time.perf_counter()
    aligner.align(src[k:k + 1], tgt[k:k + 1], src_lang, tgt_lang)
    single.append(time.perf_counter() - t0)
single.sort()
print(json.dumps({"load_s": load, "align_s": align, "pairs": len(src), "single_p50_ms": single[len(single) // 2] * 1e3,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle")
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--pairs", type=int, default=1274)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=50, help="pairs aligned one by one for the p50")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from transalign.formats.text import read_sentences

    sample = ROOT / "data" / "reference" / "bam-sample"
    src = read_sentences(sample / "test-bam.txt", "conll")[:args.pairs]
    tgt = read_sentences(sample / "test-translate-bam-en-preds.txt", "conll")[:args.pairs]
    with tempfile.TemporaryDirectory() as tmp:
        files = []
        for name, sentences in (("src", src), ("tgt", tgt)):
            path = Path(tmp) / name
            path.write_text("".join(" ".join(s) + "\n" for s in sentences), encoding="utf-8")
            files.append(str(path))
        common = [args.bundle, args.precision, *files, "bam_Latn", "eng_Latn", str(args.repeat)]
        c_out, py_out = Path(tmp) / "c.align", Path(tmp) / "py.align"
        subprocess.run([str(ROOT / "build" / "c" / "transalign-align"), args.bundle, "--src", files[0], "--tgt",
                        files[1], "--src-lang", "bam_Latn", "--tgt-lang", "eng_Latn", "--precision", args.precision,
                        "-o", str(c_out)], check=True)
        subprocess.run([sys.executable, "-m", "transalign", "align", args.bundle, "--src", files[0], "--tgt", files[1],
                        "--src-lang", "bam_Latn", "--tgt-lang", "eng_Latn", "--precision", args.precision,
                        "--provider", "cpu", "-o", str(py_out)], check=True, cwd=ROOT)
        assert c_out.read_bytes() == py_out.read_bytes(), "C and Python links differ: no benchmark"
        runs = {"C (libtransalign)": [], "Python engine": []}
        for _ in range(args.rounds):
            runs["C (libtransalign)"].append(json.loads(subprocess.run(
                [str(ROOT / "build" / "c" / "bench"), *common], check=True, capture_output=True, text=True).stdout))
            runs["Python engine"].append(json.loads(subprocess.run(
                [sys.executable, "-c", PYTHON_SIDE, *common], check=True, capture_output=True, text=True,
                cwd=ROOT).stdout))
    print(f"| {args.precision}, {len(src)} pairs, median of {args.rounds} "
          "| pairs/s | single pair p50 | load | peak RSS |")
    print("|---|---|---|---|---|")
    for name, results in runs.items():
        med = {key: statistics.median(r[key] for r in results) for key in results[0]}
        print(f"| {name} | {med['pairs'] / med['align_s']:.1f} | {med['single_p50_ms']:.2f} ms | {med['load_s']:.2f} s "
              f"| {med['peak_rss_mb']:.0f} MB |")


if __name__ == "__main__":
    main()
