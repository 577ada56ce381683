"""The benchmark report's derived 'why' numbers, on a small hand-made run.

The report explains each missed speed goal from the run's own data; these tests re-derive those
numbers with plain arithmetic so a change to the report cannot quietly change what they mean.
"""

from __future__ import annotations

from benchmarks.report import targets


def _variant(seconds: float, encode_s: float, ratio: float, pairs_per_s: float) -> dict:
    """A variant with only the fields the speed targets read; the rest of its time is tokenize."""
    return {"seconds": seconds, "breakdown_s": {"encode": encode_s, "tokenize": seconds - encode_s},
            "breakdown_share": {"encode": encode_s / seconds, "tokenize": 1 - encode_s / seconds},
            "non_encoder_share": 1 - encode_s / seconds, "x_reference": ratio, "pairs_per_s": pairs_per_s,
            "pairs": 100, "runs_s": [seconds], "useful_tflop": 1.0, "precision": "fp32",
            "encoder_gflops": 1e3 / encode_s, "peak_fraction": 0.5, "padding_waste": 0.0,
            "peak_rss_mb": 100.0, "rss_after_load_mb": 90.0}


def _why(rows: list[dict], prefix: str) -> str:
    (row,) = [r for r in rows if r["target"].startswith(prefix)]
    return row["why"]


def test_missed_speed_goals_state_the_no_overhead_ceiling():
    fp32 = _variant(seconds=200.0, encode_s=190.0, ratio=3.0, pairs_per_s=0.5)
    int8 = _variant(seconds=50.0, encode_s=48.0, ratio=12.0, pairs_per_s=2.0) | {"precision": "int8"}
    torch = _variant(seconds=55.0, encode_s=53.0, ratio=11.0, pairs_per_s=1.8)
    profiles = {"engine-fp32": {"run_s": 1.0, "gemm_s": 0.9, "gflops": 1.0, "gemm_gflops": 1.0, "ops_s": {}},
                "engine-int8": {"run_s": 2.0, "gemm_s": 1.6, "gflops": 1.0, "gemm_gflops": 1.0, "ops_s": {}}}
    rows = targets({"engine-fp32": fp32, "engine-int8": int8, "torch-int8": torch}, "cpu", {}, profiles)

    # fp32: 10 s outside the encoder stay, the 190 s encoder keeps only its GEMM share (0.9).
    fp32_ceiling = 3.0 * 200.0 / (10.0 + 190.0 * 0.9)
    assert f"it would reach {fp32_ceiling:.2f}x" in _why(rows, "engine fp32 speed")
    # int8 vs torch: 2 s stay, 48 s of encoder keep 1.6 / 2.0 of their time; torch as measured.
    int8_ceiling = (2.0 / 1.8) * 50.0 / (2.0 + 48.0 * 0.8)
    assert f"it would reach {int8_ceiling:.2f}x" in _why(rows, "engine-int8 vs torch-int8")


def test_no_ceiling_claimed_without_a_profile():
    fp32 = _variant(seconds=200.0, encode_s=190.0, ratio=3.0, pairs_per_s=0.5)
    rows = targets({"engine-fp32": fp32}, "cpu", {}, {})
    why = _why(rows, "engine fp32 speed")
    assert why and "would reach" not in why
