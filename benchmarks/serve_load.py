"""Load test of `transalign serve` (issue 14): closed-loop HTTP clients against the offline ceiling.

    python -m benchmarks.serve_load BUNDLE [--precision int8] [--pairs N] [--concurrency 1,8,32,64]
                                           [--seconds S] [--warmup-seconds W] [--threads T] [--out PATH]

In one run, one after the other so that nothing competes with what is being timed:

1. offline, in a process of its own with no server running: `Aligner.align` of all the pairs
   in one call (``--offline-rounds`` times; the best is the ceiling), and a direct
   `Aligner.align` of the median-length pair alone, repeated for ``--seconds`` (its p50);
2. `transalign serve` with micro-batching (the defaults) on a free 127.0.0.1 port: for every
   concurrency C, C closed-loop clients (httpx.AsyncClient over loopback, one connection each,
   a new request as soon as the previous answer arrived) for ``--seconds`` after ``--warmup-seconds``,
   cycling through the pairs, ``--pairs-per-request`` each: pairs/s and p50/p95/p99 latency;
   then one client sending the median pair (the overhead over the direct call);
3. the same server with ``--max-batch-requests 1`` (no cross-request batching), same points.

Every answer is checked against the offline links of its pairs (all precisions are batch-
invariant, so they must be identical); the mean requests per batch come from the server's
/metrics. The pairs are the bam sample's (``data/reference/bam-sample``) that fit the
model's positions, the first ``--pairs``. The load generator shares the machine with the server
(its CPU seconds are recorded). Writes benchmarks/results/<date>-serve.json (``--out``) with
the machine's description and prints a markdown table with the ratios to the issue's targets:
at concurrency 32 >= 85% of offline throughput and >= 3x the no-batching server; at
concurrency 1 a p50 overhead <= 2 ms over the direct call of the same pair.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from transalign.engine.bundle import PRECISIONS
from transalign.engine.session import PROVIDER_CHOICES

ROOT = Path(__file__).resolve().parents[1]
BAM = ROOT / "data" / "reference" / "bam-sample"
RESULTS = ROOT / "benchmarks" / "results"
LANGS = ("bam_Latn", "eng_Latn")
TARGETS = {"offline_ratio_c32": 0.85, "batching_gain_c32": 3.0, "overhead_ms_c1": 2.0}
START_TIMEOUT_S = 600.0  # a full-size bundle loads and warms up in well under this


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.serve_load", description=__doc__.split("\n\n")[0])
    p.add_argument("bundle", type=Path, help="bundle directory (`transalign export`)")
    p.add_argument("--precision", choices=PRECISIONS, default="int8", help="default int8 (the CPU choice)")
    p.add_argument("--provider", choices=PROVIDER_CHOICES, default="cpu", help="default cpu")
    p.add_argument("--threads", type=int, help="worker threads of the server and the offline Aligner (default: all)")
    p.add_argument("--pairs", type=int, default=512, help="bam pairs to cycle through (default 512)")
    p.add_argument("--pairs-per-request", type=int, default=1, help="default 1")
    p.add_argument("--concurrency", default="1,8,32,64", help="client counts, comma-separated (default 1,8,32,64)")
    p.add_argument("--seconds", type=float, default=20.0, help="measured seconds per point (default 20)")
    p.add_argument("--warmup-seconds", type=float, default=3.0, help="unmeasured seconds before each point")
    p.add_argument("--offline-rounds", type=int, default=3, help="offline one-call repetitions (default 3)")
    p.add_argument("--max-wait-ms", type=float, help="the batching server's --max-wait-ms (default: its own)")
    p.add_argument("--pipeline", choices=("auto", "on", "off"), default="auto",
                   help="the batching server's --pipeline (default auto: on with CUDA)")
    p.add_argument("--max-batch-tokens", help="the batching server's merge budget; several, comma-separated, "
                   "measure one batching server each (default: its own, the encoder budget)")
    p.add_argument("--out", type=Path, help="results file (default benchmarks/results/<date>-serve.json)")
    p.add_argument("--offline-worker", type=Path, help=argparse.SUPPRESS)  # internal: the offline process
    return p


# -- the pairs ----------------------------------------------------------------------------------


def load_pairs(bundle: Path, n: int) -> tuple[list[tuple[list[str], list[str]]], tuple]:
    """The first n bam pairs that fit the model (tokenizer only: the model is not loaded here)."""
    from transalign.engine.bundle import read_manifest
    from transalign.engine.tokenizers import load_tokenizer
    from transalign.formats.text import read_sentences

    manifest = read_manifest(bundle, verify_hashes=False)
    langs = LANGS if manifest.tokenizer.lang_code_ids else (None, None)
    tokenizer = load_tokenizer(bundle, manifest.tokenizer)
    src = read_sentences(BAM / "test-bam.txt", "conll")
    tgt = read_sentences(BAM / "test-translate-bam-en-preds.txt", "conll")
    limit = manifest.max_positions
    src_len = [len(ids) for ids, _ in tokenizer.encode_batch(src, langs[0])]
    tgt_len = [len(ids) for ids, _ in tokenizer.encode_batch(tgt, langs[1])]
    pairs = [(s, t) for s, t, a, b in zip(src, tgt, src_len, tgt_len) if a <= limit and b <= limit][:n]
    if not pairs:
        raise SystemExit(f"no bam pair fits the model's {limit} positions")
    return pairs, langs


def median_pair(pairs) -> int:
    """Index of the pair whose word count (both sides) is nearest the median."""
    from transalign.bench.stats import nearest_to_quantile

    return nearest_to_quantile([len(s) + len(t) for s, t in pairs], 0.5, 1)[0]


# -- offline: its own process, before any server runs --------------------------------------------


def offline_worker(spec_path: Path) -> None:
    """Runs in a subprocess: prints one JSON line with the offline measurements and links."""
    from transalign.engine.aligner import Aligner

    spec = json.loads(spec_path.read_text())
    pairs, langs, seconds = spec["pairs"], tuple(spec["langs"]), spec["seconds"]
    src, tgt = [s for s, _ in pairs], [t for _, t in pairs]
    clock = time.perf_counter()
    aligner = Aligner.load(spec["bundle"], provider=spec["provider"], precision=spec["precision"],
                           threads=spec["threads"])
    load_s = time.perf_counter() - clock
    aligner.align(src[:16], tgt[:16], *langs)  # warm-up: kernels, allocator
    rounds, links = [], None
    for _ in range(spec["rounds"]):
        clock = time.perf_counter()
        results = aligner.align(src, tgt, *langs)
        rounds.append(time.perf_counter() - clock)
        links = [[list(link) for link in r.links] for r in results]
    k = spec["median_pair"]
    direct, end = [], time.perf_counter() + seconds
    while time.perf_counter() < end or len(direct) < 20:
        clock = time.perf_counter()
        aligner.align([src[k]], [tgt[k]], *langs)
        direct.append(time.perf_counter() - clock)
    print(json.dumps({"load_seconds": load_s, "one_call_seconds": rounds, "links": links,
                      "direct_latency_s": direct, "stats": {"real_tokens": results.stats.real_tokens,
                                                            "padded_tokens": results.stats.padded_tokens}}))


def run_offline(args, pairs, langs, k: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        spec = Path(tmp) / "spec.json"
        spec.write_text(json.dumps({"bundle": str(args.bundle), "provider": args.provider,
                                    "precision": args.precision, "threads": args.threads, "pairs": pairs,
                                    "langs": langs, "rounds": args.offline_rounds, "median_pair": k,
                                    "seconds": args.seconds}))
        out = subprocess.run([sys.executable, "-m", "benchmarks.serve_load", str(args.bundle), "--offline-worker",
                              str(spec)], capture_output=True, text=True, cwd=ROOT)
    if out.returncode != 0:
        raise SystemExit(f"the offline measurement failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# -- the server ---------------------------------------------------------------------------------


class Server:
    """`transalign serve` on a free loopback port (--port 0), stderr drained by a thread."""

    def __init__(self, args, *extra: str):
        import httpx

        command = [sys.executable, "-m", "transalign", "serve", str(args.bundle), "--host", "127.0.0.1", "--port", "0",
                   "--precision", args.precision, "--provider", args.provider, "--log-level", "warning",
                   "--max-pairs-per-request", str(max(64, args.pairs_per_request)), *extra]
        if args.threads:
            command += ["--threads", str(args.threads)]
        self.command = command
        self.proc = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, cwd=ROOT)
        self.lines: list[str] = []
        listening = threading.Event()

        def drain():
            for line in self.proc.stderr:
                self.lines.append(line)
                if "listening on" in line:
                    listening.set()
            listening.set()

        threading.Thread(target=drain, daemon=True).start()
        end = time.monotonic() + START_TIMEOUT_S
        if not listening.wait(START_TIMEOUT_S) or self.proc.poll() is not None:
            self.close()
            raise SystemExit(f"the server did not start: {''.join(self.lines)}")
        self.url = re.search(r"listening on (http://[\d.]+:\d+)", "".join(self.lines)).group(1)
        while True:
            try:
                if httpx.get(self.url + "/ready", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > end or self.proc.poll() is not None:
                self.close()
                raise SystemExit(f"the server did not become ready: {''.join(self.lines)}")
            time.sleep(0.1)
        self.info = httpx.get(self.url + "/v1/info", timeout=5).json()

    def metrics(self) -> dict:
        import httpx
        from prometheus_client.parser import text_string_to_metric_families

        text = httpx.get(self.url + "/metrics", timeout=10).text
        return {(s.name, tuple(sorted(s.labels.items()))): s.value
                for family in text_string_to_metric_families(text) for s in family.samples}

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


# -- the load generator -------------------------------------------------------------------------


def request_bodies(pairs, langs, per_request: int) -> list[tuple[bytes, list[int]]]:
    """Pre-encoded request bodies (the generator spends no CPU on JSON encoding) and their pairs."""
    bodies = []
    for start in range(0, len(pairs), per_request):
        index = list(range(start, min(len(pairs), start + per_request)))
        body = {"pairs": [{"src": pairs[i][0], "tgt": pairs[i][1]} for i in index]}
        if langs[0] is not None:
            body |= {"src_lang": langs[0], "tgt_lang": langs[1]}
        bodies.append((json.dumps(body).encode(), index))
    return bodies


async def closed_loop(url: str, bodies, concurrency: int, warmup_s: float, seconds: float, truth) -> dict:
    """``concurrency`` clients, each sending its next request when its previous answer arrived."""
    import httpx

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    headers = {"content-type": "application/json"}
    latencies, counted_pairs, errors, mismatches = [], 0, {}, 0
    next_body = 0
    cpu0 = time.process_time()
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=120.0) as client:
        loop_start = time.perf_counter()
        t0, t1 = loop_start + warmup_s, loop_start + warmup_s + seconds

        async def client_loop():
            nonlocal next_body, counted_pairs, mismatches
            while True:
                sent = time.perf_counter()
                if sent >= t1:
                    return
                body, index = bodies[next_body % len(bodies)]
                next_body += 1
                response = await client.post("/v1/align", content=body, headers=headers)
                done = time.perf_counter()
                if response.status_code != 200:
                    errors[response.status_code] = errors.get(response.status_code, 0) + 1
                    continue
                got = [r["links"] for r in response.json()["results"]]
                if got != [truth[i] for i in index]:
                    mismatches += 1
                if t0 <= sent and done <= t1:
                    latencies.append(done - sent)
                    counted_pairs += len(index)

        await asyncio.gather(*(client_loop() for _ in range(concurrency)))
    from transalign.bench.stats import percentiles

    cpu = time.process_time() - cpu0
    lat = percentiles(latencies) if latencies else {"p50": float("nan"), "p95": float("nan"), "p99": float("nan")}
    return {"concurrency": concurrency, "requests": len(latencies), "pairs": counted_pairs,
            "pairs_per_s": counted_pairs / seconds, "latency_s": lat, "errors": errors, "mismatches": mismatches,
            "client_cpu_s": cpu}


def measure_server(server: Server, name: str, args, bodies, truth, concurrencies) -> list[dict]:
    points = []
    for c in concurrencies:
        before = server.metrics()
        point = asyncio.run(closed_loop(server.url, bodies, c, args.warmup_seconds, args.seconds, truth))
        after = server.metrics()
        delta = lambda key: after.get(key, 0.0) - before.get(key, 0.0)  # noqa: E731
        batches = delta(("transalign_batch_requests_count", ()))
        point |= {"server": name, "mean_requests_per_batch": delta(("transalign_batch_requests_sum", ())) / batches
                  if batches else None, "engine_seconds": {phase: delta(("transalign_engine_seconds_total",
                                                                          (("phase", phase),)))
                                                           for phase in ("tokenize", "encode", "extract")}}
        points.append(point)
        print(f"  {name}, {c} clients: {point['pairs_per_s']:.1f} pairs/s, p50 {point['latency_s']['p50'] * 1e3:.1f} "
              f"ms, {point['mean_requests_per_batch'] or 0:.1f} requests/batch", file=sys.stderr, flush=True)
    return points


# -- the report ---------------------------------------------------------------------------------


def summarize(report: dict) -> dict:
    offline = report["offline"]["pairs_per_s_best"]
    by = {(p["server"], p["concurrency"]): p for p in report["points"]}
    batching, plain = by.get(("batching", 32)), by.get(("no-batching", 32))
    ratios = {"offline_ratio_c32": batching["pairs_per_s"] / offline if batching else None,
              "batching_gain_c32": batching["pairs_per_s"] / plain["pairs_per_s"] if batching and plain else None,
              "overhead_ms_c1": (report["single_pair"]["server_p50_s"] - report["single_pair"]["direct_p50_s"]) * 1e3}
    met = {"offline_ratio_c32": None if ratios["offline_ratio_c32"] is None
           else ratios["offline_ratio_c32"] >= TARGETS["offline_ratio_c32"],
           "batching_gain_c32": None if ratios["batching_gain_c32"] is None
           else ratios["batching_gain_c32"] >= TARGETS["batching_gain_c32"],
           "overhead_ms_c1": ratios["overhead_ms_c1"] <= TARGETS["overhead_ms_c1"]}
    return {"ratios": ratios, "targets": TARGETS, "met": met}


def client_share(report: dict, point: dict) -> float:
    """The load generator's own CPU over the point (warm-up included), as a share of one core:
    it runs on the server's machine, so this much CPU was not the server's."""
    return point["client_cpu_s"] / (report["warmup_seconds"] + report["seconds"])


def markdown(report: dict) -> str:
    off, single, summary = report["offline"], report["single_pair"], report["summary"]
    ms = lambda s: f"{s * 1e3:.1f} ms"  # noqa: E731
    lines = [f"{report['machine']['cpu']} ({report['machine']['cpus_usable']} cores usable), "
             f"load average {report['loadavg_start'][0]:.1f} -> {report['loadavg_end'][0]:.1f}; "
             f"{Path(report['bundle']).name} {report['precision']} on {report['provider']}, "
             f"{report['pairs']} bam pairs, {report['pairs_per_request']} per request, "
             f"{report['seconds']:g} s per point", "",
             "| | clients | pairs/s | of offline | p50 | p95 | p99 | requests/batch | errors | wrong | load generator CPU |",
             "|---|---|---|---|---|---|---|---|---|---|---|",
             f"| offline `Aligner.align`, {report['pairs']} pairs in one call | | {off['pairs_per_s_best']:.1f} | "
             "100% | | | | | | |",
             f"| direct `Aligner.align` of the median pair | 1 | | | {ms(single['direct_p50_s'])} | | | | | |",
             f"| server, 1 client, that pair | 1 | | | {ms(single['server_p50_s'])} "
             f"(+{summary['ratios']['overhead_ms_c1']:.1f} ms) | | | | | |"]
    for p in report["points"]:
        lat = p["latency_s"]
        per_batch = "" if p["mean_requests_per_batch"] is None else f"{p['mean_requests_per_batch']:.1f}"
        errors = sum(p["errors"].values())
        lines.append(f"| server, {p['server']} | {p['concurrency']} | {p['pairs_per_s']:.1f} | "
                     f"{p['pairs_per_s'] / off['pairs_per_s_best']:.0%} | {ms(lat['p50'])} | {ms(lat['p95'])} | "
                     f"{ms(lat['p99'])} | {per_batch} | {errors} | {p['mismatches']} | {client_share(report, p):.0%} of a core |")
    r, t, met = summary["ratios"], summary["targets"], summary["met"]
    fmt = lambda v, f: "n/a" if v is None else format(v, f)  # noqa: E731
    word = lambda m: "n/a" if m is None else ("yes" if m else "no")  # noqa: E731
    lines += ["", "| target | measured | goal | met |", "|---|---|---|---|",
              f"| concurrency 32: batching server / offline | {fmt(r['offline_ratio_c32'], '.0%')} | "
              f">= {t['offline_ratio_c32']:.0%} | {word(met['offline_ratio_c32'])} |",
              f"| concurrency 32: batching / no-batching server | {fmt(r['batching_gain_c32'], '.2f')}x | "
              f">= {t['batching_gain_c32']:g}x | {word(met['batching_gain_c32'])} |",
              f"| concurrency 1: p50 overhead over a direct call | {r['overhead_ms_c1']:+.2f} ms | "
              f"<= {t['overhead_ms_c1']:g} ms | {word(met['overhead_ms_c1'])} |"]
    return "\n".join(lines)


def server_variants(args) -> list[tuple[str, list[str]]]:
    """(name, extra flags) of each server measured: the batching one (one per merge budget
    asked), then the one without cross-request batching. The first is named "batching"."""
    common = ["--pipeline", args.pipeline]
    if args.max_wait_ms is not None:
        common += ["--max-wait-ms", str(args.max_wait_ms)]
    budgets = [b.strip() for b in (args.max_batch_tokens or "").split(",") if b.strip()]
    variants = [("batching", common)] if not budgets else \
        [("batching" if k == 0 else f"batching-{b}", common + ["--max-batch-tokens", b]) for k, b in enumerate(budgets)]
    return variants + [("no-batching", ["--max-batch-requests", "1", "--pipeline", args.pipeline])]


def main(argv=None) -> None:
    args = parser().parse_args(argv)
    if args.offline_worker is not None:
        offline_worker(args.offline_worker)
        return
    from transalign.bench.machine import machine_info
    from transalign.bench.stats import percentiles

    concurrencies = [int(c) for c in args.concurrency.split(",") if c.strip()]
    load_start = os.getloadavg()
    pairs, langs = load_pairs(args.bundle, args.pairs)
    k = median_pair(pairs)
    print(f"serve_load: {len(pairs)} pairs; offline measurement (no server running)", file=sys.stderr, flush=True)
    offline = run_offline(args, pairs, langs, k)
    truth = offline.pop("links")
    bodies = request_bodies(pairs, langs, args.pairs_per_request)
    single_body = request_bodies([pairs[k]], langs, 1)
    single_truth = [truth[k]]
    points, single, servers = [], {}, {}
    for name, extra in server_variants(args):
        print(f"serve_load: server, {name}", file=sys.stderr, flush=True)
        server = Server(args, *extra)
        try:
            servers[name] = {"command": server.command[2:], "limits": server.info["limits"]}
            points += measure_server(server, name, args, bodies, truth, concurrencies)
            if name == "batching":
                one = asyncio.run(closed_loop(server.url, single_body, 1, args.warmup_seconds, args.seconds,
                                              single_truth))
                single = {"server_latency_s": one["latency_s"], "server_p50_s": one["latency_s"]["p50"],
                          "requests": one["requests"], "mismatches": one["mismatches"]}
        finally:
            server.close()
    direct = offline.pop("direct_latency_s")
    best = min(offline["one_call_seconds"])
    report = {
        "benchmark": "serve_load", "date": dt.date.today().isoformat(), "machine": machine_info(),
        "loadavg_start": list(load_start), "loadavg_end": list(os.getloadavg()),
        "bundle": str(args.bundle), "precision": args.precision, "provider": args.provider, "threads": args.threads,
        "pairs": len(pairs), "pairs_per_request": args.pairs_per_request, "seconds": args.seconds,
        "warmup_seconds": args.warmup_seconds, "servers": servers,
        "offline": {**offline, "pairs_per_s_best": len(pairs) / best,
                    "pairs_per_s_median": len(pairs) / statistics.median(offline["one_call_seconds"])},
        "single_pair": {"index": k, "words": [len(pairs[k][0]), len(pairs[k][1])],
                        "direct_p50_s": statistics.median(direct), "direct_latency_s": percentiles(direct),
                        "direct_calls": len(direct), **single},
        "points": points,
    }
    report["summary"] = summarize(report)
    out = args.out or RESULTS / f"{report['date']}-serve.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + "\n")
    print(markdown(report))
    print(f"\nserve_load: results in {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
