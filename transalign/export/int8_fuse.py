"""Fuse each quantized projection's dequantization into its integer matrix product.

Why: `quantize_dynamic` writes every quantized projection as ``MatMulInteger`` (int32) then
``Cast`` to float, ``Mul`` by the product of the two scales and ``Add`` of the bias: three
elementwise passes over the whole output, which ONNX Runtime's own fusion (to its
``MatMulIntegerToFloat`` contrib op) only matches when the activation scale comes from a
``DynamicQuantizeLinear``. With our static, constant activation scales it did not, and the
three passes took about 16% of the int8 encoder's time (ONNX Runtime profiler, full-size
NLLB-600M stand-in). ``MatMulIntegerToFloat`` (domain com.microsoft, in every ONNX Runtime CPU
build) computes the same ``float(sum (a - a_zp)(b - b_zp)) * a_scale * b_scale + bias`` in the
product's epilogue.

Exactness is checked, not assumed: the export validates the int8 graph against PyTorch as
before, and tests/test_int8_fuse.py compares the fused graph's hidden states with the unfused
one's (bit for bit) and checks batch invariance. Only the exact pattern is fused: the
intermediate tensors used by nothing else, the scales and zero points constants, the bias a
constant vector of the output's width (otherwise the ``Add`` stays as it is).
"""

from __future__ import annotations

from pathlib import Path

FUSED_OP = "MatMulIntegerToFloat"
CONTRIB_DOMAIN = "com.microsoft"
_FLOAT = 1  # onnx.TensorProto.FLOAT


def fuse_integer_matmuls(int8_path: Path) -> int:
    """Rewrite the graph at ``int8_path`` in place (its weights stay in their external data
    file); returns how many projections were fused."""
    import onnx

    model = onnx.load(str(int8_path), load_external_data=False)
    graph = model.graph
    producer = {out: node for node in graph.node for out in node.output}
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    for output in graph.output:
        consumers.setdefault(output.name, []).append(None)  # a graph output is never fused away
    constants = {init.name: init for init in graph.initializer}
    replaced: dict[int, object] = {}
    dropped: set[int] = set()
    for node in graph.node:
        if node.op_type == "MatMulInteger":
            match = _match(node, producer, consumers, constants)
            if match is not None:
                fused, chain = match
                replaced[id(node)] = fused
                dropped.update(id(n) for n in chain)
    if not replaced:
        return 0
    nodes = [replaced.get(id(node), node) for node in graph.node if id(node) not in dropped or id(node) in replaced]
    del graph.node[:]
    graph.node.extend(nodes)
    if not any(opset.domain == CONTRIB_DOMAIN for opset in model.opset_import):
        model.opset_import.append(onnx.helper.make_opsetid(CONTRIB_DOMAIN, 1))
    onnx.save(model, str(int8_path))
    return len(replaced)


def _only_consumer(name: str, consumers: dict, op_type: str):
    users = consumers.get(name, [])
    return users[0] if len(users) == 1 and users[0] is not None and users[0].op_type == op_type else None


def _match(matmul, producer: dict, consumers: dict, constants: dict):
    """(the fused node, the nodes it replaces) for ``MatMulInteger -> Cast(float) -> Mul(scales)
    [-> Add(bias)]``, or None when the pattern is not exactly that."""
    import onnx

    cast = _only_consumer(matmul.output[0], consumers, "Cast")
    to = None if cast is None else next((a for a in cast.attribute if a.name == "to"), None)
    if to is None or onnx.helper.get_attribute_value(to) != _FLOAT:
        return None
    mul = _only_consumer(cast.output[0], consumers, "Mul")
    if mul is None:
        return None
    scales = producer.get(next(i for i in mul.input if i != cast.output[0]))
    if scales is None or scales.op_type != "Mul" or not all(i in constants for i in scales.input) \
            or len(consumers.get(scales.output[0], [])) != 1 or len(matmul.input) != 4 \
            or not all(i in constants for i in matmul.input[1:]):
        return None
    a_scale, b_scale = scales.input
    chain, output, bias = [matmul, cast, mul, scales], mul.output[0], ""
    add = _only_consumer(mul.output[0], consumers, "Add")
    if add is not None:
        other = next(i for i in add.input if i != mul.output[0])
        width = constants[matmul.input[1]].dims[-1]
        if other in constants and list(constants[other].dims) == [width]:
            chain, output, bias = chain + [add], add.output[0], other
    inputs = [matmul.input[0], matmul.input[1], a_scale, b_scale, matmul.input[2], matmul.input[3]] + \
        ([bias] if bias else [])
    fused = onnx.helper.make_node(FUSED_OP, inputs, [output], name=f"{matmul.name}_to_float", domain=CONTRIB_DOMAIN)
    return fused, chain
