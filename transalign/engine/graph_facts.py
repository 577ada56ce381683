"""What a bundle's ONNX graph itself says about the ranges its inputs may take.

A manifest is data from disk that nothing hashes: an edited or damaged one may name token ids or
a sequence length the graph cannot take, and ONNX Runtime then wraps a negative index silently
or fails deep inside a Gather. `graph_facts` reads the bounds from the graph file, so the
manifest can be checked against the model (engine.bundle.check_manifest_ranges):

- ``vocab_size``: rows of the token-embedding table, the 2-D table gathered with ``input_ids``
  (directly or through a Reshape/Cast/Identity/Squeeze/Unsqueeze/Flatten);
- ``position_rows`` and ``positions_after_padding``: rows of the largest other gathered 2-D table
  of the graph's hidden width (the position table; BERT's 2-row token-type table is smaller),
  and whether positions are counted from the padding id (a CumSum in the graph: M2M100 and
  XLM-R number positions pad_id + 1, pad_id + 2, ...; BERT from 0);
- ``hidden_size``: the static last dimension of the graph's single output.

Why read the protobuf and not probe or use `onnx`: `onnx` is an export-only dependency, and a
probe run would cost a forward pass of max_positions tokens per load. With external data (every
exported graph keeps its weights beside it) the graph file holds only the structure and small
constants (80 KB for the tiny test model, ~4 MB for NLLB-600M with its sinusoidal table), so
walking its wire format with the standard library takes milliseconds, and the facts are exact
(the shapes the runtime itself will use). The walk reads only the fields listed below and skips
every other one by its length.
"""

from __future__ import annotations

import mmap
from dataclasses import dataclass
from pathlib import Path

from transalign.engine.protowire import WireError, fields, read_varint

__all__ = ["GraphFacts", "GraphFormatError", "graph_facts", "sentencepiece_piece_count"]

# ONNX protobuf field numbers (onnx/onnx.proto)
_MODEL_GRAPH = 7
_GRAPH_NODE, _GRAPH_INITIALIZER, _GRAPH_INPUT, _GRAPH_OUTPUT = 1, 5, 11, 12
_NODE_INPUT, _NODE_OUTPUT, _NODE_OP_TYPE, _NODE_ATTRIBUTE = 1, 2, 4, 5
_ATTR_NAME, _ATTR_TENSOR = 1, 5
_TENSOR_DIMS, _TENSOR_NAME = 1, 8
_VALUE_NAME, _VALUE_TYPE = 1, 2
_TYPE_TENSOR, _TENSOR_TYPE_SHAPE, _SHAPE_DIM, _DIM_VALUE = 1, 2, 1, 1
# ops that pass token ids through unchanged on the way to the embedding Gather
_ID_PASSTHROUGH = {"Reshape", "Cast", "Identity", "Squeeze", "Unsqueeze", "Flatten"}
_SENTENCEPIECE_PIECES = 1  # sentencepiece_model.proto: ModelProto.pieces


class GraphFormatError(ValueError):
    """The file is not an ONNX graph this reader understands (truncated or not protobuf)."""


@dataclass(frozen=True)
class GraphFacts:
    vocab_size: int | None  # None: no token-embedding table found
    position_rows: int | None  # None: no position table found
    positions_after_padding: bool
    hidden_size: int | None  # None: the output's last dimension is symbolic


def _varint(buf, pos: int) -> tuple[int, int]:
    try:
        return read_varint(buf, pos)
    except WireError as exc:
        raise GraphFormatError(str(exc)) from None


def _fields(buf, start: int = 0, end: int | None = None):
    """(field number, wire type, value) of a message (`protowire.fields`, errors as GraphFormatError)."""
    try:
        for number, wire, value, _ in fields(buf, start, end):
            yield number, wire, value
    except WireError as exc:
        raise GraphFormatError(str(exc)) from None


def _text(buf, span) -> str:
    return bytes(buf[span[0]:span[1]]).decode("utf-8", "replace")


def _dims(buf, span) -> list[int]:
    """A TensorProto's dims (packed or not) and nothing else."""
    dims = []
    for number, wire, value in _fields(buf, *span):
        if number != _TENSOR_DIMS:
            continue
        if wire == 0:
            dims.append(value)
        else:  # packed
            pos = value[0]
            while pos < value[1]:
                dim, pos = _varint(buf, pos)
                dims.append(dim)
    return dims


def _tensor_name(buf, span) -> str:
    return next((_text(buf, v) for n, w, v in _fields(buf, *span) if n == _TENSOR_NAME and w == 2), "")


def _node(buf, span) -> tuple[str, list[str], list[str], list[int] | None]:
    """(op_type, inputs, outputs, dims of a Constant's `value` tensor)."""
    op, inputs, outputs, const = "", [], [], None
    for number, wire, value in _fields(buf, *span):
        if wire != 2:
            continue
        if number == _NODE_OP_TYPE:
            op = _text(buf, value)
        elif number == _NODE_INPUT:
            inputs.append(_text(buf, value))
        elif number == _NODE_OUTPUT:
            outputs.append(_text(buf, value))
        elif number == _NODE_ATTRIBUTE:
            name, tensor = "", None
            for n, w, v in _fields(buf, *value):
                if n == _ATTR_NAME and w == 2:
                    name = _text(buf, v)
                elif n == _ATTR_TENSOR and w == 2:
                    tensor = v
            if name == "value" and tensor is not None:
                const = _dims(buf, tensor)
    return op, inputs, outputs, const


def _last_output_dim(buf, span) -> int | None:
    """The static last dimension of a ValueInfoProto (None when symbolic or absent)."""
    dims = []
    for number, wire, value in _fields(buf, *span):
        if number != _VALUE_TYPE or wire != 2:
            continue
        for n, w, tensor in _fields(buf, *value):
            if n != _TYPE_TENSOR or w != 2:
                continue
            for n2, w2, shape in _fields(buf, *tensor):
                if n2 != _TENSOR_TYPE_SHAPE or w2 != 2:
                    continue
                for n3, w3, dim in _fields(buf, *shape):
                    if n3 == _SHAPE_DIM and w3 == 2:
                        dims.append(next((v for n4, w4, v in _fields(buf, *dim)
                                          if n4 == _DIM_VALUE and w4 == 0), None))
    return dims[-1] if dims else None


def _graph_span(buf):
    for number, wire, value in _fields(buf):
        if number == _MODEL_GRAPH and wire == 2:
            return value
    raise GraphFormatError("no graph in the model file")


def _mapped(path: str | Path):
    """The file memory-mapped (only the pages the walk touches are read): a graph saved with its
    weights inline would otherwise be read whole into memory. Callers view it through a
    memoryview (indexing a memoryview is several times faster than indexing the mmap); every
    slice of it is a temporary, so the view and the map close cleanly."""
    with open(path, "rb") as handle:
        try:
            return mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
        except ValueError as exc:  # an empty file cannot be mapped
            raise GraphFormatError(f"empty file ({exc})") from None


def graph_facts(path: str | Path) -> GraphFacts:
    """Read the bounds described in the module docstring from an ONNX file (no weights loaded)."""
    with _mapped(path) as mapped, memoryview(mapped) as buf:
        return _facts(buf)


def _facts(buf) -> GraphFacts:
    tables: dict[str, list[int]] = {}  # initializer or Constant output -> dims
    nodes, inputs, outputs = [], [], []
    for number, wire, value in _fields(buf, *_graph_span(buf)):
        if wire != 2:
            continue
        if number == _GRAPH_INITIALIZER:
            tables[_tensor_name(buf, value)] = _dims(buf, value)
        elif number == _GRAPH_NODE:
            nodes.append(_node(buf, value))
        elif number == _GRAPH_INPUT:
            inputs.append(next((_text(buf, v) for n, w, v in _fields(buf, *value) if n == _VALUE_NAME), ""))
        elif number == _GRAPH_OUTPUT:
            outputs.append(value)
    for op, _, outs, const in nodes:
        if op == "Constant" and const is not None and outs:
            tables[outs[0]] = const
    hidden = _last_output_dim(buf, outputs[0]) if len(outputs) == 1 else None
    return _bounds(tables, nodes, "input_ids" if "input_ids" in inputs else None, hidden)


def _bounds(tables, nodes, ids_input, hidden) -> GraphFacts:
    token_ids = {ids_input} if ids_input else set()
    for op, ins, outs, _ in nodes:  # nodes are topologically sorted in a valid graph
        if op in _ID_PASSTHROUGH and ins and ins[0] in token_ids:
            token_ids.update(outs)
    gathered = [(ins[0], ins[1]) for op, ins, _, _ in nodes
                if op == "Gather" and len(ins) == 2 and len(tables.get(ins[0], ())) == 2]
    vocab = next((tables[data][0] for data, index in gathered if index in token_ids), None)
    word = next((data for data, index in gathered if index in token_ids), None)
    width = hidden if hidden is not None else (tables[word][1] if word else None)
    others = [tables[data][0] for data, _ in gathered if data != word and tables[data][1] == width]
    return GraphFacts(vocab_size=vocab, position_rows=max(others) if others else None,
                      positions_after_padding=any(op == "CumSum" for op, _, _, _ in nodes),
                      hidden_size=hidden)


def sentencepiece_piece_count(path: str | Path) -> int:
    """Number of pieces of a sentencepiece model file (its top-level `pieces` entries)."""
    with _mapped(path) as mapped, memoryview(mapped) as buf:
        return sum(1 for number, wire, _ in _fields(buf) if number == _SENTENCEPIECE_PIECES and wire == 2)
