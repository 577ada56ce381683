"""The export stage: Hugging Face checkpoint (+ LoRA) -> validated ONNX bundle.

Needs the ``export`` extra (torch, transformers, peft, onnx). ``transalign.export`` is both
this package and the function: ``from transalign import export; export(model, out)`` works
whether or not a submodule was imported first (Python would otherwise replace the lazily
exported function with this package as soon as ``transalign.export.*`` is imported).
"""

from __future__ import annotations

import sys
import types


def __getattr__(name: str):
    if name in ("export", "ExportOptions", "run_export"):
        from transalign.export import api

        return getattr(api, name)
    if name in ("ExportError", "ValidationError"):
        from transalign.export import errors

        return getattr(errors, name)
    raise AttributeError(f"module 'transalign.export' has no attribute {name!r}")


class _CallableModule(types.ModuleType):
    def __call__(self, *args, **kwargs):
        from transalign.export.api import export

        return export(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
