"""The measurements of a run + the facts around them (workload, settings, machine) -> the results
document that benchmarks/report.py summarizes, saves and renders; and the op profiles of the
engine graphs, taken in fresh processes after the run (no effect on any variant's RSS)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmarks import peak, report
from benchmarks.full_size import BAM
from benchmarks.interleave import RoundSettings, round_blocks
from benchmarks.variants import PRECISION
from benchmarks.workload import LAYER, LORA, load_pairs
from transalign.bench.machine import machine_info
from transalign.bench.stats import agreement, parse_links

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Measured:
    """What one run measured: raw per-variant records, GEMM peaks before and after the variants,
    the engine graphs' op profiles and the load average when the run started."""

    raw: dict
    peaks_before: dict
    peaks_after: dict
    profiles: dict
    loadavg_start: tuple[float, float, float]


def profile_engines(settings: RoundSettings, paths: dict, raw: dict) -> dict:
    """ONNX Runtime op profile of each engine graph, in a fresh process (no effect on RSS)."""
    from transalign.engine.bundle import MODEL_FILES

    length = int(np.median(next(iter(raw.values()))["lengths"]))
    profiles = {}
    for name in (v for v in settings.variants if v.startswith("engine")):
        model = Path(paths["bundle"]) / MODEL_FILES[PRECISION[name]]
        cmd = [sys.executable, "-m", "benchmarks.peak", "--profile", str(model), "--threads", str(settings.threads),
               "--rows", str(settings.batch_tokens), "--length", str(length), "--provider", settings.provider]
        profiles[name] = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=ROOT).stdout)
    return profiles


def assemble(settings: RoundSettings, paths: dict, n: int, measured: Measured, *, lora_scale: float,
             work: Path) -> dict:
    """Agreement, workload facts and machine info around the raw measurements -> results document.
    The links of every variant are also left in ``work``/alignments-<variant>.txt."""
    src, tgt = load_pairs(n)
    raw = measured.raw
    links = {name: parse_links(r.pop("text")) for name, r in raw.items()}
    for name, r in raw.items():
        r["link_count"] = sum(map(len, links[name]))
        (work / f"alignments-{name}.txt").write_text(
            "".join(f"{i}\t{' '.join(f'{a}-{b}' for a, b in sorted(l))}\n" for i, l in enumerate(links[name])))
    agree = {name: agreement(links[name], links["reference"]) for name in raw if name != "reference"} \
        if "reference" in raw else {}
    peaks = peak.best_peaks(measured.peaks_before, measured.peaks_after)
    lengths = np.asarray(next(iter(raw.values()))["lengths"])
    same_tokens = all(list(r["lengths"]) == list(lengths) for r in raw.values())
    n_src_words, n_tgt_words = sum(map(len, src)), sum(map(len, tgt))
    src_tokens, tgt_tokens = int(lengths[:n].sum()), int(lengths[n:].sum())
    machine = machine_info()
    machine["loadavg_start"], machine["loadavg_end"] = _load(measured.loadavg_start), _load(os.getloadavg())
    subset = n < len(load_pairs()[0])
    stem = f"{time.strftime('%Y-%m-%d')}-{machine['host']}" + (f"-pairs{n}" if subset else "")
    meta = {
        "schema": 1, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "machine": machine,
        "results_file": f"benchmarks/results/{stem}.json",
        "settings": {"pairs": n, "subset": subset, "variants": list(settings.variants), "provider": settings.provider,
                     "threads": settings.threads, "batch_tokens": settings.batch_tokens, "rounds": settings.rounds,
                     "reference_blocks": round_blocks(n, settings.rounds),
                     "warmup_pairs": settings.warmup_pairs, "latency_pairs": settings.latency_pairs,
                     "latency_repeats": settings.latency_repeats},
        "workload": {
            "pairs": n, "src_words": n_src_words, "tgt_words": n_tgt_words,
            "tokens_per_word": {"src": (src_tokens - 2 * n) / n_src_words, "tgt": (tgt_tokens - 2 * n) / n_tgt_words},
            "useful_tflop": peak.useful_flops(lengths) / 1e12, "init_std": json.loads(
                (Path(paths["model_dir"]) / "config.json").read_text()).get("init_std"),
            "lora_scale": lora_scale, "lora": str(LORA), "layer": LAYER,
            "authors_links_per_src_word": authors_links(n) / n_src_words,
            "tokenizer": standin_tokenizer(Path(paths["model_dir"])), "same_tokens_in_all_variants": same_tokens,
            "bundle_mb": bundle_sizes(Path(paths["bundle"])),
            "paths": paths,
        },
        "profiles": measured.profiles,
    }
    precisions = {name: PRECISION[name] for name in raw}
    return report.summarize(raw, precisions, peaks, agree, meta)


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
