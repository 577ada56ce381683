"""Fusing each quantized projection's dequantization (export/int8_fuse.py, issue 27).

``MatMulInteger -> Cast -> Mul(scales) -> Add(bias)`` becomes one ``MatMulIntegerToFloat``. The
tests build the tiny model's int8 graph both ways from the same calibration and compare them:
every projection fused, the hidden states bit for bit, batch invariance kept; and on small
hand-made graphs, that only the exact pattern is fused and the fused value is the unfused one.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from fixture_int8 import padded_feed, tiny_fp32_and_rows
from onnx import TensorProto, helper, numpy_helper

from transalign.engine.session import open_session
from transalign.export import quantize
from transalign.export.int8_fuse import FUSED_OP, fuse_integer_matmuls


@pytest.fixture(scope="module")
def built(tiny_bundle, tmp_path_factory):
    """Calibration rows and {fuse: (int8 path, facts)} from the tiny bundle's fp32 graph."""
    fp32, rows = tiny_fp32_and_rows(tiny_bundle, tmp_path_factory.mktemp("fuse"))
    out = {}
    for fuse in (False, True):
        folder = fp32.parent / ("fused" if fuse else "unfused")
        folder.mkdir()
        facts = quantize.quantize_static_int8(fp32, folder / "model.int8.onnx", [], rows, fuse=fuse)
        out[fuse] = (folder / "model.int8.onnx", facts)
    return rows, out


def ops(path) -> list[str]:
    return [n.op_type for n in onnx.load(str(path), load_external_data=False).graph.node]


def test_every_projection_is_fused(built):
    _, out = built
    before, after = ops(out[False][0]), ops(out[True][0])
    assert before.count("MatMulInteger") > 0 and out[False][1]["fused_matmuls"] == 0
    assert after.count(FUSED_OP) == before.count("MatMulInteger") == out[True][1]["fused_matmuls"]
    assert "MatMulInteger" not in after and after.count("Cast") < before.count("Cast")
    with_bias = sum(len(n.input) == 7 for n in onnx.load(str(out[True][0]), load_external_data=False).graph.node
                    if n.op_type == FUSED_OP)
    assert with_bias > 0
    # each fusion drops Cast, Mul and the scales' Mul, and the bias Add where it took it in
    assert len(after) == len(before) - 3 * after.count(FUSED_OP) - with_bias
    assert after.count("Add") == before.count("Add") - with_bias
    assert after.count("QuantizeLinear") == before.count("QuantizeLinear")


def test_fused_hidden_states_are_the_unfused_ones_bit_for_bit(built):
    rows, out = built
    feed = padded_feed(rows)
    unfused, fused = (open_session(str(out[fuse][0]), "cpu", 1).run(None, feed)[0] for fuse in (False, True))
    real = feed["attention_mask"].astype(bool)
    assert np.array_equal(unfused[real], fused[real])


def test_fused_graph_stays_batch_invariant(built):
    rows, out = built
    feed = padded_feed(rows)
    session = open_session(str(out[True][0]), "cpu", 2)
    batched = session.run(None, feed)[0]
    for k in (0, len(rows) // 2, len(rows) - 1):
        n = len(rows[k])
        alone = session.run(None, {"input_ids": feed["input_ids"][k:k + 1, :n],
                                   "attention_mask": feed["attention_mask"][k:k + 1, :n]})[0]
        assert np.array_equal(alone[0], batched[k, :n]), k


# -- the pattern, on hand-made graphs -------------------------------------------------------------


def projection_graph(path, *, bias_shape=(3,), extra_output: str | None = None) -> None:
    """x (float [2, 4]) -> QuantizeLinear -> MatMulInteger(W int8 [4, 3]) -> Cast -> Mul(a*b scales)
    -> Add(bias) -> y; ``extra_output``: also expose that intermediate tensor."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(np.array(0.05, np.float32), "a_scale"),
             numpy_helper.from_array(np.array(128, np.uint8), "a_zp"),
             numpy_helper.from_array(rng.integers(-127, 128, (4, 3)).astype(np.int8), "w"),
             numpy_helper.from_array(np.zeros(3, np.int8), "w_zp"),
             numpy_helper.from_array(rng.uniform(0.01, 0.02, 3).astype(np.float32), "w_scale"),
             numpy_helper.from_array(rng.normal(size=bias_shape).astype(np.float32), "bias")]
    nodes = [helper.make_node("QuantizeLinear", ["x", "a_scale", "a_zp"], ["xq"]),
             helper.make_node("MatMulInteger", ["xq", "w", "a_zp", "w_zp"], ["acc"], name="proj"),
             helper.make_node("Cast", ["acc"], ["accf"], to=TensorProto.FLOAT),
             helper.make_node("Mul", ["a_scale", "w_scale"], ["scales"]),
             helper.make_node("Mul", ["accf", "scales"], ["scaled"]),
             helper.make_node("Add", ["bias", "scaled"], ["y"])]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)]
    if extra_output:
        kind = TensorProto.INT32 if extra_output == "acc" else TensorProto.FLOAT
        outputs.append(helper.make_tensor_value_info(extra_output, kind, None))
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4])],
                              outputs, inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))


@pytest.mark.parametrize("bias_shape, fused_bias", [((3,), True), ((1,), False), ((2, 3), False)])
def test_the_bias_is_fused_only_when_it_is_a_vector_of_the_output_width(tmp_path, bias_shape, fused_bias):
    path = tmp_path / "g.onnx"
    projection_graph(path, bias_shape=bias_shape)
    x = {"x": np.random.default_rng(1).normal(size=(2, 4)).astype(np.float32)}
    before = open_session(str(path), "cpu", 1).run(None, x)[0]
    assert fuse_integer_matmuls(path) == 1
    assert ops(path).count("Add") == (0 if fused_bias else 1)
    assert np.array_equal(open_session(str(path), "cpu", 1).run(None, x)[0], before)


@pytest.mark.parametrize("exposed", ["acc", "accf"])
def test_an_intermediate_used_elsewhere_keeps_its_chain(tmp_path, exposed):
    path = tmp_path / "g.onnx"
    projection_graph(path, extra_output=exposed)
    assert fuse_integer_matmuls(path) == 0
    assert "MatMulInteger" in ops(path)


def test_a_scaled_product_used_elsewhere_is_fused_without_the_bias(tmp_path):
    """The fused node's output is then the scaled product itself, which the Add and the graph
    output both still read."""
    path = tmp_path / "g.onnx"
    projection_graph(path, extra_output="scaled")
    x = {"x": np.random.default_rng(2).normal(size=(2, 4)).astype(np.float32)}
    before = open_session(str(path), "cpu", 1).run(None, x)
    assert fuse_integer_matmuls(path) == 1
    assert ops(path).count("Add") == 1 and "MatMulInteger" not in ops(path)
    after = open_session(str(path), "cpu", 1).run(None, x)
    assert all(np.array_equal(a, b) for a, b in zip(before, after))
