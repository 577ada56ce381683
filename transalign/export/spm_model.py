"""A sentencepiece model of an XLM-R-family ``tokenizer.json``, for the C library.

The Python engine tokenizes XLM-R-family bundles (multilingual-e5, XLM-R) with the ``tokenizers``
library and the bundle's ``tokenizer.json``. The C library has sentencepiece, not ``tokenizers``,
so export also writes the same Unigram model as a sentencepiece ``ModelProto``
(``sentencepiece.unigram.model``, built with sentencepiece's bundled ``sentencepiece_model_pb2``):

- pieces in ``tokenizer.json`` order, so sentencepiece id == tokenizer.json id (no offset);
- every piece NORMAL with its score, as ``tokenizers`` puts every vocabulary entry in its
  Viterbi lattice (``<s>``, ``</s>``, ``<mask>`` included), except the unknown piece (UNKNOWN,
  which sentencepiece requires);
- scores as float32 (what a ModelProto holds). tokenizer.json's are doubles (multilingual-e5's
  are not float32 values), and sentencepiece's Viterbi sums in float and breaks near-ties
  differently from ``tokenizers`` (it did on the tests' corpus), so the C library segments with
  ``tokenizers``' own Viterbi (double scores read from tokenizer.json, ties to the earliest start,
  unknown = lowest score - 10, runs of unknowns fused) and uses this model for the charsmap and
  as a check (the same pieces, in the same order, the same unknown id);
- ``normalizer_spec.precompiled_charsmap`` = the normalizer's ``Precompiled`` charsmap (the C
  library applies it per grapheme cluster, as ``tokenizers`` does, then runs sentencepiece with
  the identity normalizer).

The rest of the pipeline (added tokens, the whitespace steps after ``Precompiled``, Metaspace)
the C library reads from ``tokenizer.json`` itself and refuses what it does not reproduce. The
file is recorded as ``tokenizer.sentencepiece_file`` and hashed in ``files`` like every other.

``python -m transalign.export.spm_model BUNDLE`` adds the model to a bundle exported before this
existed (the demo's), updating its manifest atomically.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import sys
from pathlib import Path

from transalign.engine.bundle import TokenizerSpec

__all__ = ["SPM_MODEL_FILE", "add_to_bundle", "unigram_model_proto", "with_sentencepiece_model"]

SPM_MODEL_FILE = "sentencepiece.unigram.model"
UNK_PENALTY = 10.0  # tokenizers' and sentencepiece's kUnkPenalty


def unigram_model_proto(config: dict) -> bytes | None:
    """The serialized ModelProto of a tokenizer.json dict with a Unigram model, else None."""
    from sentencepiece import sentencepiece_model_pb2 as pb

    model = config.get("model") or {}
    if model.get("type") != "Unigram":
        return None
    vocab, unk_id = model["vocab"], model.get("unk_id")
    if unk_id is None or not 0 <= unk_id < len(vocab):
        return None
    proto = pb.ModelProto()
    for index, (piece, score) in enumerate(vocab):
        entry = proto.pieces.add()
        entry.piece, entry.score = piece, float(score)
        entry.type = pb.ModelProto.SentencePiece.UNKNOWN if index == unk_id else pb.ModelProto.SentencePiece.NORMAL
    trainer = proto.trainer_spec
    trainer.model_type = pb.TrainerSpec.UNIGRAM
    trainer.vocab_size = len(vocab)
    trainer.unk_id, trainer.bos_id, trainer.eos_id, trainer.pad_id = unk_id, -1, -1, -1
    trainer.unk_piece = vocab[unk_id][0]
    trainer.split_by_whitespace = True
    trainer.byte_fallback = False
    normalizer = proto.normalizer_spec
    normalizer.name = "tokenizer.json"
    normalizer.precompiled_charsmap = _charsmap(config.get("normalizer"))
    normalizer.add_dummy_prefix = True  # Metaspace prepends the ▁ (the C library applies it itself)
    normalizer.remove_extra_whitespaces = False
    normalizer.escape_whitespaces = True
    return proto.SerializeToString()


def _charsmap(normalizer: dict | None) -> bytes:
    if not normalizer:
        return b""
    steps = normalizer.get("normalizers", []) if normalizer.get("type") == "Sequence" else [normalizer]
    for step in steps:
        if step and step.get("type") == "Precompiled":
            return base64.b64decode(step.get("precompiled_charsmap") or "")
    return b""


def with_sentencepiece_model(spec: TokenizerSpec, bundle_dir: str | Path) -> TokenizerSpec:
    """Export's hook: for an hf-tokenizers spec whose tokenizer.json is Unigram, write
    ``SPM_MODEL_FILE`` beside it and return the spec naming it; any other spec unchanged."""
    if spec.kind != "hf-tokenizers":
        return spec
    bundle_dir = Path(bundle_dir)
    config = json.loads((bundle_dir / spec.file).read_text(encoding="utf-8"))
    data = unigram_model_proto(config)
    if data is None:
        return spec
    (bundle_dir / SPM_MODEL_FILE).write_bytes(data)
    return dataclasses.replace(spec, sentencepiece_file=SPM_MODEL_FILE)


def add_to_bundle(bundle: str | Path) -> bool:
    """Add the sentencepiece model to an existing bundle (hashes checked first); True if added."""
    from transalign.engine.bundle import MANIFEST_NAME, read_manifest, sha256_file
    from transalign.outputs import open_output

    bundle = Path(bundle)
    manifest = read_manifest(bundle, verify_hashes=True)
    spec = with_sentencepiece_model(manifest.tokenizer, bundle)
    if spec == manifest.tokenizer:
        return False
    files = {**manifest.files, SPM_MODEL_FILE: sha256_file(bundle / SPM_MODEL_FILE)}
    updated = dataclasses.replace(manifest, tokenizer=spec, files=files)
    with open_output(bundle / MANIFEST_NAME) as out:
        out.write(json.dumps(updated.to_json(), indent=2, ensure_ascii=False) + "\n")
    read_manifest(bundle, verify_hashes=False)
    return True


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit("usage: python -m transalign.export.spm_model BUNDLE")
    added = add_to_bundle(sys.argv[1])
    print(f"{sys.argv[1]}: {'added ' + SPM_MODEL_FILE if added else 'nothing to add (not a Unigram tokenizer.json)'}")
