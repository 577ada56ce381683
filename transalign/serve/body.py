"""A /v1/align body, from bytes to a checked `AlignRequest`; every way a body can be bad is one
422 ``invalid_request`` (the error shape of every other refusal), naming the pair and field
where there is one.

Why not FastAPI's own body parsing: it answers invalid UTF-8, deep nesting and huge numbers with
a 400 of another shape, validates in lax mode (``"threshold": false`` became 0.0, ``"0.5"`` 0.5),
and lets lone surrogates (``"\\ud800"``: valid JSON, not text) through to the tokenizer and the
response encoder (a 500 and a dropped connection). Here the JSON policy is explicit: UTF-8 only;
numbers of at most `MAX_NUMBER_CHARS` characters; no NaN or Infinity; nesting deeper than
Python's recursion limit refused; no string (key or value) holding a surrogate code point; then
the schema, strictly (no coercion). This runs in a preparation thread, not on the event loop.
"""

from __future__ import annotations

import json
import re

from transalign.serve.errors import ApiError

MAX_NUMBER_CHARS = 40  # a threshold needs ~20; a 5,000-digit integer costs quadratic time to parse
_SURROGATE = re.compile("[\ud800-\udfff]")


class _BadNumber(ValueError):
    pass


def _number(parse):
    def check(text: str):
        if len(text) > MAX_NUMBER_CHARS:
            raise _BadNumber(f"a number of {len(text)} characters (at most {MAX_NUMBER_CHARS})")
        return parse(text)
    return check


def _constant(name: str):
    raise _BadNumber(f"{name} is not a JSON number")


def invalid(message: str, pair: int | None = None) -> ApiError:
    return ApiError(422, "invalid_request", message, pair)


def decode_json(body: bytes):
    """The JSON value of ``body`` under the policy of the module docstring."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise invalid(f"the body is not UTF-8 text: byte 0x{body[exc.start]:02x} at offset {exc.start} "
                      f"({exc.reason}); send JSON encoded as UTF-8") from None
    try:
        value = json.loads(text, parse_int=_number(int), parse_float=_number(float), parse_constant=_constant)
    except json.JSONDecodeError as exc:
        raise invalid(f"the body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except RecursionError:
        raise invalid("the body is not valid JSON for this API: it is nested too deeply") from None
    except _BadNumber as exc:
        raise invalid(f"the body is not valid JSON for this API: {exc}") from None
    _check_text(value)
    return value


def _check_text(value) -> None:
    """Refuse the first string (key or value) holding a surrogate code point, naming where it is."""
    stack = [(value, ())]
    while stack:
        item, path = stack.pop()
        if isinstance(item, str):
            if not item.isascii() and _SURROGATE.search(item):
                _surrogate(item, path)
        elif isinstance(item, dict):
            for key, child in item.items():
                if not key.isascii() and _SURROGATE.search(key):
                    _surrogate(key, path, is_key=True)
                stack.append((child, (*path, key)))
        elif isinstance(item, list):
            stack.extend((child, (*path, k)) for k, child in enumerate(item))


def _surrogate(text: str, path: tuple, is_key: bool = False) -> None:
    code = ord(_SURROGATE.search(text).group())
    where = location(path) if path else "the body"
    what = "a key" if is_key else "the text"
    pair = path[1] if len(path) > 1 and path[0] == "pairs" and isinstance(path[1], int) else None
    raise invalid(f"{where}: {what} holds a lone surrogate (\\u{code:04x}), which is not a Unicode character; "
                  "send UTF-8 text", pair)


def location(path) -> str:
    """('pairs', 3, 'src') -> 'pairs[3].src'."""
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path).lstrip(".")


def parse_align_request(body: bytes, max_pairs: int | None = None):
    """The checked `schema.AlignRequest` of ``body`` (strict types: no coercion). ``max_pairs``:
    more pairs are refused (413) before the pairs are validated one by one."""
    from pydantic import ValidationError

    from transalign.serve.schema import AlignRequest

    value = decode_json(body)
    if max_pairs is not None and isinstance(value, dict) and isinstance(value.get("pairs"), list) \
            and len(value["pairs"]) > max_pairs:
        raise ApiError(413, "too_many_pairs", f"the request has {len(value['pairs'])} pairs, more than this server's "
                       f"limit of {max_pairs} (--max-pairs-per-request); split it into several requests")
    try:
        return AlignRequest.model_validate(value, strict=True)
    except ValidationError as exc:
        raise validation_error(exc.errors(include_url=False, include_input=False)) from None


def validation_error(errors) -> ApiError:
    """Pydantic's errors as one ApiError: the first problem, and how many more there are."""
    described = list(dict.fromkeys(_describe(error) for error in errors))  # unions repeat
    if described and described[0][2] is not None:
        return described[0][2]
    message, pair = described[0][:2] if described else ("invalid request", None)
    if len(described) > 1:
        message += f" (and {len(described) - 1} more problems)"
    return invalid(message, pair)


def _describe(error: dict) -> tuple[str, int | None, ApiError | None]:
    """A pydantic error as one sentence, the index of the pair it is about, and the ApiError to
    answer instead of a 422 where the API has its own (an empty ``pairs``: 400 empty_pairs)."""
    if error.get("type") == "json_invalid":
        return f"the body is not valid JSON: {error.get('ctx', {}).get('error', error.get('msg'))}", None, None
    loc = [part for part in error.get("loc", ()) if part != "body"]
    if loc == ["pairs"] and error.get("type") == "too_short":
        return "", None, ApiError(400, "empty_pairs", "'pairs' is empty; send at least one "
                                                      "{\"src\": ..., \"tgt\": ...}")
    if len(loc) >= 3 and loc[0] == "pairs" and isinstance(loc[1], int) and loc[2] in ("src", "tgt"):
        if error.get("type") in ("missing", "extra_forbidden"):
            return f"pairs[{loc[1]}].{loc[2]}: {error.get('msg')}", loc[1], None
        return f"pairs[{loc[1]}].{loc[2]} must be a string (split on whitespace) or a list of strings", loc[1], None
    if loc == ["threshold"] and error.get("type") in ("less_than", "greater_than_equal", "finite_number"):
        from transalign.engine.options import THRESHOLD_RULE

        return f"threshold: {THRESHOLD_RULE}", None, None  # the engine's words (engine.options)
    pair = loc[1] if len(loc) > 1 and loc[0] == "pairs" and isinstance(loc[1], int) else None
    return f"{location(loc) or 'body'}: {error.get('msg', 'invalid')}", pair, None
