"""Raw measurements of each variant -> the derived figures (``derive``) -> text tables (``render``).

Every derived figure is a function of the raw measurements stored next to it in the results
JSON (``variants[k]["raw"]``), so ``rederive`` recomputes them all and a reader can check them.
"""

from __future__ import annotations

import statistics

from transalign.bench.knee import KNEE_TOLERANCE, Knee, describe, knees_by
from transalign.bench.measure import SECTIONS
from transalign.bench.stats import percentiles, spread


def derive(raw: dict) -> dict:
    """The figures of one variant from its raw measurements (see worker.py for their layout).

    pairs/s and real tokens/s: count over the median (and the max/min) of the repeated passes'
    wall seconds. Breakdown: per section the median over the passes; "other" is what the
    sections do not cover (median of e2e minus their sum). Latency: percentiles of the samples.
    """
    runs = raw["runs"]
    e2e = [r["e2e"] for r in runs]
    seconds = spread(e2e)
    pairs, real, padded = runs[0]["pairs"], runs[0]["real_tokens"], runs[0]["padded_tokens"]
    breakdown = {k: float(statistics.median(r["seconds"][k] for r in runs)) for k in SECTIONS}
    breakdown["other"] = float(statistics.median(r["e2e"] - sum(r["seconds"][k] for k in SECTIONS) for r in runs))
    latency = raw["latency"]
    out = {
        "pairs": pairs, "skipped": runs[0]["skipped"], "seconds": seconds,
        "pairs_per_s": {"median": pairs / seconds["median"], "min": pairs / seconds["max"],
                        "max": pairs / seconds["min"]},
        "real_tokens_per_s": {"median": real / seconds["median"], "min": real / seconds["max"],
                              "max": real / seconds["min"]},
        "real_tokens": real, "padded_tokens": padded, "padding_waste": 1.0 - real / padded if padded else 0.0,
        "breakdown_s": breakdown, "breakdown_share": {k: v / seconds["median"] for k, v in breakdown.items()},
        "load_s": raw["load_s"], "warmup_s": raw["warmup_s"], "peak_rss_mb": raw["peak_rss_mb"],
        "rss_after_load_mb": raw["rss_after_load_mb"], "pid": raw["pid"],
        "identical_across_runs": raw["identical_across_runs"],
        "latency_ms": None,
    }
    if latency["samples_s"]:
        out["latency_ms"] = {**{k: 1e3 * v for k, v in percentiles(latency["samples_s"]).items()},
                             "samples": len(latency["samples_s"]),
                             "pair_tokens_mean": statistics.mean(latency["pair_tokens"])}
    return out


def rederive(results: dict) -> dict:
    """Every variant's figures recomputed from its stored raw measurements (for checking)."""
    return {v["name"]: derive(v["raw"]) for v in results["variants"]}


def knees(variants: list[dict], tolerance: float = KNEE_TOLERANCE) -> list[dict]:
    """The knee of each provider / precision / threads group measured at two or more token
    budgets (bench/knee.py), from the variants' median pairs/s: what ``--batch-tokens sweep``
    is for. Groups measured at one budget have no knee and no entry.

    ``pass_spread`` is the group's widest (fastest - slowest pass) / median pairs/s: where it is
    above the tolerance, the passes of one budget differ more than the knee rule's band, so the
    knee may be noise (a busy machine) and the report says so."""
    def group(v: dict) -> tuple:
        return v["provider"], v["precision"], v["threads"]

    found = knees_by(variants, group, lambda v: v["batch_tokens"], lambda v: v["pairs_per_s"]["median"], tolerance)
    out = []
    for key, knee in found.items():
        if knee is not None:
            spread_ = max((v["pairs_per_s"]["max"] - v["pairs_per_s"]["min"]) / v["pairs_per_s"]["median"]
                          for v in variants if group(v) == key)
            out.append({"provider": key[0], "precision": key[1], "threads": key[2], **knee.to_dict(),
                        "pass_spread": spread_})
    return out


def _knee_lines(results: dict) -> list[str]:
    found = results.get("knees") or []
    if not found:
        return []
    lines = [f"Token budget ({results['knee_rule']}):"]
    for k in found:
        threads = "all" if k["threads"] is None else k["threads"]
        lines.append(f"- {k['provider']} {k['precision']}, {threads} threads: {describe(Knee.from_dict(k))}")
        if k["pass_spread"] > k["tolerance"]:
            lines.append(f"  noisy: the passes of one budget differ by up to {k['pass_spread']:.0%} of its median, "
                         f"more than the {k['tolerance']:.0%} band; the knee may be noise (rerun on a quiet "
                         "machine or with a larger --repeat)")
    return lines


def label(variant: dict) -> str:
    """The row's name from what ran (the worker reads provider, precision and threads back from
    its session); where that differs from what was asked, both are shown."""
    raw = variant.get("raw") or {}
    used = raw.get("threads_used", variant.get("threads_effective"))
    asked = variant["threads"]
    if asked is None:
        threads = f"all ({used})"
    elif used is not None and used != asked:
        threads = f"{used} ({asked} asked)"
    else:
        threads = str(asked)
    provider, precision = raw.get("provider_ran", variant["provider"]), raw.get("precision_ran", variant["precision"])
    if provider != variant["provider"]:
        provider = f"{provider} ({variant['provider']} asked)"
    return f"{provider} {precision}, {threads} threads, {variant['batch_tokens']} tokens/batch"


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def _num(x: float, digits: int = 1) -> str:
    return f"{x:,.{digits}f}"


def _agreement(variant: dict) -> str:
    a = variant.get("agreement")
    if not a:
        return "-"
    if a["baseline"] == variant["name"]:
        return "(fp32 baseline)"
    return f"{a['identical_pairs']:.1%} / {a['f1']:.4f}"


def render(results: dict) -> str:
    """The stdout report: machine, workload, then two tables (throughput, where time goes)."""
    m, w, s = results["machine"], results["workload"], results["settings"]
    versions = ", ".join(f"{k} {v}" for k, v in m["versions"].items()
                         if k in ("transalign", "onnxruntime", "onnxruntime-gpu", "numpy", "numba", "tokenizers",
                                  "sentencepiece"))
    gpu = "; GPU " + ", ".join(m["gpus"]) if m["gpus"] else "; no GPU"
    synthetic = w["source"] == "synthetic"
    details = ([f"seed {w['seed']}"] if synthetic else []) + \
        ([f"{w['src_lang']} -> {w['tgt_lang']}"] if w["src_lang"] else [])
    source = "synthetic pairs" if synthetic else f"pairs from {w['src_file']} / {w['tgt_file']}"
    source += f" ({', '.join(details)})" if details else ""
    head = [
        f"Machine: {m['cpu']} ({m['cpus_usable']} usable of {m['cpus_logical']} cores, {m['ram_gb']:.0f} GB RAM"
        f"{', ' + ' '.join(m['simd']) if m['simd'] else ''}){gpu}; Python {m['python']}; {versions}",
        f"Bundle: {results['bundle']['path']} ({results['bundle']['base_model']}, layer {results['bundle']['layer']})",
        f"Workload: {w['pairs']} {source}, {w['src_words']:,} + {w['tgt_words']:,} words, "
        f"{w['subwords_per_word']['src']:.2f} / {w['subwords_per_word']['tgt']:.2f} subwords per word; "
        f"median of {s['repeat']} pass{'es' if s['repeat'] > 1 else ''} after a {s['warmup_pairs']}-pair warm-up, "
        "each variant in its own process",
    ]
    load = results.get("load_average") or {}
    if load.get("start") and load.get("end"):
        head.append(f"Load average {'/'.join(f'{x:.2f}' for x in load['start'])} at start, "
                    f"{'/'.join(f'{x:.2f}' for x in load['end'])} at end (1/5/15 min; other work slows every variant)")
    skipped = max(v["skipped"] for v in results["variants"])
    if skipped:
        head.append(f"{skipped} pairs have a sentence longer than the model's maximum: they get an empty result "
                    "(as `transalign align --skip-long`) and count in pairs/s")
    variants = results["variants"]
    first = _table(
        ["variant", "pairs/s (min-max)", "real tokens/s", "seconds", "padding", "identical pairs / link F1 vs fp32",
         "peak RSS MB", "load s"],
        [[label(v), f"{_num(v['pairs_per_s']['median'], 2)} ({_num(v['pairs_per_s']['min'], 2)}-"
                    f"{_num(v['pairs_per_s']['max'], 2)})", _num(v["real_tokens_per_s"]["median"], 0),
          _num(v["seconds"]["median"], 2), f"{v['padding_waste']:.1%}", _agreement(v), _num(v["peak_rss_mb"], 0),
          _num(v["load_s"], 2)] for v in variants])
    lat = next((v["latency_ms"] for v in variants if v["latency_ms"]), None)
    lat_head = f"single pair p50 / p95 / p99 ms (~{lat['pair_tokens_mean']:.0f} tokens)" if lat else "single pair"
    second = _table(
        ["variant", *SECTIONS, "other", lat_head],
        [[label(v), *(f"{v['breakdown_s'][k]:.3f} s ({v['breakdown_share'][k]:.1%})" for k in (*SECTIONS, "other")),
          " / ".join(_num(v["latency_ms"][k], 1) for k in ("p50", "p95", "p99")) if v["latency_ms"] else "-"]
         for v in variants])
    note = ("\nAgreement on synthetic word sequences is a stress test of the precision; align your own pairs "
            "(--src/--tgt) to see what your text gets.\n") if synthetic else ""
    knee = "\n".join(_knee_lines(results))
    knee = "\n" + knee + "\n" if knee else ""
    return "\n".join(head) + "\n\n" + first + "\n" + knee + note + "\n" + second + "\n"
