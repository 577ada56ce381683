"""Fine-tuning: train a TransAlign LoRA adapter on gold word alignments (the `train` extra).

``finetune(model, gold_dirs, out, ...)`` trains a PEFT LoRA on the encoder so that the alignment
layer's similarity softmaxes put their mass on gold subword pairs, and writes an adapter
directory that ``transalign export --lora`` merges. torch, transformers and peft are imported
only when training runs: ``import transalign.train`` stays light.
"""

from __future__ import annotations

__all__ = ["FinetuneOptions", "FinetuneResult", "TrainError", "finetune", "OBJECTIVES"]

_LAZY = {
    "FinetuneOptions": "transalign.train.loop",
    "FinetuneResult": "transalign.train.loop",
    "finetune": "transalign.train.loop",
    "OBJECTIVES": "transalign.train.objective",
    "TrainError": "transalign.train.gold",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'transalign.train' has no attribute {name!r}")
