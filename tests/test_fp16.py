"""The fp16 graph, checked without a GPU (issue 27).

ONNX Runtime's CPU provider runs the fp16 graph by inserting casts, computing most ops in
float32; `onnx.reference` computes every op in the graph's own types, so float16 ops round and
overflow as they would on CUDA. Both are compared with the fp32 graph on the same padded batch.

The tolerance is derived, not fitted. Each op that writes float16 rounds its result to nearest:
a relative error of at most u = 2**-11. To first order these errors add along the computation
(LayerNorm and Softmax are kept in float32 and renormalise; nothing here amplifies them by
more than the number of steps, which the test asserts rather than assumes), so every token's
hidden vector satisfies ||h16 - h32|| <= R * u * ||h32||, R = the number of float16-writing
nodes in the graph (an upper bound on the roundings along any one path). Links: with that
per-token bound eps, |dS_ij| <= (2 eps + eps^2) ||x_i|| ||y_j||, so the fp16 links must contain
every link the fp32 scores keep by more than that margin and nothing they miss by more than it
(the sure/possible construction of tests/naive.py with this error in place of float32's).
"""

from __future__ import annotations

import math

import numpy as np
import onnx
import pytest
from naive import naive_links, naive_scores
from measurements import record

from transalign.engine.bundle import read_manifest
from transalign.engine.session import open_session
from transalign.export.graph import topologically_sorted
from transalign.export.validation import matmul_weight_count, run_reference, validate_fp16
from transalign.formats.text import read_sentences

U16 = 2.0 ** -11
LANGS = ("bam_Latn", "eng_Latn")
PAIRS = 60


def fp16_rounding_nodes(path) -> int:
    """Nodes whose output is float16 (after shape inference): the rounding steps."""
    model = onnx.shape_inference.infer_shapes(onnx.load(str(path), load_external_data=False))
    types = {v.name: v.type.tensor_type.elem_type for v in (*model.graph.value_info, *model.graph.output)}
    return sum(any(types.get(o) == onnx.TensorProto.FLOAT16 for o in node.output) for node in model.graph.node)


@pytest.fixture(scope="module")
def batch(tiny_bundle, data_dir):
    """Both sides of PAIRS bam-en pairs, tokenized, in one padded batch, plus each row's words."""
    from transalign.engine.tokenizers import load_tokenizer

    sample = data_dir / "reference/bam-sample"
    src = read_sentences(sample / "test-bam.txt", "conll")[:PAIRS]
    tgt = read_sentences(sample / "test-translate-bam-en-preds.txt", "conll")[:PAIRS]
    tokenizer = load_tokenizer(tiny_bundle, read_manifest(tiny_bundle).tokenizer)
    rows = tokenizer.encode_batch(src, LANGS[0]) + tokenizer.encode_batch(tgt, LANGS[1])
    width = max(len(ids) for ids, _ in rows)
    ids = np.full((len(rows), width), 1, np.int64)
    mask = np.zeros_like(ids)
    for k, (row, _) in enumerate(rows):
        ids[k, :len(row)], mask[k, :len(row)] = row, 1
    return ids, mask, [np.asarray(words) for _, words in rows]


@pytest.fixture(scope="module")
def hidden(tiny_bundle, batch):
    ids, mask, _ = batch
    feed = {"input_ids": ids, "attention_mask": mask}
    return {"fp32": open_session(tiny_bundle / "model.onnx", "cpu").run(None, feed)[0],
            "cpu-onnxruntime": open_session(tiny_bundle / "model.fp16.onnx", "cpu").run(None, feed)[0],
            "onnx-reference-fp16": run_reference(tiny_bundle / "model.fp16.onnx", ids, mask)}


def _token_errors(h32, h16, mask):
    real = mask.astype(bool)
    a, b = h32[real].astype(np.float64), h16[real].astype(np.float64)
    return np.linalg.norm(b - a, axis=1) / np.linalg.norm(a, axis=1)


def test_the_export_records_which_fp16_check_it_ran(tiny_bundle):
    fp16 = read_manifest(tiny_bundle).precisions["fp16"]["validation"]
    assert fp16["validated"] and fp16["check"] in ("cuda", "onnx-reference-fp16")
    if fp16["check"] == "onnx-reference-fp16":  # no CUDA: the CPU provider's run is recorded beside it
        (cpu,) = fp16["also"]
        assert cpu["check"] == "cpu-onnxruntime" and cpu["validated"] and cpu["tokens"] == fp16["tokens"]
    assert 0.99 < fp16["mean_cosine"] <= 1.0 + 1e-6 and fp16["max_abs_diff"] > 0  # rounded, not fp32
    assert read_manifest(tiny_bundle).precisions["fp32"]["validation"]["check"] == "cpu-onnxruntime"


def test_fp16_graph_is_valid_onnx_in_topological_order(tiny_bundle):
    model = onnx.load(str(tiny_bundle / "model.fp16.onnx"))
    onnx.checker.check_model(model)
    produced = {i.name for i in model.graph.input} | {i.name for i in model.graph.initializer} | {""}
    for node in model.graph.node:
        assert all(name in produced for name in node.input), node.name
        produced.update(node.output)
    kept = {n.op_type for n in model.graph.node if n.op_type in ("LayerNormalization", "Softmax")}
    assert kept == {"LayerNormalization", "Softmax"}
    types = {v.name: v.type.tensor_type.elem_type
             for v in onnx.shape_inference.infer_shapes(model).graph.value_info}
    for node in model.graph.node:
        if node.op_type in kept:  # kept in float32, as the export promises
            assert types[node.output[0]] == onnx.TensorProto.FLOAT, node.name


@pytest.mark.parametrize("check", ["cpu-onnxruntime", "onnx-reference-fp16"])
def test_fp16_hidden_states_are_within_the_rounding_bound(tiny_bundle, batch, hidden, check):
    ids, mask, _ = batch
    steps = fp16_rounding_nodes(tiny_bundle / "model.fp16.onnx")
    bound = steps * U16
    errors = _token_errors(hidden["fp32"], hidden[check], mask)
    record(f"fp16 on tiny ({check}): per-token relative error max {errors.max():.2e}, mean {errors.mean():.2e}; "
           f"bound {steps} roundings x 2^-11 = {bound:.2e}")
    assert np.isfinite(hidden[check]).all()
    assert errors.max() <= bound
    assert errors.max() > 0  # it is a float16 computation, not the fp32 graph again


def _pair_rows(hidden, words, k, n_pairs):
    """(x, y, src words, tgt words) of pair k: the real, non-special rows of both sides."""
    src, tgt = words[k], words[n_pairs + k]
    return (hidden[k][:len(src)][src >= 0], hidden[n_pairs + k][:len(tgt)][tgt >= 0], src[src >= 0], tgt[tgt >= 0])


def _bounded_links(x, y, xw, yw, t, eps):
    """(sure, possible) word links for scores known to within (2 eps + eps^2) |x_i| |y_j|."""
    s = naive_scores(x, y)
    err = (2 * eps + eps * eps) * np.outer(np.linalg.norm(x, axis=1), np.linalg.norm(y, axis=1))
    row = 2 * err.max(axis=1, keepdims=True)
    col = 2 * err.max(axis=0, keepdims=True)
    log_f = s - (s.max(1, keepdims=True) + np.log(np.exp(s - s.max(1, keepdims=True)).sum(1, keepdims=True)))
    log_b = s - (s.max(0, keepdims=True) + np.log(np.exp(s - s.max(0, keepdims=True)).sum(0, keepdims=True)))
    lt = math.log(t)
    sure = (log_f - row > lt) & (log_b - col > lt)
    possible = (log_f + row > lt) & (log_b + col > lt)
    as_links = lambda m: {(int(xw[i]), int(yw[j])) for i, j in zip(*np.nonzero(m))}  # noqa: E731
    return as_links(sure), as_links(possible)


@pytest.mark.parametrize("check", ["cpu-onnxruntime", "onnx-reference-fp16"])
def test_fp16_links_agree_with_fp32_within_what_the_bound_allows(tiny_bundle, batch, hidden, check):
    ids, mask, words = batch
    t = read_manifest(tiny_bundle).default_threshold
    eps = fp16_rounding_nodes(tiny_bundle / "model.fp16.onnx") * U16
    identical, both, n32, n16 = 0, 0, 0, 0
    for k in range(PAIRS):
        x32, y32, xw, yw = _pair_rows(hidden["fp32"], words, k, PAIRS)
        x16, y16, _, _ = _pair_rows(hidden[check], words, k, PAIRS)
        links32 = set(naive_links(x32, y32, xw, yw, t))
        links16 = set(naive_links(x16, y16, xw, yw, t))
        sure, possible = _bounded_links(x32, y32, xw, yw, t, eps)
        assert sure <= links16 <= possible, f"pair {k}: fp16 links outside what the rounding bound allows"
        identical += links16 == links32
        both, n32, n16 = both + len(links16 & links32), n32 + len(links32), n16 + len(links16)
    f1 = 2 * both / (n32 + n16)
    record(f"fp16 on tiny ({check}) vs fp32: identical pairs {identical}/{PAIRS}, link F1 {f1:.4f}")
    assert n32 > PAIRS  # real links, not empty alignments


def test_the_reference_check_sees_an_overflow_the_cpu_provider_hides(tmp_path):
    """x * 512 * 512 / 4096 = 64 x: exact in float32; in float16 the intermediate 262144 x
    overflows (max 65504) to inf. A graph the CPU provider passes, the reference refuses."""
    from onnx import TensorProto, helper, numpy_helper

    def const(name, value):
        return numpy_helper.from_array(np.array(value, np.float16), name)

    nodes = [helper.make_node("Cast", ["x"], ["x16"], to=TensorProto.FLOAT16),
             helper.make_node("Mul", ["x16", "big"], ["a"]), helper.make_node("Mul", ["a", "big"], ["b"]),
             helper.make_node("Div", ["b", "den"], ["c"]),
             helper.make_node("Cast", ["c"], ["y"], to=TensorProto.FLOAT)]
    graph = helper.make_graph(nodes, "overflow", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])],
                              [const("big", 512.0), const("den", 4096.0)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    x = np.array([1.0, 2.0], np.float32)
    from onnx.reference import ReferenceEvaluator

    reference = ReferenceEvaluator(model).run(None, {"x": x})[0]
    assert np.isinf(reference).all()  # true float16
    cpu = open_session(model.SerializeToString(), "cpu").run(None, {"x": x})[0]
    # onnxruntime 1.32's CPU provider computes these ops in float32 and hides the overflow: the
    # reason its check alone is not enough (if a later version fails here, it computes float16)
    assert np.array_equal(cpu, 64 * x)


def test_an_overflowing_fp16_graph_is_refused():
    from transalign.export.validation import compare, derived_problems

    reference = np.ones((1, 3, 4), np.float32)
    mask = np.ones((1, 3), np.int64)
    overflowed = reference.copy()
    overflowed[0, 1, 2] = np.inf
    problems = derived_problems(compare("fp16", reference, overflowed, mask, check="onnx-reference-fp16"))
    assert problems == ["fp16 mean token cosine nan < 0.95 (onnx-reference-fp16)"]


def test_validate_fp16_without_cuda_runs_both_cpu_checks(tiny_bundle, batch, hidden):
    ids, mask, _ = batch
    dev = validate_fp16(tiny_bundle / "model.fp16.onnx", hidden["fp32"], ids, mask, cuda=False)
    assert dev.check == "onnx-reference-fp16" and dev.also[0]["check"] == "cpu-onnxruntime"
    errors = _token_errors(hidden["fp32"], hidden["onnx-reference-fp16"], mask)
    real = mask.astype(bool)
    assert dev.max_abs_diff == pytest.approx(float(np.abs(hidden["fp32"][real] - hidden["onnx-reference-fp16"][real]).max()))
    assert dev.tokens == int(real.sum()) and errors.max() > 0


def test_large_graphs_skip_the_reference_run_and_say_so(tiny_bundle, batch, hidden, monkeypatch):
    from transalign.export import validation

    ids, mask, _ = batch
    weights = matmul_weight_count(tiny_bundle / "model.fp16.onnx")
    assert weights > 0
    monkeypatch.setattr(validation, "REFERENCE_FP16_MAX_WEIGHTS", weights - 1)
    dev = validate_fp16(tiny_bundle / "model.fp16.onnx", hidden["fp32"], ids, mask, cuda=False)
    assert dev.check == "cpu-onnxruntime" and dev.also == () and "onnx.reference in float16 skipped" in dev.note


def test_topological_sort_orders_a_shuffled_graph_and_refuses_a_dangling_input():
    from onnx import TensorProto, helper

    from transalign.export.errors import ExportError

    a = helper.make_node("Relu", ["x"], ["a"], name="a")
    b = helper.make_node("Neg", ["a"], ["b"], name="b")
    c = helper.make_node("Abs", ["b"], ["y"], name="c")
    io = ([helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    model = helper.make_model(helper.make_graph([c, a, b], "g", *io))
    assert [n.name for n in topologically_sorted(model).graph.node] == ["a", "b", "c"]
    broken = helper.make_model(helper.make_graph([helper.make_node("Neg", ["nowhere"], ["y"])], "g", *io))
    with pytest.raises(ExportError, match="nowhere"):
        topologically_sorted(broken)
