"""The bundle: the contract between the offline export stage and the runtime.

A bundle is a directory readable from any language::

    manifest.json            this file's schema (see ``Manifest``)
    model.onnx               fp32 graph, inputs input_ids/attention_mask (int64 [batch, seq]),
                             output hidden ([batch, seq, d]) = hidden_states[layer]
    model.int8.onnx          optional, dynamic int8 quantization (CPU)
    model.fp16.onnx          optional, fp16 weights/activations (CUDA)
    sentencepiece.bpe.model  NLLB tokenizer (or tokenizer.json for BERT-family encoders)

Each graph keeps its weights in ONNX external data beside it (``model.onnx.data``, ...), which
ONNX Runtime memory-maps; ``files`` hashes those too, and a runtime checks only the files of the
precision it loads (``files_of_precision``).

This module only reads and checks bundles; it imports nothing beyond the standard library so
the export stage can use the same definitions to write them.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FORMAT_NAME = "transalign-bundle"
FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
MODEL_FILES = {"fp32": "model.onnx", "int8": "model.int8.onnx", "fp16": "model.fp16.onnx"}
PRECISIONS = tuple(MODEL_FILES)


class BundleError(ValueError):
    """A bundle is missing, incomplete, corrupted or written by an incompatible version."""


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, streamed so multi-GB models do not need to fit in memory."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class TokenizerSpec:
    """How the runtime turns words into ids without transformers.

    kind "sentencepiece-nllb": ``file`` is a sentencepiece model; a piece with sentencepiece id
    ``p`` (p >= 3) has model id ``p + piece_offset``; sentencepiece's unknown piece maps to
    ``unk_id``. A sequence is ``[lang_code_ids[lang]] pieces... [eos_id]`` (NLLB, non-legacy).

    kind "hf-tokenizers": ``file`` is a ``tokenizer.json`` for the ``tokenizers`` library;
    a sequence is ``prefix_ids pieces... suffix_ids`` (e.g. [CLS] ... [SEP]), no language code.
    """

    kind: str
    file: str
    unk_id: int
    eos_id: int
    pad_id: int
    piece_offset: int = 0
    lang_code_ids: dict[str, int] = field(default_factory=dict)
    prefix_ids: tuple[int, ...] = ()
    suffix_ids: tuple[int, ...] = ()
    lowercase: bool = False
    # NLLB: every added token (language codes, </s>, <mask>, ...) -> id; the reference's fast
    # tokenizer matches these as whole tokens inside words before sentencepiece runs.
    added_tokens: dict[str, int] = field(default_factory=dict)
    # NLLB: "strip" (current tokenizer.json converters strip trailing whitespace) or "keep"
    # (older ones keep it as a "▁" piece); see tokenization_nllb.py.
    whitespace: str = "strip"

    KINDS = ("sentencepiece-nllb", "hf-tokenizers")

    def __post_init__(self) -> None:
        if self.kind not in self.KINDS:
            raise BundleError(f"unknown tokenizer kind {self.kind!r}; known: {', '.join(self.KINDS)}")
        if self.whitespace not in ("strip", "keep"):
            raise BundleError(f"tokenizer whitespace {self.whitespace!r} is not 'strip' or 'keep'")

    def to_json(self) -> dict[str, Any]:
        data = dict(self.__dict__)
        data["prefix_ids"] = list(self.prefix_ids)
        data["suffix_ids"] = list(self.suffix_ids)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "TokenizerSpec":
        data = dict(data)
        data["prefix_ids"] = tuple(data.get("prefix_ids", ()))
        data["suffix_ids"] = tuple(data.get("suffix_ids", ()))
        return cls(**data)


@dataclass(frozen=True)
class Manifest:
    """Everything a runtime in any language needs to use a bundle correctly."""

    architecture: str  # "m2m100" | "bert" | "xlm-roberta"
    base_model: str
    layer: int
    num_layers: int
    hidden_size: int
    default_threshold: float
    max_positions: int  # longest token sequence (specials included) the graph accepts
    tokenizer: TokenizerSpec
    precisions: dict[str, dict[str, Any]]  # precision -> {"file", "validation": {...}}
    files: dict[str, str]  # file name -> sha256
    opset: int
    tools: dict[str, str]
    lora: dict[str, Any] | None = None
    family: str | None = None
    format: str = FORMAT_NAME
    format_version: int = FORMAT_VERSION

    def to_json(self) -> dict[str, Any]:
        data = dict(self.__dict__)
        data["tokenizer"] = self.tokenizer.to_json()
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Manifest":
        data = dict(data)
        data["tokenizer"] = TokenizerSpec.from_json(data["tokenizer"])
        return cls(**data)


def files_of_precision(name: str, precision: str) -> bool:
    """True for a precision's graph and its external weights (``model.onnx``, ``model.onnx.data``)."""
    model = MODEL_FILES[precision]
    return name == model or name.startswith(model + ".")


def read_manifest(bundle: str | Path, verify_hashes: bool = True, precision: str | None = None) -> Manifest:
    """Read and check a bundle's manifest; refuse anything we cannot run correctly.

    Checks: the directory and manifest exist, the format name and version are ours, every
    listed file exists and (unless ``verify_hashes`` is False) matches its sha256. With
    ``precision`` only that precision's model files (and the shared ones) are hashed: a runtime
    loading int8 should not spend seconds reading the fp32 weights.
    """
    root = Path(bundle)
    if not root.is_dir():
        raise BundleError(f"bundle {root} does not exist or is not a directory; "
                          "create one with `transalign export MODEL -o BUNDLE`")
    path = root / MANIFEST_NAME
    if not path.is_file():
        raise BundleError(f"{path} is missing: {root} is not a transalign bundle "
                          "(or its export was interrupted); export it again")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"{path} is not valid JSON ({exc}); the bundle is damaged, export it again") from exc
    if not isinstance(data, dict) or data.get("format") != FORMAT_NAME:
        raise BundleError(f"{path}: 'format' is {data.get('format') if isinstance(data, dict) else None!r}, "
                          f"expected {FORMAT_NAME!r}")
    version = data.get("format_version")
    if version != FORMAT_VERSION:
        raise BundleError(f"{path}: bundle format version {version!r} is not supported by this transalign "
                          f"(supports {FORMAT_VERSION}); re-export the model with this version")
    try:
        manifest = Manifest.from_json(data)
    except (TypeError, KeyError) as exc:
        raise BundleError(f"{path}: manifest fields are incomplete or unknown ({exc}); export it again") from exc
    _check_files(root, manifest, verify_hashes, precision)
    return manifest


def _check_files(root: Path, manifest: Manifest, verify_hashes: bool, precision: str | None) -> None:
    others = [p for p in PRECISIONS if p != precision] if precision else []
    for name, expected in manifest.files.items():
        file = root / name
        if any(files_of_precision(name, other) for other in others):
            continue
        if not file.is_file():
            raise BundleError(f"bundle file {file} listed in the manifest is missing; export the bundle again")
        if verify_hashes:
            actual = sha256_file(file)
            if actual != expected:
                raise BundleError(f"bundle file {file} fails its sha256 check (manifest {expected[:12]}..., "
                                  f"file {actual[:12]}...): it was modified or damaged; export the bundle again")
