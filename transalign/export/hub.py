"""Where an export's model comes from: a local directory, the Hugging Face cache or the hub.

Why this exists: given a hub id on a machine that cannot reach the hub, transformers retries
each request and fails after about 50 s with an error that does not say what to do. `locate`
decides up front, in at most PROBE_SECONDS:

- a local directory is used as it is;
- with ``HF_HUB_OFFLINE``/``TRANSFORMERS_OFFLINE`` set, or when the hub does not answer a quick
  request, a hub id must already be in the local cache: its snapshot directory is used (and
  then nothing touches the network), or the export stops with what to do;
- otherwise the hub id is left to transformers, which downloads or revalidates it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from transalign.export.errors import ExportError

PROBE_SECONDS = 3.0
_TRUE = {"1", "on", "yes", "true"}


@dataclass(frozen=True)
class ModelLocation:
    load_from: str  # what transformers loads: a directory or a hub id
    name: str  # what the manifest records as base_model and family detection reads


def _offline_by_environment() -> str | None:
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if os.environ.get(name, "").strip().lower() in _TRUE:
            return f"{name} is set"
    return None


def hub_unreachable(timeout: float = PROBE_SECONDS) -> str | None:
    """None when the hub answers an HTTP request within ``timeout`` s, else why not. Uses
    huggingface_hub's own session, so proxies and HF_ENDPOINT apply as they will for the download."""
    from huggingface_hub import constants
    from huggingface_hub.utils import get_session

    try:
        get_session().head(constants.ENDPOINT, timeout=timeout, allow_redirects=False)
    except Exception as exc:  # any failure to connect means the same thing here: not reachable
        return f"{constants.ENDPOINT} did not answer within {timeout:g} s ({type(exc).__name__})"
    return None


def locate(model: str) -> ModelLocation:
    """The directory or hub id to load ``model`` from (see the module docstring)."""
    path = Path(model).expanduser()
    if path.is_dir() or model.startswith((".", "/", "~")) or model.count("/") > 1:
        return ModelLocation(str(path), str(path)) if path.is_dir() else ModelLocation(model, model)
    reason = _offline_by_environment() or hub_unreachable()
    if reason is None:
        return ModelLocation(model, model)
    from huggingface_hub import snapshot_download

    try:
        snapshot = snapshot_download(model, local_files_only=True)
    except Exception as exc:  # LocalEntryNotFoundError, or a malformed id (HFValidationError)
        raise ExportError(
            f"cannot export {model!r}: it is not a local directory, not in the local Hugging Face cache, and the hub "
            f"cannot be used ({reason}). Download it where the hub is reachable (`huggingface-cli download {model}`, "
            "or save_pretrained to a directory) and pass that directory, or copy the cache "
            f"(~/.cache/huggingface) here [{type(exc).__name__}]") from None
    return ModelLocation(snapshot, model)
