"""The export stage: Hugging Face checkpoint (+ LoRA) -> validated ONNX bundle.

Needs the ``export`` extra (torch, transformers, peft, onnx). ``export_bundle(model, out, ...)``
is the Python entry point (``transalign.export_bundle`` is the same function); the names load
on first use, so importing this package imports none of the extra's libraries.
"""

from __future__ import annotations

from transalign.lazy import lazy_exports

__all__ = ["ExportError", "ExportOptions", "ValidationError", "export_bundle", "run_export"]

__getattr__, __dir__ = lazy_exports(__name__, {
    "export_bundle": "transalign.export.api",
    "ExportOptions": "transalign.export.api",
    "run_export": "transalign.export.api",
    "ExportError": "transalign.export.errors",
    "ValidationError": "transalign.export.errors",
})
