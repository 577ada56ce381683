"""Load the float32 encoder of each architecture (named by its `Architecture.load`).

Each loader takes a checkpoint path and its raw config.json and returns
``(encoder module, LoRA roots, transformers config)``. torch and transformers are imported only
when a loader runs.
"""

from __future__ import annotations

from pathlib import Path

from transalign.export.errors import ExportError
from transalign.export.quiet import quiet_logger

__all__ = ["load_bert", "load_m2m100"]


def load_m2m100(path: str, raw: dict):
    """M2M100/NLLB: the encoder of a full model, or a bare ``M2M100Encoder`` checkpoint."""
    import torch
    from transformers import AutoConfig, M2M100Model
    from transformers.models.m2m_100.modeling_m2m_100 import M2M100Encoder

    config = AutoConfig.from_pretrained(path, attn_implementation="eager")
    if "M2M100Encoder" in (raw.get("architectures") or []):
        encoder = M2M100Encoder(config)
        _load_bare_encoder_weights(encoder, path)
    else:
        with quiet_logger("transformers"):
            model, info = M2M100Model.from_pretrained(path, dtype=torch.float32, attn_implementation="eager",
                                                      output_loading_info=True)
        _refuse_missing(path, [k for k in info["missing_keys"] if k.startswith("encoder.")])
        encoder = model.get_encoder()
        del model.decoder  # the decoder is never needed; free its memory early
    encoder.float()
    return encoder, [("encoder", encoder)], config


def _load_bare_encoder_weights(encoder, path: str) -> None:
    """A checkpoint holding only encoder weights, keyed with or without a model/encoder prefix."""
    from safetensors.torch import load_file

    file = Path(path) / "model.safetensors"
    if not file.is_file():
        raise ExportError(f"{path}: bare M2M100Encoder checkpoint without model.safetensors")
    state = load_file(str(file))
    for prefix in ("model.encoder.", "encoder.", ""):
        stripped = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        if stripped:
            missing, unexpected = encoder.load_state_dict(stripped, strict=False)
            missing = [m for m in missing if "embed_positions" not in m]  # sinusoidal, not stored
            if not missing and not unexpected:
                return
    raise ExportError(f"{file}: weights do not match an M2M100 encoder of this config")


def load_bert(path: str, raw: dict):
    """BERT family (mBERT, LaBSE, XLM-R, e5): the model without its pooler."""
    import torch
    from transformers import AutoConfig, AutoModel

    config = AutoConfig.from_pretrained(path)
    with quiet_logger("transformers"):  # "pooler weights not used" is expected: the pooler is never run
        model, info = AutoModel.from_pretrained(path, dtype=torch.float32, attn_implementation="eager",
                                                add_pooling_layer=False, output_loading_info=True)
    _refuse_missing(path, info["missing_keys"])
    return model, [("model", model)], config


def _refuse_missing(path: str, missing: list[str]) -> None:
    """Weights the checkpoint lacks would be random: never export that silently."""
    if missing:
        shown = ", ".join(sorted(missing)[:8]) + (f" and {len(missing) - 8} more" if len(missing) > 8 else "")
        raise ExportError(f"{path}: the checkpoint lacks {len(missing)} encoder weight(s) ({shown}); "
                          "they would be randomly initialised. Is this the right checkpoint?")
