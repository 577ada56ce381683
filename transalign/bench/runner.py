"""`transalign bench`: checked options -> variants -> one worker process each -> results.

The parent process validates everything it can before starting any worker (options, files,
the bundle's precisions, providers, languages), builds the workload once (the user's files or
synthetic pairs) and hands the same pairs to every variant. Variants run one after another,
never concurrently, each in a fresh process (worker.py). Links are compared with an fp32
variant's on the same pairs; when no fp32 variant was asked for and the bundle has fp32, one
extra untimed fp32 pass provides them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from transalign.bench.defaults import (DEFAULT_LATENCY_PAIRS, DEFAULT_PRECISIONS, DEFAULT_REPEAT, DEFAULT_SYNTHETIC,
                                       SWEEP, SWEEP_BATCH_TOKENS, WARMUP_PAIRS)
from transalign.bench.knee import knee_rule
from transalign.bench.report import derive, knees
from transalign.bench.stats import agreement, parse_links
from transalign.formats.text import INPUT_FORMATS

# Target language code of synthetic pairs on NLLB bundles when none is given (first one the bundle has).
PARTNERS = ("deu_Latn", "fra_Latn", "ces_Latn")


@dataclass(frozen=True)
class BenchOptions:
    """What to measure. ``None`` in a list of threads or batch tokens means the engine default;
    ``batch_tokens=SWEEP`` ("sweep") means each provider's ``SWEEP_BATCH_TOKENS``."""

    bundle: str
    src: str | None = None
    tgt: str | None = None
    synthetic: int | None = None
    seed: int = 0
    src_lang: str | None = None
    tgt_lang: str | None = None
    precisions: tuple[str, ...] | None = None
    providers: tuple[str, ...] | None = None
    threads: tuple[int | None, ...] = (None,)
    batch_tokens: tuple[int | None, ...] | str = (None,)
    latency_pairs: int = DEFAULT_LATENCY_PAIRS
    repeat: int = DEFAULT_REPEAT
    input_format: str = INPUT_FORMATS[0]

    def __post_init__(self) -> None:
        from transalign.engine.bundle import PRECISIONS
        from transalign.engine.session import PROVIDERS

        if (self.src is None) != (self.tgt is None):
            given, missing = ("--src", "--tgt") if self.src is not None else ("--tgt", "--src")
            raise ValueError(f"{given} needs {missing}: give both sentence files, or --synthetic N without files")
        if self.src is not None and self.synthetic is not None:
            raise ValueError("give either --src/--tgt files or --synthetic N, not both")
        if self.synthetic is not None and self.synthetic < 1:
            raise ValueError(f"--synthetic must be a positive number of pairs, got {self.synthetic}")
        for name, values, allowed in (("--precision", self.precisions, PRECISIONS),
                                      ("--provider", self.providers, tuple(PROVIDERS))):
            if values is not None:
                for value in values:
                    if value not in allowed:
                        raise ValueError(f"{name} {value!r} is not one of {', '.join(allowed)}")
                if not values or len(set(values)) != len(values):
                    raise ValueError(f"{name} needs distinct values, got {','.join(values) or 'none'}")
        if isinstance(self.batch_tokens, str) and self.batch_tokens != SWEEP:
            raise ValueError(f"--batch-tokens {self.batch_tokens!r}: give {SWEEP!r} or a list of integers")
        budgets = () if self.batch_tokens == SWEEP else self.batch_tokens
        for name, values in (("--threads", self.threads), ("--batch-tokens", budgets)):
            for value in values:
                if value is not None and value < 1:
                    raise ValueError(f"{name} values must be positive integers, got {value}")
            if len(set(values)) != len(values):
                raise ValueError(f"{name} needs distinct values, got {','.join(map(str, values))}")
        if self.repeat < 1:
            raise ValueError(f"--repeat must be at least 1 (timed passes per variant), got {self.repeat}")
        if self.latency_pairs < 0:
            raise ValueError(f"--latency-pairs must be 0 (no latency) or more, got {self.latency_pairs}")


def plan_variants(options: BenchOptions, bundle_precisions, available: list[str]) -> list[dict]:
    """Every (provider, precision, threads, batch tokens) combination to measure, checked."""
    from transalign.engine.bundle import PRECISIONS
    from transalign.engine.defaults import DEFAULT_BATCH_TOKENS
    from transalign.engine.session import resolve_provider

    have = [p for p in PRECISIONS if p in bundle_precisions]
    for precision in options.precisions or ():
        if precision not in have:
            raise ValueError(f"bundle {options.bundle} has no {precision} model (it has {', '.join(have)})")
    if options.providers is None:
        providers = ["cpu"] + (["cuda"] if "CUDAExecutionProvider" in available else [])
    else:
        providers = [resolve_provider(p) for p in options.providers]  # unavailable CUDA: a clear error
    variants = []
    for provider in providers:
        if options.precisions is None:
            precisions = [p for p in have if p in DEFAULT_PRECISIONS[provider]]
        else:
            precisions = [p for p in options.precisions if not (p == "fp16" and provider == "cpu")]
            if options.providers is not None and len(precisions) < len(options.precisions):
                raise ValueError("fp16 models run on the CUDA provider only; measure fp32 or int8 on cpu, "
                                 "or add --provider cuda")
        budgets = SWEEP_BATCH_TOKENS[provider] if options.batch_tokens == SWEEP else \
            [batch or DEFAULT_BATCH_TOKENS[provider] for batch in options.batch_tokens]
        for precision in precisions:
            for threads in options.threads:
                for batch in budgets:
                    variants.append({"provider": provider, "precision": precision, "threads": threads,
                                     "batch_tokens": batch})
    if not variants:
        raise ValueError(f"nothing to measure: precisions {','.join(options.precisions or have)} on providers "
                         f"{','.join(providers)} (fp16 needs cuda)")
    for v in variants:
        v["name"] = f"{v['provider']}-{v['precision']}-{v['threads'] or 'all'}threads-{v['batch_tokens']}tok"
    return variants


def _workload(options: BenchOptions, manifest, tokenizer) -> tuple[dict, list, list, str | None, str | None]:
    from transalign.bench.synthetic import fit_to_model, synthetic_pairs
    from transalign.formats.text import read_sentences

    from transalign.engine.options import resolve_languages

    src_lang, tgt_lang = options.src_lang, options.tgt_lang
    languages = manifest.tokenizer.lang_code_ids
    if options.src is not None:
        src = read_sentences(options.src, options.input_format)
        tgt = read_sentences(options.tgt, options.input_format)
        if len(src) != len(tgt):
            raise ValueError(f"{options.src} has {len(src)} sentences but {options.tgt} has {len(tgt)}; "
                             "every source sentence needs exactly one target sentence")
        if not src:
            raise ValueError(f"{options.src} has no sentences to benchmark")
        meta = {"source": "files", "src_file": str(options.src), "tgt_file": str(options.tgt), "seed": None}
    elif languages:  # synthetic words are language-neutral: any two codes give the sequence shape
        src_lang = src_lang or ("eng_Latn" if "eng_Latn" in languages else sorted(languages)[0])
        others = [c for c in sorted(languages) if c != src_lang] or [src_lang]
        tgt_lang = tgt_lang or next((c for c in PARTNERS if c in others), others[0])
    resolved = resolve_languages(manifest, src_lang, tgt_lang)  # the engine's rule; the CLI names the flag
    src_lang, tgt_lang = resolved.src, resolved.tgt
    if options.src is None:
        n = options.synthetic or DEFAULT_SYNTHETIC
        src, tgt = synthetic_pairs(Path(options.bundle), manifest.tokenizer, n, options.seed)
        src = fit_to_model(src, tokenizer, src_lang, manifest.max_positions)
        tgt = fit_to_model(tgt, tokenizer, tgt_lang, manifest.max_positions)
        meta = {"source": "synthetic", "seed": options.seed, "src_file": None, "tgt_file": None}
    counts = {}
    for side, sentences, lang in (("src", src, src_lang), ("tgt", tgt, tgt_lang)):
        encoded = tokenizer.encode_batch(sentences, lang)
        counts[side] = (sum(map(len, sentences)), sum(int((w >= 0).sum()) for _, w in encoded))
    meta.update({"pairs": len(src), "src_lang": src_lang, "tgt_lang": tgt_lang,
                 "src_words": counts["src"][0], "tgt_words": counts["tgt"][0],
                 "subwords_per_word": {k: c[1] / c[0] if c[0] else 0.0 for k, c in counts.items()}})
    return meta, src, tgt, src_lang, tgt_lang


def _run_worker(spec: dict, tmp: Path, index: int) -> tuple[dict, str]:
    spec_path, out_path = tmp / f"spec-{index}.json", tmp / f"raw-{index}.json"
    spec_path.write_text(json.dumps(spec), encoding="utf-8")
    proc = subprocess.run([sys.executable, "-m", "transalign.bench.worker", str(spec_path), str(out_path)],
                          stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    raw = json.loads(out_path.read_text(encoding="utf-8")) if out_path.is_file() else None
    if raw is not None and "error" in raw:
        raise ValueError(f"variant {spec['name']}: {raw['error']}")
    if proc.returncode != 0 or raw is None:
        tail = "\n".join(proc.stdout.strip().splitlines()[-15:])
        raise RuntimeError(f"the worker for variant {spec['name']} failed (exit code {proc.returncode}):\n{tail}")
    return raw, (tmp / f"raw-{index}.json.links").read_text(encoding="utf-8")


def thread_warnings(threads: tuple[int | None, ...], cores: int) -> list[str]:
    """What to tell the user before measuring thread counts this process cannot use: the engine
    runs ``min(threads, cores)`` (engine.aligner.usable_threads), so two values above the core
    count measure the same thing twice."""
    lines = [f"warning: --threads {t} is more than the {cores} cores this process may use; the engine runs "
             f"{cores} threads and the row reads '{cores} ({t} asked) threads'" for t in threads
             if t is not None and t > cores]
    used = [min(t, cores) if t is not None else cores for t in threads]
    if len(set(used)) < len(used):
        lines.append(f"warning: --threads {','.join('all' if t is None else str(t) for t in threads)} run as "
                     f"{','.join(map(str, used))} threads on {cores} cores: some variants repeat the same measurement")
    return lines


def _load_average() -> list[float] | None:
    """1, 5 and 15 minute load averages (other work on the machine slows every variant down)."""
    return list(os.getloadavg()) if hasattr(os, "getloadavg") else None


def run_bench(options: BenchOptions, log: Callable[[str], None] = lambda line: None) -> dict:
    """Measure every variant; returns the results document (settings, machine, raw, derived)."""
    from transalign import __version__
    from transalign.bench.machine import machine_info
    from transalign.engine.bundle import read_manifest
    from transalign.engine.session import available_providers
    from transalign.engine.tokenizers import load_tokenizer

    load_start = _load_average()
    manifest = read_manifest(options.bundle, verify_hashes=False)  # each worker's load verifies its files
    variants = plan_variants(options, manifest.precisions, available_providers())
    tokenizer = load_tokenizer(options.bundle, manifest.tokenizer)
    workload, src, tgt, src_lang, tgt_lang = _workload(options, manifest, tokenizer)
    baseline = next((v for v in variants if v["precision"] == "fp32"), None)
    extra = None
    if baseline is None and "fp32" in manifest.precisions:
        extra = {**variants[0], "precision": "fp32", "name": variants[0]["name"].replace(
            f"-{variants[0]['precision']}-", "-fp32-") + "-baseline"}
    effective_threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    for line in thread_warnings(options.threads, effective_threads):
        log(line)
    if options.batch_tokens == SWEEP:
        for provider in dict.fromkeys(v["provider"] for v in variants):
            log(f"--batch-tokens sweep on {provider}: {','.join(map(str, SWEEP_BATCH_TOKENS[provider]))} tokens")
    links = {}
    with tempfile.TemporaryDirectory(prefix="transalign-bench-") as tmp_name:
        tmp = Path(tmp_name)
        pairs_file = tmp / "pairs.json"
        pairs_file.write_text(json.dumps({"src": src, "tgt": tgt}), encoding="utf-8")
        common = {"bundle": str(options.bundle), "src_lang": src_lang, "tgt_lang": tgt_lang,
                  "pairs_file": str(pairs_file)}
        for k, v in enumerate(variants):
            log(f"[{k + 1}/{len(variants)}] {v['name']}: loading, warm-up, {options.repeat} passes over "
                f"{len(src)} pairs, latency")
            clock = time.perf_counter()
            raw, links[v["name"]] = _run_worker({**common, **v, "repeat": options.repeat,
                                                 "latency_pairs": options.latency_pairs}, tmp, k)
            v.update(derive(raw), raw=raw, threads_effective=raw["threads_used"])
            log(f"    {v['pairs_per_s']['median']:.2f} pairs/s, peak RSS {v['peak_rss_mb']:.0f} MB "
                f"({time.perf_counter() - clock:.1f} s)")
        if extra is not None:
            log(f"[+] {extra['name']}: one untimed fp32 pass for the agreement baseline")
            extra["raw"], links[extra["name"]] = _run_worker({**common, **extra, "repeat": 1, "latency_pairs": 0},
                                                             tmp, len(variants))
            baseline = extra
    if baseline is not None:
        reference = parse_links(links[baseline["name"]])
        for v in variants:
            v["agreement"] = {"baseline": baseline["name"], **agreement(parse_links(links[v["name"]]), reference)}
    return {"tool": "transalign bench", "transalign_version": __version__, "format_version": 1,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "machine": machine_info(),
            "bundle": {"path": str(options.bundle), "base_model": manifest.base_model,
                       "architecture": manifest.architecture, "layer": manifest.layer,
                       "precisions": sorted(manifest.precisions)},
            "workload": workload, "load_average": {"start": load_start, "end": _load_average()},
            "settings": {"repeat": options.repeat, "seed": options.seed, "latency_pairs": options.latency_pairs,
                         "warmup_pairs": min(WARMUP_PAIRS, len(src)), "latency_quantile": 0.5,
                         "on_too_long": "skip"},
            "variants": variants, "knee_rule": knee_rule(), "knees": knees(variants),
            "agreement_baseline": baseline and {k: baseline[k] for k in (
                "name", "provider", "precision", "threads", "batch_tokens")} | {"timed": extra is None}}
