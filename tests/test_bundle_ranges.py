"""Issue 24.7: a manifest is trusted only within the ranges its model can take.

Each damaged field must give a BundleError that names it, from `read_manifest` and from
`Aligner.load`, before ONNX Runtime sees an id or a length; values at the edge of the range
still load. The graph's bounds (engine.graph_facts, a standard-library protobuf walk) are
checked against `onnx`'s own reading of the same files.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest

from transalign.engine.aligner import Aligner
from transalign.engine.bundle import MANIFEST_NAME, BundleError, read_manifest
from transalign.engine.graph_facts import graph_facts, sentencepiece_piece_count

ROOT = Path(__file__).resolve().parents[1]


def fp32_copy(bundle: Path, out: Path) -> Path:
    """A private copy of ``bundle`` (fp32 and tokenizer only) whose manifest a test may edit."""
    out.mkdir()
    manifest = json.loads((bundle / MANIFEST_NAME).read_text())
    keep = {name for name in manifest["files"] if not name.startswith(("model.int8", "model.fp16"))}
    for name in keep:
        shutil.copy(bundle / name, out / name)
    manifest["files"] = {k: v for k, v in manifest["files"].items() if k in keep}
    manifest["precisions"] = {"fp32": manifest["precisions"]["fp32"]}
    (out / MANIFEST_NAME).write_text(json.dumps(manifest))
    return out


@pytest.fixture()
def nllb_copy(tiny_bundle, tmp_path):
    return fp32_copy(tiny_bundle, tmp_path / "bundle")


@pytest.fixture(scope="module")
def tiny_bert_models(tmp_path_factory):
    from fixture_bert import bert_cache_key, build_tiny_bert, build_tiny_xlmr
    from fixture_models import cached_dir

    cache = ROOT / ".cache" / "fixtures"
    return {"bert": cached_dir(cache, f"tiny-bert-{bert_cache_key()}", build_tiny_bert),
            "xlmr": cached_dir(cache, f"tiny-xlmr-{bert_cache_key()}", build_tiny_xlmr)}


@pytest.fixture(scope="module")
def bert_bundles(tiny_bert_models, tmp_path_factory):
    """Tiny BERT (positions from 0) and XLM-R (positions after padding) bundles, fp32."""
    from transalign.export.api import export_bundle

    out = {}
    for kind, model in tiny_bert_models.items():
        out[kind] = tmp_path_factory.mktemp(kind) / "bundle"
        export_bundle(str(model), out[kind], layer=2)
    return out


def _edit(bundle: Path, change) -> None:
    path = bundle / MANIFEST_NAME
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def _set(field: str, value):
    def change(data):
        *parents, last = field.split(".")
        target = data
        for part in parents:
            target = target[part]
        target[last] = value(target[last]) if callable(value) else value
    return change


def _manifest(bundle: Path) -> dict:
    return json.loads((bundle / MANIFEST_NAME).read_text())


def _vocab(bundle: Path) -> int:
    import onnx

    graph = onnx.load(str(bundle / "model.onnx"), load_external_data=False).graph
    tables = {t.name: list(t.dims) for t in graph.initializer}
    return next(tables[n.input[0]][0] for n in graph.node if n.op_type == "Gather" and n.input[0] in tables
                and ("embed_tokens" in n.input[0] or "word_embeddings" in n.input[0]))


def _assert_refused(bundle: Path, field: str) -> None:
    with pytest.raises(BundleError, match=f"field '{field}'"):
        read_manifest(bundle)
    with pytest.raises(BundleError, match=f"field '{field}'"):
        Aligner.load(bundle, provider="cpu")


# ---------------------------------------------------------------- the cases


def test_negative_eos_id_is_refused(nllb_copy):
    _edit(nllb_copy, _set("tokenizer.eos_id", -5))
    _assert_refused(nllb_copy, "tokenizer.eos_id")


def test_max_positions_beyond_the_position_table_is_refused(nllb_copy):
    _edit(nllb_copy, _set("max_positions", 100000))
    _assert_refused(nllb_copy, "max_positions")


def test_huge_language_id_is_refused(nllb_copy):
    code = next(iter(_manifest(nllb_copy)["tokenizer"]["lang_code_ids"]))
    _edit(nllb_copy, lambda m: m["tokenizer"]["lang_code_ids"].update({code: 10**9}))
    _assert_refused(nllb_copy, f"tokenizer.lang_code_ids.{code}")


def test_negative_hidden_size_is_refused(nllb_copy):
    _edit(nllb_copy, _set("hidden_size", -1))
    _assert_refused(nllb_copy, "hidden_size")


def test_default_threshold_outside_the_unit_interval_is_refused(nllb_copy):
    _edit(nllb_copy, _set("default_threshold", 2.0))
    _assert_refused(nllb_copy, "default_threshold")


def test_manifest_symlink_leaving_the_bundle_is_refused(nllb_copy, tmp_path):
    outside = tmp_path / "elsewhere.json"
    shutil.move(nllb_copy / MANIFEST_NAME, outside)
    (nllb_copy / MANIFEST_NAME).symlink_to(outside)
    with pytest.raises(BundleError, match="manifest.json is a symlink that leaves the bundle"):
        read_manifest(nllb_copy)


# ---------------------------------------------------------------- every other field


@pytest.mark.parametrize("field,value", [
    ("tokenizer.unk_id", -1), ("tokenizer.pad_id", 10**6), ("tokenizer.eos_id", "vocab"),
    ("hidden_size", 33), ("hidden_size", 0), ("max_positions", 0), ("max_positions", 2),
    ("layer", 4), ("layer", -1), ("num_layers", 0),
    ("default_threshold", -0.1), ("default_threshold", 1.0), ("default_threshold", math.nan),
    ("default_method", "soft"), ("default_word_level", "all"), ("vocab_size", 5), ("vocab_size", 0),
    ("tokenizer.piece_offset", -1), ("tokenizer.piece_offset", 300),
])
def test_each_range_is_checked(nllb_copy, field, value):
    vocab = _vocab(nllb_copy)
    _edit(nllb_copy, _set(field, vocab if value == "vocab" else value))
    _assert_refused(nllb_copy, field)


def test_added_token_out_of_range_is_refused(nllb_copy):
    token = next(iter(_manifest(nllb_copy)["tokenizer"]["added_tokens"]))
    _edit(nllb_copy, lambda m: m["tokenizer"]["added_tokens"].update({token: -2}))
    _assert_refused(nllb_copy, f"tokenizer.added_tokens.{token}")


@pytest.mark.parametrize("kind", ["bert", "xlmr"])
@pytest.mark.parametrize("field", ["prefix_ids", "suffix_ids"])
def test_special_ids_out_of_range_are_refused(bert_bundles, tmp_path, kind, field):
    bundle = fp32_copy(bert_bundles[kind], tmp_path / "b")
    vocab = _vocab(bundle)
    _edit(bundle, lambda m: m["tokenizer"][field].append(vocab))
    index = len(_manifest(bundle)["tokenizer"][field]) - 1
    with pytest.raises(BundleError, match=rf"field 'tokenizer\.{field}\[{index}\]'"):
        read_manifest(bundle)


# ---------------------------------------------------------------- the edges still load


def test_values_at_the_edge_of_their_range_load(nllb_copy):
    """The last valid id, the whole position table, threshold 0 and the non-default methods."""
    vocab = _vocab(nllb_copy)
    code = next(iter(_manifest(nllb_copy)["tokenizer"]["lang_code_ids"]))
    _edit(nllb_copy, lambda m: (m["tokenizer"]["lang_code_ids"].update({code: vocab - 1}),
                                m.update(default_threshold=0.0, default_method="itermax",
                                         default_word_level="mean", vocab_size=vocab)))
    manifest = Aligner.load(nllb_copy, provider="cpu").manifest
    assert manifest.vocab_size == vocab and manifest.default_method == "itermax"


@pytest.mark.parametrize("kind", ["bert", "xlmr"])
def test_position_limit_is_the_exported_max_positions(bert_bundles, tmp_path, kind):
    """The exporter's max_positions (export.architectures.max_tokens from the config) is exactly
    the graph's bound: one more is refused, for positions from 0 (BERT) and after padding (XLM-R)."""
    from fixture_bert import BERT_MAX_POSITIONS, XLMR_MAX_POSITIONS

    bundle = fp32_copy(bert_bundles[kind], tmp_path / "b")
    exported = _manifest(bundle)["max_positions"]
    assert exported == {"bert": BERT_MAX_POSITIONS, "xlmr": XLMR_MAX_POSITIONS}[kind]
    aligner = Aligner.load(bundle, provider="cpu")
    word = next(w for w in ("a", "the", "und", "x", "1") if len(aligner.tokenizer.encode([w])[0]) == 3)
    words = [word] * (exported - 2)  # one token each plus [CLS]/<s> and [SEP]/</s>: the whole table
    assert len(aligner.tokenizer.encode(words)[0]) == exported
    assert len(aligner.align([words], [words])[0].links) > 0
    _edit(bundle, _set("max_positions", exported + 1))
    _assert_refused(bundle, "max_positions")


# ---------------------------------------------------------------- the graph reader


@pytest.mark.parametrize("precision", ["fp32", "int8", "fp16"])
def test_graph_facts_agree_with_onnx(tiny_bundle, precision):
    """The standard-library protobuf walk reads what `onnx` reads from the same graph."""
    import onnx

    name = {"fp32": "model.onnx", "int8": "model.int8.onnx", "fp16": "model.fp16.onnx"}[precision]
    graph = onnx.load(str(tiny_bundle / name), load_external_data=False).graph
    facts = graph_facts(tiny_bundle / name)
    embed = next(t for t in graph.initializer if "embed_tokens.weight" in t.name)  # int8: .weight_fp16
    constants = {n.output[0]: list(n.attribute[0].t.dims) for n in graph.node if n.op_type == "Constant"}
    positions = next(constants[n.input[0]] for n in graph.node if n.op_type == "Gather"
                     and "embed_positions" in n.name and len(constants.get(n.input[0], ())) == 2)
    out_dims = [d.dim_value for d in graph.output[0].type.tensor_type.shape.dim]
    assert (facts.vocab_size, facts.hidden_size) == (embed.dims[0], out_dims[-1])
    assert facts.position_rows == positions[0] and facts.positions_after_padding


def test_sentencepiece_piece_count(tiny_bundle):
    import sentencepiece as spm

    path = tiny_bundle / "sentencepiece.bpe.model"
    assert sentencepiece_piece_count(path) == spm.SentencePieceProcessor(model_file=str(path)).get_piece_size()


def test_truncated_graph_is_a_bundle_error(nllb_copy):
    data = (nllb_copy / "model.onnx").read_bytes()
    (nllb_copy / "model.onnx").write_bytes(data[: len(data) // 2])
    with pytest.raises(BundleError, match="not a readable ONNX graph"):
        read_manifest(nllb_copy, verify_hashes=False)


def test_export_records_the_vocabulary_size(tiny_bundle, tiny_nllb, bert_bundles, tiny_bert_models):
    """New bundles carry vocab_size (the checkpoint config's), so any runtime can check ids."""
    assert read_manifest(tiny_bundle).vocab_size == json.loads((tiny_nllb / "config.json").read_text())["vocab_size"]
    for kind, bundle in bert_bundles.items():
        config = json.loads((tiny_bert_models[kind] / "config.json").read_text())
        assert read_manifest(bundle).vocab_size == config["vocab_size"] == _vocab(bundle)


def test_empty_graph_is_a_bundle_error(nllb_copy):
    (nllb_copy / "model.onnx").write_bytes(b"")
    with pytest.raises(BundleError, match="not a readable ONNX graph"):
        read_manifest(nllb_copy, verify_hashes=False)
