"""Load a Hugging Face checkpoint (local directory or hub id) as a float32 encoder module.

The architecture-specific part is the description's ``load`` (export/encoders.py)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from transalign.export.architectures import Architecture, architecture_for
from transalign.export.errors import ExportError


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
    encoder, roots, config = arch.load(path, raw)
    encoder.eval()
    return LoadedEncoder(arch, config, encoder, roots, _load_tokenizer(path, source), source)


def _load_tokenizer(path: str, source: str):
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError) as exc:
        raise ExportError(f"{source}: could not load its tokenizer ({exc}); a bundle needs the tokenizer files "
                          "next to the weights") from exc
