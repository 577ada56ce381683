"""Fuzzing POST /v1/align from its own OpenAPI document (issue 24, "Done when").

Requests are generated from the request schema the server publishes (/openapi.json, resolved
here by a small JSON-Schema-to-hypothesis translation), then some are broken on purpose: lone
surrogates in any string, strict-type violations (``false`` or ``"0.5"`` for a number, numbers
for strings), unknown and missing fields, too many pairs, and raw-byte damage (invalid UTF-8,
truncation, deep nesting, huge numbers). For every case:
- no 5xx;
- the status is one the document lists for the operation, and the body validates against the
  schema it documents for that status;
- schema truth both ways: a request the schema accepts is answered 200 (or 400 ``too_long``, the
  one documented limit a schema cannot state: tokens), and one it refuses is never answered 200;
- a 200 has one result per pair, each link inside its sentences' words.
Bounded: a fixed number of cases, each with a deadline, derandomized (the same cases every run).
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import timedelta

import pytest

pytest.importorskip("fastapi", reason="the serve extra is not installed")
import jsonschema  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from measurements import record  # noqa: E402
from test_serve import app_client, wait_ready  # noqa: E402

MAX_PAIRS = 8
WRONG_TYPES = [False, True, "0.5", "", 1, 0, 1.5, -1, [], {}, None, [0.5], "\ud800"]
ODD_TEXT = ["Hello world !", "Ahoj světe !", "", " ", "\t\n", "a\x00b", "\ufeff", "e\u0301", "\u202eabc",
            "\uffff", "\U0010ffff", "👍🏽 ok", "ا ب ت", "x" * 300, "w " * 300, "\u200b"]


@pytest.fixture(scope="module")
def served(tiny_bundle):
    with app_client(tiny_bundle, max_pairs_per_request=MAX_PAIRS, max_body_bytes=256 * 1024) as client:
        wait_ready(client.get)
        yield client, client.get("/openapi.json").json()


# -- a strategy from the document's schema -----------------------------------------------------


def resolve(document: dict, schema: dict) -> dict:
    while "$ref" in schema:
        node = document
        for part in schema["$ref"].removeprefix("#/").split("/"):
            node = node[part]
        schema = node
    return schema


TEXT = st.one_of(st.sampled_from(ODD_TEXT), st.text(max_size=40))


def from_schema(document: dict, schema: dict) -> st.SearchStrategy:
    """Values the schema's keywords allow (allOf's if/then is left to the server and the
    validator: values breaking it are generated too, and must be refused)."""
    schema = resolve(document, schema)
    if "const" in schema:
        return st.just(schema["const"])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    if "anyOf" in schema:
        return st.one_of([from_schema(document, s) for s in schema["anyOf"]])
    kind = schema.get("type")
    if kind == "string":
        return TEXT
    if kind == "number":
        low = schema.get("minimum", schema.get("exclusiveMinimum"))
        high = schema.get("maximum", schema.get("exclusiveMaximum"))
        return st.floats(min_value=low, max_value=high, allow_nan=False, allow_infinity=False,
                         exclude_min="exclusiveMinimum" in schema, exclude_max="exclusiveMaximum" in schema)
    if kind == "integer":
        return st.integers(schema.get("minimum"), schema.get("maximum"))
    if kind == "boolean":
        return st.booleans()
    if kind == "null":
        return st.none()
    if kind == "array":
        return st.lists(from_schema(document, schema.get("items", {})), min_size=schema.get("minItems", 0),
                        max_size=min(schema.get("maxItems", 6), 6))
    if kind == "object":
        props = schema.get("properties", {})
        required = set(schema.get("required", ()))
        return st.fixed_dictionaries({k: from_schema(document, v) for k, v in props.items() if k in required},
                                     optional={k: from_schema(document, v) for k, v in props.items()
                                               if k not in required})
    return st.one_of(st.none(), st.booleans(), st.integers(), TEXT)


def with_surrogate(value, draw):
    """``value`` with a lone surrogate put into one of its strings (keys included)."""
    strings = []

    def walk(node, setter):
        if isinstance(node, str):
            strings.append(setter)
        elif isinstance(node, dict):
            for key in list(node):
                walk(node[key], lambda v, k=key, n=node: n.__setitem__(k, v))
        elif isinstance(node, list):
            for k in range(len(node)):
                walk(node[k], lambda v, k=k, n=node: n.__setitem__(k, v))
    walk(value, None)
    surrogate = draw(st.sampled_from(["\ud800", "\udfff", "\udc80"]))
    if strings:
        draw(st.sampled_from(strings))(surrogate + "x")
    else:
        value["x" + surrogate] = 1
    return value


KINDS = {"valid": 90, "wrong_type": 50, "surrogate": 50, "unknown_or_missing": 40, "too_many_pairs": 20,
         "raw": 50}  # cases per kind: 300 in all


@st.composite
def bodies(draw, document: dict, kind: str):
    """(body bytes, the JSON value or None when the bytes are not JSON, what was done)."""
    schema = document["paths"]["/v1/align"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    value = draw(from_schema(document, schema))
    how = draw(st.sampled_from(["unknown_field", "missing_field"])) if kind == "unknown_or_missing" else kind
    if how == "wrong_type":
        value[draw(st.sampled_from(sorted(resolve(document, schema)["properties"])))] = \
            draw(st.sampled_from(WRONG_TYPES))
    elif how == "surrogate":
        value = with_surrogate(value, draw)
    elif how == "unknown_field":
        value[draw(st.sampled_from(["treshold", "extra", "Method", ""]))] = draw(st.sampled_from(WRONG_TYPES))
    elif how == "missing_field":
        value.pop(draw(st.sampled_from(sorted(value))), None) if value else None
    elif how == "too_many_pairs":
        value["pairs"] = [{"src": "a", "tgt": "b"}] * (MAX_PAIRS + draw(st.integers(1, 3)))
    body = json.dumps(value).encode()  # ensure_ascii: a lone surrogate travels as a \\ud800 escape
    if how == "raw":
        damage = draw(st.sampled_from(["utf8", "truncate", "nest", "number", "nan"]))
        if damage == "utf8":
            at = draw(st.integers(0, len(body)))
            body = body[:at] + b"\xff\xc3" + body[at:]
        elif damage == "truncate":
            body = body[:draw(st.integers(0, max(0, len(body) - 1)))]
        elif damage == "nest":
            body = b'{"pairs": ' + b"[" * 20_000 + b"]" * 20_000 + b"}"
        elif damage == "number":
            body = body[:-1] + b', "threshold": 0.' + b"1" * 3000 + b"}"
        else:
            body = body[:-1] + b', "threshold": NaN}'
        return body, None, f"raw:{damage}"
    return body, value, how


# -- the test -----------------------------------------------------------------------------------


def response_validator(document: dict, status: int):
    operation = document["paths"]["/v1/align"]["post"]
    documented = operation["responses"].get(str(status))
    assert documented is not None, f"status {status} is not documented for POST /v1/align"
    schema = documented["content"]["application/json"]["schema"]
    return jsonschema.Draft202012Validator({**schema, "components": document["components"]})


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_fuzz_align_from_the_openapi_document(served, kind):
    client, document = served
    schema = document["paths"]["/v1/align"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    request_validator = jsonschema.Draft202012Validator({**schema, "components": document["components"]})
    seen: Counter = Counter()
    statuses: Counter = Counter()

    @settings(max_examples=KINDS[kind], deadline=timedelta(seconds=20), derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(bodies(document, kind))
    def case(generated):
        body, value, how = generated
        response = client.post("/v1/align", content=body, headers={"content-type": "application/json"})
        seen[how] += 1
        statuses[response.status_code] += 1
        assert response.status_code < 500, (how, body[:300], response.text)
        answer = response.json()
        errors = list(response_validator(document, response.status_code).iter_errors(answer))
        assert not errors, (how, response.status_code, answer, errors[0].message)
        schema_valid = value is not None and is_text(value) and request_validator.is_valid(value)
        if schema_valid:
            assert response.status_code == 200 or answer["error"]["code"] == "too_long", (how, value, answer)
        else:
            assert response.status_code != 200, ("the server accepted what its schema refuses", how, body[:300])
        if response.status_code == 200:
            check_links(value, answer)

    case()
    total = sum(seen.values())
    kinds = ", ".join(f"{k} {v}" for k, v in sorted(seen.items()))
    record(f"serve fuzz [{kind}]: {total} cases from /openapi.json ({kinds}); statuses {dict(sorted(statuses.items()))}; 0 5xx, 0 responses outside the documented schema")
    assert total == KINDS[kind]
    assert statuses[200] > 0 if kind == "valid" else statuses[200] < total


def is_text(value) -> bool:
    """JSON Schema strings are Unicode text; a lone surrogate (a JSON escape such as \\ud800 that
    is no character) is not: the document's description says such a body is refused (422)."""
    return not any(0xD800 <= ord(ch) <= 0xDFFF for ch in json.dumps(value, ensure_ascii=False))


def check_links(request: dict, answer: dict) -> None:
    from transalign.engine.prepare import words_of

    assert len(answer["results"]) == len(request["pairs"])
    for pair, result in zip(request["pairs"], answer["results"]):
        n_src, n_tgt = len(words_of(pair["src"])), len(words_of(pair["tgt"]))
        assert all(0 <= i < n_src and 0 <= j < n_tgt for i, j in result["links"]), (pair, result)
        assert result["links"] == sorted(result["links"])
