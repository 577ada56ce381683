"""What the int8 graph tests (test_int8_fold.py, test_int8_fuse.py) start from: a copy of the tiny
bundle's fp32 graph, the calibration rows the export uses, and those rows as one padded batch."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from transalign.engine.bundle import read_manifest
from transalign.engine.tokenizers import load_tokenizer
from transalign.export.validation import CALIBRATION_SENTENCES, VALIDATION_SENTENCES


def tiny_fp32_and_rows(tiny_bundle: Path, work: Path) -> tuple[Path, list]:
    """The tiny bundle's fp32 graph copied into ``work``, and the token-id rows of the export's
    validation and calibration sentences in the bundle's languages."""
    for name in ("model.onnx", "model.onnx.data"):
        shutil.copy(tiny_bundle / name, work / name)
    tokenizer = load_tokenizer(tiny_bundle, read_manifest(tiny_bundle).tokenizer)
    rows = [tokenizer.encode(text.split(), lang)[0] for text, lang in VALIDATION_SENTENCES + CALIBRATION_SENTENCES
            if lang in tokenizer.languages]
    return work / "model.onnx", rows


def padded_feed(rows) -> dict[str, np.ndarray]:
    """The rows as one right-padded batch (pad id 1), with its attention mask."""
    width = max(len(r) for r in rows)
    ids = np.ones((len(rows), width), np.int64)
    mask = np.zeros_like(ids)
    for k, row in enumerate(rows):
        ids[k, :len(row)], mask[k, :len(row)] = row, 1
    return {"input_ids": ids, "attention_mask": mask}
