"""Load a Hugging Face checkpoint (local directory or hub id) as a float32 encoder module."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from transalign.export.architectures import Architecture, architecture_for
from transalign.export.errors import ExportError
from transalign.export.quiet import quiet_logger


@dataclass
class LoadedEncoder:
    arch: Architecture
    config: object  # transformers PretrainedConfig
    encoder: object  # nn.Module: the encoder whose last_hidden_state we export
    lora_roots: list  # (name, module) candidates for adapter key resolution
    tokenizer: object  # transformers tokenizer (fast when available)
    source: str


def _looks_local(model: str) -> bool:
    return model.startswith((".", "/", "~")) or Path(model).exists() or model.count("/") > 1


def read_config(model: str) -> tuple[dict, str]:
    """The raw config.json of a local dir (or of a hub id via transformers), with its source."""
    path = Path(model).expanduser()
    if path.is_dir():
        file = path / "config.json"
        if not file.is_file():
            raise ExportError(f"model directory {path} has no config.json; expected a Hugging Face checkpoint")
        return json.loads(file.read_text(encoding="utf-8")), str(path)
    if _looks_local(model):
        raise ExportError(f"model directory {path} does not exist")
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(model).to_dict(), model
    except OSError as exc:
        raise ExportError(f"could not load {model!r} from a local directory or the Hugging Face hub: {exc}") from exc


def load_encoder(model: str) -> LoadedEncoder:
    raw, source = read_config(model)
    arch = architecture_for(raw.get("model_type"), raw.get("architectures"), source)
    path = str(Path(model).expanduser()) if Path(model).expanduser().is_dir() else model
    if arch.name == "m2m100":
        encoder, roots, config = _load_m2m100(path, raw)
    else:
        encoder, roots, config = _load_bert(path)
    encoder.eval()
    return LoadedEncoder(arch, config, encoder, roots, _load_tokenizer(path, source), source)


def _load_m2m100(path: str, raw: dict):
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


def _load_bert(path: str):
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


def _load_tokenizer(path: str, source: str):
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError) as exc:
        raise ExportError(f"{source}: could not load its tokenizer ({exc}); a bundle needs the tokenizer files "
                          "next to the weights") from exc
