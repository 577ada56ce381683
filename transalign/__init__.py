"""transalign: TransAlign word alignment in production.

Public names are imported lazily so that `import transalign` stays cheap and never pulls in
torch, transformers or peft (those belong to the optional `export` extra).
"""

from __future__ import annotations

from transalign.lazy import lazy_exports

__version__ = "0.1.0"
__all__ = ["Aligner", "AlignResult", "export_bundle", "evaluate_alignments", "project_labels", "__version__"]

__getattr__, __dir__ = lazy_exports(__name__, {
    "Aligner": "transalign.engine.aligner",
    "AlignResult": "transalign.engine.aligner",
    "export_bundle": "transalign.export.api",
    "evaluate_alignments": "transalign.evaluation",
    "project_labels": "transalign.projection",
})
