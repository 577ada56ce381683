"""Folding the SmoothQuant ``Mul`` (issue 27): the same function, one pass over X less.

The int8 export divides each quantized activation X by per-channel factors s (export/quantize.py).
Where X is a LayerNorm's output (q/k/v, fc1) the division folds into gamma and beta; where it is
ReLU(fc1) (fc2's input) into fc1's output columns and bias (s > 0 commutes with ReLU); where it
is the attention context (out_proj's input) into the value projection's columns. In exact
arithmetic nothing changes, so the tests compare folded and unfolded graphs built from the same
calibration: the smoothed float32 graphs within the export's own float32 tolerance, and the int8
graphs at the quantized activations themselves (a uint8 may move by one step only where the
float rounding of the fold straddles a rounding boundary), and the folded int8 graph stays
batch-invariant.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from conftest import TINY_LAYER
from fixture_int8 import padded_feed, tiny_fp32_and_rows
from measurements import record

from transalign.engine.session import open_session
from transalign.export import quantize
from transalign.export.validation import FP32_MAX_REL_DIFF


@pytest.fixture(scope="module")
def built(tiny_bundle, tmp_path_factory):
    """fp32 graph, calibration rows, and {fold: (smoothed fp32 path, int8 path, facts)}."""
    fp32, rows = tiny_fp32_and_rows(tiny_bundle, tmp_path_factory.mktemp("fold"))
    work = fp32.parent
    groups = quantize._quantized_matmuls(onnx.load(str(fp32), load_external_data=False), [])
    ranges = quantize.calibrate(fp32, list(groups), rows)
    out = {}
    for fold in (False, True):
        folder = work / ("folded" if fold else "unfolded")
        folder.mkdir()
        quantize._smooth(fp32, folder / "smoothed.onnx", [], ranges, quantize.DEFAULT_SMOOTH_ALPHA, fold)
        facts = quantize.quantize_static_int8(fp32, folder / "model.int8.onnx", [], rows, fold=fold)
        out[fold] = (folder / "smoothed.onnx", folder / "model.int8.onnx", facts)
    return fp32, rows, out


@pytest.fixture(scope="module")
def feed(built):
    return padded_feed(built[1])


def _run(path, feed, extra=()):
    model = onnx.load(str(path))
    for name in extra:
        model.graph.output.append(onnx.helper.make_empty_tensor_value_info(name))
    with_data = path.with_name(path.stem + ".probe.onnx")
    onnx.save(model, str(with_data))  # weights inline here (a few KB), so the copy stands alone
    return open_session(str(with_data), "cpu", 1).run(None, feed)


def _smooth_muls(path) -> int:
    return sum(n.op_type == "Mul" and n.name.endswith("_Smooth")
               for n in onnx.load(str(path), load_external_data=False).graph.node)


def test_folding_removes_the_four_muls_of_every_block(built):
    """q/k/v and fc1 into the LayerNorms, fc2 into fc1, out_proj into the value projection."""
    _, _, out = built
    assert out[False][2]["smoothing_folded"] == {"folded": 0, "kept": 4 * TINY_LAYER}
    assert out[True][2]["smoothing_folded"] == {"folded": 4 * TINY_LAYER, "kept": 0}
    for fold, expected in ((False, 4 * TINY_LAYER), (True, 0)):
        assert _smooth_muls(out[fold][0]) == expected and _smooth_muls(out[fold][1]) == expected


def test_folded_float_graph_is_the_unfolded_one_within_float32_rounding(built, feed):
    fp32, _, out = built
    real = feed["attention_mask"].astype(bool)
    plain = _run(fp32, feed)[0][real]
    unfolded, folded = (_run(out[fold][0], feed)[0][real] for fold in (False, True))
    scale = np.abs(plain).max()
    for name, hidden in (("unfolded", unfolded), ("folded", folded)):
        assert np.abs(hidden - plain).max() / scale <= FP32_MAX_REL_DIFF, name  # smoothing is an identity
    diff = np.abs(folded - unfolded).max() / scale
    record(f"SmoothQuant fold on tiny: folded vs unfolded smoothed fp32, max relative difference {diff:.2e}")
    assert 0 <= diff <= FP32_MAX_REL_DIFF


def test_folded_int8_quantizes_every_activation_as_the_unfolded_one(built, feed):
    """Each QuantizeLinear's uint8 output: equal, or one step apart where the float inputs of the
    two graphs lie on either side of a rounding boundary (their float difference is the fold's
    rounding)."""
    _, _, out = built
    model = onnx.load(str(out[True][1]), load_external_data=False)
    quant = [(n.input[0], n.output[0], n.input[1]) for n in model.graph.node if n.op_type == "QuantizeLinear"]
    wanted = {scale for _, _, scale in quant}
    scales = {init.name: float(onnx.numpy_helper.to_array(init)) for init in model.graph.initializer
              if init.name in wanted}
    names = [name for x, q, _ in quant for name in (x, q)]
    unfolded, folded = (dict(zip(names, _run(out[fold][1], feed, names)[1:])) for fold in (False, True))
    flipped = total = 0
    for x, q, scale_name in quant:
        a, b = unfolded[q].astype(int), folded[q].astype(int)
        assert np.abs(a - b).max() <= 1, q
        moved = a != b
        if moved.any():  # both sides of a boundary k + 0.5 (in units of the scale): the floats straddle it
            xa, xb = unfolded[x][moved] / scales[scale_name], folded[x][moved] / scales[scale_name]
            boundary = np.floor(np.minimum(xa, xb) + 0.5) + 0.5
            assert np.all((np.minimum(xa, xb) <= boundary + 1e-6) & (boundary <= np.maximum(xa, xb) + 1e-6)), q
        flipped, total = flipped + int(moved.sum()), total + a.size
    real = feed["attention_mask"].astype(bool)
    ha, hb = (_run(out[fold][1], feed)[0][real] for fold in (False, True))
    record(f"SmoothQuant fold on tiny int8: {flipped} of {total} quantized activations one step apart; hidden max "
           f"relative difference {np.abs(ha - hb).max() / np.abs(ha).max():.2e}")


def test_folded_int8_stays_batch_invariant(built, feed):
    """A sentence alone and padded beside longer ones: the same rows, bit for bit."""
    _, _, out = built
    batched = _run(out[True][1], feed)[0]
    mask = feed["attention_mask"]
    for k in (0, len(mask) // 2, len(mask) - 1):
        n = int(mask[k].sum())
        alone = _run(out[True][1], {"input_ids": feed["input_ids"][k:k + 1, :n],
                                    "attention_mask": mask[k:k + 1, :n]})[0]
        assert np.array_equal(alone[0], batched[k, :n]), k


def test_a_layernorm_read_by_something_else_is_not_folded():
    """X = LayerNorm(x) also feeding an Add: dividing gamma would change the Add; the Mul stays."""
    from onnx import TensorProto, helper, numpy_helper

    d = 4
    inits = [numpy_helper.from_array(np.ones(d, np.float32), "g"), numpy_helper.from_array(np.zeros(d, np.float32), "b"),
             numpy_helper.from_array(np.full(d, 0.5, np.float32), "inv")]
    nodes = [helper.make_node("LayerNormalization", ["x", "g", "b"], ["X"], name="ln", axis=-1),
             helper.make_node("Mul", ["X", "inv"], ["X_smoothed"], name="X_Smooth"),
             helper.make_node("Add", ["X", "X_smoothed"], ["y"], name="add")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, d])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, d])], inits)
    model = helper.make_model(graph)
    assert quantize.fold_smoothing(model, {"X": np.full(d, 2.0)}) == {"folded": 0, "kept": 1}
    assert [n.name for n in model.graph.node] == ["ln", "X_Smooth", "add"]
