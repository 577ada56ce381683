"""Merge a PEFT LoRA adapter into an encoder's weights: W <- W + scale * B @ A.

The authors' adapters were trained with PEFT on the *encoder* module (NLLB: keys
``base_model.model.layers.N.fc1.lora_A.weight``) or on a whole BertModel
(``base_model.model.encoder.layer.N...``). Rather than trusting names, we try each candidate
root module and require that *every* adapter pair resolves to an ``nn.Linear`` of matching
shape; otherwise nothing is merged and the error lists what did not fit.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from transalign.engine.bundle import sha256_file
from transalign.export.errors import ExportError

_PREFIX = "base_model.model."
_WEIGHT_FILES = ("adapter_model.safetensors", "adapter_model.bin")


@dataclass(frozen=True)
class LoraAdapter:
    path: Path
    weights_file: Path
    config: dict
    pairs: dict[str, tuple]  # module path -> (A [r, in], B [out, r]) as torch tensors

    def scale_for(self, module_path: str) -> float:
        """alpha / r (or alpha / sqrt(r) with rsLoRA), honouring per-module patterns."""
        r = self.config.get("r", 8)
        alpha = self.config.get("lora_alpha", 8)
        for pattern, value in (self.config.get("rank_pattern") or {}).items():
            if module_path.endswith(pattern):
                r = value
        for pattern, value in (self.config.get("alpha_pattern") or {}).items():
            if module_path.endswith(pattern):
                alpha = value
        return alpha / math.sqrt(r) if self.config.get("use_rslora") else alpha / r

    def describe(self, extra_scale: float) -> dict:
        return {
            "path": str(self.path),
            "sha256": sha256_file(self.weights_file),
            "r": self.config.get("r"),
            "alpha": self.config.get("lora_alpha"),
            "target_modules": self.config.get("target_modules"),
            "base_model_name_or_path": self.config.get("base_model_name_or_path"),
            "merged_modules": len(self.pairs),
            "extra_scale": extra_scale,
        }


def load_adapter(path: str | Path) -> LoraAdapter:
    """Read adapter_config.json + weights and pair up lora_A / lora_B per module."""
    root = Path(path)
    config_file = root / "adapter_config.json"
    if not config_file.is_file():
        raise ExportError(f"LoRA adapter {root}: adapter_config.json not found; "
                          "--lora expects a PEFT adapter directory (adapter_config.json + adapter_model.safetensors)")
    config = json.loads(config_file.read_text(encoding="utf-8"))
    _check_supported(config, config_file)
    weights_file = next((root / n for n in _WEIGHT_FILES if (root / n).is_file()), None)
    if weights_file is None:
        raise ExportError(f"LoRA adapter {root}: none of {', '.join(_WEIGHT_FILES)} found")
    tensors = _read_tensors(weights_file)
    return LoraAdapter(root, weights_file, config, _pair(tensors, weights_file))


def _check_supported(config: dict, source: Path) -> None:
    if config.get("peft_type", "LORA") != "LORA":
        raise ExportError(f"{source}: peft_type {config.get('peft_type')!r} is not supported; only LORA adapters merge")
    for flag in ("use_dora", "fan_in_fan_out"):
        if config.get(flag):
            raise ExportError(f"{source}: {flag}=true is not supported by the merge")
    if config.get("bias", "none") != "none" or config.get("lora_bias"):
        raise ExportError(f"{source}: adapters with trained biases are not supported (bias={config.get('bias')!r})")


def _read_tensors(weights_file: Path) -> dict:
    import torch

    if weights_file.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(weights_file))
    return torch.load(weights_file, map_location="cpu", weights_only=True)


def _pair(tensors: dict, source: Path) -> dict[str, tuple]:
    halves: dict[str, dict[str, object]] = {}
    for key, value in tensors.items():
        name = key[len(_PREFIX):] if key.startswith(_PREFIX) else key
        for half in ("lora_A", "lora_B"):
            marker = f".{half}."
            if marker in name:
                module, _, rest = name.partition(marker)
                if rest not in ("weight", "default.weight"):
                    raise ExportError(f"{source}: unexpected tensor {key!r}")
                halves.setdefault(module, {})[half] = value
                break
        else:
            raise ExportError(f"{source}: tensor {key!r} is not a LoRA A/B weight; cannot merge it")
    incomplete = [m for m, h in halves.items() if len(h) != 2]
    if incomplete:
        raise ExportError(f"{source}: modules with only one of lora_A/lora_B: {', '.join(sorted(incomplete)[:5])}")
    if not halves:
        raise ExportError(f"{source}: the adapter holds no LoRA weights")
    return {m: (h["lora_A"], h["lora_B"]) for m, h in halves.items()}


def merge_adapter(roots: list[tuple[str, object]], adapter: LoraAdapter, extra_scale: float = 1.0) -> str:
    """Merge into the first candidate root where every adapter module fits; return its name.

    ``roots`` are (name, nn.Module) candidates, e.g. [("encoder", enc), ("model", model)].
    ``extra_scale`` multiplies the adapter's contribution (1.0 = exact; benchmarks record it).
    """
    import torch

    problems_by_root = {}
    for root_name, root in roots:
        modules = dict(root.named_modules())
        problems = _fit_problems(modules, adapter)
        if not problems:
            with torch.no_grad():
                for path, (a, b) in adapter.pairs.items():
                    weight = modules[path].weight
                    delta = (b.double() @ a.double()) * (adapter.scale_for(path) * extra_scale)
                    weight.copy_((weight.double() + delta).to(weight.dtype))
            return root_name
        problems_by_root[root_name] = problems
    lines = [f"{name}: {'; '.join(p[:3])}{' ...' if len(p) > 3 else ''} ({len(p)} problems)"
             for name, p in problems_by_root.items()]
    raise ExportError(f"LoRA adapter {adapter.path} does not fit this model (nothing was merged):\n  "
                      + "\n  ".join(lines) + "\n  is the adapter made for another model or size?")


def _fit_problems(modules: dict, adapter: LoraAdapter) -> list[str]:
    import torch

    problems = []
    for path, (a, b) in sorted(adapter.pairs.items()):
        module = modules.get(path)
        if not isinstance(module, torch.nn.Linear):
            problems.append(f"no linear layer {path!r}")
            continue
        out_features, in_features = module.weight.shape
        if a.dim() != 2 or b.dim() != 2 or a.shape[1] != in_features or b.shape[0] != out_features \
                or a.shape[0] != b.shape[1]:
            problems.append(f"{path}: A {tuple(a.shape)} / B {tuple(b.shape)} do not fit weight "
                            f"{tuple(module.weight.shape)}")
    return problems
