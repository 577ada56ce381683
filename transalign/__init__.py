"""transalign: TransAlign word alignment in production.

Public names are imported lazily so that `import transalign` stays cheap and never pulls in
torch, transformers or peft (those belong to the optional `export` extra).
"""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["Aligner", "AlignResult", "export", "evaluate_alignments", "project_labels", "__version__"]

_LAZY = {
    "Aligner": "transalign.engine.aligner",
    "AlignResult": "transalign.engine.aligner",
    "evaluate_alignments": "transalign.evaluation",
    "project_labels": "transalign.projection",
}


def __dir__() -> list[str]:
    """The public names (loaded lazily, so the module's own dict does not hold them yet)."""
    return sorted(set(globals()) | set(__all__))


def __getattr__(name: str):
    if name == "export":  # the subpackage, callable as the export function
        import importlib

        return importlib.import_module("transalign.export")
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'transalign' has no attribute {name!r}")
