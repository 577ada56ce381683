"""The encoder with a trainable LoRA, cut at the alignment layer (reusing the export stage).

Loading, the architecture descriptions and the truncation come from ``transalign.export``: the
model trained here is exactly the one ``export`` will later load, merge and cut. The LoRA is put
on the module whose keys the export merge resolves: the M2M100 *encoder* (keys
``base_model.model.layers.N.fc1...``, like the authors' NLLB adapter) or the whole BERT-family
model (``base_model.model.encoder.layer.N...``, like their LaBSE/mBERT adapters).
"""

from __future__ import annotations

from dataclasses import dataclass

from transalign.train.gold import TrainError

# The authors' targets per architecture (fine-tune-lora.py and the released adapter configs).
LORA_TARGETS = {"m2m100": ("fc1", "fc2"), "bert": ("intermediate.dense", "output.dense")}


@dataclass
class TrainableEncoder:
    loaded: object  # transalign.export.loading.LoadedEncoder
    peft_model: object  # peft.PeftModel around loaded.encoder
    module: object  # (input_ids, attention_mask) -> hidden_states[layer], sharing peft_model's weights
    layer: int
    num_layers: int
    threshold: float
    max_tokens: int


def select_device(requested: str = "auto") -> str:
    """``auto``: CUDA when torch sees a GPU, else CPU; ``cuda`` without a GPU is an error."""
    import torch

    if requested not in ("auto", "cpu", "cuda"):
        raise TrainError(f"device {requested!r} is not supported; choose auto, cpu or cuda")
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cuda" and not torch.cuda.is_available():
        raise TrainError("device cuda was requested but torch sees no CUDA GPU (torch.cuda.is_available() is "
                         "False); use --device cpu or auto")
    return requested


def load_trainable(model: str, layer: int | None, threshold: float | None, r: int, alpha: float,
                   dropout: float, device: str) -> TrainableEncoder:
    from peft import LoraConfig, get_peft_model

    from transalign.export.architectures import family_defaults, max_tokens
    from transalign.export.graph import truncated_encoder
    from transalign.export.loading import load_encoder

    loaded = load_encoder(model)
    num_layers = int(getattr(loaded.config, loaded.arch.layers_config_key))
    defaults = family_defaults(loaded.arch, model)
    layer = defaults.layer if layer is None else layer
    if not 1 <= layer <= num_layers:
        raise TrainError(f"layer {layer} is out of range for {loaded.source}: it has {num_layers} layers, choose "
                         f"1..{num_layers} (layer 0, the embeddings, has no LoRA target below it)")
    config = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, bias="none",
                        target_modules=list(LORA_TARGETS[loaded.arch.name]), task_type="FEATURE_EXTRACTION")
    peft_model = get_peft_model(loaded.encoder, config)
    peft_model.to(device)
    # The cut model shares every parameter (and the injected LoRA layers) with peft_model.
    module = truncated_encoder(peft_model.base_model.model, loaded.arch, layer, num_layers)
    return TrainableEncoder(loaded, peft_model, module, layer, num_layers,
                            defaults.threshold if threshold is None else threshold, max_tokens(loaded.config))


def lora_state(peft_model) -> dict:
    """A detached copy of the trainable (LoRA) parameters."""
    return {name: p.detach().clone() for name, p in peft_model.named_parameters() if p.requires_grad}


def load_lora_state(peft_model, state: dict) -> None:
    import torch

    params = dict(peft_model.named_parameters())
    with torch.no_grad():
        for name, value in state.items():
            params[name].copy_(value)
