"""Silence expected library chatter during export, restoring the logger afterwards."""

from __future__ import annotations

import contextlib
import logging


@contextlib.contextmanager
def quiet_logger(name: str = ""):
    """Raise logger ``name`` ("" = the root logger) to ERROR for the duration of the block.

    "transformers" covers its "weights not used" notices (the library logs below that logger);
    the root logger carries onnxruntime.quantization's advice to pre-process the model.
    """
    logger = logging.getLogger(name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)
