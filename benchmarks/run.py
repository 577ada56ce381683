"""Speed, memory and agreement of the engine against the reference method, at full size.

    python -m benchmarks.run                 # all 1274 bam-en pairs, every variant; updates README.md
    python -m benchmarks.run --pairs 200     # a quick subset (table printed, README untouched)

Workload (cached in benchmarks/work/): the NLLB-600M-shaped random encoder with a stand-in
sentencepiece tokenizer (benchmarks/full_size.py), the authors' LoRA adapter with lora_B scaled
by ``--lora-scale`` (random base weights + the exact adapter collapse all vectors onto one
direction), and a bundle exported from both at layer 12. The reference and the engine use the
very same scaled adapter.

Each variant runs in its own persistent worker process (so load time and peak RSS are its own).
The run is interleaved in rounds, rotating the order: per round the reference aligns its next
block of pairs (cut at multiples of 100, its batch size, so its batches are those of a full
run) and every other variant aligns all pairs in one call, as a user would; machine drift thus
hits all variants alike. The reference's links are the yardstick for every other variant.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import time
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from benchmarks import peak, report
from benchmarks.full_size import BAM, SHARED, build_checkpoint
from transalign.bench.measure import measure_run
from transalign.bench.stats import agreement, parse_links, peak_rss_mb
from transalign.bench.stats import nearest_to_quantile as latency_pairs
from transalign.formats.text import read_sentences

ROOT = Path(__file__).resolve().parent
LORA = SHARED / "reference" / "transalign-lora-nllb-600m"
SRC_LANG, TGT_LANG, LAYER = "bam_Latn", "eng_Latn", 12
PRECISION = {"reference": "fp32", "engine-fp32": "fp32", "engine-int8": "int8", "engine-fp16": "fp16",
             "torch-int8": "int8", "torch-fp32": "fp32", "torch-fp16": "fp16"}
DEFAULT_VARIANTS = {"cpu": "reference,engine-fp32,engine-int8,torch-int8",
                    "cuda": "reference,engine-fp32,engine-fp16,torch-fp16"}


class Clock:
    """``with clock("encode"): ...`` adds the block's wall time to ``clock.seconds["encode"]``."""

    def __init__(self):
        self.seconds: dict[str, float] = defaultdict(float)

    @contextmanager
    def __call__(self, name: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] += time.perf_counter() - start


def load_pairs(n: int | None = None) -> tuple[list[list[str]], list[list[str]]]:
    src = read_sentences(BAM / "test-bam.txt", "conll")
    tgt = read_sentences(BAM / "test-translate-bam-en-preds.txt", "conll")
    assert len(src) == len(tgt), (len(src), len(tgt))
    return src[:n], tgt[:n]


# ---------------------------------------------------------------- workload setup (cached)

def scaled_adapter(out: Path, scale: float, source: Path = LORA) -> Path:
    """A copy of the adapter with every lora_B multiplied by ``scale`` (reused when present)."""
    from safetensors.numpy import load_file, save_file

    from transalign.engine.bundle import sha256_file

    marker = {"scale": scale, "source": str(source), "source_sha256": sha256_file(source / "adapter_model.safetensors")}
    if (out / "scale.json").is_file() and json.loads((out / "scale.json").read_text()) == marker:
        return out
    out.mkdir(parents=True, exist_ok=True)
    tensors = load_file(str(source / "adapter_model.safetensors"))
    scaled = {k: (v * np.asarray(scale, v.dtype) if ".lora_B." in k else v) for k, v in tensors.items()}
    save_file(scaled, str(out / "adapter_model.safetensors"), metadata={"format": "pt"})
    (out / "adapter_config.json").write_bytes((source / "adapter_config.json").read_bytes())
    (out / "scale.json").write_text(json.dumps(marker))  # last: marks the copy complete
    return out


def ensure_bundle(model_dir: Path, lora_dir: Path, out: Path, precisions: tuple[str, ...],
                  reexport: bool = False) -> Path:
    """Export model + adapter at layer 12 unless a readable bundle of them with these precisions
    exists (a bundle this version of the engine refuses, e.g. an older format, is re-exported)."""
    from transalign.engine.bundle import BundleError, read_manifest, sha256_file

    try:
        manifest = read_manifest(out, verify_hashes=False)
    except BundleError:
        manifest = None
    if not reexport and manifest is not None and set(precisions) <= set(manifest.precisions) and manifest.layer == LAYER \
            and (manifest.lora or {}).get("sha256") == sha256_file(lora_dir / "adapter_model.safetensors"):
        return out
    from transalign.export.api import export

    print(f"exporting {model_dir} + {lora_dir} -> {out} ({','.join(precisions)})", file=sys.stderr)
    export(str(model_dir), out, lora=lora_dir, layer=LAYER, precisions=",".join(precisions), force=True)
    return out


def setup(work: Path, lora_scale: float, provider: str, reexport: bool = False) -> dict:
    model = build_checkpoint(work / "nllb-600m-random")
    lora = scaled_adapter(work / f"lora-x{lora_scale:g}", lora_scale)
    precisions = ("fp32", "int8", "fp16") if provider == "cuda" else ("fp32", "int8")
    bundle = ensure_bundle(model, lora, work / f"bundle-l{LAYER}-lora-x{lora_scale:g}", precisions, reexport)
    return {"model_dir": str(model), "lora_dir": str(lora), "bundle": str(bundle)}


# ---------------------------------------------------------------- variants (inside a worker)

class EngineVariant:
    def __init__(self, spec: dict):
        from transalign.engine.aligner import Aligner

        self.aligner = Aligner.load(spec["bundle"], provider=spec["provider"], precision=PRECISION[spec["variant"]],
                                    threads=spec["threads"])
        self.batch_tokens = spec["batch_tokens"]

    def run(self, src, tgt, first_id: int) -> dict:
        run = measure_run(self.aligner, src, tgt, SRC_LANG, TGT_LANG, batch_tokens=self.batch_tokens,
                          first_id=first_id)  # the same timed pass as `transalign bench`
        tok = self.aligner.tokenizer
        lengths = [len(ids) for ids, _ in tok.encode_batch(src, SRC_LANG) + tok.encode_batch(tgt, TGT_LANG)]
        return {"e2e": run["e2e"], "seconds": run["seconds"], "text": run["text"], "lengths": lengths,
                "padded_tokens": run["padded_tokens"]}


class ReferenceVariant:
    def __init__(self, spec: dict):
        import torch

        from benchmarks.reference_baseline import ReferenceAligner

        torch.set_num_threads(spec["threads"])
        self.ref = ReferenceAligner(spec["model_dir"], spec["lora_dir"], SRC_LANG, TGT_LANG, layer=LAYER,
                                    device="cuda" if spec["provider"] == "cuda" else "cpu")

    def run(self, src, tgt, first_id: int) -> dict:
        clock, out = Clock(), io.StringIO()
        start = time.perf_counter()
        content = self.ref.align(src, tgt, out, clock, first_id)
        e2e = time.perf_counter() - start
        padded = sum(len(b) * (max(b) + 2) for side in (0, 1)
                     for b in ([c[side] for c in content[k:k + 100]] for k in range(0, len(content), 100)))
        return {"e2e": e2e, "seconds": dict(clock.seconds), "text": out.getvalue(),
                "lengths": [c[0] + 2 for c in content] + [c[1] + 2 for c in content], "padded_tokens": padded}


class TorchVariant:
    def __init__(self, spec: dict):
        import torch

        from benchmarks.torch_baseline import TorchAligner

        torch.set_num_threads(spec["threads"])
        self.aligner = TorchAligner(spec["model_dir"], spec["lora_dir"], SRC_LANG, TGT_LANG,
                                    precision=PRECISION[spec["variant"]], batch_tokens=spec["batch_tokens"],
                                    device="cuda" if spec["provider"] == "cuda" else "cpu")

    def run(self, src, tgt, first_id: int) -> dict:
        clock, out = Clock(), io.StringIO()
        padded_before = self.aligner.padded_tokens
        start = time.perf_counter()
        links = self.aligner.align(src, tgt, clock)
        with clock("output"):
            for k, line in enumerate(links):
                out.write(f"{first_id + k}\t{line}\n")
        return {"e2e": time.perf_counter() - start, "seconds": dict(clock.seconds), "text": out.getvalue(),
                "lengths": self.aligner.lengths, "padded_tokens": self.aligner.padded_tokens - padded_before}


def make_variant(spec: dict):
    kind = spec["variant"].split("-")[0]
    return {"reference": ReferenceVariant, "engine": EngineVariant, "torch": TorchVariant}[kind](spec)


def worker_main(spec: dict) -> None:
    """JSON lines on stdin -> JSON lines on the original stdout (library chatter goes to stderr)."""
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    start = time.perf_counter()
    variant = make_variant(spec)
    proto.write(json.dumps({"load_s": time.perf_counter() - start, "rss_after_load_mb": peak_rss_mb(),
                            "torch_imported": "torch" in sys.modules}) + "\n")
    src, tgt = load_pairs(spec["pairs"])
    for line in sys.stdin:
        msg = json.loads(line)
        if msg["cmd"] == "block":
            a, b = msg["start"], msg["stop"]
            reply = variant.run(src[a:b], tgt[a:b], a)
        elif msg["cmd"] == "latency":  # one untimed round first: batch-1 shapes, page faults
            samples = []
            for i in msg["indices"]:
                variant.run(src[i:i + 1], tgt[i:i + 1], i)
            for _ in range(msg["repeats"]):
                for i in msg["indices"]:
                    samples.append(variant.run(src[i:i + 1], tgt[i:i + 1], i)["e2e"])
            reply = {"samples_s": samples}
        elif msg["cmd"] == "exit":
            proto.write(json.dumps({"peak_rss_mb": peak_rss_mb(), "torch_imported": "torch" in sys.modules}) + "\n")
            return
        else:
            reply = {"error": f"unknown command {msg['cmd']!r}"}
        proto.write(json.dumps(reply) + "\n")


class Worker:
    """A variant in its own process; ``request`` sends one command and waits for the reply."""

    def __init__(self, spec: dict):
        self.name = spec["variant"]
        self.proc = subprocess.Popen([sys.executable, "-m", "benchmarks.run", "--worker", json.dumps(spec)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT.parent)
        self.ready = self._read()

    def _read(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"worker {self.name} died (exit code {self.proc.wait()}); see its stderr above")
        return json.loads(line)

    def request(self, **msg) -> dict:
        self.proc.stdin.write(json.dumps(msg) + "\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self) -> dict:
        reply = self.request(cmd="exit")
        self.proc.wait(timeout=120)
        return reply


# ---------------------------------------------------------------- the run

def round_blocks(n: int, rounds: int) -> list[tuple[int, int]]:
    """The reference's share of each round: ``rounds`` blocks cut at multiples of 100."""
    bounds = sorted({0, n} | {min(n, round(n * r / rounds / 100) * 100) for r in range(1, rounds)})
    return list(zip(bounds[:-1], bounds[1:]))


def combine(name: str, runs: list[dict]) -> dict:
    """One record per variant: lengths laid out [all sources..., all targets...].

    The reference's runs are consecutive blocks (times add up); every other variant's runs are
    repeats over all pairs (times are averaged, outputs must be identical).
    """
    if name == "reference":
        halves = [len(r["lengths"]) // 2 for r in runs]
        lengths = [x for r, k in zip(runs, halves) for x in r["lengths"][:k]] + \
                  [x for r, k in zip(runs, halves) for x in r["lengths"][k:]]
        seconds = {key: sum(r["seconds"].get(key, 0.0) for r in runs) for key in runs[0]["seconds"]}
        return {"e2e": sum(r["e2e"] for r in runs), "seconds": seconds, "lengths": lengths,
                "padded_tokens": sum(r["padded_tokens"] for r in runs), "text": "".join(r["text"] for r in runs),
                "e2e_runs": [r["e2e"] for r in runs], "runs_are": "consecutive blocks (summed)"}
    seconds = {key: float(np.mean([r["seconds"].get(key, 0.0) for r in runs])) for key in runs[0]["seconds"]}
    return {"e2e": float(np.mean([r["e2e"] for r in runs])), "seconds": seconds, "lengths": runs[0]["lengths"],
            "padded_tokens": runs[0]["padded_tokens"], "text": runs[0]["text"],
            "e2e_runs": [r["e2e"] for r in runs], "runs_are": "repeats over all pairs (mean)",
            "identical_across_runs": all(r["text"] == runs[0]["text"] for r in runs)}


def run_variants(args, paths: dict, n: int) -> dict:
    """Load every worker, then interleave: per round the reference aligns its next block, every
    other variant aligns all pairs in one call (as a user would: its batching sees them all)."""
    batch_tokens = raw_batch_tokens(args)
    raw, runs, workers = {}, {v: [] for v in args.variants}, {}
    for name in args.variants:  # loaded one after another: load times do not compete
        spec = {**paths, "variant": name, "provider": args.provider, "threads": args.threads,
                "batch_tokens": batch_tokens, "pairs": n}
        workers[name] = Worker(spec)
        clock = time.perf_counter()
        workers[name].request(cmd="block", start=0, stop=min(n, args.warmup_pairs))  # JIT, allocator, caches
        raw[name] = {"load": workers[name].ready, "warmup_s": time.perf_counter() - clock}
        print(f"{name}: loaded in {raw[name]['load']['load_s']:.1f} s, warm-up {raw[name]['warmup_s']:.1f} s",
              file=sys.stderr)
    for r, (a, z) in enumerate(round_blocks(n, args.rounds)):
        for name in args.variants[r % len(args.variants):] + args.variants[:r % len(args.variants)]:
            start, stop = (a, z) if name == "reference" else (0, n)
            runs[name].append(workers[name].request(cmd="block", start=start, stop=stop))
            print(f"round {r}: {name} pairs {start}-{stop}: {runs[name][-1]['e2e']:.2f} s", file=sys.stderr)
    for name in args.variants:
        raw[name].update(combine(name, runs[name]))
    lengths = np.asarray(raw[args.variants[0]]["lengths"])
    pair_tokens = lengths[:n] + lengths[n:]
    buckets = {"median": latency_pairs(pair_tokens, 0.5, args.latency_pairs),
               "p90": latency_pairs(pair_tokens, 0.9, args.latency_pairs)}
    for name in args.variants:
        raw[name]["latency"] = {
            bucket: {"pair_tokens_mean": float(pair_tokens[idx].mean()),
                     "samples_s": workers[name].request(cmd="latency", indices=idx, repeats=args.latency_repeats)[
                         "samples_s"]}
            for bucket, idx in buckets.items()}
        raw[name]["exit"] = workers[name].close()
    return raw


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--pairs", type=int, default=None, help="first N pairs only (default: all 1274)")
    parser.add_argument("--variants", default=None,
                        help=f"comma list (default cpu: {DEFAULT_VARIANTS['cpu']}; cuda: {DEFAULT_VARIANTS['cuda']})")
    parser.add_argument("--provider", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--batch-tokens", type=int, default=None, help="engine/torch token budget (engine default)")
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--rounds", type=int, default=3,
                        help="interleaved rounds: the reference does 1/rounds of the pairs per round, "
                             "every other variant all of them")
    parser.add_argument("--lora-scale", type=float, default=0.1)
    parser.add_argument("--warmup-pairs", type=int, default=16)
    parser.add_argument("--latency-pairs", type=int, default=20)
    parser.add_argument("--latency-repeats", type=int, default=3)
    parser.add_argument("--reexport", action="store_true",
                        help="export the bundle again (after changes to the export stage)")
    parser.add_argument("--no-profile", action="store_true", help="skip the ONNX Runtime op profile")
    parser.add_argument("--work", type=Path, default=ROOT / "work")
    parser.add_argument("--out", type=Path, default=None, help="results JSON (default benchmarks/results/...)")
    parser.add_argument("--readme", choices=("auto", "yes", "no"), default="auto",
                        help="rewrite the README table (auto: only for a run over all pairs)")
    args = parser.parse_args(argv)
    if args.worker:
        return worker_main(json.loads(args.worker))
    if args.rounds < 1:
        parser.error(f"--rounds {args.rounds} must be >= 1")
    args.variants = (args.variants or DEFAULT_VARIANTS[args.provider]).split(",")
    unknown = [v for v in args.variants if v not in PRECISION]
    if unknown:
        parser.error(f"unknown variant(s) {', '.join(unknown)}; choose from {', '.join(PRECISION)}")

    n = min(args.pairs or 10**9, len(load_pairs()[0]))
    loadavg_start = os.getloadavg()
    paths = setup(args.work, args.lora_scale, args.provider, args.reexport)
    peak_precisions = sorted({PRECISION[v] for v in args.variants} | {"fp32"})
    measure = lambda: peak.measure_peaks(peak_precisions, args.threads, rows=raw_batch_tokens(args),  # noqa: E731
                                         provider=args.provider)
    peaks_before = measure()
    raw = run_variants(args, paths, n)
    peaks_after = measure()
    profiles = {} if args.no_profile else profile_engines(args, paths, raw)
    results = assemble(args, paths, n, raw, peaks_before, peaks_after, profiles, loadavg_start)
    out = args.out or ROOT / "results" / results["results_file"].split("/")[-1]
    report.save(results, out)
    print(report.render(results))
    print(f"results: {out}", file=sys.stderr)
    if args.readme == "yes" or (args.readme == "auto" and not results["settings"]["subset"]):
        report.update_readme(results)
        print(f"updated {report.README}", file=sys.stderr)


def profile_engines(args, paths: dict, raw: dict) -> dict:
    """ONNX Runtime op profile of each engine graph, in a fresh process (no effect on RSS)."""
    from transalign.engine.bundle import MODEL_FILES

    length = int(np.median(next(iter(raw.values()))["lengths"]))
    batch_tokens = raw_batch_tokens(args)
    profiles = {}
    for name in (v for v in args.variants if v.startswith("engine")):
        model = Path(paths["bundle"]) / MODEL_FILES[PRECISION[name]]
        cmd = [sys.executable, "-m", "benchmarks.peak", "--profile", str(model), "--threads", str(args.threads),
               "--rows", str(batch_tokens), "--length", str(length), "--provider", args.provider]
        profiles[name] = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True,
                                                   cwd=ROOT.parent).stdout)
    return profiles


def raw_batch_tokens(args) -> int:
    if args.batch_tokens is not None:
        return args.batch_tokens
    from transalign.engine.aligner import DEFAULT_BATCH_TOKENS

    return DEFAULT_BATCH_TOKENS[args.provider]


def assemble(args, paths, n, raw, peaks_before, peaks_after, profiles, loadavg_start) -> dict:
    """Agreement, workload facts and machine info around the raw measurements -> results document."""
    src, tgt = load_pairs(n)
    links = {name: parse_links(r.pop("text")) for name, r in raw.items()}
    for name, r in raw.items():
        r["link_count"] = sum(map(len, links[name]))
        (args.work / f"alignments-{name}.txt").write_text(
            "".join(f"{i}\t{' '.join(f'{a}-{b}' for a, b in sorted(l))}\n" for i, l in enumerate(links[name])))
    agree = {name: agreement(links[name], links["reference"]) for name in raw if name != "reference"} \
        if "reference" in raw else {}
    peaks = peak.best_peaks(peaks_before, peaks_after)
    lengths = np.asarray(next(iter(raw.values()))["lengths"])
    same_tokens = all(list(r["lengths"]) == list(lengths) for r in raw.values())
    n_src_words, n_tgt_words = sum(map(len, src)), sum(map(len, tgt))
    src_tokens, tgt_tokens = int(lengths[:n].sum()), int(lengths[n:].sum())
    machine = peak.machine_info()
    machine["loadavg_start"], machine["loadavg_end"] = _load(loadavg_start), _load(os.getloadavg())
    subset = n < len(load_pairs()[0])
    stem = f"{time.strftime('%Y-%m-%d')}-{machine['host']}" + (f"-pairs{n}" if subset else "")
    meta = {
        "schema": 1, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "machine": machine,
        "results_file": f"benchmarks/results/{stem}.json",
        "settings": {"pairs": n, "subset": subset, "variants": args.variants, "provider": args.provider,
                     "threads": args.threads, "batch_tokens": raw_batch_tokens(args), "rounds": args.rounds,
                     "reference_blocks": round_blocks(n, args.rounds),
                     "warmup_pairs": args.warmup_pairs, "latency_pairs": args.latency_pairs,
                     "latency_repeats": args.latency_repeats},
        "workload": {
            "pairs": n, "src_words": n_src_words, "tgt_words": n_tgt_words,
            "tokens_per_word": {"src": (src_tokens - 2 * n) / n_src_words, "tgt": (tgt_tokens - 2 * n) / n_tgt_words},
            "useful_tflop": useful_tflop(lengths), "init_std": json.loads(
                (Path(paths["model_dir"]) / "config.json").read_text()).get("init_std"),
            "lora_scale": args.lora_scale, "lora": str(LORA), "layer": LAYER,
            "authors_links_per_src_word": authors_links(n) / n_src_words,
            "tokenizer": standin_tokenizer(Path(paths["model_dir"])), "same_tokens_in_all_variants": same_tokens, "bundle_mb": bundle_sizes(Path(paths["bundle"])),
            "paths": paths,
        },
        "profiles": profiles,
    }
    precisions = {name: PRECISION[name] for name in raw}
    return report.summarize(raw, precisions, peaks, agree, meta)


def useful_tflop(lengths) -> float:
    return peak.useful_flops(lengths) / 1e12


def _load(avg) -> str:
    return "/".join(f"{x:.2f}" for x in avg)


def authors_links(n: int) -> int:
    """Links in the authors' real bam-en output (real NLLB weights) for the first n pairs."""
    lines = (BAM / "bam-en-alignments.txt").read_text(encoding="utf-8").splitlines()[:n]
    return sum(len(line.split("\t", 1)[1].split()) if "\t" in line else 0 for line in lines)


def standin_tokenizer(model_dir: Path) -> dict:
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(model_dir / "sentencepiece.bpe.model"))
    return {"kind": "stand-in sentencepiece BPE trained on the bam sample (Bambara + English), "
                    "wrapped as an NLLB tokenizer; ids in the low part of the 256k vocabulary",
            "vocab_size": sp.get_piece_size(), "file": str(model_dir / "sentencepiece.bpe.model")}


def bundle_sizes(bundle: Path) -> dict:
    from transalign.engine.bundle import MODEL_FILES, files_of_precision

    return {p: sum(f.stat().st_size for f in bundle.iterdir() if files_of_precision(f.name, p)) / 1e6
            for p, name in MODEL_FILES.items() if (bundle / name).is_file()}  # graph + external weights


if __name__ == "__main__":
    main()
