"""Where an int8 bundle's memory goes, and which ONNX Runtime memory setting keeps it near the weights.

Issue 27: e5-small int8 peaked at 1.04 GB aligning 1,000 csen pairs, several times its weights.
This prints what the graph holds (bytes per dtype of the initializers, the largest ones), then
aligns the same pairs once per memory mode of `transalign.engine.session.MEMORY_MODES`, each in a
fresh process (so peak RSS is that mode's own): RSS after load, peak RSS (VmHWM), the seconds of
a second, warm pass, and a hash of the links (every mode must give the same links).

`--tokenizers lean,tokenizers` also compares the two XLM-R-family tokenizer routes
(transalign/engine/tokenizers/unigram.py against the ``tokenizers`` library's Unigram model):
the RSS of loading the tokenizer alone, then the same alignment per route and memory mode, each in
a fresh process, interleaved (route A, route B, A, B: `--repeats`), links required identical.

    python -m benchmarks.int8_memory BUNDLE [--pairs 1000] [--precision int8] [--threads 2]
        [--modes default] [--tokenizers lean,tokenizers] [--repeats 2] [--out FILE]
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


TOKENIZER_ROUTES = ("lean", "tokenizers")


def use_route(route: str) -> None:
    """Make `load_tokenizer` take `route`: "lean" is the engine's choice for a bundle with a
    sentencepiece_file; "tokenizers" refuses the lean route, as for a bundle without one."""
    if route not in TOKENIZER_ROUTES:
        raise SystemExit(f"tokenizer route {route!r} is not one of {', '.join(TOKENIZER_ROUTES)}")
    if route == "tokenizers":
        from transalign.engine.tokenizers.unigram import UnigramWordTokenizer

        UnigramWordTokenizer.from_spec = classmethod(lambda cls, path, spec: None)


def tokenizer_worker(bundle: str, route: str) -> dict:
    """RSS of loading only the bundle's tokenizer by `route` (numpy and the engine imported first);
    route "sentencepiece" is the sentencepiece library with the bundle's sentencepiece_file, which
    the engine does not use (`sentencepiece_differences`)."""
    import numpy  # noqa: F401
    import sentencepiece
    import tokenizers  # noqa: F401

    from transalign.engine.bundle import read_manifest
    from transalign.engine.tokenizers import load_tokenizer

    spec = read_manifest(bundle).tokenizer
    if route != "sentencepiece":
        use_route(route)
    before = _status("VmRSS")
    start = time.perf_counter()
    if route == "sentencepiece":
        tokenizer = sentencepiece.SentencePieceProcessor(model_file=str(Path(bundle) / spec.sentencepiece_file))
    else:
        tokenizer = load_tokenizer(bundle, spec)
    seconds = time.perf_counter() - start
    row = {"route": route, "class": type(tokenizer).__name__, "rss_before_mb": before,
           "rss_after_mb": _status("VmRSS"), "tokenizer_mb": _status("VmRSS") - before,
           "peak_rss_mb": _status("VmHWM"), "load_seconds": seconds}
    if route != "sentencepiece":  # both csen sides, twice: the second pass finds every word cached (lean)
        from transalign.formats.text import read_sentences

        sentences = read_sentences(CSEN / "src.txt", "lines") + read_sentences(CSEN / "tgt.txt", "lines")
        for name in ("tokenize_first_seconds", "tokenize_second_seconds"):
            start = time.perf_counter()
            tokenizer.encode_batch(sentences)
            row[name] = time.perf_counter() - start
        row["tokenized_sentences"] = len(sentences)
    return row


FUZZ_CHARACTERS = (list("aečřžšůáéíýÅß0123456789٣१ＡＢ１ﬁ①½Ⅳ㍻ｶﾞ\u0301\u030c\u200b\u200d\ufeff\u00ad \t\u00a0\u3000<>/sk漢한👍🏽🇨🇿\x00.,'\"«»")
                   + ["<s>", "</s>", "<unk>", "<mask>"])


def sentencepiece_differences(bundle: str, fuzzed: int = 2000) -> dict:
    """Sentences where the sentencepiece library with the bundle's model (each word encoded on its
    own, as the engine tokenizes pre-split words) gives other ids than the engine's route: all csen
    sentences of both sides, and `fuzzed` random sentences over FUZZ_CHARACTERS (seeded)."""
    import random

    import sentencepiece

    from transalign.engine.bundle import read_manifest
    from transalign.engine.tokenizers import load_tokenizer
    from transalign.formats.text import read_sentences

    spec = read_manifest(bundle).tokenizer
    engine = load_tokenizer(bundle, spec)
    library = sentencepiece.SentencePieceProcessor(model_file=str(Path(bundle) / spec.sentencepiece_file))
    rng = random.Random(0)
    sets = {"csen": read_sentences(CSEN / "src.txt", "lines") + read_sentences(CSEN / "tgt.txt", "lines"),
            "fuzzed": [["".join(rng.choice(FUZZ_CHARACTERS) for _ in range(rng.randint(0, 12)))
                        for _ in range(rng.randint(1, 6))] for _ in range(fuzzed)]}
    out = {}
    for name, sentences in sets.items():
        differ = 0
        for words, (ids, _) in zip(sentences, engine.encode_batch(sentences)):
            pieces = [i for w in words for i in library.encode(w)]
            differ += pieces != ids[len(spec.prefix_ids):len(ids) - len(spec.suffix_ids)].tolist()
        out[name] = {"sentences": len(sentences), "differ": differ}
    return out


def worker(bundle: str, precision: str, memory: str, pairs: int, threads: int, langs=(None, None),
           route: str = "lean") -> dict:
    import transalign.engine.aligner  # noqa: F401 (the module whose open_session is patched)
    from transalign.engine import session
    from transalign.engine.aligner import Aligner
    from transalign.formats.text import read_sentences

    use_route(route)

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
    start = time.perf_counter()
    first = aligner.align(src, tgt, *langs, on_too_long="skip")
    first_seconds = time.perf_counter() - start
    start = time.perf_counter()
    second = aligner.align(src, tgt, *langs, on_too_long="skip")
    seconds = time.perf_counter() - start
    text = "\n".join(" ".join(f"{i}-{j}" for i, j in r.links) for r in second)
    assert [r.links for r in first] == [r.links for r in second]
    return {"memory": memory, "tokenizer": route, "tokenizer_class": type(aligner.tokenizer).__name__,
            "rss_start_mb": rss_start, "rss_after_load_mb": rss_load,
            "rss_end_mb": _status("VmRSS"), "peak_rss_mb": _status("VmHWM"), "first_seconds": first_seconds,
            "seconds": seconds,
            "links_sha256": hashlib.sha256(text.encode()).hexdigest()}


def _run(args, *extra: str) -> dict:
    """One worker in a fresh process (its peak RSS its own); its JSON line."""
    command = [sys.executable, "-m", "benchmarks.int8_memory", args.bundle, "--pairs", str(args.pairs),
               "--precision", args.precision, "--threads", str(args.threads), "--langs", args.langs, *extra]
    proc = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    if proc.returncode != 0:
        raise SystemExit(f"worker {' '.join(extra)} failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    from transalign.bench.machine import machine_info
    from transalign.engine.bundle import MODEL_FILES
    from transalign.engine.session import MEMORY_MODES

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("bundle")
    parser.add_argument("--pairs", type=int, default=1000)
    parser.add_argument("--precision", default="int8")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--modes", default=",".join(MEMORY_MODES))
    parser.add_argument("--tokenizers", default="lean", help="tokenizer routes, comma-separated: lean, tokenizers")
    parser.add_argument("--repeats", type=int, default=1, help="runs per (route, mode), interleaved")
    parser.add_argument("--langs", default="", help="SRC,TGT codes for NLLB bundles (csen is Czech-English)")
    parser.add_argument("--out", help="also write the JSON report here")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--route", default="lean", help=argparse.SUPPRESS)
    parser.add_argument("--tokenizer-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.tokenizer_only:
        print(json.dumps(tokenizer_worker(args.bundle, args.route)))
        return
    if args.worker:
        langs = tuple(args.langs.split(",")) if args.langs else (None, None)
        print(json.dumps(worker(args.bundle, args.precision, args.worker, args.pairs, args.threads, langs, args.route)))
        return
    routes = args.tokenizers.split(",")
    unknown = [r for r in routes if r not in TOKENIZER_ROUTES]
    if unknown:
        parser.error(f"--tokenizers: {', '.join(unknown)} not among {', '.join(TOKENIZER_ROUTES)}")
    path = Path(args.bundle) / MODEL_FILES[args.precision]
    report = {"bundle": args.bundle, "precision": args.precision, "pairs": args.pairs, "threads": args.threads,
              "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "machine": machine_info(),
              "load_average_start": os.getloadavg(), "graph": holdings(path),
              "data_file_mb": (path.with_name(path.name + ".data").stat().st_size / 2**20
                               if path.with_name(path.name + ".data").exists() else None),
              "tokenizer_only": [], "modes": []}
    if Path(args.bundle, "sentencepiece.unigram.model").exists():
        report["sentencepiece_library_vs_engine"] = sentencepiece_differences(args.bundle)
        print(f"sentencepiece library vs engine: {report['sentencepiece_library_vs_engine']}", file=sys.stderr)
        routes_alone = [*routes, "sentencepiece"]
    else:
        routes_alone = routes
    for _ in range(args.repeats):
        for route in routes_alone:
            row = _run(args, "--tokenizer-only", "--route", route)
            report["tokenizer_only"].append(row)
            speed = (f", tokenizing csen {row['tokenize_first_seconds']:.2f} s then {row['tokenize_second_seconds']:.2f} s"
                     if "tokenize_first_seconds" in row else "")
            print(f"{route:>13} tokenizer alone ({row['class']}): +{row['tokenizer_mb']:5.0f} MB RSS{speed}",
                  file=sys.stderr, flush=True)
    for _ in range(args.repeats):
        for mode in args.modes.split(","):
            for route in routes:
                row = _run(args, "--worker", mode, "--route", route)
                report["modes"].append(row)
                print(f"{route:>10} {mode:>18}: after load {row['rss_after_load_mb']:7.0f} MB, "
                      f"peak {row['peak_rss_mb']:7.0f} MB, first pass {row['first_seconds']:6.2f} s, "
                      f"warm pass {row['seconds']:6.2f} s",
                      file=sys.stderr, flush=True)
    shas = {row["links_sha256"] for row in report["modes"]}
    report["identical_links_across_modes"] = len(shas) == 1
    report["load_average_end"] = os.getloadavg()
    text = json.dumps(report, indent=1)
    if args.out:
        Path(args.out).write_text(text + "\n", encoding="utf-8")
    print(text)
    if len(shas) != 1:
        raise SystemExit("the links differ between routes or modes")


if __name__ == "__main__":
    main()
