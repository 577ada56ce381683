"""Request and response bodies (pydantic), validated strictly (`body.parse_align_request`: no
coercion, so ``"threshold": "0.5"`` or ``false`` is refused) and documented in /openapi.json,
where `openapi.bundle_schema` adds what depends on the bundle and the server's limits (language
codes, pairs per request, the bundle's default method). Unknown fields are refused: a misspelt
``threshold`` must not silently become the default."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from transalign.kernels.names import METHODS, WORD_LEVELS

SentenceIn = str | list[str]
Method = Literal[METHODS]  # Literal of a tuple: one member per name, so /openapi.json lists them
WordLevel = Literal[WORD_LEVELS]


class Pair(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    src: SentenceIn = Field(description="source sentence: a string split on whitespace, or a list of words")
    tgt: SentenceIn = Field(description="target sentence: a string split on whitespace, or a list of words")


class AlignRequest(BaseModel):
    """Every string is Unicode text: a lone surrogate escape such as \\ud800 (valid JSON, but no
    character) is refused with 422 invalid_request naming the pair and field, as are invalid UTF-8,
    NaN or Infinity, numbers longer than 40 characters and nesting deeper than the server's limit.
    Types are strict: no string for a number, no number or boolean for another type."""

    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra={"examples": [{
        "pairs": [{"src": "Das Haus", "tgt": "The house"}], "src_lang": "deu_Latn", "tgt_lang": "eng_Latn",
        "threshold": 0.001}, {"pairs": [{"src": "Das Haus", "tgt": "The house"}], "src_lang": "deu_Latn",
                              "tgt_lang": "eng_Latn", "method": "argmax", "word_level": "mean", "scores": True}]})

    pairs: list[Pair] = Field(min_length=1, description="sentence pairs, aligned independently; one result each, "
                              "in order (an empty list: 400 empty_pairs; more than the server's limit: 413)")
    src_lang: str | None = Field(None, description="source language code (required for bundles with codes; "
                                 "bundles without codes ignore it)")
    tgt_lang: str | None = Field(None, description="target language code (required for bundles with codes; "
                                 "bundles without codes ignore it)")
    threshold: float | None = Field(None, ge=0.0, lt=1.0, description="alignment threshold of method softmax "
                                    "(default: the bundle's); refused with the other methods")
    method: Method | None = Field(None, description="extraction method, as `transalign align --method` "
                                  "(default: the bundle's, GET /v1/info default_extraction)")
    word_level: WordLevel | None = Field(None, description="word level, as `transalign align --word-level` "
                                         "(default: the bundle's)")
    scores: bool = Field(False, description="also return each link's score (min(F, B) for softmax, "
                         "the similarity for argmax / itermax)")


class PairResult(BaseModel):
    links: list[tuple[int, int]] = Field(description="(source word, target word), 0-based, sorted")
    scores: list[float] | None = Field(None, description="with scores: true only: scores[k] is the score of links[k]")


class AlignResponse(BaseModel):
    results: list[PairResult]


class ErrorDetail(BaseModel):
    code: str = Field(description="stable machine-readable name, e.g. unknown_language, too_long, overloaded")
    message: str
    pair: int | None = Field(None, description="index of the pair the error is about, if any")


class ErrorResponse(BaseModel):
    error: ErrorDetail


class DefaultExtraction(BaseModel):
    method: str
    word_level: str
    threshold: float = Field(description="of method softmax, when a request gives none")


class Info(BaseModel):
    bundle: str = Field(description="the bundle's directory name")
    model: str = Field(description="the base model the bundle was exported from (its name, not a path)")
    architecture: str
    layer: int
    precision: str = Field(description="the precision of the model that runs")
    provider: str = Field(description="the execution provider that runs it (read back from the session)")
    pipeline: bool = Field(description="whether extraction overlaps the encoder (--pipeline; on with CUDA by "
                           "default); results never depend on it")
    threshold: float = Field(description="the bundle's default threshold (method softmax)")
    default_extraction: DefaultExtraction
    max_positions: int
    max_sentence_chars: int = Field(description="characters (whitespace excluded) a sentence may hold; longer "
                                    "ones are refused (too_long) before tokenizing")
    languages: list[str] = Field(description="codes src_lang / tgt_lang accept; empty: the bundle has none and "
                                 "ignores them")
    languages_required: bool
    methods: list[str]
    word_levels: list[str]
    version: str
    limits: dict[str, float | int]
