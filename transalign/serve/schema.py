"""Request and response bodies (pydantic, so FastAPI validates them and documents them in
/openapi.json). Unknown fields are refused: a misspelt ``threshold`` must not silently become
the default."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

SentenceIn = str | list[str]


class Pair(BaseModel):
    model_config = ConfigDict(extra="forbid")

    src: SentenceIn = Field(description="source sentence: a string split on whitespace, or a list of words")
    tgt: SentenceIn = Field(description="target sentence: a string split on whitespace, or a list of words")


class AlignRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "pairs": [{"src": "Das Haus", "tgt": "The house"}], "src_lang": "deu_Latn", "tgt_lang": "eng_Latn",
        "threshold": 0.001}]})

    pairs: list[Pair] = Field(description="sentence pairs, aligned independently; one result each, in order")
    src_lang: str | None = Field(None, description="source language code (required for bundles with codes)")
    tgt_lang: str | None = Field(None, description="target language code (required for bundles with codes)")
    threshold: float | None = Field(None, ge=0.0, lt=1.0, description="alignment threshold (default: the bundle's)")


class PairResult(BaseModel):
    links: list[tuple[int, int]] = Field(description="(source word, target word), 0-based, sorted")


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
    version: str
    limits: dict[str, float | int]
