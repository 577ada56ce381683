"""What this machine can do: its description and its GEMM peak, measured with ONNX Runtime.

The encoder's work is almost all GEMMs against fixed weights: per layer four d x d
projections (q, k, v, out), fc1 (d -> ffn) and fc2 (ffn -> d). We time exactly those shapes,
with ``rows`` activation rows (a token budget's worth), as one-node ONNX graphs:

- fp32: ``MatMul(A[rows, k], W[k, n])``;
- int8: the pattern ONNX Runtime's dynamic quantization writes (and fuses into
  DynamicQuantizeMatMul): ``DynamicQuantizeLinear(A) -> MatMulInteger(u8 x s8 W) -> Cast -> Mul``;
- fp16 (CUDA): ``MatMul`` in half precision.

The workload peak is the FLOP-weighted mix of the shapes (the harmonic mean: total FLOPs over
the time each shape needs at its own rate), i.e. the encoder's GEMM rate if nothing else cost
anything. ``useful_flops`` counts the encoder's FLOPs on real (unpadded) tokens;
``profile_model`` shows where a bundle's graph spends its time, per op type, on one full batch.
Sessions are the engine's own (`transalign.engine.session.open_session`), so a peak is measured
with the settings the bundle runs under.

    python -m benchmarks.peak --threads 2
    python -m benchmarks.peak --profile benchmarks/work/bundle-l12-lora-x0.1/model.int8.onnx --length 36
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import numpy as np

from transalign.engine.session import open_session

D_MODEL, FFN, LAYERS = 1024, 4096, 12


def useful_flops(lengths, layers: int = LAYERS, d: int = D_MODEL, ffn: int = FFN) -> float:
    """Encoder FLOPs for sequences of these token counts, no padding.

    Per layer and sequence of n tokens: 2n(4d^2 + 2d*ffn) for the projections and the FFN, plus
    4n^2 d for Q K^T and A V. Embeddings, norms, softmax and the LoRA (merged) are ignored.
    """
    n = np.asarray(lengths, dtype=np.float64)
    per_layer = 2.0 * n * (4 * d * d + 2 * d * ffn) + 4.0 * n * n * d
    return float(layers * per_layer.sum())


def encoder_shapes(d: int = D_MODEL, ffn: int = FFN) -> list[tuple[str, int, int, int]]:
    """(name, count per layer, k, n) of the encoder's weight GEMMs."""
    return [("qkvo", 4, d, d), ("fc1", 1, d, ffn), ("fc2", 1, ffn, d)]


def gemm_graph(rows: int, k: int, n: int, precision: str, seed: int = 0):
    """A one-GEMM ONNX model: input ``a`` [rows, k] (float or float16), weight [k, n] inside."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    weight = rng.standard_normal((k, n), dtype=np.float32) * 0.02
    if precision == "fp32" or precision == "fp16":
        elem = TensorProto.FLOAT16 if precision == "fp16" else TensorProto.FLOAT
        w = numpy_helper.from_array(weight.astype(np.float16 if precision == "fp16" else np.float32), "w")
        nodes = [helper.make_node("MatMul", ["a", "w"], ["y"])]
        inits = [w]
    elif precision == "int8":
        elem = TensorProto.FLOAT
        scale = np.abs(weight).max(axis=0) / 127.0
        w_q = np.clip(np.round(weight / scale), -127, 127).astype(np.int8)
        inits = [numpy_helper.from_array(w_q, "w_q"), numpy_helper.from_array(np.zeros(n, np.int8), "w_zp"),
                 numpy_helper.from_array(scale.astype(np.float32), "w_scale")]
        nodes = [
            helper.make_node("DynamicQuantizeLinear", ["a"], ["a_q", "a_scale", "a_zp"]),
            helper.make_node("MatMulInteger", ["a_q", "w_q", "a_zp", "w_zp"], ["y_i32"]),
            helper.make_node("Cast", ["y_i32"], ["y_f"], to=TensorProto.FLOAT),
            helper.make_node("Mul", ["a_scale", "w_scale"], ["s"]),
            helper.make_node("Mul", ["y_f", "s"], ["y"]),
        ]
    else:
        raise ValueError(f"precision {precision!r} is not one of fp32, int8, fp16")
    graph = helper.make_graph(nodes, f"gemm_{precision}", [helper.make_tensor_value_info("a", elem, [rows, k])],
                              [helper.make_tensor_value_info("y", elem, [rows, n])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def time_gemm(rows: int, k: int, n: int, precision: str, threads: int, provider: str = "cpu",
              min_seconds: float = 1.0) -> dict:
    """Best-of-runs seconds of one GEMM graph and its rate in GFLOP/s (GOP/s for int8).

    The best run estimates what the hardware can do (other load only ever slows a run down);
    the median rate is kept alongside to show how noisy the machine was.
    """
    import onnxruntime as ort

    session = open_session(gemm_graph(rows, k, n, precision).SerializeToString(), provider, threads)
    a = np.random.default_rng(1).standard_normal((rows, k), dtype=np.float32)
    if precision == "fp16":
        a = a.astype(np.float16)
    if provider == "cuda":  # keep input and output on the device: time the GEMM, not PCIe
        binding = session.io_binding()
        binding.bind_ortvalue_input("a", ort.OrtValue.ortvalue_from_numpy(a, "cuda", 0))
        binding.bind_output("y", "cuda")
        run = lambda: session.run_with_iobinding(binding)  # noqa: E731
    else:
        run = lambda: session.run(None, {"a": a})  # noqa: E731
    for _ in range(3):
        run()
    samples, start = [], time.perf_counter()
    while time.perf_counter() - start < min_seconds or len(samples) < 5:
        clock = time.perf_counter()
        run()
        samples.append(time.perf_counter() - clock)
    flops = 2.0 * rows * k * n
    best, median = min(samples), statistics.median(samples)
    return {"rows": rows, "k": k, "n": n, "seconds": best, "gflops": flops / best / 1e9,
            "median_gflops": flops / median / 1e9, "runs": len(samples)}


def workload_gflops(shapes: dict) -> float:
    """FLOP-weighted (harmonic) mean rate of the encoder's GEMM shapes: FLOPs over time at peak."""
    counts = {name: count for name, count, _, _ in encoder_shapes()}
    flops = {name: counts[name] * 2.0 * s["rows"] * s["k"] * s["n"] for name, s in shapes.items()}
    return sum(flops.values()) / sum(flops[name] / (s["gflops"] * 1e9) for name, s in shapes.items()) / 1e9


def measure_peaks(precisions=("fp32", "int8"), threads: int = 2, rows: int = 4096, provider: str = "cpu",
                  min_seconds: float = 1.0) -> dict:
    """Per precision: each encoder shape's rate and the FLOP-weighted workload peak."""
    out = {}
    for precision in precisions:
        shapes = {name: time_gemm(rows, k, n, precision, threads, provider, min_seconds)
                  for name, _, k, n in encoder_shapes()}
        out[precision] = {"workload_gflops": workload_gflops(shapes), "shapes": shapes,
                          "op": "MatMul" if precision != "int8" else "DynamicQuantizeLinear+MatMulInteger (u8 x s8)"}
    return {"threads": threads, "rows": rows, "provider": provider, "precisions": out}


def best_peaks(*measurements: dict) -> dict:
    """Several ``measure_peaks`` results -> per precision the best rate of each shape, the
    workload peak from those, and each measurement's own workload peak (to show the noise)."""
    out = {}
    for precision in measurements[0]["precisions"]:
        runs = [m["precisions"][precision] for m in measurements]
        shapes = {name: max((r["shapes"][name] for r in runs), key=lambda s: s["gflops"]) for name in runs[0]["shapes"]}
        out[precision] = {"gflops": workload_gflops(shapes), "measurements": [r["workload_gflops"] for r in runs],
                          "op": runs[0]["op"], "rows": measurements[0]["rows"], "shapes": shapes}
    return out


GEMM_OPS = {"MatMul", "FusedMatMul", "Gemm", "MatMulInteger", "DynamicQuantizeMatMul", "MatMulIntegerToFloat",
            "DynamicQuantizeLinear", "QGemm", "QAttention", "Attention", "MultiHeadAttention"}


def profile_model(model_path: str, batch: int, length: int, threads: int, provider: str = "cpu",
                  runs: int = 3, vocab: int = 4000) -> dict:
    """Where an encoder graph spends its time: ONNX Runtime's profiler, per op type.

    Runs a full batch [batch, length] (no padding) ``runs + 1`` times and drops the first run.
    ``gemm_gflops`` is the useful FLOPs of the batch over the time of the GEMM-type ops (the
    projections, the FFN and the attention products), to compare with the measured peak.
    """
    import glob
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        session = open_session(model_path, provider, threads, profile_prefix=os.path.join(tmp, "profile"))
        rng = np.random.default_rng(0)
        feed = {"input_ids": rng.integers(4, vocab, size=(batch, length)).astype(np.int64),
                "attention_mask": np.ones((batch, length), dtype=np.int64)}
        for _ in range(runs + 1):
            session.run(None, feed)
        session.end_profiling()
        events = json.loads(open(glob.glob(os.path.join(tmp, "profile*.json"))[0]).read())
    model_runs = sorted((e["ts"], e["ts"] + e["dur"]) for e in events if e.get("name") == "model_run")[1:]
    per_op: dict[str, float] = {}
    for e in events:
        if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time") \
                and any(a <= e["ts"] <= b for a, b in model_runs):
            op = e.get("args", {}).get("op_name", "?")
            per_op[op] = per_op.get(op, 0.0) + e["dur"] / 1e6 / len(model_runs)
    run_s = sum(b - a for a, b in model_runs) / 1e6 / len(model_runs)
    gemm_s = sum(v for k, v in per_op.items() if k in GEMM_OPS)
    flops = useful_flops([length] * batch)
    return {"batch": batch, "length": length, "run_s": run_s, "gflops": flops / run_s / 1e9,
            "gemm_s": gemm_s, "gemm_gflops": flops / gemm_s / 1e9 if gemm_s else None,
            "ops_s": dict(sorted(per_op.items(), key=lambda kv: -kv[1]))}


def main() -> None:
    parser = argparse.ArgumentParser(description="GEMM peaks of ONNX Runtime on encoder-sized matrices, "
                                                 "or (--profile MODEL) an op profile of an encoder graph")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rows", type=int, default=4096)
    parser.add_argument("--precisions", default="fp32,int8")
    parser.add_argument("--provider", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--profile", metavar="MODEL", help="profile this .onnx with a [rows/length, length] batch")
    parser.add_argument("--length", type=int, default=40)
    args = parser.parse_args()
    if args.profile:
        result = profile_model(args.profile, max(1, args.rows // args.length), args.length, args.threads,
                               args.provider)
    else:
        result = measure_peaks(tuple(args.precisions.split(",")), args.threads, args.rows, args.provider)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
