"""Fine-tuning: train a TransAlign LoRA adapter on gold word alignments (the `train` extra).

``finetune(model, gold_dirs, out, ...)`` trains a PEFT LoRA on the encoder so that the alignment
layer's similarity softmaxes put their mass on gold subword pairs, and writes an adapter
directory that ``transalign export --lora`` merges. torch, transformers and peft are imported
only when training runs: ``import transalign.train`` stays light.
"""

from __future__ import annotations

from transalign.lazy import lazy_exports

__all__ = ["FinetuneOptions", "FinetuneResult", "TrainError", "finetune", "OBJECTIVES"]

__getattr__, __dir__ = lazy_exports(__name__, {
    "FinetuneOptions": "transalign.train.loop",
    "FinetuneResult": "transalign.train.loop",
    "finetune": "transalign.train.loop",
    "OBJECTIVES": "transalign.train.objective",
    "TrainError": "transalign.train.gold",
})
