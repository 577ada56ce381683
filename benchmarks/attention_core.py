"""One encoder layer's attention core, unfused (as the exported graph has it) against ONNX
Runtime's ``com.microsoft.MultiHeadAttention``, on already-projected Q, K and V.

This is the check behind "MultiHeadAttention, not kept" in benchmarks/README.md: the fused op
only replaces the head transposes, QK^T, mask add, softmax, AV and the transpose back, so its
gain is bounded by their share of a batch. Outputs are compared on the unpadded rows before
anything is timed.

    python -m benchmarks.attention_core [--batch 32 --length 64 --rounds 3]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from transalign.engine.session import open_session

HEADS, HEAD_SIZE = 16, 64  # NLLB-200-distilled-600M
HIDDEN = HEADS * HEAD_SIZE


def unfused_nodes():
    """The core as the M2M100 export spells it: scale q, split heads, two matmuls, merge heads."""
    from onnx import TensorProto as T, helper as h

    nodes = [h.make_node("Mul", ["q", "scale"], ["qs"])]
    nodes += [h.make_node("Reshape", [x, "shape4"], [x + "4"]) for x in ("qs", "k", "v")]
    nodes += [h.make_node("Transpose", ["qs4"], ["qt"], perm=[0, 2, 1, 3]),
              h.make_node("Transpose", ["k4"], ["kt"], perm=[0, 2, 3, 1]),
              h.make_node("Transpose", ["v4"], ["vt"], perm=[0, 2, 1, 3]),
              h.make_node("MatMul", ["qt", "kt"], ["scores"]),
              h.make_node("Cast", ["mask"], ["maskf"], to=T.FLOAT),
              h.make_node("Sub", ["one", "maskf"], ["masked"]),
              h.make_node("Mul", ["masked", "lowest"], ["bias2"]),
              h.make_node("Unsqueeze", ["bias2", "axes12"], ["bias"]),
              h.make_node("Add", ["scores", "bias"], ["biased"]),
              h.make_node("Softmax", ["biased"], ["probs"], axis=-1),
              h.make_node("MatMul", ["probs", "vt"], ["heads"]),
              h.make_node("Transpose", ["heads"], ["merged"], perm=[0, 2, 1, 3]),
              h.make_node("Reshape", ["merged", "shape3"], ["out"])]
    consts = [h.make_tensor("scale", T.FLOAT, [], [HEAD_SIZE ** -0.5]),
              h.make_tensor("shape4", T.INT64, [4], [0, 0, HEADS, HEAD_SIZE]),
              h.make_tensor("shape3", T.INT64, [3], [0, 0, HIDDEN]),
              h.make_tensor("one", T.FLOAT, [], [1.0]),
              h.make_tensor("lowest", T.FLOAT, [], [float(np.finfo(np.float32).min)]),
              h.make_tensor("axes12", T.INT64, [2], [1, 2])]
    return nodes, consts


def fused_nodes():
    """The same core as one contrib op, with the padding mask as its key_padding_mask."""
    from onnx import TensorProto as T, helper as h

    return [h.make_node("Cast", ["mask"], ["mask32"], to=T.INT32),
            h.make_node("MultiHeadAttention", ["q", "k", "v", "", "mask32"], ["out"], domain="com.microsoft",
                        num_heads=HEADS)], []


def session(nodes_and_consts, threads: int):
    from onnx import TensorProto as T, helper as h

    nodes, consts = nodes_and_consts
    inputs = [h.make_tensor_value_info(x, T.FLOAT, ["B", "L", HIDDEN]) for x in "qkv"]
    inputs.append(h.make_tensor_value_info("mask", T.INT64, ["B", "L"]))
    graph = h.make_graph(nodes, "attention_core", inputs, [h.make_tensor_value_info("out", T.FLOAT, None)], consts)
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", 17), h.make_opsetid("com.microsoft", 1)])
    return open_session(model.SerializeToString(), "cpu", threads)


def feeds(batch: int, length: int) -> dict:
    """Random Q/K/V and a padding mask with lengths from half to all of ``length``."""
    rng = np.random.default_rng(0)
    q, k, v = (rng.standard_normal((batch, length, HIDDEN)).astype(np.float32) for _ in range(3))
    mask = np.ones((batch, length), np.int64)
    for row, n in enumerate(rng.integers(length // 2, length + 1, batch)):
        mask[row, n:] = 0
    mask[0] = 1
    return {"q": q, "k": k, "v": v, "mask": mask}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--length", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=20, help="calls per timing")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    data = feeds(args.batch, args.length)
    sessions = {"unfused": session(unfused_nodes(), args.threads), "MultiHeadAttention": session(fused_nodes(), args.threads)}
    outputs = {name: s.run(None, data)[0] for name, s in sessions.items()}
    real = data["mask"].astype(bool)
    diff = float(np.abs(outputs["unfused"] - outputs["MultiHeadAttention"])[real].max())
    print(f"max abs difference on unpadded rows: {diff:.3g}")
    if diff > 1e-4:
        raise SystemExit("the two attention cores disagree; the timing below would compare different work")
    for r in range(args.rounds):  # interleaved, so drift hits both alike
        for name, s in sessions.items():
            start = time.perf_counter()
            for _ in range(args.repeats):
                s.run(None, data)
            print(f"round {r}: {name:18s} {(time.perf_counter() - start) / args.repeats * 1e3:6.2f} ms per layer")


if __name__ == "__main__":
    main()
