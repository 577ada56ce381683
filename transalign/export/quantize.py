"""Batch-invariant int8: static activation scales, calibrated at export, with smoothing.

ONNX Runtime's dynamic quantization computes one activation scale per tensor *per run*, over
the whole padded batch, so a pair's links changed with its batch neighbours (issue 12). Here
every quantized MatMul ``Y = X W`` gets constants instead:

1. **Calibration.** The fp32 graph runs each calibration sentence on its own (batch of one, no
   padding) and records, per input channel j of every quantized activation X, ``min X_j`` and
   ``max X_j`` over all tokens.
2. **Smoothing** (SmoothQuant, Xiao et al. 2023). Per-tensor int8 loses the small channels
   when a few channels carry outliers. With ``a_j = max |X_j|`` and ``w_j = max_n |W[j, n]|``
   (over every MatMul reading X), ``s_j = (a_j ** alpha) / (w_j ** (1 - alpha))`` and the exact
   identity ``X W = (X / s) (s W)`` moves the outliers into the weights, which are quantized
   per output channel and absorb them easily. A ``Mul`` by ``1 / s`` is inserted before the
   MatMuls and their weight rows are scaled by ``s`` (fp32, before quantization). Where X is
   made by a LayerNorm (q/k/v, fc1) or by ReLU(fc1) (fc2's input), ``1 / s`` is folded into the
   LayerNorm's gamma and beta or into fc1's output columns and bias (a positive per-channel
   scale commutes with ReLU); for out_proj's input, the attention context, into the value
   projection's columns (the context is linear in V, channel by channel). The ``Mul`` goes: the
   same function, one pass over X less.
3. **Static scales.** ``quantize_dynamic`` makes the int8 graph (weights per output channel),
   then each ``DynamicQuantizeLinear`` becomes a ``QuantizeLinear`` with the calibrated scale and
   zero point of ``X / s`` (uint8, asymmetric: ``scale = (max - min) / 255`` over a range that
   includes 0). Values outside the calibrated range saturate.
4. **Fused dequantization.** Each ``MatMulInteger -> Cast -> Mul(scales) -> Add(bias)`` becomes
   one ``MatMulIntegerToFloat`` (`int8_fuse`): the same values, three passes over the output
   less.

Every scale is a constant of the graph, so a token's result depends on that token's sequence
only: never on the batch, the padding, the batch size or the thread count (int32 accumulation
is exact). Padding rows cannot influence real rows.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from transalign.export.errors import ExportError
from transalign.export.int8_fuse import fuse_integer_matmuls
from transalign.export.quiet import quiet_logger

DEFAULT_SMOOTH_ALPHA = 0.5
_SMOOTH_LIMITS = (1e-3, 1e3)  # keep s finite for dead or constant channels


@dataclass(frozen=True)
class ChannelRanges:
    """Per-channel minimum and maximum of one activation over the calibration tokens."""

    low: np.ndarray
    high: np.ndarray


def _quantized_matmuls(model, keep_fp32) -> dict[str, list]:
    """Activation name -> the MatMul nodes (constant 2-D weight, not kept fp32) that read it."""
    weights = {init.name for init in model.graph.initializer if len(init.dims) == 2}
    groups: dict[str, list] = {}
    for node in model.graph.node:
        if node.op_type == "MatMul" and node.input[1] in weights and node.name not in set(keep_fp32):
            groups.setdefault(node.input[0], []).append(node)
    return groups


def calibrate(fp32_path: Path, names: list[str], batches: list[np.ndarray]) -> dict[str, ChannelRanges]:
    """Run each token row (batch of one, no padding) and reduce every named activation per channel."""
    import onnx

    from transalign.engine.session import open_session

    graph_only = onnx.load(str(fp32_path), load_external_data=False)
    del graph_only.graph.output[:]
    for name in names:
        graph_only.graph.output.append(onnx.helper.make_empty_tensor_value_info(name))
    # saved beside the original so its external weights resolve; removed right after loading
    with tempfile.NamedTemporaryFile(dir=fp32_path.parent, suffix=".calibration.onnx") as handle:
        onnx.save(graph_only, handle.name)
        session = open_session(handle.name, "cpu")
    low = {name: None for name in names}
    high = dict(low)
    for ids in batches:
        feed = {"input_ids": ids[None, :].astype(np.int64), "attention_mask": np.ones((1, len(ids)), np.int64)}
        for name, value in zip(names, session.run(names, feed)):
            flat = value.reshape(-1, value.shape[-1])
            lo, hi = flat.min(axis=0), flat.max(axis=0)
            low[name] = lo if low[name] is None else np.minimum(low[name], lo)
            high[name] = hi if high[name] is None else np.maximum(high[name], hi)
    for name in names:
        if low[name] is None or not (np.isfinite(low[name]).all() and np.isfinite(high[name]).all()):
            raise ExportError(f"int8 calibration: activation {name} is not finite on the calibration text")
    return {name: ChannelRanges(low[name].astype(np.float64), high[name].astype(np.float64)) for name in names}


def smoothing_factors(ranges: ChannelRanges, weights: list[np.ndarray], alpha: float) -> np.ndarray:
    """``s_j = a_j^alpha / w_j^(1 - alpha)`` (see the module docstring), clipped to a sane range."""
    a = np.maximum(np.abs(ranges.low), np.abs(ranges.high))
    w = np.max([np.abs(W).max(axis=1) for W in weights], axis=0).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        s = np.power(a, alpha) / np.power(w, 1.0 - alpha)
    s[~np.isfinite(s) | (s <= 0)] = 1.0
    return np.clip(s, *_SMOOTH_LIMITS)


class _Graph:
    """Producers, consumers and constants of a graph, for the folding below."""

    def __init__(self, model):
        from onnx import numpy_helper

        self.model = model
        self.inits = {init.name: init for init in model.graph.initializer}
        self.producer = {out: node for node in model.graph.node for out in node.output}
        self.consumers: dict[str, list] = {}
        for node in model.graph.node:
            for name in node.input:
                self.consumers.setdefault(name, []).append(node)
        self._to_array = numpy_helper.to_array

    def constant(self, name: str) -> np.ndarray | None:
        """The value of ``name`` when it is an initializer or an Identity of one (the exporter
        shares equal weights, such as LayerNorm's ones and zeros, through Identity nodes)."""
        while name not in self.inits:
            node = self.producer.get(name)
            if node is None or node.op_type != "Identity":
                return None
            name = node.input[0]
        return self._to_array(self.inits[name])

    def only_read_by(self, name: str, allowed) -> bool:
        """Every consumer of ``name`` is in ``allowed`` or only reads its shape; not a graph output."""
        if name in {o.name for o in self.model.graph.output}:
            return False
        return all(id(node) in allowed or node.op_type == "Shape" for node in self.consumers.get(name, []))

    def add_constant(self, value: np.ndarray, name: str) -> str:
        from onnx import numpy_helper

        self.model.graph.initializer.append(numpy_helper.from_array(value.astype(np.float32), name))
        return name


def _fold_targets(graph: _Graph, activation: str, mul) -> list[tuple]:
    """Where ``X / s`` (the smoothing Mul on ``activation``) can be folded exactly: a list of
    (node, input index, value, op) rewrites, empty when it cannot.

    - X = LayerNormalization(x, gamma, beta): gamma / s and beta / s.
    - X = Relu(Add(MatMul(h, W), b)): W's columns and b divided by s (s > 0 commutes with ReLU).
    - X = the attention context, heads merged: the value projection's columns and bias
      (`_value_projection`).
    X, and every tensor on the way, must feed nothing else (Shape nodes read only the shape).
    """
    node = graph.producer.get(activation)
    if node is None or not graph.only_read_by(activation, {id(mul)}):
        return []
    if node.op_type == "LayerNormalization" and len(node.input) == 3:
        gamma, beta = graph.constant(node.input[1]), graph.constant(node.input[2])
        if gamma is None or beta is None:
            return []
        return [(node, 1, gamma, "divide"), (node, 2, beta, "divide")]
    if node.op_type == "Reshape":
        add = _value_projection(graph, node)
    elif node.op_type == "Relu":
        add = graph.producer.get(node.input[0])
        if add is not None and not graph.only_read_by(add.output[0], {id(node)}):
            add = None
    else:
        return []
    return _linear_columns(graph, add)


def _single_path(graph: _Graph, node, op: str, perm=None):
    """``node``'s producer of input 0 when it is ``op`` (with Transpose ``perm``) and ``node`` is
    its only reader."""
    parent = graph.producer.get(node.input[0])
    if parent is None or parent.op_type != op or not graph.only_read_by(parent.output[0], {id(node)}):
        return None
    if perm is not None and [list(a.ints) for a in parent.attribute if a.name == "perm"] != [perm]:
        return None
    return parent


def _value_projection(graph: _Graph, merge):
    """The ``Add`` of the value projection when ``merge`` is the head merge of an attention
    whose context is ``softmax(Q K^T) V``: Reshape <- Transpose(0,2,1,3) <- MatMul(P, V_heads),
    V_heads = Transpose(0,2,1,3) <- Reshape <- Add(b_v, X W_v). Channel c of the merged context
    is channel c of V (the same head split and merge), and the context is linear in V per
    channel, so dividing V's channel c divides the context's channel c."""
    heads_out = _single_path(graph, merge, "Transpose", [0, 2, 1, 3])
    context = heads_out and _single_path(graph, heads_out, "MatMul")
    if context is None:
        return None
    heads_in = graph.producer.get(context.input[1])
    if heads_in is None or heads_in.op_type != "Transpose" or not graph.only_read_by(heads_in.output[0], {id(context)}) \
            or [list(a.ints) for a in heads_in.attribute if a.name == "perm"] != [[0, 2, 1, 3]]:
        return None
    split = _single_path(graph, heads_in, "Reshape")
    return split and _single_path(graph, split, "Add")


def _linear_columns(graph: _Graph, add) -> list[tuple]:
    """Rewrites dividing the output columns of ``add`` = Add(b, MatMul(h, W)) (either order)."""
    if add is None or add.op_type != "Add":
        return []
    for k in (0, 1):
        bias, matmul = graph.constant(add.input[k]), graph.producer.get(add.input[1 - k])
        if bias is not None and matmul is not None and matmul.op_type == "MatMul" \
                and graph.only_read_by(matmul.output[0], {id(add)}):
            weight = graph.constant(matmul.input[1])
            if weight is not None and weight.ndim == 2 and bias.shape == (weight.shape[1],):
                return [(add, k, bias, "divide"), (matmul, 1, weight, "divide columns")]
    return []


def fold_smoothing(model, factors: dict[str, np.ndarray]) -> dict[str, int]:
    """Remove the smoothing Muls (``{X}_Smooth``) whose ``1 / s`` folds exactly into the
    producer of X (`_fold_targets`); returns how many were folded and kept.

    The producer then writes ``X / s`` under the Mul's output name, so the quantizer and the
    static scales see the same tensor names as without folding. Folded parameters are new
    initializers (the originals may be shared), and initializers nothing reads any more go.
    """
    graph = _Graph(model)
    folded, kept, remove = 0, 0, set()
    for mul in [n for n in model.graph.node if n.op_type == "Mul" and n.name.endswith("_Smooth")]:
        activation = mul.input[0]
        targets = _fold_targets(graph, activation, mul)
        if not targets:
            kept += 1
            continue
        s = factors[activation].astype(np.float64)
        for node, index, value, op in targets:
            scaled = value / s[None, :] if op == "divide columns" else value / s
            node.input[index] = graph.add_constant(scaled, f"{node.name}_in{index}_smoothed")
        producer = graph.producer[activation]
        producer.output[0] = mul.output[0]
        for reader in graph.consumers.get(activation, []):  # Shape nodes
            if reader is not mul:
                reader.input[:] = [mul.output[0] if name == activation else name for name in reader.input]
        remove.add(id(mul))
        folded += 1
    nodes = [n for n in model.graph.node if id(n) not in remove]
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    used = {name for node in model.graph.node for name in node.input}
    unused = [init for init in model.graph.initializer if init.name not in used]
    for init in unused:
        model.graph.initializer.remove(init)
    return {"folded": folded, "kept": kept}


def _smooth(fp32_path: Path, out_path: Path, keep_fp32, ranges, alpha: float,
            fold: bool = True) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    """Write ``out_path``: the fp32 graph with ``X / s`` before each group, weight rows times s."""
    import onnx
    from onnx import numpy_helper

    from transalign.export.graph import save_with_external_data

    model = onnx.load(str(fp32_path))
    groups = _quantized_matmuls(model, keep_fp32)
    inits = {init.name: init for init in model.graph.initializer}
    factors = {}
    new_nodes = []
    for activation, nodes in groups.items():
        weights = [numpy_helper.to_array(inits[n.input[1]]) for n in nodes]
        s = smoothing_factors(ranges[activation], weights, alpha)
        factors[activation] = s
        for node, weight in zip(nodes, weights):
            inits[node.input[1]].CopyFrom(numpy_helper.from_array((weight * s[:, None]).astype(np.float32),
                                                                  node.input[1]))
            node.input[0] = f"{activation}_smoothed"
        inv = f"{activation}_smooth_inverse"
        model.graph.initializer.append(numpy_helper.from_array((1.0 / s).astype(np.float32), inv))
        # inserted right before the first reader: X is produced earlier, so the order stays valid
        new_nodes.append((nodes[0], onnx.helper.make_node("Mul", [activation, inv], [f"{activation}_smoothed"],
                                                          name=f"{activation}_Smooth")))
    ordered = []
    first_reader = {id(reader): mul for reader, mul in new_nodes}
    for node in model.graph.node:
        if id(node) in first_reader:
            ordered.append(first_reader[id(node)])
        ordered.append(node)
    del model.graph.node[:]
    model.graph.node.extend(ordered)
    folding = fold_smoothing(model, factors) if fold else {"folded": 0, "kept": len(factors)}
    save_with_external_data(model, out_path)
    return factors, folding


def _static_activations(int8_path: Path, tensor_ranges: dict[str, tuple[float, float]]) -> int:
    """Replace each DynamicQuantizeLinear by a QuantizeLinear with constant scale / zero point."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(int8_path), load_external_data=False)
    nodes, replaced = [], 0
    for node in model.graph.node:
        if node.op_type != "DynamicQuantizeLinear":
            nodes.append(node)
            continue
        if node.input[0] not in tensor_ranges:
            raise ExportError(f"int8: no calibrated range for activation {node.input[0]}")
        low, high = tensor_ranges[node.input[0]]
        low, high = min(low, 0.0), max(high, 0.0)
        scale = (high - low) / 255.0 if high > low else 1.0
        zero = int(np.clip(np.round(-low / scale), 0, 255))
        quantized, scale_name, zero_name = node.output
        model.graph.initializer.extend([numpy_helper.from_array(np.array(scale, np.float32), scale_name),
                                        numpy_helper.from_array(np.array(zero, np.uint8), zero_name)])
        nodes.append(onnx.helper.make_node("QuantizeLinear", [node.input[0], scale_name, zero_name], [quantized],
                                           name=node.name))
        replaced += 1
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    onnx.save(model, str(int8_path))  # the weights stay in the .data file quantize_dynamic wrote
    return replaced


_RESHAPES = {"Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Cast"}


def _comes_from(graph: _Graph, name: str, source: str) -> bool:
    """Whether tensor ``name`` is ``source`` reshaped (the token ids a vocabulary table is indexed by)."""
    while name != source:
        node = graph.producer.get(name)
        if node is None or node.op_type not in _RESHAPES:
            return False
        name = node.input[0]
    return True


def half_embeddings(int8_path: Path, ids_input: str = "input_ids") -> list[str]:
    """Store the vocabulary embedding tables of the int8 graph in float16, cast back to float32
    after the lookup; returns the tables converted.

    The table is most of an int8 bundle's bytes (e5-small: 366 MB of 381 MB, NLLB-600M: 1 GB)
    and, being memory-mapped and read at random rows, soon resident in full. Half precision
    halves it; a row's rounding (relative 2**-11) is far below int8's own error and is a
    constant of the graph, so batch invariance is untouched. The tables converted are those
    the graph input ``ids_input`` indexes, when every reader of theirs is a Gather on axis 0.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from transalign.export.graph import save_with_external_data

    model = onnx.load(str(int8_path))
    graph = _Graph(model)
    converted, nodes = [], []
    tables = {}
    for init in model.graph.initializer:
        readers = graph.consumers.get(init.name, [])
        if (init.data_type == TensorProto.FLOAT and len(init.dims) == 2 and readers
                and any(_comes_from(graph, r.input[1], ids_input) for r in readers)
                and all(r.op_type == "Gather" and r.input[0] == init.name
                        and all(a.name != "axis" or a.i == 0 for a in r.attribute) for r in readers)):
            tables[init.name] = init
    for name, init in tables.items():
        half = numpy_helper.from_array(numpy_helper.to_array(init).astype(np.float16), f"{name}_fp16")
        model.graph.initializer.remove(init)
        model.graph.initializer.append(half)
        converted.append(name)
    for node in model.graph.node:
        nodes.append(node)
        if node.op_type == "Gather" and node.input[0] in tables:
            out = node.output[0]
            node.input[0], node.output[0] = f"{node.input[0]}_fp16", f"{out}_fp16"
            nodes.append(helper.make_node("Cast", [f"{out}_fp16"], [out], to=TensorProto.FLOAT, name=f"{node.name}_Cast"))
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    if converted:
        save_with_external_data(model, int8_path)
    return converted


def quantize_static_int8(fp32_path: Path, out_path: Path, keep_fp32: list[str], batches: list[np.ndarray],
                         alpha: float | None = DEFAULT_SMOOTH_ALPHA, fold: bool = True,
                         half_embedding: bool = True, fuse: bool = True) -> dict:
    """Write the batch-invariant int8 graph; returns what the manifest records about it.

    ``batches``: token-id rows of the calibration sentences. ``alpha``: smoothing strength
    (None: no smoothing). ``keep_fp32``: MatMul node names left in float32. ``fold``: fold the
    smoothing into the producers of the activations where that is exact (`fold_smoothing`);
    ``half_embedding``: vocabulary tables in float16 (`half_embeddings`). ``fuse``: each
    projection's dequantization into its integer product (`int8_fuse`; exact).
    """
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    if not batches:
        raise ExportError("int8 calibration needs at least one sentence")
    graph = onnx.load(str(fp32_path), load_external_data=False)
    groups = _quantized_matmuls(graph, keep_fp32)
    ranges = calibrate(fp32_path, list(groups), batches)
    source = fp32_path
    factors = {name: np.ones(len(r.low)) for name, r in ranges.items()}
    folding = None
    with tempfile.TemporaryDirectory(dir=fp32_path.parent, prefix=".smoothed-") as scratch:
        if alpha is not None:
            source = Path(scratch) / "smoothed.onnx"
            factors, folding = _smooth(fp32_path, source, keep_fp32, ranges, alpha, fold)
        with quiet_logger():  # ORT logs a "consider pre-processing" advice on the root logger
            quantize_dynamic(str(source), str(out_path), weight_type=QuantType.QInt8, per_channel=True,
                             op_types_to_quantize=["MatMul", "Gemm"], use_external_data_format=True,
                             nodes_to_exclude=list(keep_fp32))
    smoothed = "_smoothed" if alpha is not None else ""
    tensor_ranges = {f"{name}{smoothed}": (float((r.low / factors[name]).min()), float((r.high / factors[name]).max()))
                     for name, r in ranges.items()}
    replaced = _static_activations(out_path, tensor_ranges)
    fused = fuse_integer_matmuls(out_path) if fuse else 0
    halved = half_embeddings(out_path) if half_embedding else []
    return {"activations": "static", "smoothing_alpha": alpha, "smoothing_folded": folding,
            "quantized_activations": replaced, "fused_matmuls": fused, "float16_embeddings": halved,
            "calibration_sentences": len(batches), "calibration_tokens": int(sum(len(b) for b in batches))}
