"""The machine's GEMM peak for this workload, measured with ONNX Runtime's own kernels.

The encoder's work is almost all GEMMs against fixed weights: per layer four d x d
projections (q, k, v, out), fc1 (d -> ffn) and fc2 (ffn -> d). We time exactly those shapes,
with ``rows`` activation rows (a token budget's worth), as one-node ONNX graphs:

- fp32: ``MatMul(A[rows, k], W[k, n])``;
- int8: the pattern ONNX Runtime's dynamic quantization writes (and fuses into
  DynamicQuantizeMatMul): ``DynamicQuantizeLinear(A) -> MatMulInteger(u8 x s8 W) -> Cast -> Mul``;
- fp16 (CUDA): ``MatMul`` in half precision.

The workload peak is the FLOP-weighted mix of the shapes (the harmonic mean: total FLOPs over
the time each shape needs at its own rate), i.e. the encoder's GEMM rate if nothing else cost
anything. ``useful_flops`` counts the encoder's FLOPs on real (unpadded) tokens.

    python -m benchmarks.peak --threads 2
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np

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
    """Median seconds per run of one GEMM graph and the rate in GFLOP/s (GOP/s for int8)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if provider == "cuda" else ["CPUExecutionProvider"]
    session = ort.InferenceSession(gemm_graph(rows, k, n, precision).SerializeToString(), options,
                                   providers=providers)
    a = np.random.default_rng(1).standard_normal((rows, k), dtype=np.float32)
    if precision == "fp16":
        a = a.astype(np.float16)
    for _ in range(3):
        session.run(None, {"a": a})
    samples, start = [], time.perf_counter()
    while time.perf_counter() - start < min_seconds or len(samples) < 5:
        clock = time.perf_counter()
        session.run(None, {"a": a})
        samples.append(time.perf_counter() - clock)
    seconds = statistics.median(samples)
    return {"rows": rows, "k": k, "n": n, "seconds": seconds, "gflops": 2.0 * rows * k * n / seconds / 1e9,
            "runs": len(samples)}


def measure_peaks(precisions=("fp32", "int8"), threads: int = 2, rows: int = 4096, provider: str = "cpu",
                  min_seconds: float = 1.0) -> dict:
    """Per precision: each encoder shape's rate and the FLOP-weighted workload peak."""
    out = {}
    for precision in precisions:
        shapes, total_flops, total_seconds = {}, 0.0, 0.0
        for name, count, k, n in encoder_shapes():
            result = time_gemm(rows, k, n, precision, threads, provider, min_seconds)
            shapes[name] = result
            flops = count * 2.0 * rows * k * n
            total_flops += flops
            total_seconds += flops / (result["gflops"] * 1e9)
        out[precision] = {"workload_gflops": total_flops / total_seconds / 1e9,
                          "max_gflops": max(s["gflops"] for s in shapes.values()), "shapes": shapes,
                          "op": "MatMul" if precision != "int8" else "DynamicQuantizeLinear+MatMulInteger (u8 x s8)"}
    return {"threads": threads, "rows": rows, "provider": provider, "precisions": out}


def main() -> None:
    parser = argparse.ArgumentParser(description="GEMM peaks of ONNX Runtime on encoder-sized matrices")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rows", type=int, default=4096)
    parser.add_argument("--precisions", default="fp32,int8")
    parser.add_argument("--provider", default="cpu", choices=("cpu", "cuda"))
    args = parser.parse_args()
    peaks = measure_peaks(tuple(args.precisions.split(",")), args.threads, args.rows, args.provider)
    print(json.dumps(peaks, indent=1))


if __name__ == "__main__":
    main()
