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
    # (older ones keep it as a "▁" piece); see tokenizers/nllb.py.
    whitespace: str = "strip"
    # hf-tokenizers with a Unigram model (XLM-R family): the same vocabulary as a sentencepiece
    # model (export/spm_model.py), listed in `files`; only the C library reads it. "" = none.
    sentencepiece_file: str = ""

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
        if not self.sentencepiece_file:
            del data["sentencepiece_file"]  # manifests without one stay as they were
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
    # the bundle's recommended extraction (engine.options.resolve_extraction fills what a caller
    # leaves out from these and default_threshold); bundles written before they existed: the paper's
    default_method: str = "softmax"
    default_word_level: str = "any"
    # rows of the graph's token-embedding table (ids must be below it); absent in bundles written
    # before it was recorded, whose graph is read instead (engine.graph_facts)
    vocab_size: int | None = None
    # how the default extraction was chosen: None = at export (the family's reference or export's
    # flags); `transalign tune --write` records its gold set, pairs, precision and AER here
    default_tuning: dict[str, Any] | None = None
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


_INT, _NUM, _STR, _BOOL = "an integer", "a number", "a string", "true or false"
_MANIFEST_TYPES = {
    "architecture": _STR, "base_model": _STR, "layer": _INT, "num_layers": _INT, "hidden_size": _INT,
    "default_threshold": _NUM, "max_positions": _INT, "tokenizer": "an object", "precisions": "an object",
    "files": "an object", "opset": _INT, "tools": "an object",
}
_TOKENIZER_TYPES = {"kind": _STR, "file": _STR, "sentencepiece_file": _STR, "unk_id": _INT, "eos_id": _INT, "pad_id": _INT,
                    "piece_offset": _INT, "lowercase": _BOOL, "whitespace": _STR}


def _is(value: Any, kind: str) -> bool:
    if kind == _INT:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == _NUM:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, {_STR: str, _BOOL: bool, "an object": dict}[kind])


def check_manifest_types(data: dict[str, Any], path: Path) -> None:
    """Raise BundleError naming the first field whose JSON type is wrong (before any use)."""
    def bad(field_name: str, kind: str, value: Any) -> BundleError:
        return BundleError(f"{path}: field {field_name!r} must be {kind}, got {json.dumps(value)[:60]}; "
                           "the manifest is damaged or was edited, export the bundle again")

    for name, kind in _MANIFEST_TYPES.items():
        if name not in data:
            raise BundleError(f"{path}: required field {name!r} is missing; export the bundle again")
        if not _is(data[name], kind):
            raise bad(name, kind, data[name])
    for name, kind in _TOKENIZER_TYPES.items():
        if name in data["tokenizer"] and not _is(data["tokenizer"][name], kind):
            raise bad(f"tokenizer.{name}", kind, data["tokenizer"][name])
    for name in ("lang_code_ids", "added_tokens"):
        table = data["tokenizer"].get(name, {})
        if not isinstance(table, dict) or not all(isinstance(k, str) and _is(v, _INT) for k, v in table.items()):
            raise bad(f"tokenizer.{name}", "an object of string -> integer", table)
    for name in ("prefix_ids", "suffix_ids"):
        ids = data["tokenizer"].get(name, [])
        if not isinstance(ids, list) or not all(_is(v, _INT) for v in ids):
            raise bad(f"tokenizer.{name}", "a list of integers", ids)
    for name, entry in data["precisions"].items():
        if name not in PRECISIONS or not isinstance(entry, dict) or entry.get("file") != MODEL_FILES[name]:
            expected = f"{MODEL_FILES[name]!r}" if name in MODEL_FILES else f"one of {', '.join(PRECISIONS)}"
            raise bad(f"precisions.{name}", f"an object with file {expected}", entry)
    for name, digest in data["files"].items():
        if not (isinstance(digest, str) and len(digest) == 64 and all(c in "0123456789abcdef" for c in digest)):
            raise bad(f"files.{name}", "a sha256 hex digest", digest)
    for name in ("default_method", "default_word_level"):
        if name in data and not _is(data[name], _STR):
            raise bad(name, _STR, data[name])
    if data.get("vocab_size") is not None and not _is(data["vocab_size"], _INT):
        raise bad("vocab_size", "an integer or null", data["vocab_size"])
    for name in ("lora", "family", "default_tuning"):
        if data.get(name) is not None and not _is(data[name], _STR if name == "family" else "an object"):
            raise bad(name, "a string or null" if name == "family" else "an object or null", data[name])


def files_of_precision(name: str, precision: str) -> bool:
    """True for a precision's graph and its external weights (``model.onnx``, ``model.onnx.data``)."""
    model = MODEL_FILES[precision]
    return name == model or name.startswith(model + ".")


def read_manifest(bundle: str | Path, verify_hashes: bool = True, precision: str | None = None) -> Manifest:
    """Read and check a bundle's manifest; refuse anything we cannot run correctly.

    Checks: the directory and manifest exist (a manifest symlink may not leave the bundle), the
    format name and version are ours, every field has its type and its range against the graph
    (`check_manifest_ranges`), every listed file exists and (unless ``verify_hashes`` is False)
    matches its sha256. With
    ``precision`` only that precision's model files (and the shared ones) are hashed: a runtime
    loading int8 should not spend seconds reading the fp32 weights.
    """
    root = Path(bundle)
    if not root.is_dir():
        raise BundleError(f"bundle {root} does not exist or is not a directory; "
                          "create one with `transalign export MODEL -o BUNDLE`")
    path = bundle_file(root, MANIFEST_NAME, "manifest")
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
    check_manifest_types(data, path)
    try:
        manifest = Manifest.from_json(data)
    except (TypeError, KeyError) as exc:
        raise BundleError(f"{path}: manifest fields are incomplete or unknown ({exc}); export it again") from exc
    _check_files(root, manifest, verify_hashes, precision)
    check_manifest_ranges(root, manifest, precision)
    return manifest


def bundle_file(root: Path, name: object, what: str) -> Path:
    """``root / name`` for a plain file name that stays inside the bundle, else BundleError.

    A manifest is data from disk: a name with a directory part, ``..``, an absolute path or a
    symlink pointing out of the bundle would let it read (or probe) files elsewhere.
    """
    if not isinstance(name, str) or not name or name in (".", "..") or "/" in name or "\\" in name \
            or "\0" in name:
        raise BundleError(f"{root / MANIFEST_NAME}: {what} {name!r} is not a plain file name inside the bundle "
                          "(no directories, '..' or absolute paths); the manifest is damaged or was edited")
    path = root / name
    if path.is_symlink() and path.resolve().parent != root.resolve():
        raise BundleError(f"bundle file {path} is a symlink that leaves the bundle ({path.resolve()}); "
                          "copy the file into the bundle instead")
    return path


def required_files(manifest: Manifest, precision: str | None) -> list[str]:
    """The files a runtime opens for ``precision`` (every precision when None)."""
    names = [manifest.tokenizer.file]
    for name in PRECISIONS if precision is None else (precision,):
        if name in manifest.precisions:
            names.append(manifest.precisions[name]["file"])
    return names


def _check_files(root: Path, manifest: Manifest, verify_hashes: bool, precision: str | None) -> None:
    path = root / MANIFEST_NAME
    if not manifest.files:
        raise BundleError(f"{path}: the 'files' table is empty, so nothing in the bundle could be checked; "
                          "export the bundle again")
    for name in manifest.files:
        bundle_file(root, name, "file")
    needed = required_files(manifest, precision)
    for name in needed:
        file = bundle_file(root, name, "file")
        data = file.with_name(file.name + ".data")
        for must in (file, data) if data.exists() else (file,):
            if must.name not in manifest.files:
                raise BundleError(f"{path}: {must.name} is used by the runtime but not listed (with its sha256) in "
                                  "'files'; the manifest is incomplete, export the bundle again")
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


def check_manifest_ranges(root: Path, manifest: Manifest, precision: str | None = None) -> None:
    """Raise BundleError naming the first field whose value the model cannot take.

    Types are checked before (`check_manifest_types`); here each value's range, against the graph
    of every precision a runtime would open (its token table, position table and output width,
    read from the graph file by `engine.graph_facts`) and, for NLLB tokenizers, the
    sentencepiece model's size. A graph without a position table (none of the supported
    architectures) bounds no max_positions; one without a recognisable token table is refused
    unless the manifest records vocab_size. Without these checks ONNX Runtime wraps a negative id silently
    and fails deep inside a Gather on a too-large one.
    """
    from transalign.engine.graph_facts import GraphFormatError, graph_facts
    from transalign.kernels.names import METHODS, WORD_LEVELS

    path = root / MANIFEST_NAME

    def bad(name: str, value: Any, reason: str) -> BundleError:
        fix = ("store a valid default with `transalign tune BUNDLE --gold-dir DIR --write` or export the bundle again"
               if name.startswith("default_") else "export the bundle again")
        return BundleError(f"{path}: field {name!r} is {json.dumps(value)[:60]}: {reason}; the manifest is damaged "
                           f"or was edited: {fix}")

    m, tok = manifest, manifest.tokenizer
    if not 0.0 <= m.default_threshold < 1.0:
        raise bad("default_threshold", m.default_threshold, "it must be in [0, 1)")
    for name, value, allowed in (("default_method", m.default_method, METHODS),
                                 ("default_word_level", m.default_word_level, WORD_LEVELS)):
        if value not in allowed:
            raise bad(name, value, f"it must be one of {', '.join(allowed)}")
    if m.num_layers < 1:
        raise bad("num_layers", m.num_layers, "it must be at least 1")
    if not 0 <= m.layer <= m.num_layers:
        raise bad("layer", m.layer, f"it must be in 0..num_layers ({m.num_layers})")
    for name, value in (("hidden_size", m.hidden_size), ("max_positions", m.max_positions),
                        ("vocab_size", m.vocab_size)):
        if value is not None and value < 1:
            raise bad(name, value, "it must be a positive integer")
    specials = len(tok.prefix_ids) + len(tok.suffix_ids) + (2 if tok.kind == "sentencepiece-nllb" else 0)
    if m.max_positions <= specials:
        raise bad("max_positions", m.max_positions, f"a sequence needs room for {specials} special tokens and a word")
    vocab = None
    for name in required_files(manifest, precision)[1:]:
        try:
            facts = graph_facts(root / name)
        except (GraphFormatError, OSError) as exc:
            raise BundleError(f"bundle file {root / name} is not a readable ONNX graph ({exc}); "
                              "export the bundle again") from exc
        vocab = _check_against_graph(manifest, facts, name, bad)
    if tok.piece_offset < 0:
        raise bad("tokenizer.piece_offset", tok.piece_offset, "it must be >= 0")
    if tok.kind == "sentencepiece-nllb" and vocab is not None:
        _check_pieces(root, manifest, vocab, bad)


def _check_pieces(root: Path, manifest: Manifest, vocab: int, bad) -> None:
    """The largest id the NLLB tokenizer can produce (last piece + piece_offset) is below ``vocab``."""
    from transalign.engine.graph_facts import GraphFormatError, sentencepiece_piece_count

    tok = manifest.tokenizer
    file = bundle_file(root, tok.file, "tokenizer file")
    try:
        pieces = sentencepiece_piece_count(file)
    except (GraphFormatError, OSError) as exc:
        raise BundleError(f"tokenizer file {file} is not a readable sentencepiece model ({exc}); "
                          "export the bundle again") from exc
    if pieces - 1 + tok.piece_offset >= vocab:
        raise bad("tokenizer.piece_offset", tok.piece_offset,
                  f"{tok.file} has {pieces} pieces, so ids would reach {pieces - 1 + tok.piece_offset}, "
                  f"beyond the graph's vocabulary of {vocab}")


def _check_against_graph(manifest: Manifest, facts, graph: str, bad) -> int:
    """Ids below the graph's vocabulary, max_positions within its position table, hidden size
    equal; returns the vocabulary size."""
    m, tok = manifest, manifest.tokenizer
    if facts.hidden_size is not None and m.hidden_size != facts.hidden_size:
        raise bad("hidden_size", m.hidden_size, f"{graph} outputs {facts.hidden_size} values per token")
    vocab = facts.vocab_size if facts.vocab_size is not None else m.vocab_size
    if vocab is None:
        raise BundleError(f"{graph}: no token-embedding table gathered with input_ids was found and the manifest "
                          "records no 'vocab_size', so its token ids cannot be checked; export the bundle again")
    if m.vocab_size is not None and m.vocab_size != vocab:
        raise bad("vocab_size", m.vocab_size, f"{graph}'s token table has {vocab} rows")
    ids = [("tokenizer.unk_id", tok.unk_id), ("tokenizer.eos_id", tok.eos_id), ("tokenizer.pad_id", tok.pad_id)]
    ids += [(f"tokenizer.prefix_ids[{k}]", v) for k, v in enumerate(tok.prefix_ids)]
    ids += [(f"tokenizer.suffix_ids[{k}]", v) for k, v in enumerate(tok.suffix_ids)]
    ids += [(f"tokenizer.lang_code_ids.{code}", v) for code, v in tok.lang_code_ids.items()]
    ids += [(f"tokenizer.added_tokens.{token}", v) for token, v in tok.added_tokens.items()]
    for name, value in ids:
        if not 0 <= value < vocab:
            raise bad(name, value, f"token ids must be in [0, {vocab}) ({graph}'s vocabulary)")
    if facts.position_rows is not None:
        offset = tok.pad_id + 1 if facts.positions_after_padding else 0
        limit = facts.position_rows - offset
        if m.max_positions > limit:
            raise bad("max_positions", m.max_positions,
                      f"{graph}'s position table holds {limit} positions")
    return vocab
