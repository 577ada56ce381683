"""`export_bundle()`: Hugging Face checkpoint (+ LoRA) -> validated, self-contained ONNX bundle."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from transalign.engine.bundle import FORMAT_VERSION, MODEL_FILES, PRECISIONS, Manifest, sha256_file
from transalign.export import graph, quantize, validation, writer
from transalign.export.architectures import FamilyDefaults, architecture_for, check_layer, family_defaults, max_tokens
from transalign.export.errors import ExportError, ValidationError

log = logging.getLogger("transalign.export")
AUTO = "auto"


@dataclass(frozen=True)
class ExportOptions:
    """What to export; validated on construction so bad values fail before any model loads."""

    model: str
    out: Path
    lora: Path | None = None
    layer: int | None = None  # None: the model family's reference layer
    threshold: float | None = None  # None: the family's reference threshold
    method: str | None = None  # the bundle's default extraction method; None: the family's (softmax)
    word_level: str | None = None  # None: the family's (any)
    precisions: tuple[str, ...] = ("fp32",)
    force: bool = False
    opset: int = graph.DEFAULT_OPSET
    lora_extra_scale: float = 1.0  # benchmarks only; 1.0 is the exact adapter
    int8_fp32_blocks: int | None = None  # None: the architecture's default (graph.ffn_out_nodes)
    calibration: Path | None = None  # int8 calibration text (None: the built-in sentences)
    int8_smoothing: float | str | None = "auto"  # "auto": the better of 0.5 and none; None: no smoothing

    def __post_init__(self) -> None:
        unknown = [p for p in self.precisions if p not in PRECISIONS]
        if unknown or not self.precisions:
            raise ExportError(f"precision {', '.join(unknown) or '(none)'} is not supported; "
                              f"choose from {', '.join(PRECISIONS)}")
        if self.threshold is not None and (isinstance(self.threshold, bool) or not 0.0 <= self.threshold < 1.0):
            raise ExportError(f"threshold {self.threshold} must be in [0, 1)")
        from transalign.kernels.names import METHODS, WORD_LEVELS

        if self.method is not None and self.method not in METHODS:
            raise ExportError(f"method {self.method!r} is not one of {', '.join(METHODS)}")
        if self.word_level is not None and self.word_level not in WORD_LEVELS:
            raise ExportError(f"word level {self.word_level!r} is not one of {', '.join(WORD_LEVELS)}")
        if self.threshold is not None and self.method not in (None, "softmax"):
            raise ExportError(f"a threshold applies to method softmax only, not to {self.method}; leave it out")
        if self.int8_fp32_blocks is not None and self.int8_fp32_blocks < 0:
            raise ExportError(f"int8_fp32_blocks {self.int8_fp32_blocks} must be >= 0")
        if self.int8_smoothing not in (None, AUTO) and not (isinstance(self.int8_smoothing, (int, float))
                                                             and 0.0 <= self.int8_smoothing <= 1.0):
            raise ExportError(f"int8_smoothing {self.int8_smoothing!r} must be 'auto', a number in [0, 1] or None "
                              "(no smoothing)")
        if self.calibration is not None and not self.calibration.is_file():
            raise ExportError(f"calibration file {self.calibration} does not exist")
        if self.lora_extra_scale <= 0:
            raise ExportError(f"lora_extra_scale {self.lora_extra_scale} must be positive")


@dataclass(frozen=True)
class _Settled:
    """What `run_export` settles before the model is loaded: the layer, the family's defaults
    and the adapter to merge."""

    layer: int
    num_layers: int
    defaults: FamilyDefaults
    adapter: object | None  # export.lora adapter, None without --lora
    base_model: str  # the model as the user named it (a hub id stays a hub id when read from the cache)


def export_bundle(model: str, out: str | Path, lora: str | Path | None = None, layer: int | None = None,
           precisions=("fp32",), force: bool = False, threshold: float | None = None,
           method: str | None = None, word_level: str | None = None, lora_extra_scale: float = 1.0,
           int8_fp32_blocks: int | None = None, calibration: str | Path | None = None,
           int8_smoothing: float | str | None = "auto") -> Manifest:
    """Export ``model`` (local dir or hub id) to a bundle at ``out`` and return its manifest.

    Nothing is written unless the fp32 graph reproduces PyTorch's hidden_states[layer].
    ``method``, ``word_level``, ``threshold``: the bundle's default extraction (None: the family's
    reference, the paper's softmax / any / 0.001 for NLLB); `transalign tune --write` can replace
    it later with a setting measured on gold links.
    ``int8_fp32_blocks``: the int8 graph keeps the FFN output projection of this many final
    blocks in fp32 (None: 2 for BERT-family encoders, where it was measured, 0 for NLLB).
    ``calibration``: a text file (``TEXT`` or ``CODE<TAB>TEXT`` per line) whose activation ranges
    fix the int8 graph's static scales (default: built-in multilingual sentences);
    ``int8_smoothing``: SmoothQuant strength alpha, None (off) or "auto" (the default: builds 0.5
    and off, keeps the one closer to PyTorch). See export/quantize.py.
    """
    if isinstance(precisions, str):
        precisions = tuple(p.strip() for p in precisions.split(",") if p.strip())
    options = ExportOptions(model=str(model), out=Path(out), lora=Path(lora) if lora else None, layer=layer,
                            threshold=threshold, method=method, word_level=word_level,
                            precisions=tuple(dict.fromkeys(precisions)), force=force,
                            lora_extra_scale=lora_extra_scale, int8_fp32_blocks=int8_fp32_blocks,
                            calibration=Path(calibration) if calibration else None, int8_smoothing=int8_smoothing)
    return run_export(options)


# import name -> what it is for; all come with the `export` extra
_EXPORT_MODULES = {"torch": "PyTorch", "transformers": "transformers", "onnx": "onnx", "safetensors": "safetensors"}
EXTRA_HINT = "pip install 'transalign[export]'"


def check_export_extra(lora: bool = False) -> None:
    """Stop before any work, naming every missing module, when the `export` extra is absent
    (the runtime install has none of them); without this the first import deep in the export
    fails with a bare ModuleNotFoundError."""
    from importlib.util import find_spec

    modules = dict(_EXPORT_MODULES, **({"peft": "peft (LoRA adapters)"} if lora else {}))
    missing = [name for name in modules if find_spec(name) is None]
    if missing:
        raise ExportError(f"export needs the `export` extra, and {', '.join(missing)} "
                          f"{'is' if len(missing) == 1 else 'are'} not installed: {EXTRA_HINT}")


def run_export(options: ExportOptions) -> Manifest:
    check_export_extra(lora=options.lora is not None)
    from transalign.export.hub import locate
    from transalign.export.lora import load_adapter, merge_adapter
    from transalign.export.loading import load_encoder, read_config

    writer.check_output(options.out, options.force)
    location = locate(options.model)
    raw, source = read_config(location.load_from)
    arch = architecture_for(raw.get("model_type"), raw.get("architectures"), source)
    num_layers = int(raw[arch.layers_config_key])
    defaults = family_defaults(arch, options.model)
    layer = defaults.layer if options.layer is None else options.layer
    check_layer(layer, num_layers, source)
    settled = _Settled(layer, num_layers, defaults, load_adapter(options.lora) if options.lora else None,
                       location.name)
    loaded = load_encoder(location.load_from)
    if settled.adapter is not None:
        merge_adapter(loaded.lora_roots, settled.adapter, options.lora_extra_scale)
    staging = writer.staging_dir(options.out)
    try:
        manifest = _build(options, settled, loaded, staging)
        writer.finish(staging, options.out, manifest)
    except BaseException:
        writer.discard(staging)
        raise
    return manifest


def _build(options: ExportOptions, settled: _Settled, loaded, staging: Path) -> Manifest:
    from transalign.export.spm_model import with_sentencepiece_model
    from transalign.export.tokenizer_spec import spec_from_hf_tokenizer

    layer, num_layers, defaults, adapter = settled.layer, settled.num_layers, settled.defaults, settled.adapter

    ids, mask = validation.validation_batch(loaded.tokenizer, loaded.arch, max_tokens(loaded.config))
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
    int8_facts = {}
    if "int8" in options.precisions:
        int8_facts, report["int8"] = _int8(options, loaded, fp32_path, staging, keep, (reference, ids, mask))
    if "fp16" in options.precisions:
        path = staging / MODEL_FILES["fp16"]
        graph.convert_fp16(fp32_path, path)
        report["fp16"] = _validate_fp16(path, reference, ids, mask)
    problems = [p for name in ("int8", "fp16") if name in report for p in validation.derived_problems(report[name])]
    if problems:
        raise ValidationError(problems)
    vocab_size = _vocab_size(fp32_path)
    if "fp32" not in options.precisions:
        fp32_path.unlink()
    spec = spec_from_hf_tokenizer(loaded.tokenizer, staging, loaded.arch.tokenizer_kind)
    spec = with_sentencepiece_model(spec, staging)  # XLM-R family: the C library's tokenizer model
    files = {p.name: sha256_file(p) for p in sorted(staging.iterdir()) if p.is_file()}
    precisions = {p: {"file": MODEL_FILES[p], "validation": report[p].to_json()} for p in options.precisions}
    if "int8" in precisions:
        precisions["int8"].update(fp32_nodes=keep, **int8_facts)
    return Manifest(
        architecture=loaded.arch.name, base_model=settled.base_model, layer=layer, num_layers=num_layers,
        hidden_size=int(reference.shape[-1]),
        default_threshold=defaults.threshold if options.threshold is None else options.threshold,
        default_method=defaults.method if options.method is None else options.method,
        default_word_level=defaults.word_level if options.word_level is None else options.word_level,
        max_positions=max_tokens(loaded.config), tokenizer=spec, precisions=precisions, files=files,
        opset=options.opset, tools=_tool_versions(),
        lora=adapter.describe(options.lora_extra_scale) if adapter else None, family=defaults.family,
        vocab_size=vocab_size,
    )


def _vocab_size(graph_path: Path) -> int:
    """Rows of the exported graph's token table, as the runtime's manifest check reads them."""
    from transalign.engine.graph_facts import graph_facts

    vocab = graph_facts(graph_path).vocab_size
    if vocab is None:
        raise ExportError(f"{graph_path.name}: no token-embedding table gathered with input_ids was found in the "
                          "exported graph; the runtime could not check token ids against it")
    return vocab


def _int8(options, loaded, fp32_path: Path, staging: Path, keep: list[str], check) -> tuple[dict, object]:
    """The static int8 graph (export/quantize.py), calibrated on the chosen text.

    With ``int8_smoothing="auto"`` (the default) it is built with smoothing alpha 0.5 and
    without, and the one closer to PyTorch on the validation batch (mean token cosine) is kept:
    smoothing made real e5-small much better (csen AER 0.3554 vs 0.3787) but tiny random XLM-R
    worse (mean cosine 0.89 vs 0.99). Each candidate is built in its own scratch directory,
    since a graph names its external-data file.
    """
    import shutil

    import numpy as np

    if options.calibration is None:
        sentences, source = validation.VALIDATION_SENTENCES + validation.CALIBRATION_SENTENCES, "built-in"
    else:
        sentences, source = validation.read_calibration_file(options.calibration), str(options.calibration)
    rows = validation.token_rows(loaded.tokenizer, loaded.arch, sentences, max_tokens(loaded.config))
    batches = [np.asarray(r, np.int64) for r in rows]
    reference, ids, mask = check
    alphas = (quantize.DEFAULT_SMOOTH_ALPHA, None) if options.int8_smoothing == AUTO else (options.int8_smoothing,)
    name = MODEL_FILES["int8"]
    built = []
    for k, alpha in enumerate(alphas):
        scratch = staging / f".int8-candidate-{k}"
        scratch.mkdir()
        facts = quantize.quantize_static_int8(fp32_path, scratch / name, keep, batches, alpha)
        built.append((validation.compare("int8", reference, validation.run_onnx(scratch / name, ids, mask), mask),
                      facts, scratch))
    deviation, facts, chosen = max(built, key=lambda item: item[0].mean_cosine)
    for path in chosen.iterdir():
        path.replace(staging / path.name)
    for _, _, scratch in built:
        shutil.rmtree(scratch)
    if len(built) > 1:
        facts["smoothing_candidates"] = {str(f["smoothing_alpha"]): d.mean_cosine for d, f, _ in built}
    log.info("int8: static activation scales from %d calibration sentences (%s), smoothing %s",
             len(rows), source, facts["smoothing_alpha"])
    return {**facts, "calibration": source if options.calibration is None else sha256_file(options.calibration)}, \
        deviation


def _validate_fp16(path, reference, ids, mask):
    """On CUDA where available, else on CPU and in true float16 (validation.validate_fp16)."""
    return validation.validate_fp16(path, reference, ids, mask)


def _tool_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    versions = {"format_version": str(FORMAT_VERSION)}
    for package in ("transalign", "torch", "transformers", "peft", "onnx", "onnxruntime"):
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            versions[package] = "not installed"
    return versions
