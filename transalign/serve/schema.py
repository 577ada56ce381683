"""Request and response bodies (pydantic, so FastAPI validates them and documents them in
/openapi.json). Unknown fields are refused: a misspelt ``threshold`` must not silently become
the default."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from transalign.kernels.names import DEFAULT_METHOD, DEFAULT_WORD_LEVEL, METHODS, WORD_LEVELS

SentenceIn = str | list[str]
Method = Literal[METHODS]  # Literal of a tuple: one member per name, so /openapi.json lists them
WordLevel = Literal[WORD_LEVELS]


class Pair(BaseModel):
    model_config = ConfigDict(extra="forbid")

    src: SentenceIn = Field(description="source sentence: a string split on whitespace, or a list of words")
    tgt: SentenceIn = Field(description="target sentence: a string split on whitespace, or a list of words")


class AlignRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "pairs": [{"src": "Das Haus", "tgt": "The house"}], "src_lang": "deu_Latn", "tgt_lang": "eng_Latn",
        "threshold": 0.001}, {"pairs": [{"src": "Das Haus", "tgt": "The house"}], "src_lang": "deu_Latn",
                              "tgt_lang": "eng_Latn", "method": "argmax", "word_level": "mean", "scores": True}]})

    pairs: list[Pair] = Field(description="sentence pairs, aligned independently; one result each, in order")
    src_lang: str | None = Field(None, description="source language code (required for bundles with codes)")
    tgt_lang: str | None = Field(None, description="target language code (required for bundles with codes)")
    threshold: float | None = Field(None, ge=0.0, lt=1.0, description="alignment threshold of method softmax "
                                    "(default: the bundle's); refused with the other methods")
    method: Method = Field(DEFAULT_METHOD, description="extraction method, as `transalign align --method`")
    word_level: WordLevel = Field(DEFAULT_WORD_LEVEL, description="word level, as `transalign align --word-level`")
    scores: bool = Field(False, strict=True, description="also return each link's score (min(F, B) for softmax, "
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


class Info(BaseModel):
    model: str
    architecture: str
    layer: int
    precision: str
    provider: str
    threshold: float
    max_positions: int
    languages: list[str]
    methods: list[str]
    word_levels: list[str]
    version: str
    limits: dict[str, float | int]
