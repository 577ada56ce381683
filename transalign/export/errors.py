"""Typed errors of the export stage; all are ValueErrors so the CLI prints them plainly."""

from __future__ import annotations


class ExportError(ValueError):
    """The export cannot proceed: bad model, adapter, layer, precision or output path."""


class ValidationError(ExportError):
    """The exported graph does not reproduce PyTorch; ``mismatches`` lists every failed check."""

    def __init__(self, mismatches: list[str]):
        self.mismatches = list(mismatches)
        lines = "\n  ".join(self.mismatches)
        super().__init__(f"exported graph failed validation against PyTorch; nothing was written:\n  {lines}")
