"""Cut the encoder at the alignment layer and write ONNX graphs for each precision.

Truncation keeps blocks [0, layer) and the final norm only when ``layer`` is the last one, so
the graph's ``last_hidden_state`` *is* ``hidden_states[layer]`` and nothing above it is
computed (see architectures.py). The validation step checks this against the untouched model.
"""

from __future__ import annotations

import copy
import functools
import warnings
from pathlib import Path

from transalign.export.architectures import Architecture
from transalign.export.errors import ExportError

INPUT_NAMES = ["input_ids", "attention_mask"]
OUTPUT_NAME = "hidden"
DEFAULT_OPSET = 17
# Ops kept in float32 inside the fp16 graph: normalisation and softmax reductions overflow or
# lose precision in half precision (ONNX Runtime's own recommendation for transformers).
FP16_KEEP_FP32_OPS = ["LayerNormalization", "SkipLayerNormalization", "Softmax", "ReduceMean", "Pow", "Sqrt",
                      "Erf"]


def _get_attr(module, dotted: str):
    for part in dotted.split("."):
        module = getattr(module, part)
    return module


def _set_attr(module, dotted: str, value) -> None:
    *parents, last = dotted.split(".")
    for part in parents:
        module = getattr(module, part)
    setattr(module, last, value)


def truncated_encoder(encoder, arch: Architecture, layer: int, num_layers: int):
    """A copy of ``encoder`` whose last_hidden_state equals the original's hidden_states[layer].

    The callers have refused a layer out of range with a message for users
    (architectures.check_layer, train's 1..num_layers)."""
    import torch

    assert 0 <= layer <= num_layers, (layer, num_layers)
    blocks = _get_attr(encoder, arch.blocks_attr)
    shallow = copy.copy(encoder)  # shares parameters; only the module containers are replaced
    shallow._modules = dict(encoder._modules)
    _replace_path(shallow, arch.blocks_attr, torch.nn.ModuleList(list(blocks)[:layer]))
    if arch.final_norm_attr and layer < num_layers:
        _set_attr(shallow, arch.final_norm_attr, torch.nn.Identity())
    return _hidden_only_class()(shallow).eval()


def _replace_path(root, dotted: str, value) -> None:
    """Set root.a.b.c = value, copying each intermediate module so the original is untouched."""
    parts = dotted.split(".")
    module = root
    for part in parts[:-1]:
        child = copy.copy(getattr(module, part))
        child._modules = dict(child._modules)
        setattr(module, part, child)
        module = child
    setattr(module, parts[-1], value)


@functools.cache
def _hidden_only_class():
    """The bundle's module class, defined once (on first use: torch is imported only then)."""
    import torch

    class HiddenOnly(torch.nn.Module):
        """Exposes (input_ids, attention_mask) -> last_hidden_state, the bundle's signature."""

        def __init__(self, encoder):
            super().__init__()
            self.encoder = encoder

        def forward(self, input_ids, attention_mask):
            return self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    return HiddenOnly


def export_fp32(module, sample_ids, sample_mask, path: Path, opset: int = DEFAULT_OPSET) -> None:
    """TorchScript-based torch.onnx export with dynamic batch and sequence axes."""
    import torch

    dynamic = {name: {0: "batch", 1: "seq"} for name in INPUT_NAMES + [OUTPUT_NAME]}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer warnings about python branches on shapes
        torch.onnx.export(module, (sample_ids, sample_mask), str(path), input_names=INPUT_NAMES,
                          output_names=[OUTPUT_NAME], dynamic_axes=dynamic, opset_version=opset,
                          do_constant_folding=True, dynamo=False)
    import onnx

    save_with_external_data(_with_inputs(onnx.load(str(path))), path)


def save_with_external_data(model, path: Path) -> None:
    """Weights go to ``<file>.data`` beside the graph.

    ONNX Runtime memory-maps external initializers instead of copying them out of the protobuf,
    which cuts load time and peak RSS (full-size NLLB int8 benchmark: peak RSS 2.4 GB -> 1.0 GB,
    load 8.7 s -> 3.3 s); the single-file limit of 2 GB stops mattering too.
    """
    import onnx

    data = path.with_name(path.name + ".data")
    for stale in (path, data):
        stale.unlink(missing_ok=True)
    onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                    location=data.name, size_threshold=1024)


def _with_inputs(model):
    """Declare both bundle inputs even when the traced graph does not read one.

    At layer 0 the embeddings never look at attention_mask, so the tracer drops it; the bundle
    contract (and the runtime) always feed it.
    """
    from onnx import TensorProto, helper

    present = {i.name for i in model.graph.input}
    for name in INPUT_NAMES:
        if name not in present:
            model.graph.input.append(helper.make_tensor_value_info(name, TensorProto.INT64, ["batch", "seq"]))
    return model


def ffn_out_nodes(fp32_path: Path, arch: Architecture, layer: int, blocks: int) -> list[str]:
    """Names of the FFN output projections of the last ``blocks`` blocks kept in the graph.

    Their input (after GELU/ReLU) has the largest outliers of the encoder; quantizing it per
    tensor costs the most accuracy, so int8 can keep these few MatMuls in fp32.
    """
    import onnx

    if blocks <= 0 or not arch.ffn_out_node:
        return []
    wanted = [arch.ffn_out_node.format(L=L) for L in range(max(0, layer - blocks), layer)]
    names = [n.name for n in onnx.load(str(fp32_path), load_external_data=False).graph.node]
    found = [name for name in names for suffix in wanted if name.endswith(suffix)]
    if len(found) != len(wanted):
        raise ExportError(f"could not find the FFN output MatMuls {wanted} in the exported graph (found {found}); "
                          "export with int8_fp32_blocks=0")
    return found


def convert_fp16(fp32_path: Path, out_path: Path) -> None:
    """fp16 weights and activations for the CUDA provider; norms/softmax stay fp32, I/O stays fp32.

    The converter appends the casts it inserts at the end of the node list; ONNX requires a
    topological order (ONNX Runtime sorts for itself, `onnx.reference` and the checker do not),
    so the graph is sorted before it is written.
    """
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = onnx.load(str(fp32_path))
    half = convert_float_to_float16(model, keep_io_types=True, op_block_list=FP16_KEEP_FP32_OPS)
    save_with_external_data(topologically_sorted(half), out_path)


def topologically_sorted(model):
    """``model`` with its nodes in an order where each node follows the producers of its inputs
    (stable: nodes already in order keep their relative order). A cycle or an input nothing
    produces is an `ExportError`."""
    graph = model.graph
    known = {i.name for i in graph.input} | {i.name for i in graph.initializer} | {""}
    pending, ordered = list(graph.node), []
    while pending:
        waiting = []
        for node in pending:
            if all(name in known for name in node.input):
                ordered.append(node)
                known.update(node.output)
            else:
                waiting.append(node)
        if len(waiting) == len(pending):
            missing = sorted({name for node in waiting for name in node.input if name not in known})
            raise ExportError(f"graph cannot be ordered: {len(waiting)} nodes wait for {missing[:5]}")
        pending = waiting
    del graph.node[:]
    graph.node.extend(ordered)
    return model
