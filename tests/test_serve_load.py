"""benchmarks/serve_load.py's own logic (no server): which servers it starts, and that its ratios
and table come from the measurements it holds."""

from __future__ import annotations

from benchmarks import serve_load


def args(*argv: str):
    return serve_load.parser().parse_args(["bundle", *argv])


def test_server_variants_pass_the_pipeline_and_one_server_per_merge_budget():
    assert serve_load.server_variants(args("--pipeline", "on")) == [
        ("batching", ["--pipeline", "on"]), ("no-batching", ["--max-batch-requests", "1", "--pipeline", "on"])]
    variants = serve_load.server_variants(args("--max-batch-tokens", "2048, 8192", "--max-wait-ms", "5"))
    assert [name for name, _ in variants] == ["batching", "batching-8192", "no-batching"]
    assert variants[1][1] == ["--pipeline", "auto", "--max-wait-ms", "5.0", "--max-batch-tokens", "8192"]


def point(server: str, concurrency: int, pairs_per_s: float, client_cpu_s: float = 1.5) -> dict:
    return {"server": server, "concurrency": concurrency, "pairs_per_s": pairs_per_s, "client_cpu_s": client_cpu_s,
            "latency_s": {"p50": 0.5, "p95": 0.6, "p99": 0.7}, "mean_requests_per_batch": 4.0, "errors": {},
            "mismatches": 0}


def test_ratios_and_table_are_derived_from_the_points():
    offline, batching, plain = 40.0, 36.0, 12.0
    report = {"offline": {"pairs_per_s_best": offline}, "seconds": 12.0, "warmup_seconds": 3.0,
              "single_pair": {"server_p50_s": 0.0215, "direct_p50_s": 0.0200},
              "points": [point("batching", 32, batching), point("no-batching", 32, plain, 3.0)],
              "machine": {"cpu": "CPU", "cpus_usable": 2}, "loadavg_start": [1.0], "loadavg_end": [1.0],
              "bundle": "b", "precision": "int8", "provider": "cpu", "pairs": 8, "pairs_per_request": 1}
    report["summary"] = serve_load.summarize(report)
    ratios = report["summary"]["ratios"]
    assert ratios["offline_ratio_c32"] == batching / offline
    assert ratios["batching_gain_c32"] == batching / plain
    assert abs(ratios["overhead_ms_c1"] - 1.5) < 1e-9
    assert report["summary"]["met"] == {"offline_ratio_c32": batching / offline >= 0.85,
                                        "batching_gain_c32": batching / plain >= 3.0, "overhead_ms_c1": True}
    table = serve_load.markdown(report)
    assert f"| {batching / offline:.0%} |" in table
    assert f"{1.5 / 15.0:.0%} of a core" in table and f"{3.0 / 15.0:.0%} of a core" in table
