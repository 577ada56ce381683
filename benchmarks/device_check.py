"""One prepared device check: the CUDA provider and fp16 measured in one command (issue 27).

    python -m benchmarks.device_check --out FILE             # on a GPU machine, < 8 min on one H100
    python -m benchmarks.device_check --out FILE --cpu-dry-run   # the same code on CPU, tiny bundle

Writes one JSON document and prints its table:

- providers: what this onnxruntime offers and what each measured session really ran on (read
  back from the session: a CUDA that fell back to the CPU is an error, engine/session.py);
- agreement: links of fp32 and fp16 on the device against CPU fp32 on the tiny bundle (and an
  e5 bundle with ``--e5-bundle``, on the csen gold pairs, with AER): identical pairs, link F1;
- throughput: the full-size NLLB stand-in (random weights, the authors' adapter; bam-en pairs,
  repeated) for fp32 and fp16 across token budgets, pipeline off and on (engine/pipeline.py):
  pairs/s, real encoder tokens/s, GPU utilisation sampled with nvidia-smi where it is readable;
  the knee per precision and pipeline state, by `transalign bench`'s rule (transalign/bench/knee.py);
- latency: single-pair p50 / p99 at the default budget;
- baseline: the authors' PyTorch procedure (benchmarks/reference_baseline.py) on the same
  device in the same run, and the engine's best pairs/s over it.

``--cpu-dry-run`` runs every part with the CPU provider on the tiny bundle (in under two
minutes on a laptop-class CPU); the parts that need CUDA (fp16) are skipped, each with its
reason in ``skipped``. A CI test runs it and checks the document's shape and that CPU fp32
agrees with itself exactly.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BAM = ROOT / "data" / "reference" / "bam-sample"
LORA = ROOT / "data" / "reference" / "transalign-lora-nllb-600m"
CSEN = ROOT / "data" / "gold" / "csen"
LANGS = ("bam_Latn", "eng_Latn")
FORMAT_VERSION = 1


@dataclass(frozen=True)
class Plan:
    """What one run measures: the device run and the dry run differ only in these values."""

    mode: str  # "device" or "cpu-dry-run"
    provider: str  # the provider under test
    precisions: tuple[str, ...]
    budgets: tuple[int, ...]  # padded tokens per batch, swept for throughput
    throughput_pairs: int  # bam-en pairs, the sample repeated as needed
    agreement_pairs: int
    latency_pairs: int
    baseline_pairs: int
    skipped: list = field(default_factory=list)

    @classmethod
    def device(cls) -> "Plan":
        return cls("device", "cuda", ("fp32", "fp16"), (8192, 16384, 32768, 65536), 10192, 1274, 50, 600)

    @classmethod
    def dry(cls) -> "Plan":
        plan = cls("cpu-dry-run", "cpu", ("fp32",), (256, 1024, 4096), 96, 96, 8, 24)
        plan.skipped.append({"part": "fp16", "reason": "fp16 runs on the CUDA provider only; the dry run uses "
                                                       "CPUExecutionProvider"})
        return plan


def read_pairs(n: int) -> tuple[list[list[str]], list[list[str]]]:
    """The first ``n`` bam-en pairs; the 1274-pair sample repeated when ``n`` is larger."""
    from transalign.formats.text import read_sentences

    src = read_sentences(BAM / "test-bam.txt", "conll")
    tgt = read_sentences(BAM / "test-translate-bam-en-preds.txt", "conll")
    reps = -(-n // len(src))
    return (src * reps)[:n], (tgt * reps)[:n]


# -- parts ----------------------------------------------------------------------------------------


def providers_part(plan: Plan) -> dict:
    import onnxruntime as ort

    from transalign.bench.machine import gpus

    return {"available": list(ort.get_available_providers()), "onnxruntime": ort.__version__,
            "device": ort.get_device(), "gpus": gpus(), "under_test": plan.provider, "sessions": []}


def _load(bundle: Path, provider: str, precision: str, seen: list, name: str):
    """An Aligner, recording what its session really runs on (engine/session.py refuses a
    CUDA that fell back to the CPU)."""
    from transalign.engine.aligner import Aligner
    from transalign.engine.session import session_provider

    aligner = Aligner.load(bundle, provider=provider, precision=precision)
    session = getattr(aligner, "session", None) or aligner.encoder.session
    seen.append({"bundle": name, "precision": precision, "asked": provider,
                 "ran": session_provider(session), "session_providers": list(session.get_providers())})
    return aligner


def _links(aligner, src, tgt, langs, budget=None) -> list[frozenset]:
    results = aligner.align(src, tgt, *langs, batch_tokens=budget, on_too_long="skip")
    return [frozenset(r.links) for r in results]


def agreement_part(plan: Plan, bundles: dict[str, Path], seen: list) -> list[dict]:
    """Per bundle and precision on the device: links against CPU fp32 on the same pairs."""
    from transalign.bench.stats import agreement

    rows = []
    for name, bundle in bundles.items():
        nllb = _needs_languages(bundle)
        # NLLB-style bundles align the bam-en sample; bundles without language codes (e5) the
        # Czech-English gold set, which also gives AER
        src, tgt, gold = read_pairs(plan.agreement_pairs) + (None,) if nllb else read_csen(plan.agreement_pairs)
        langs = LANGS if nllb else (None, None)
        reference = _links(_load(bundle, "cpu", "fp32", seen, name), src, tgt, langs)
        for precision in plan.precisions:
            links = _links(_load(bundle, plan.provider, precision, seen, name), src, tgt, langs)
            scores = agreement(links, reference)
            rows.append({"bundle": name, "provider": plan.provider, "precision": precision, "pairs": len(src),
                         "reference": "cpu fp32", "links": sum(map(len, links)),
                         "reference_links": sum(map(len, reference)), "identical_pairs": scores["identical_pairs"],
                         "link_precision": scores["precision"], "link_recall": scores["recall"],
                         "link_f1": scores["f1"], "aer": _aer(links, gold), "reference_aer": _aer(reference, gold)})
    return rows


def read_csen(n: int):
    """The first ``n`` Czech-English gold pairs (words) and their gold alignment lines."""
    from transalign.formats.alignments import read_alignments
    from transalign.formats.text import read_sentences

    src = read_sentences(CSEN / "src.txt", "lines")[:n]
    tgt = read_sentences(CSEN / "tgt.txt", "lines")[:n]
    return src, tgt, read_alignments(CSEN / "gold.txt", allow_possible=True)[:n]


def _aer(links, gold) -> float | None:
    if gold is None:
        return None
    from transalign.evaluation import evaluate_alignments

    return evaluate_alignments(gold, links).corpus.aer


def _needs_languages(bundle: Path) -> bool:
    from transalign.engine.bundle import read_manifest

    return bool(read_manifest(bundle, verify_hashes=False).tokenizer.lang_code_ids)


class GpuSampler:
    """Mean GPU utilisation (%) over a block, from ``nvidia-smi`` every 0.2 s (None: unreadable)."""

    def __init__(self):
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._smi = shutil.which("nvidia-smi")

    def _run(self):
        while not self._stop.is_set():
            try:
                out = subprocess.run([self._smi, "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits"],
                                     capture_output=True, text=True, timeout=5, check=True).stdout
                self.samples.append(float(out.split()[0]))
            except (OSError, subprocess.SubprocessError, ValueError, IndexError):
                return
            self._stop.wait(0.2)

    def __enter__(self):
        if self._smi:
            self._thread = threading.Thread(target=self._run, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        if self._smi:
            self._thread.join(timeout=10)

    @property
    def mean(self) -> float | None:
        return statistics.mean(self.samples) if self.samples else None


def throughput_part(plan: Plan, standin: Path, seen: list) -> tuple[list[dict], dict]:
    """pairs/s and real tokens/s per precision and budget; latency per precision."""
    from transalign.bench.measure import measure_run
    from transalign.bench.stats import nearest_to_quantile, percentiles

    src, tgt = read_pairs(plan.throughput_pairs)
    rows, latency = [], {}
    for precision in plan.precisions:
        aligner = _load(standin, plan.provider, precision, seen, "stand-in")
        measure_run(aligner, src[:256], tgt[:256], *LANGS, on_too_long="skip")  # warm-up
        for budget, pipelined in ((b, p) for b in plan.budgets for p in (False, True)):
            aligner.pipelined = pipelined  # LoadOptions.pipeline, switchable between calls
            measure_run(aligner, src[:64], tgt[:64], *LANGS, batch_tokens=budget, on_too_long="skip")
            with GpuSampler() as gpu:
                run = measure_run(aligner, src, tgt, *LANGS, batch_tokens=budget, on_too_long="skip")
            rows.append({"precision": precision, "provider": plan.provider, "batch_tokens": budget,
                         "pipeline": "on" if pipelined else "off",
                         "pairs": run["pairs"], "seconds": run["e2e"], "pairs_per_s": run["pairs"] / run["e2e"],
                         "real_tokens_per_s": run["real_tokens"] / run["e2e"],
                         "padding_waste": 1 - run["real_tokens"] / max(run["padded_tokens"], 1),
                         "breakdown_s": run["seconds"], "gpu_utilisation_pct": gpu.mean,
                         "links_sha256": _sha(run["text"])})
        aligner.pipelined = aligner.options.pipelined(plan.provider)  # latency with the provider's default
        lengths = [len(a) + len(b) for a, b in zip(src[:1274], tgt[:1274])]
        picks = nearest_to_quantile(lengths, 0.5, min(plan.latency_pairs, len(lengths)))
        for i in picks:  # untimed round
            measure_run(aligner, src[i:i + 1], tgt[i:i + 1], *LANGS, on_too_long="skip")
        samples = [measure_run(aligner, src[i:i + 1], tgt[i:i + 1], *LANGS, on_too_long="skip")["e2e"]
                   for _ in range(3) for i in picks]
        latency[precision] = {**{k: 1e3 * v for k, v in percentiles(samples, (50, 99)).items()},
                              "samples": len(samples), "unit": "ms"}
    return rows, latency


def _sha(text: str) -> str:
    import hashlib

    return hashlib.sha256(text.encode()).hexdigest()


class Clock:
    """``with clock("encode"): ...`` adds the block's wall seconds to ``clock.seconds["encode"]``
    (the interface benchmarks/reference_baseline.py times its sections with)."""

    def __init__(self):
        self.seconds: dict[str, float] = {}

    def __call__(self, name: str):
        from contextlib import contextmanager

        @contextmanager
        def section():
            start = time.perf_counter()
            try:
                yield
            finally:
                self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start

        return section()


def baseline_part(plan: Plan, model_dir: Path, lora_dir: Path, layer: int) -> dict:
    """The authors' procedure (fp32 eager PyTorch, batches of 100 pairs) on the same device."""
    import io

    from benchmarks.reference_baseline import ReferenceAligner

    device = "cuda" if plan.provider == "cuda" else "cpu"
    src, tgt = read_pairs(plan.baseline_pairs)
    aligner = ReferenceAligner(str(model_dir), str(lora_dir), *LANGS, layer=layer, device=device)
    aligner.align(src[:16], tgt[:16], io.StringIO(), Clock())  # warm-up
    clock, out = Clock(), io.StringIO()
    start = time.perf_counter()
    aligner.align(src, tgt, out, clock)
    if device == "cuda":
        aligner.torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    return {"procedure": "authors (benchmarks/reference_baseline.py)", "device": device, "pairs": len(src),
            "seconds": seconds, "pairs_per_s": len(src) / seconds, "breakdown_s": dict(clock.seconds),
            "links": out.getvalue()}


def baseline_agreement(plan: Plan, standin: Path, links_text: str, seen: list) -> dict:
    """The authors' links against the engine's fp32 links on the same pairs and provider."""
    from transalign.bench.stats import agreement, parse_links

    src, tgt = read_pairs(plan.baseline_pairs)
    engine = _links(_load(standin, plan.provider, "fp32", seen, "stand-in"), src, tgt, LANGS)
    scores = agreement(engine, parse_links(links_text))
    return {"engine": f"{plan.provider} fp32", "identical_pairs": scores["identical_pairs"], "link_f1": scores["f1"]}


# -- bundles -------------------------------------------------------------------------------------


def device_bundles(work: Path) -> tuple[Path, Path, Path]:
    """(stand-in bundle fp32+fp16, its checkpoint, adapter): NLLB-600M shape, random weights."""
    from benchmarks.full_size import build_checkpoint
    from transalign.export.api import export_bundle

    model = build_checkpoint(work / "nllb-600m-random")
    bundle = work / "nllb-600m-fp32-fp16"
    if not (bundle / "manifest.json").is_file():
        export_bundle(str(model), bundle, lora=str(LORA), layer=12, precisions="fp32,fp16", force=True)
    return bundle, model, LORA


def bare_encoder(model_dir: Path, out: Path) -> Path:
    """``model_dir``'s encoder alone, as the stand-in checkpoint is (config architectures
    M2M100Encoder, encoder keys at the top, the tokenizer files beside), for the authors'
    procedure as benchmarks/reference_baseline.py loads it (M2M100Encoder.from_pretrained)."""
    if (out / ".complete").exists():
        return out
    from transformers import AutoModelForSeq2SeqLM

    encoder = AutoModelForSeq2SeqLM.from_pretrained(model_dir).get_encoder()
    encoder.config.architectures = ["M2M100Encoder"]
    out.mkdir(parents=True, exist_ok=True)
    encoder.save_pretrained(out)
    for item in model_dir.iterdir():
        if item.is_file() and item.name not in ("config.json", "model.safetensors", "generation_config.json"):
            shutil.copy(item, out / item.name)
    (out / ".complete").write_text("ok\n")
    return out


def tiny_inputs(args, work: Path) -> tuple[Path, Path, Path]:
    """(tiny bundle, bare-encoder checkpoint, adapter): given, or built with the test suite's
    fixture builders."""
    if args.tiny_bundle and args.tiny_model and args.tiny_lora:
        return Path(args.tiny_bundle), bare_encoder(Path(args.tiny_model), work / "tiny-encoder"), Path(args.tiny_lora)
    sys.path.insert(0, str(ROOT / "tests"))
    from fixture_models import build_tiny_lora, build_tiny_nllb

    from transalign.export.api import export_bundle

    model, lora, bundle = work / "tiny-nllb", work / "tiny-lora", work / "tiny-bundle"
    if not (model / "config.json").is_file():
        model.mkdir(parents=True, exist_ok=True)
        build_tiny_nllb(model)
    if not (lora / "adapter_config.json").is_file():
        lora.mkdir(parents=True, exist_ok=True)
        build_tiny_lora(model, lora)
    if not (bundle / "manifest.json").is_file():
        export_bundle(str(model), bundle, lora=str(lora), layer=3, precisions="fp32,fp16", force=True)
    return bundle, bare_encoder(model, work / "tiny-encoder"), lora


# -- report --------------------------------------------------------------------------------------


def run(plan: Plan, args) -> dict:
    from transalign.bench.machine import machine_info
    from transalign.engine.bundle import read_manifest

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    clock = time.perf_counter()
    doc = {"tool": "benchmarks/device_check.py", "format_version": FORMAT_VERSION, "mode": plan.mode,
           "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "machine": machine_info(),
           "load_average_start": list(os.getloadavg()), "providers": providers_part(plan),
           "plan": {k: v for k, v in asdict(plan).items() if k != "skipped"}, "skipped": plan.skipped,
           "seconds": {}}
    seen = doc["providers"]["sessions"]
    tiny, tiny_model, tiny_lora = tiny_inputs(args, work)
    bundles = {"tiny": tiny, **({"e5": Path(args.e5_bundle)} if args.e5_bundle else {})}
    if not args.e5_bundle:
        plan.skipped.append({"part": "agreement on e5", "reason": "no --e5-bundle given"})
    start = time.perf_counter()
    doc["agreement"] = agreement_part(plan, bundles, seen)
    doc["seconds"]["agreement"] = time.perf_counter() - start
    if plan.mode == "device":
        standin, model, lora = device_bundles(work)
    else:
        standin, model, lora = tiny, tiny_model, tiny_lora
    doc["standin"] = {"bundle": str(standin), "base_model": read_manifest(standin, verify_hashes=False).base_model}
    start = time.perf_counter()
    doc["throughput"], doc["latency"] = throughput_part(plan, standin, seen)
    doc["seconds"]["throughput"] = time.perf_counter() - start
    start = time.perf_counter()
    try:
        doc["baseline"] = baseline_part(plan, model, lora, read_manifest(standin, verify_hashes=False).layer)
        doc["baseline"]["agreement_with_engine"] = baseline_agreement(plan, standin, doc["baseline"].pop("links"), seen)
    except ImportError as exc:  # torch, transformers or peft missing on this machine
        doc["baseline"] = None
        plan.skipped.append({"part": "baseline", "reason": f"the authors' procedure needs torch, transformers and "
                                                           f"peft: {exc}"})
    doc["seconds"]["baseline"] = time.perf_counter() - start
    best = max(doc["throughput"], key=lambda r: r["pairs_per_s"])
    doc["summary"] = {"best": {k: best[k] for k in ("precision", "batch_tokens", "pipeline", "pairs_per_s")},
                      "over_baseline": best["pairs_per_s"] / doc["baseline"]["pairs_per_s"] if doc["baseline"] else None,
                      "knee_rule": knee_rule(), "knees": knees(doc["throughput"])}
    doc["summary"]["knee_batch_tokens"] = {k: v["batch_tokens"] for k, v in doc["summary"]["knees"].items()}
    doc["seconds"]["total"] = time.perf_counter() - clock
    doc["load_average_end"] = list(os.getloadavg())
    return doc


def knees(rows: list[dict]) -> dict:
    """Per precision and pipeline state ("fp16 pipeline on"): the knee of pairs/s over the token
    budgets, by the rule `transalign bench` uses (transalign/bench/knee.py)."""
    from transalign.bench.knee import knees_by

    found = knees_by(sorted(rows, key=lambda r: (r["precision"], r["pipeline"])),
                     lambda r: f"{r['precision']} pipeline {r['pipeline']}", lambda r: r["batch_tokens"],
                     lambda r: r["pairs_per_s"])
    return {key: knee.to_dict() for key, knee in found.items() if knee is not None}


def knee_rule() -> str:
    from transalign.bench.knee import knee_rule as rule

    return rule(rate="pairs/s (one timed pass)", group="provider, precision and pipeline state")


def _knee_lines(summary: dict) -> list[str]:
    from transalign.bench.knee import Knee, describe

    if not summary["knees"]:
        return []
    return ["", f"token budget ({summary['knee_rule']}):"] + \
        [f"- {key}: {describe(Knee.from_dict(k))}" for key, k in summary["knees"].items()]


def render(doc: dict) -> str:
    p = doc["providers"]
    lines = [f"device check ({doc['mode']}): onnxruntime {p['onnxruntime']}, providers {', '.join(p['available'])}; "
             f"GPU {', '.join(p['gpus']) or 'none'}; load {'/'.join(f'{x:.2f}' for x in doc['load_average_start'])}",
             "", "| sessions: bundle | precision | asked | ran |", "|---|---|---|---|"]
    lines += [f"| {s['bundle']} | {s['precision']} | {s['asked']} | {s['ran']} |" for s in p["sessions"]]
    lines += ["", "| agreement: bundle | provider precision | vs | pairs | identical pairs | link F1 | AER (vs fp32's) |",
              "|---|---|---|---|---|---|---|"]
    lines += [f"| {a['bundle']} | {a['provider']} {a['precision']} | {a['reference']} | {a['pairs']} | "
              f"{a['identical_pairs']:.2%} | {a['link_f1']:.4f} | "
              + (f"{a['aer']:.4f} ({a['reference_aer']:.4f})" if a["aer"] is not None else "-") + " |"
              for a in doc["agreement"]]
    lines += ["", "| throughput: precision | batch tokens | pipeline | pairs/s | real tokens/s | padding | GPU % |",
              "|---|---|---|---|---|---|---|"]
    for r in doc["throughput"]:
        gpu = f"{r['gpu_utilisation_pct']:.0f}" if r["gpu_utilisation_pct"] is not None else "-"
        lines.append(f"| {r['provider']} {r['precision']} | {r['batch_tokens']} | {r['pipeline']} | "
                     f"{r['pairs_per_s']:,.1f} | "
                     f"{r['real_tokens_per_s']:,.0f} | {r['padding_waste']:.1%} | {gpu} |")
    lines += _knee_lines(doc["summary"])
    lines += ["", "| latency (one pair) | p50 ms | p99 ms |", "|---|---|---|"]
    lines += [f"| {k} | {v['p50']:.1f} | {v['p99']:.1f} |" for k, v in doc["latency"].items()]
    b, s = doc["baseline"], doc["summary"]
    if b:
        lines += ["", f"authors' procedure on {b['device']}: {b['pairs_per_s']:,.1f} pairs/s over {b['pairs']} pairs; "
                      f"engine best ({s['best']['precision']}, {s['best']['batch_tokens']} tokens) "
                      f"{s['best']['pairs_per_s']:,.1f} pairs/s = {s['over_baseline']:.1f}x; its links vs engine "
                      f"{b['agreement_with_engine']['engine']}: identical pairs "
                      f"{b['agreement_with_engine']['identical_pairs']:.2%}, F1 {b['agreement_with_engine']['link_f1']:.4f}"]
    lines += [f"skipped: {x['part']}: {x['reason']}" for x in doc["skipped"]]
    lines.append(f"total {doc['seconds']['total']:.0f} s")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="the JSON document to write")
    parser.add_argument("--cpu-dry-run", action="store_true", help="the same code on the CPU provider, tiny bundle")
    parser.add_argument("--work", default=str(ROOT / "benchmarks" / "work" / "device-check"),
                        help="where built models and bundles are kept between runs")
    parser.add_argument("--tiny-bundle")
    parser.add_argument("--tiny-model")
    parser.add_argument("--tiny-lora")
    parser.add_argument("--e5-bundle", help="an e5 bundle exported with fp32,fp16 (agreement only)")
    args = parser.parse_args(argv)
    out = Path(args.out)
    if not out.resolve().parent.is_dir():
        parser.error(f"--out {out}: directory {out.resolve().parent} does not exist")
    plan = Plan.dry() if args.cpu_dry_run else Plan.device()
    if not args.cpu_dry_run:
        from transalign.engine.session import resolve_provider

        resolve_provider("cuda")  # no CUDA provider at all: a clear error before anything is built
    doc = run(plan, args)
    with tempfile.NamedTemporaryFile("w", dir=out.resolve().parent, delete=False, suffix=".partial") as handle:
        json.dump(doc, handle, indent=1)
        handle.write("\n")
    os.replace(handle.name, out)
    print(render(doc), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
