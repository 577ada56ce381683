"""Write the trained adapter: a PEFT directory (adapter_config.json + adapter_model.safetensors)
that ``peft.PeftModel.from_pretrained`` and ``transalign export --lora`` load, plus
``training.json`` (settings, per-epoch losses and dev scores). Written into a hidden staging
directory and renamed into place last, so an interrupted run never leaves a complete-looking
adapter."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from transalign.outputs import replace_directory
from transalign.train.gold import TrainError

TRAINING_JSON = "training.json"


def check_output(out: Path, force: bool) -> None:
    if out.exists() and not out.is_dir():
        raise TrainError(f"output {out} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise TrainError(f"output directory {out} exists and is not empty; pass --force to replace it")


def write_adapter(peft_model, out: Path, info: dict, base_model: str) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.with_name(f".{out.name}.partial-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        peft_model.peft_config["default"].base_model_name_or_path = base_model
        peft_model.save_pretrained(str(staging), safe_serialization=True)
        text = json.dumps(info, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
        (staging / TRAINING_JSON).write_text(text, encoding="utf-8")
        replace_directory(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
