"""Declarative description of each supported encoder architecture.

An `Architecture` says how to load its encoder, where the transformer blocks live, which final
norm (if any) belongs to the last hidden state, how its reference tokenizer is driven and
turned into the bundle's tokenizer, how long its position table is, and the reference defaults
of its model family. Code elsewhere reads these facts instead of testing the architecture's name. Truncating an encoder at layer L is then generic: keep blocks [0, L) and keep
the final norm only when L is the last layer. That reproduces ``hidden_states[L]`` of
transformers exactly: for M2M100/NLLB, index num_layers is the output *after* the encoder's
final layer_norm and smaller indices are raw block outputs; for BERT-family (post-LN blocks)
every index is a block output and there is no final norm.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from transalign.export import encoders


@dataclass(frozen=True)
class FamilyDefaults:
    """Reference settings of one model family (DESIGN.md; the paper's configurations). The
    extraction (method, word level, threshold) is the bundle's default unless `export` is told
    otherwise or `tune --write` replaces it with one measured on gold links."""

    family: str
    layer: int
    threshold: float
    method: str = "softmax"
    word_level: str = "any"


@dataclass(frozen=True)
class Architecture:
    name: str  # manifest "architecture"
    model_types: tuple[str, ...]  # config.model_type values handled
    hf_classes: tuple[str, ...]  # config.architectures values accepted
    blocks_attr: str  # attribute path of the ModuleList of blocks, relative to the encoder
    final_norm_attr: str | None  # final norm applied after the last block, if any
    layers_config_key: str  # config key holding the number of blocks
    tokenizer_kind: str  # the bundle's TokenizerSpec.kind (export/tokenizer_spec.py builds it)
    # (checkpoint path, raw config.json) -> (encoder module, LoRA roots, transformers config)
    load: Callable[[str, dict], tuple]
    # the reference tokenizer is told each sentence's language (``tokenizer.src_lang``, NLLB)
    tokenizer_takes_lang: bool = False
    # model types whose positions start at pad_token_id + 1 in a table of max_position_embeddings
    # rows (XLM-R); see max_tokens
    positions_after_padding: tuple[str, ...] = ()
    ffn_out_node: str = ""  # ONNX node name suffix of block {L}'s FFN output projection
    # int8: how many final blocks keep that projection in fp32 by default (see graph.ffn_out_nodes)
    int8_fp32_blocks: int = 0


M2M100 = Architecture(
    name="m2m100",
    model_types=("m2m_100",),
    hf_classes=("M2M100ForConditionalGeneration", "M2M100Model", "M2M100Encoder"),
    blocks_attr="layers",
    final_norm_attr="layer_norm",
    layers_config_key="encoder_layers",
    tokenizer_kind="sentencepiece-nllb",
    load=encoders.load_m2m100,
    tokenizer_takes_lang=True,
    ffn_out_node="/layers.{L}/fc2/MatMul",
    int8_fp32_blocks=0,  # not measured on real NLLB weights (none offline); all-int8 is fastest
)

BERT = Architecture(
    name="bert",
    model_types=("bert", "xlm-roberta"),
    hf_classes=("BertModel", "BertForMaskedLM", "BertForPreTraining", "XLMRobertaModel",
                "XLMRobertaForMaskedLM", "BertForSequenceClassification"),
    blocks_attr="encoder.layer",
    final_norm_attr=None,
    layers_config_key="num_hidden_layers",
    tokenizer_kind="hf-tokenizers",
    load=encoders.load_bert,
    positions_after_padding=("xlm-roberta",),
    ffn_out_node="/layer.{L}/output/dense/MatMul",
    # multilingual-e5-small, csen gold: all-int8 moves AER by +0.0133, these two in fp32 by +0.0029
    int8_fp32_blocks=2,
)

ARCHITECTURES = (M2M100, BERT)

NLLB = FamilyDefaults("nllb", 12, 0.001)
MBERT = FamilyDefaults("mbert", 8, 0.001)
LABSE = FamilyDefaults("labse", 6, 0.1)
E5 = FamilyDefaults("multilingual-e5", 6, 0.001)
# (substring of the model id, architecture, defaults); first match wins.
_FAMILIES = (
    ("labse", "bert", LABSE),
    ("bert-base-multilingual", "bert", MBERT),
    ("multilingual-e5", "bert", E5),
    ("e5-small", "bert", E5),
    ("nllb", "m2m100", NLLB),
)
# An unrecognised BERT-family model gets mBERT's settings but is not labelled mBERT.
_DEFAULT_BY_ARCH = {"m2m100": NLLB, "bert": FamilyDefaults("bert", MBERT.layer, MBERT.threshold)}


def family_defaults(arch: Architecture, model_id: str) -> FamilyDefaults:
    """The reference layer/threshold for a model, recognised by its id; else the arch default.

    Only the last path component counts (``facebook/nllb-200-distilled-600M``,
    ``/models/LaBSE``): a directory that merely sits under ``.../nllb/`` is not an NLLB.
    """
    lowered = model_id.rstrip("/").replace("\\", "/").rsplit("/", 1)[-1].lower()
    for needle, arch_name, defaults in _FAMILIES:
        if needle in lowered and arch.name == arch_name:
            return defaults
    return _DEFAULT_BY_ARCH[arch.name]


def supported_description() -> str:
    return ", ".join(f"{a.name} (model_type {'/'.join(a.model_types)}: {', '.join(a.hf_classes)})"
                     for a in ARCHITECTURES)


def architecture_for(model_type: str | None, classes: list[str] | None, source: str):
    """Pick the architecture for a config, or explain what is supported."""
    for arch in ARCHITECTURES:
        if model_type in arch.model_types:
            return arch
    from transalign.export.errors import ExportError

    raise ExportError(f"{source}: unsupported architecture (model_type={model_type!r}, "
                      f"architectures={classes!r}); supported: {supported_description()}")


def check_layer(layer: int, num_layers: int, source: str) -> None:
    """Refuse a layer outside 0..num_layers (0 = embeddings), before any model is loaded."""
    if not 0 <= layer <= num_layers:
        from transalign.export.errors import ExportError

        raise ExportError(f"layer {layer} is out of range for {source}: it has {num_layers} layers, "
                          f"choose 0..{num_layers} (0 = embeddings, {num_layers} = last layer)")


def max_tokens(config) -> int:
    """Longest token sequence (specials included) the position table supports.

    M2M100 positions run from padding_idx + 1 over a table of max_position_embeddings + 2 rows;
    XLM-R positions also start at padding_idx + 1 but the table has only max_position_embeddings
    rows (`Architecture.positions_after_padding`); BERT positions start at 0.
    """
    arch = architecture_for(config.model_type, None, "config")
    if config.model_type in arch.positions_after_padding:
        return config.max_position_embeddings - config.pad_token_id - 1
    return config.max_position_embeddings
