"""/openapi.json states every constraint the server enforces on a request body.

FastAPI documents the pydantic models; what depends on the bundle and the server's limits is
added here once the model is loaded: the language codes (required, one of the bundle's codes;
a bundle without codes ignores them), at most ``max_pairs_per_request`` pairs, and "a threshold
only with method softmax" (the bundle's default method decides when ``method`` is left out), as
JSON Schema 2020-12 (OpenAPI 3.1). What a schema cannot say (a sentence's token count) is in the
descriptions and answered 400 ``too_long``.
"""

from __future__ import annotations

from transalign.kernels.names import METHODS
from transalign.serve.schema import AlignRequest

REQUEST_BODY = {"required": True,
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/AlignRequest"}}}}


def openapi_document(app, manifest, max_pairs: int) -> dict:
    """The document of ``app`` (its routes) with the request schema of ``manifest`` (None: not
    loaded yet, the bundle-independent constraints only)."""
    from fastapi.openapi.utils import get_openapi

    document = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    request = AlignRequest.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas.update(request.pop("$defs", {}))
    schemas["AlignRequest"] = request_schema(request, manifest, max_pairs)
    return document


def request_schema(schema: dict, manifest, max_pairs: int) -> dict:
    props = schema["properties"]
    props["pairs"]["maxItems"] = max_pairs
    default_method = "softmax" if manifest is None else manifest.default_method
    if manifest is not None:
        codes = sorted(manifest.tokenizer.lang_code_ids)
        props["method"]["description"] += f"; this bundle's: {manifest.default_method}"
        props["word_level"]["description"] += f"; this bundle's: {manifest.default_word_level}"
        if codes:
            for name in ("src_lang", "tgt_lang"):
                props[name] = {"type": "string", "enum": codes, "title": props[name].get("title", name),
                               "description": props[name]["description"]}
            schema["required"] = sorted(set(schema.get("required", [])) | {"src_lang", "tgt_lang"})
    schema["allOf"] = [{"if": _threshold_unused(default_method),
                        "then": {"properties": {"threshold": {"type": "null"}}}}]
    return schema


def _threshold_unused(default_method: str) -> dict:
    """A request whose method is not softmax (given, or the bundle's when left out)."""
    softmax = {"required": ["method"], "properties": {"method": {"const": "softmax"}}}
    if default_method != "softmax":
        return {"not": softmax}
    return {"required": ["method"], "properties": {"method": {"enum": [m for m in METHODS if m != "softmax"]}}}
