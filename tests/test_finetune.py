"""Fine-tuning (issue 18) on tiny fixtures: gold matrices, objectives, training, the adapter.

Truths used here are independent of transalign.train: gold matrices from per-word tokenization
and a double loop; the authors' objective restated as their literal loop; the written adapter
loaded with peft (tests/reference.py) and scored with AER from its definition; the exported
bundle compared with peft's merged model.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="fine-tuning needs the train extra")
pytest.importorskip("peft", reason="fine-tuning needs the train extra")

from fixture_bert import bert_cache_key, build_tiny_bert  # noqa: E402
from fixture_models import cached_dir  # noqa: E402
from reference import embed_words, load_reference_encoder, reference_hidden, reference_links  # noqa: E402

from transalign.train.gold import TrainError, read_gold_dir  # noqa: E402
from transalign.train.matrices import encode_words, gold_matrix  # noqa: E402
from transalign.train.objective import pair_loss  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CSEN = ROOT / "data" / "gold" / "csen"
NLLB_LANGS = {"src_lang": "ces_Latn", "tgt_lang": "eng_Latn"}
NLLB_LAYER = 3  # the tiny M2M100's last layer (final layer_norm path)
BERT_LAYER = 4
FAST = dict(epochs=2, batch_size=4, lr=1e-2, dropout=0.0, progress=False)


def _csen_lines(start: int, stop: int | None) -> dict[str, list[str]]:
    return {name: (CSEN / name).read_text(encoding="utf-8").splitlines()[start:stop]
            for name in ("src.txt", "tgt.txt", "gold.txt")}


def _short_csen_lines(count: int, max_words: int = 18) -> dict[str, list[str]]:
    """The first ``count`` csen pairs with at most ``max_words`` words a side (tiny BERT: 128 positions)."""
    lines = _csen_lines(0, None)
    keep = [k for k in range(len(lines["gold.txt"]))
            if max(len(lines["src.txt"][k].split()), len(lines["tgt.txt"][k].split())) <= max_words][:count]
    return {name: [rows[k] for k in keep] for name, rows in lines.items()}


def make_gold_dir(directory: Path, lines: dict[str, list[str]], meta: dict | None = None) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, rows in lines.items():
        (directory / name).write_text("".join(r + "\n" for r in rows), encoding="utf-8")
    if meta is not None:
        (directory / "meta.json").write_text(json.dumps(meta), encoding="utf-8")
    return directory


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models gain nothing from intra-op threads; on a busy machine they cost a lot."""
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)


@pytest.fixture(scope="module")
def gold_dirs(tmp_path_factory) -> dict[str, Path]:
    """Disjoint train (pairs 1-12) and dev (pairs 13-20) sets from the real csen gold."""
    root = tmp_path_factory.mktemp("gold")
    return {"train": make_gold_dir(root / "train", _csen_lines(0, 12), NLLB_LANGS),
            "dev": make_gold_dir(root / "dev", _csen_lines(12, 20), NLLB_LANGS)}


@pytest.fixture(scope="module")
def tiny_bert() -> Path:
    return cached_dir(ROOT / ".cache" / "fixtures", f"tiny-bert-{bert_cache_key()}", build_tiny_bert)


@pytest.fixture(scope="module")
def trained_nllb(tiny_nllb, gold_dirs, tmp_path_factory) -> Path:
    """An adapter trained with the CLI (dev set given, so the best epoch is kept)."""
    from transalign.cli import main

    out = tmp_path_factory.mktemp("adapters") / "nllb"
    code = main(["finetune", str(tiny_nllb), "--gold-dir", str(gold_dirs["train"]), "--dev-dir",
                 str(gold_dirs["dev"]), "--layer", str(NLLB_LAYER), "--epochs", "3", "--batch-size", "4",
                 "--lr", "1e-2", "--lora-dropout", "0", "--no-progress", "-o", str(out)])
    assert code == 0
    return out


def _tokenizer(model_dir: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model_dir)


def naive_gold(tokenizer, src, tgt, links, src_lang, tgt_lang):
    """Each word tokenized on its own, then every subword pair tested against the links."""
    def side(words, lang):
        if lang is not None:
            tokenizer.src_lang = lang
        ids, owner = [], []
        for k, word in enumerate(words):
            pieces = tokenizer(word, add_special_tokens=False)["input_ids"]
            ids += pieces
            owner += [k] * len(pieces)
        return ids, owner

    (src_ids, src_owner), (tgt_ids, tgt_owner) = side(src, src_lang), side(tgt, tgt_lang)
    gold = np.zeros((len(src_owner), len(tgt_owner)), dtype=np.float32)
    for a, i in enumerate(src_owner):
        for b, j in enumerate(tgt_owner):
            gold[a, b] = float((i, j) in links)
    return src_ids, tgt_ids, gold


@pytest.mark.parametrize("kind", ["nllb", "bert"])
def test_gold_matrices_match_the_naive_construction(kind, tiny_nllb, tiny_bert):
    model, langs = (tiny_nllb, NLLB_LANGS) if kind == "nllb" else (tiny_bert, {"src_lang": None, "tgt_lang": None})
    tokenizer = _tokenizer(model)
    gold_set = read_gold_dir(CSEN)
    multi = 0
    for pair in gold_set.pairs[:40]:
        src = encode_words(tokenizer, pair.src, langs["src_lang"])
        tgt = encode_words(tokenizer, pair.tgt, langs["tgt_lang"])
        links = pair.sure | pair.possible
        got = gold_matrix(src.word_ids, tgt.word_ids, links, len(pair.src), len(pair.tgt))
        src_ids, tgt_ids, want = naive_gold(tokenizer, pair.src, pair.tgt, links, langs["src_lang"],
                                            langs["tgt_lang"])
        assert list(src.ids[1:-1]) == src_ids and list(tgt.ids[1:-1]) == tgt_ids
        np.testing.assert_array_equal(got, want)
        multi += int(len(src_ids) > len(pair.src))
    assert multi > 20, "the fixture should split many words into several subwords"


def test_gold_matrix_edge_cases():
    words = np.array([0, 0, 1], dtype=np.int64)
    assert gold_matrix(words, np.array([0, 1]), set(), 2, 2).sum() == 0
    np.testing.assert_array_equal(gold_matrix(words, np.array([1, 1, 0]), {(0, 1)}, 2, 2),
                                  [[1, 1, 0], [1, 1, 0], [0, 0, 0]])
    assert gold_matrix(np.array([], dtype=np.int64), np.array([0]), {(0, 0)}, 1, 1).shape == (0, 1)


def test_sure_only_links(tmp_path):
    d = make_gold_dir(tmp_path / "g", {"src.txt": ["a b"], "tgt.txt": ["x y"], "gold.txt": ["0-0 1p1"]})
    [pair] = read_gold_dir(d).pairs
    assert pair.links("sure") == {(0, 0)} and pair.links("all") == {(0, 0), (1, 1)}


@pytest.mark.parametrize("change, message", [
    (lambda d: (d / "gold.txt").unlink(), "lacks gold.txt"),
    (lambda d: (d / "tgt.txt").write_text("x y\n"), "different line counts"),
    (lambda d: (d / "gold.txt").write_text("0-0\n0-5\n"), r"gold.txt:2: link 0-5 is outside the pair"),
    (lambda d: (d / "gold.txt").write_text("0-0\n0x1\n"), r"gold.txt:2"),
    (lambda d: (d / "meta.json").write_text("{oops"), "not valid JSON"),
])
def test_bad_gold_files_are_clear_errors(tmp_path, change, message):
    d = make_gold_dir(tmp_path / "g", {"src.txt": ["a b", "c d"], "tgt.txt": ["x y", "z w"],
                                       "gold.txt": ["0-0", "1-1"]})
    change(d)
    with pytest.raises(TrainError, match=message):
        read_gold_dir(d)


def test_nllb_needs_language_codes(tiny_nllb, tmp_path, gold_dirs):
    from transalign.train import finetune

    bad = make_gold_dir(tmp_path / "nolang", _csen_lines(0, 4), {"src_lang": "cs", "tgt_lang": "en"})
    with pytest.raises(TrainError, match=r"meta.json: src_lang 'cs': unknown language code; two-letter ISO 639-1 "
                                         r"codes are not used: write the ISO 639-3 code and script, e.g. ces_Latn"):
        finetune(str(tiny_nllb), [bad], tmp_path / "out", layer=NLLB_LAYER, **FAST)
    assert not (tmp_path / "out").exists()


def authors_loss_literal(x, y, gold):
    """The loop of the authors' fine-tune-lora.py, restated line for line."""
    s_xy = torch.softmax(torch.matmul(x, y.T), dim=1)
    s_yx = torch.softmax(torch.matmul(x, y.T), dim=0)
    flat_s_xy, flat_s_yx, flat_gold = s_xy.view(-1), s_yx.view(-1), gold.view(-1)
    loss = 0
    for idx, _ in enumerate(flat_gold):
        loss -= (flat_gold[idx] * 0.5 * (flat_s_xy[idx] / len(x) + flat_s_yx / len(y))).sum()
    return loss


@pytest.mark.parametrize("n, m", [(1, 1), (3, 5), (6, 2)])
def test_objectives_match_their_formulas(n, m):
    gen = torch.Generator().manual_seed(n * 10 + m)
    x = torch.randn(n, 4, generator=gen, dtype=torch.float64, requires_grad=True)
    y = torch.randn(m, 4, generator=gen, dtype=torch.float64, requires_grad=True)
    gold = (torch.rand(n, m, generator=gen) > 0.5).double()
    gold[0, 0] = 1.0
    ours, literal = pair_loss(x, y, gold, "authors"), authors_loss_literal(x, y, gold)
    assert torch.allclose(ours, literal)
    grads = torch.autograd.grad(ours, (x, y))
    assert all(torch.allclose(a, b) for a, b in zip(grads, torch.autograd.grad(literal, (x, y))))
    # only the forward softmax is trained: the gradient is that of -m/2 * sum(G * F)
    forward_only = -0.5 * m * (gold * torch.softmax(x @ y.T, dim=1)).sum()
    assert all(torch.allclose(a, b) for a, b in zip(grads, torch.autograd.grad(forward_only, (x, y))))
    sim = (x @ y.T).detach().numpy()
    f = np.exp(sim - sim.max(1, keepdims=True))
    f /= f.sum(1, keepdims=True)
    b = np.exp(sim - sim.max(0, keepdims=True))
    b /= b.sum(0, keepdims=True)
    want = -0.5 * (gold.numpy() * (f / n + b / m)).sum()
    assert np.isclose(float(pair_loss(x, y, gold, "symmetric").detach()), want)
    with pytest.raises(ValueError, match="choose from"):
        pair_loss(x, y, gold, "other")


def _objective_on(model_dir, lora_dir, gold_dir, layer, langs) -> float:
    """Mean symmetric objective over a gold set, through peft's model (independent of training)."""
    tokenizer = _tokenizer(model_dir)
    encoder = load_reference_encoder(model_dir, lora_dir)
    total, pairs = 0.0, read_gold_dir(gold_dir).pairs
    for pair in pairs:
        x, xw = embed_words(tokenizer, encoder, list(pair.src), langs["src_lang"], layer)
        y, yw = embed_words(tokenizer, encoder, list(pair.tgt), langs["tgt_lang"], layer)
        _, _, gold = naive_gold(tokenizer, pair.src, pair.tgt, pair.sure | pair.possible,
                                langs["src_lang"], langs["tgt_lang"])
        total += float(pair_loss(torch.from_numpy(x), torch.from_numpy(y), torch.from_numpy(gold), "symmetric"))
    return total / len(pairs)


def naive_argmax_links(sim: np.ndarray, src_words, tgt_words) -> set:
    """Cell (i, j) linked iff j is the first maximum of row i and i the first of column j."""
    links = set()
    for i in range(sim.shape[0]):
        j = max(range(sim.shape[1]), key=lambda c: (sim[i, c], -c))
        if max(range(sim.shape[0]), key=lambda r: (sim[r, j], -r)) == i:
            links.add((src_words[i], tgt_words[j]))
    return links


@pytest.mark.parametrize("n, m, ties", [(1, 1, False), (4, 7, False), (9, 3, False), (6, 6, True)])
def test_dev_argmax_matches_the_naive_rule(n, m, ties):
    from transalign.train.dev import argmax_links

    gen = np.random.default_rng(n * 100 + m)
    x = gen.integers(-1, 2, (n, 3)) if ties else gen.standard_normal((n, 5))
    y = gen.integers(-1, 2, (m, 3)) if ties else gen.standard_normal((m, 5))
    x, y = x.astype(np.float32), y.astype(np.float32)
    src_words, tgt_words = np.sort(gen.integers(0, n, n)), np.sort(gen.integers(0, m, m))
    got = argmax_links(torch.from_numpy(x) @ torch.from_numpy(y).T, src_words, tgt_words)
    assert got == naive_argmax_links(x @ y.T, src_words.tolist(), tgt_words.tolist())


def _aer_on(model_dir, lora_dir, gold_dir, layer, langs, threshold, rule: str = "reference") -> float:
    """AER = 1 - (|A∩S| + |A∩P|) / (|A| + |S|) of the reference extraction (or argmax) with peft's model."""
    tokenizer = _tokenizer(model_dir)
    encoder = load_reference_encoder(model_dir, lora_dir)
    a = s = a_s = a_p = 0
    for pair in read_gold_dir(gold_dir).pairs:
        x, xw = embed_words(tokenizer, encoder, list(pair.src), langs["src_lang"], layer)
        y, yw = embed_words(tokenizer, encoder, list(pair.tgt), langs["tgt_lang"], layer)
        links = (reference_links(x, y, xw, yw, threshold) if rule == "reference"
                 else naive_argmax_links(x.astype(np.float32) @ y.astype(np.float32).T, xw, yw))
        a, s = a + len(links), s + len(pair.sure)
        a_s, a_p = a_s + len(links & pair.sure), a_p + len(links & (pair.sure | pair.possible))
    return 1 - (a_s + a_p) / (a + s)


def test_training_lowers_the_loss_and_keeps_the_best_epoch(trained_nllb, tiny_nllb, gold_dirs):
    info = json.loads((trained_nllb / "training.json").read_text())
    history = info["history"]
    assert [e["epoch"] for e in history] == [0, 1, 2, 3]
    losses = [e["train_loss_per_pair"] for e in history[1:]]
    assert losses[-1] < losses[0]
    # independently: the written adapter lowers the objective on the training pairs
    before = _objective_on(tiny_nllb, None, gold_dirs["train"], NLLB_LAYER, NLLB_LANGS)
    after = _objective_on(tiny_nllb, trained_nllb, gold_dirs["train"], NLLB_LAYER, NLLB_LANGS)
    assert after < before
    # the kept epoch is the best on dev, and the written adapter scores exactly that
    aers = [e["dev"]["aer"] for e in history]
    assert info["best_epoch"] == int(np.argmin(aers))
    threshold = info["settings"]["threshold"]
    assert _aer_on(tiny_nllb, trained_nllb, gold_dirs["dev"], NLLB_LAYER, NLLB_LANGS, threshold) \
        == pytest.approx(aers[info["best_epoch"]], abs=1e-9)
    assert _aer_on(tiny_nllb, None, gold_dirs["dev"], NLLB_LAYER, NLLB_LANGS, threshold) \
        == pytest.approx(aers[0], abs=1e-9)
    # argmax scores of the kept epoch, likewise from peft's model and the naive rule
    assert _aer_on(tiny_nllb, trained_nllb, gold_dirs["dev"], NLLB_LAYER, NLLB_LANGS, threshold, "argmax") \
        == pytest.approx(history[info["best_epoch"]]["dev_argmax"]["aer"], abs=1e-9)
    assert info["settings"]["objective"] == "symmetric" and info["settings"]["layer"] == NLLB_LAYER
    assert info["train_pairs"] == {str(gold_dirs["train"]): 12} and info["dev_pairs"] == 8


def test_adapter_round_trips_through_export(trained_nllb, tiny_nllb, tmp_path):
    """peft loads the adapter; `transalign export --lora` merges it; the bundle's hidden states
    equal peft's merged model's hidden_states[layer]."""
    import onnxruntime as ort
    from safetensors.torch import load_file

    from transalign.cli import main

    tensors = load_file(str(trained_nllb / "adapter_model.safetensors"))
    assert any(k.startswith("base_model.model.layers.0.fc1.lora_B") for k in tensors)
    assert max(float(v.abs().max()) for k, v in tensors.items() if "lora_B" in k) > 0, "nothing was trained"
    bundle = tmp_path / "bundle"
    assert main(["export", str(tiny_nllb), "--lora", str(trained_nllb), "--layer", str(NLLB_LAYER),
                 "--precision", "fp32", "-o", str(bundle)]) == 0
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["lora"]["merged_modules"] == len(tensors) // 2
    merged = load_reference_encoder(tiny_nllb, trained_nllb).merge_and_unload()
    tokenizer = _tokenizer(tiny_nllb)
    tokenizer.src_lang = "ces_Latn"
    enc = tokenizer([line.split() for line in _csen_lines(30, 34)["src.txt"]], is_split_into_words=True,
                    padding=True, return_tensors="np")
    ids, mask = enc["input_ids"].astype(np.int64), enc["attention_mask"].astype(np.int64)
    want = reference_hidden(merged, ids, mask, NLLB_LAYER)
    session = ort.InferenceSession(str(bundle / "model.onnx"), providers=["CPUExecutionProvider"])
    got = session.run(["hidden"], {"input_ids": ids, "attention_mask": mask})[0]
    real = mask.astype(bool)
    np.testing.assert_allclose(got[real], want[real], rtol=1e-4, atol=1e-4)
    unadapted = reference_hidden(load_reference_encoder(tiny_nllb), ids, mask, NLLB_LAYER)
    assert np.abs(unadapted[real] - want[real]).max() > 1e-3, "the adapter should change the hidden states"


def _tensors(directory: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(directory / "adapter_model.safetensors"))


def test_same_seed_same_adapter_bert(tiny_bert, tmp_path, capsys):
    """BERT-family path; two runs with one seed are identical, another seed differs."""
    from peft import PeftModel
    from transformers import AutoModel

    from transalign.train import finetune

    train = make_gold_dir(tmp_path / "train", _short_csen_lines(8))
    runs = {}
    for name, seed in (("a", 7), ("b", 7), ("c", 8)):
        result = finetune(str(tiny_bert), [train], tmp_path / name, layer=BERT_LAYER, seed=seed,
                          **{**FAST, "dropout": 0.1, "progress": name == "c"})
        assert result.best_epoch == 2  # no dev set: the last epoch is kept
        runs[name] = _tensors(tmp_path / name)
    err = capsys.readouterr().err
    assert "epoch 2/2" in err and "loss=" in err  # the progress bar (stderr) shows the loss
    assert runs["a"].keys() == runs["b"].keys()
    assert all(torch.equal(runs["a"][k], runs["b"][k]) for k in runs["a"])
    assert any(not torch.equal(runs["a"][k], runs["c"][k]) for k in runs["a"])
    assert any(k.startswith("base_model.model.encoder.layer.0.intermediate.dense.lora_A") for k in runs["a"])
    config = json.loads((tmp_path / "a" / "adapter_config.json").read_text())
    assert (config["r"], config["lora_alpha"], sorted(config["target_modules"])) == \
        (8, 32, ["intermediate.dense", "output.dense"])
    model = PeftModel.from_pretrained(AutoModel.from_pretrained(tiny_bert), str(tmp_path / "a"))
    assert sum("lora_A" in n for n, _ in model.named_parameters()) == len(runs["a"]) // 2
    # blocks at and above the alignment layer get no gradient: their B stays zero (as in the
    # authors' LaBSE/mBERT adapters)
    above = [v for k, v in runs["a"].items() if "lora_B" in k and int(k.split(".")[4]) >= BERT_LAYER]
    assert above and all(float(v.abs().max()) == 0 for v in above)


def test_output_and_option_checks(tiny_bert, tmp_path):
    from transalign.train import finetune
    from transalign.train.model import select_device

    train = make_gold_dir(tmp_path / "train", _short_csen_lines(2))
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "x").write_text("x")
    with pytest.raises(TrainError, match="pass --force"):
        finetune(str(tiny_bert), [train], tmp_path / "busy", **FAST)
    with pytest.raises(TrainError, match="objective 'x' is not supported"):
        finetune(str(tiny_bert), [train], tmp_path / "o", objective="x")
    with pytest.raises(TrainError, match="layer 99 is out of range"):
        finetune(str(tiny_bert), [train], tmp_path / "o", layer=99, **FAST)
    assert not (tmp_path / "o").exists()
    assert select_device("cpu") == "cpu"
    assert select_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(TrainError, match="no CUDA GPU"):
            select_device("cuda")


def test_import_does_not_load_torch():
    code = ("import sys, transalign, transalign.train, transalign.train.gold, transalign.train.matrices, "
            "transalign.train.objective, transalign.train.loop, transalign.cli.finetune_cmd; "
            "print('torch' in sys.modules, 'peft' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.split() == ["False", "False"]
