"""The int8 graph keeps its vocabulary table in float16 (issue 27, "memory near the weights").

The table is most of an int8 bundle (e5-small: 366 of 381 MB; NLLB-600M: 1 GB) and ends up
resident in full (memory-mapped, read at random rows). Stored in half precision it takes half;
the lookup is followed by a Cast to float32, so the rest of the graph is unchanged. The tests
check that the rewrite is exactly "the same graph on the table rounded to float16": an oracle
graph holding the rounded values in float32 (no Cast) gives bit-identical hidden states.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from transalign.engine.bundle import read_manifest
from transalign.engine.session import open_session
from transalign.export.quantize import half_embeddings

TABLE = "encoder.embed_tokens.weight"


def test_the_int8_bundle_stores_its_vocabulary_table_in_float16(tiny_bundle):
    assert read_manifest(tiny_bundle).precisions["int8"]["float16_embeddings"] == [TABLE]
    graph = onnx.load(str(tiny_bundle / "model.int8.onnx"), load_external_data=False).graph
    inits = {i.name: i for i in graph.initializer}
    assert TABLE not in inits and inits[f"{TABLE}_fp16"].data_type == TensorProto.FLOAT16
    gather = next(n for n in graph.node if n.op_type == "Gather" and n.input[0] == f"{TABLE}_fp16")
    cast = next(n for n in graph.node if gather.output[0] in n.input)
    assert cast.op_type == "Cast" and cast.attribute[0].i == TensorProto.FLOAT
    fp32 = onnx.load(str(tiny_bundle / "model.onnx"), load_external_data=False).graph
    assert next(i for i in fp32.initializer if i.name == TABLE).data_type == TensorProto.FLOAT  # fp32 untouched


def _oracle(int8_path, out_path):
    """The int8 graph with the float16 table replaced by its values in float32 and no Cast."""
    model = onnx.load(str(int8_path))
    half = next(i for i in model.graph.initializer if i.name == f"{TABLE}_fp16")
    model.graph.initializer.remove(half)
    model.graph.initializer.append(numpy_helper.from_array(numpy_helper.to_array(half).astype(np.float32), TABLE))
    nodes = []
    for node in model.graph.node:
        if node.op_type == "Cast" and node.name.endswith("_Cast") and node.input[0].endswith("_fp16"):
            continue
        if node.op_type == "Gather" and node.input[0] == f"{TABLE}_fp16":
            node.input[0] = TABLE
            node.output[0] = node.output[0][: -len("_fp16")]
        nodes.append(node)
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    onnx.save(model, str(out_path))
    return out_path


def test_the_rewrite_is_only_the_rounding_of_the_table(tiny_bundle, tmp_path):
    oracle = _oracle(tiny_bundle / "model.int8.onnx", tmp_path / "oracle.onnx")
    rng = np.random.default_rng(0)
    ids = rng.integers(3, 400, size=(5, 17)).astype(np.int64)
    mask = np.ones_like(ids)
    mask[1, 9:] = 0
    feed = {"input_ids": ids, "attention_mask": mask}
    got = open_session(tiny_bundle / "model.int8.onnx", "cpu", 1).run(None, feed)[0]
    want = open_session(oracle, "cpu", 1).run(None, feed)[0]
    assert np.array_equal(got, want)


def _graph(readers):
    table = numpy_helper.from_array(np.arange(12, dtype=np.float32).reshape(6, 2), "table")
    graph = helper.make_graph(readers, "g", [helper.make_tensor_value_info("input_ids", TensorProto.INT64, [1, 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [table])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("readers, converted", [
    ([helper.make_node("Gather", ["table", "input_ids"], ["y"])], ["table"]),
    ([helper.make_node("Reshape", ["input_ids", "shape"], ["flat"]), helper.make_node("Gather", ["table", "flat"], ["y"])],
     ["table"]),  # NLLB's graph indexes with input_ids reshaped
    ([helper.make_node("Gather", ["table", "input_ids"], ["g"]), helper.make_node("MatMul", ["g", "table"], ["y"])],
     []),  # the table is also multiplied with: left alone
    ([helper.make_node("Gather", ["table", "positions"], ["y"])], []),  # not indexed by the token ids
])
def test_which_tables_are_converted(tmp_path, readers, converted):
    model = _graph(readers)
    model.graph.initializer.append(numpy_helper.from_array(np.array([-1], np.int64), "shape"))
    model.graph.initializer.append(numpy_helper.from_array(np.array([0, 1, 2], np.int64), "positions"))
    path = tmp_path / "m.onnx"
    onnx.save(model, str(path))
    assert half_embeddings(path) == converted
