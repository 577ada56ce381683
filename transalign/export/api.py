"""`export()`: Hugging Face checkpoint (+ LoRA) -> validated, self-contained ONNX bundle."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from transalign.engine.bundle import FORMAT_VERSION, MODEL_FILES, PRECISIONS, Manifest, sha256_file
from transalign.export import graph, validation, writer
from transalign.export.architectures import architecture_for, family_defaults, max_tokens
from transalign.export.errors import ExportError, ValidationError

log = logging.getLogger("transalign.export")


@dataclass(frozen=True)
class ExportOptions:
    """What to export; validated on construction so bad values fail before any model loads."""

    model: str
    out: Path
    lora: Path | None = None
    layer: int | None = None  # None: the model family's reference layer
    threshold: float | None = None  # None: the family's reference threshold
    precisions: tuple[str, ...] = ("fp32",)
    force: bool = False
    opset: int = graph.DEFAULT_OPSET
    lora_extra_scale: float = 1.0  # benchmarks only; 1.0 is the exact adapter
    int8_fp32_blocks: int | None = None  # None: the architecture's default (graph.ffn_out_nodes)

    def __post_init__(self) -> None:
        unknown = [p for p in self.precisions if p not in PRECISIONS]
        if unknown or not self.precisions:
            raise ExportError(f"precision {', '.join(unknown) or '(none)'} is not supported; "
                              f"choose from {', '.join(PRECISIONS)}")
        if self.threshold is not None and not 0.0 <= self.threshold < 1.0:
            raise ExportError(f"threshold {self.threshold} must be in [0, 1)")
        if self.int8_fp32_blocks is not None and self.int8_fp32_blocks < 0:
            raise ExportError(f"int8_fp32_blocks {self.int8_fp32_blocks} must be >= 0")
        if self.lora_extra_scale <= 0:
            raise ExportError(f"lora_extra_scale {self.lora_extra_scale} must be positive")


def export(model: str, out: str | Path, lora: str | Path | None = None, layer: int | None = None,
           precisions=("fp32",), force: bool = False, threshold: float | None = None,
           lora_extra_scale: float = 1.0, int8_fp32_blocks: int | None = None) -> Manifest:
    """Export ``model`` (local dir or hub id) to a bundle at ``out`` and return its manifest.

    Nothing is written unless the fp32 graph reproduces PyTorch's hidden_states[layer].
    ``int8_fp32_blocks``: the int8 graph keeps the FFN output projection of this many final
    blocks in fp32 (None: 2 for BERT-family encoders, where it was measured, 0 for NLLB).
    """
    if isinstance(precisions, str):
        precisions = tuple(p.strip() for p in precisions.split(",") if p.strip())
    options = ExportOptions(model=str(model), out=Path(out), lora=Path(lora) if lora else None, layer=layer,
                            threshold=threshold, precisions=tuple(dict.fromkeys(precisions)), force=force,
                            lora_extra_scale=lora_extra_scale, int8_fp32_blocks=int8_fp32_blocks)
    return run_export(options)


def run_export(options: ExportOptions) -> Manifest:
    from transalign.export.lora import load_adapter, merge_adapter
    from transalign.export.loading import load_encoder, read_config

    writer.check_output(options.out, options.force)
    raw, source = read_config(options.model)
    arch = architecture_for(raw.get("model_type"), raw.get("architectures"), source)
    num_layers = int(raw[arch.layers_config_key])
    defaults = family_defaults(arch, options.model)
    layer = defaults.layer if options.layer is None else options.layer
    if not 0 <= layer <= num_layers:
        raise ExportError(f"layer {layer} is out of range for {source}: it has {num_layers} layers, "
                          f"choose 0..{num_layers} (0 = embeddings, {num_layers} = last layer)")
    adapter = load_adapter(options.lora) if options.lora else None
    loaded = load_encoder(options.model)
    if adapter is not None:
        merge_adapter(loaded.lora_roots, adapter, options.lora_extra_scale)
    staging = writer.staging_dir(options.out)
    try:
        manifest = _build(options, loaded, layer, num_layers, defaults, adapter, staging)
        writer.finish(staging, options.out, manifest)
    except BaseException:
        writer.discard(staging)
        raise
    return manifest


def _build(options, loaded, layer, num_layers, defaults, adapter, staging: Path) -> Manifest:
    from transalign.export.tokenizer_spec import spec_from_hf_tokenizer

    ids, mask = validation.validation_batch(loaded.tokenizer, loaded.arch.name, max_tokens(loaded.config))
    reference = validation.reference_hidden(loaded.encoder, ids, mask, layer)
    module = graph.truncated_encoder(loaded.encoder, loaded.arch, layer, num_layers)
    fp32_path = staging / MODEL_FILES["fp32"]
    import torch

    graph.export_fp32(module, torch.from_numpy(ids), torch.from_numpy(mask), fp32_path, options.opset)
    report = {"fp32": validation.compare("fp32", reference, validation.run_onnx(fp32_path, ids, mask), mask)}
    problems = validation.fp32_problems(report["fp32"])
    if problems:
        raise ValidationError(problems)
    keep = []
    if "int8" in options.precisions:
        blocks = loaded.arch.int8_fp32_blocks if options.int8_fp32_blocks is None else options.int8_fp32_blocks
        keep = graph.ffn_out_nodes(fp32_path, loaded.arch, layer, blocks)
    report.update(_derived_precisions(options, fp32_path, staging, reference, ids, mask, keep))
    if "fp32" not in options.precisions:
        fp32_path.unlink()
    spec = spec_from_hf_tokenizer(loaded.tokenizer, staging)
    files = {p.name: sha256_file(p) for p in sorted(staging.iterdir()) if p.is_file()}
    precisions = {p: {"file": MODEL_FILES[p], "validation": report[p].to_json()} for p in options.precisions}
    if "int8" in precisions:
        precisions["int8"]["fp32_nodes"] = keep
    return Manifest(
        architecture=loaded.arch.name, base_model=loaded.source, layer=layer, num_layers=num_layers,
        hidden_size=int(reference.shape[-1]),
        default_threshold=defaults.threshold if options.threshold is None else options.threshold,
        max_positions=max_tokens(loaded.config), tokenizer=spec, precisions=precisions, files=files,
        opset=options.opset, tools=_tool_versions(),
        lora=adapter.describe(options.lora_extra_scale) if adapter else None, family=defaults.family,
    )


def _derived_precisions(options, fp32_path, staging, reference, ids, mask, keep_fp32) -> dict:
    report = {}
    if "int8" in options.precisions:
        path = staging / MODEL_FILES["int8"]
        graph.quantize_int8(fp32_path, path, keep_fp32)
        report["int8"] = validation.compare("int8", reference, validation.run_onnx(path, ids, mask), mask)
        log.info("int8 deviation: %s", report["int8"])
    if "fp16" in options.precisions:
        path = staging / MODEL_FILES["fp16"]
        graph.convert_fp16(fp32_path, path)
        report["fp16"] = _validate_fp16(path, reference, ids, mask)
    return report


def _validate_fp16(path, reference, ids, mask):
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        return validation.not_validated("fp16", "not validated: no CUDA execution provider on the exporting "
                                                "machine (fp16 is meant for CUDA)")
    hidden = validation.run_onnx(path, ids, mask, provider="CUDAExecutionProvider")
    return validation.compare("fp16", reference, hidden, mask)


def _tool_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    versions = {"format_version": str(FORMAT_VERSION)}
    for package in ("transalign", "torch", "transformers", "peft", "onnx", "onnxruntime", "optimum-onnx"):
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            versions[package] = "not installed"
    return versions
