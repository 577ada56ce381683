"""A pair's links depend only on the pair, the bundle and the options (issue 12).

The same pairs are aligned (a) one pair per call, (b) all in one call, (c) with batch budgets
256 and 8192 and in small streaming chunks, (d) with 1 and 2 threads; every way must give
identical links, for fp32 and int8. The int8 graph must hold no per-run activation scale (the
ONNX op that computed one per batch, DynamicQuantizeLinear, is gone) and padding rows must not
change real rows.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from transalign.engine.aligner import Aligner
from transalign.formats.text import read_sentences

LANGS = ("bam_Latn", "eng_Latn")


@pytest.fixture(scope="module")
def bam_pairs(data_dir):
    sample = data_dir / "reference/bam-sample"
    src = read_sentences(sample / "test-bam.txt", "conll")[:120]
    tgt = read_sentences(sample / "test-translate-bam-en-preds.txt", "conll")[:120]
    return src, tgt


def _links(results):
    return [r.links for r in results]


def _every_way(bundle, precision, src, tgt):
    """name -> links of every pair, computed the ways the issue lists."""
    ways = {}
    one = Aligner.load(bundle, provider="cpu", precision=precision, threads=1)
    ways["one call, 1 thread"] = _links(one.align(src, tgt, *LANGS))
    ways["pair by pair"] = [one.align([s], [t], *LANGS)[0].links for s, t in zip(src, tgt)]
    two = Aligner.load(bundle, provider="cpu", precision=precision, threads=2)
    ways["one call, 2 threads"] = _links(two.align(src, tgt, *LANGS))
    for budget in (256, 8192):
        ways[f"batch_tokens {budget}"] = _links(two.align(src, tgt, *LANGS, batch_tokens=budget))
    ways["chunks of 7 pairs, reversed order"] = _links(two.align_iter(src[::-1], tgt[::-1], *LANGS, chunk_pairs=7))[::-1]
    return ways


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_links_do_not_depend_on_batching_threads_or_order(tiny_bundle, bam_pairs, precision):
    src, tgt = bam_pairs
    ways = _every_way(tiny_bundle, precision, src, tgt)
    reference = ways.pop("one call, 1 thread")
    assert sum(map(len, reference)) > len(src)  # real links, not an empty alignment
    for name, links in ways.items():
        differing = [k for k, (a, b) in enumerate(zip(reference, links)) if a != b]
        assert not differing, f"{precision}, {name}: pairs {differing[:10]} differ from one call with 1 thread"


def test_int8_graph_has_only_constant_activation_scales(tiny_bundle):
    from transalign.engine.bundle import read_manifest

    graph = onnx.load(str(tiny_bundle / "model.int8.onnx"), load_external_data=False).graph
    ops = {node.op_type for node in graph.node}
    assert "DynamicQuantizeLinear" not in ops and "QuantizeLinear" in ops
    constants = {init.name for init in graph.initializer}
    for node in graph.node:
        if node.op_type == "QuantizeLinear":
            assert node.input[1] in constants and node.input[2] in constants, node.name
    facts = read_manifest(tiny_bundle).precisions["int8"]
    assert facts["activations"] == "static" and facts["quantized_activations"] == sum(
        node.op_type == "QuantizeLinear" for node in graph.node)


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_padding_and_neighbours_never_change_a_row(tiny_bundle, precision):
    """Raw encoder rows: a short sentence alone vs padded beside a long, loud neighbour."""
    aligner = Aligner.load(tiny_bundle, provider="cpu", precision=precision)
    short, _ = aligner.tokenizer.encode("Hello world !".split(), "eng_Latn")
    long, _ = aligner.tokenizer.encode(("Loud " * 60).split(), "eng_Latn")
    alone = aligner.session.run(["hidden"], {"input_ids": short[None], "attention_mask": np.ones((1, len(short)),
                                                                                                 np.int64)})[0]
    ids = np.full((2, len(long)), aligner.manifest.tokenizer.pad_id, np.int64)
    mask = np.zeros_like(ids)
    ids[0, :len(short)], mask[0, :len(short)] = short, 1
    ids[1], mask[1] = long, 1
    batched = aligner.session.run(["hidden"], {"input_ids": ids, "attention_mask": mask})[0]
    rows = batched[0, :len(short)]
    # Before this fix, int8's per-batch activation scale moved such rows by a whole quantization
    # step of the loud neighbour's range (orders of magnitude more than this bound).
    np.testing.assert_allclose(rows, alone[0], rtol=0, atol=1e-5 * float(np.abs(alone).max()))
