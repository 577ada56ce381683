"""`transalign serve`: HTTP results equal `Aligner.align`, micro-batching, limits, errors, shutdown.

In-process tests use Starlette's TestClient (the same app, no sockets); the concurrency, API-key
and SIGTERM tests run the real command as a subprocess on a free 127.0.0.1 port with httpx.
Truth is always a direct `Aligner.align` call on the same pairs (fp32: batch-invariant).
"""

from __future__ import annotations

import contextlib
import json
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="the serve extra is not installed")
import httpx  # noqa: E402

with warnings.catch_warnings():  # this Starlette deprecates httpx under TestClient; it still works
    warnings.filterwarnings("ignore", message=".*httpx.*", category=UserWarning)
    from fastapi.testclient import TestClient  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from transalign.engine.aligner import PIPELINE_BUFFERS, Aligner  # noqa: E402
from transalign.engine.options import LoadOptions  # noqa: E402
from transalign.formats.text import read_sentences  # noqa: E402
from transalign.kernels.names import METHODS, WORD_LEVELS  # noqa: E402
from transalign.serve import ServeConfig, create_app  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
LANGS = {"src_lang": "eng_Latn", "tgt_lang": "ces_Latn"}
DEADLINE_S = 60.0


# -- helpers ------------------------------------------------------------------------------------


def links(results) -> list[list[list[int]]]:
    """`AlignResult`s in the service's JSON form."""
    return [[list(link) for link in r.links] for r in results]


def wait_ready(get, timeout: float = DEADLINE_S) -> None:
    end = time.monotonic() + timeout
    while get("/ready").status_code != 200:
        assert time.monotonic() < end, "the server did not become ready in time"
        time.sleep(0.02)


def metric_samples(text: str) -> dict[tuple[str, tuple], float]:
    """Prometheus text -> {(sample name, sorted labels): value}; parsing it is part of the test."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def multi_request_batches(samples) -> float:
    """How many batches held more than one request (histogram count minus its le=1 bucket)."""
    return (samples[("transalign_batch_requests_count", ())]
            - samples[("transalign_batch_requests_bucket", (("le", "1.0"),))])


class Gate:
    """Wraps a real Aligner: `encode_prepared` (the worker's encoder call) waits for `open` and
    raises on a sentence containing BOOM.

    Lets a test hold the worker inside a batch (queue-full, shutdown) or make one request of a
    batch fail inside the engine (isolation)."""

    def __init__(self, inner: Aligner, closed: bool = False):
        self.inner, self.entered, self.open = inner, threading.Event(), threading.Event()
        self.calls: list[int] = []
        if not closed:
            self.open.set()

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def encode_prepared(self, prepared, *args, **kwargs):
        self.entered.set()
        assert self.open.wait(DEADLINE_S)
        self.calls.append(len(prepared))
        if any("BOOM" in words for words in prepared.src):
            raise ValueError("a sentence contains BOOM")
        return self.inner.encode_prepared(prepared, *args, **kwargs)


@contextlib.contextmanager
def app_client(bundle, load=None, **limits):
    config = ServeConfig(bundle, provider="cpu", **limits)
    with TestClient(create_app(config, load=load)) as client:
        yield client


# -- fixtures -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def direct(tiny_bundle) -> Aligner:
    return Aligner.load(tiny_bundle, provider="cpu")


@pytest.fixture(scope="module")
def bam_pairs(data_dir, direct) -> list[tuple[list[str], list[str]]]:
    """300 pairs of the authors' Bambara-English sample that fit the tiny model's positions."""
    sample = data_dir / "reference/bam-sample"
    src = read_sentences(sample / "test-bam.txt", "conll")
    tgt = read_sentences(sample / "test-translate-bam-en-preds.txt", "conll")
    limit = direct.manifest.max_positions
    fits = [(s, t) for s, t in zip(src, tgt)
            if len(direct.tokenizer.encode(s, "bam_Latn")[0]) <= limit
            and len(direct.tokenizer.encode(t, "eng_Latn")[0]) <= limit]
    assert len(fits) >= 300
    return fits[:300]


@pytest.fixture(scope="module")
def client(tiny_bundle):
    with app_client(tiny_bundle, max_pairs_per_request=8, max_body_bytes=64 * 1024) as c:
        wait_ready(c.get)
        yield c


# -- in-process: results, endpoints, every error class ------------------------------------------


def test_align_equals_the_aligner(client, direct):
    pairs = [{"src": "Hello world !", "tgt": "Ahoj světe !"}, {"src": ["A", "b", "c"], "tgt": ["x", "y"]},
             {"src": "", "tgt": "nic"}, {"src": "  spaced   out ", "tgt": "x"}]
    for threshold in (None, 0.2):
        body = {"pairs": pairs, **LANGS} | ({} if threshold is None else {"threshold": threshold})
        response = client.post("/v1/align", json=body)
        assert response.status_code == 200, response.text
        expected = direct.align([p["src"] for p in pairs], [p["tgt"] for p in pairs], "eng_Latn", "ces_Latn",
                                threshold)
        assert response.json() == {"results": [{"links": r} for r in links(expected)]}


def as_json(results, scores: bool) -> list[dict]:
    """`AlignResult`s as the service answers them (scores: JSON floats, exact)."""
    return [{"links": link, "scores": list(r.scores)} if scores else {"links": link}
            for link, r in zip(links(results), results)]


OPTION_SETTINGS = [(method, word_level, scores) for method in METHODS for word_level in WORD_LEVELS
                   for scores in (False, True)]


@pytest.mark.parametrize(("method", "word_level", "scores"), OPTION_SETTINGS)
def test_options_equal_the_aligners(client, direct, bam_pairs, method, word_level, scores):
    """method / word_level / scores are exactly `Aligner.align`'s options."""
    pairs = bam_pairs[:8]
    body = {"pairs": [{"src": s, "tgt": t} for s, t in pairs], "src_lang": "bam_Latn", "tgt_lang": "eng_Latn",
            "method": method, "word_level": word_level, "scores": scores}
    response = client.post("/v1/align", json=body)
    assert response.status_code == 200, response.text
    expected = direct.align([s for s, _ in pairs], [t for _, t in pairs], "bam_Latn", "eng_Latn", method=method,
                            word_level=word_level, with_scores=scores)
    assert response.json() == {"results": as_json(expected, scores)}


def test_health_ready_info_metrics_openapi(client, direct):
    assert client.get("/health").json() == {"status": "ok"}
    assert client.get("/ready").status_code == 200
    info = client.get("/v1/info").json()
    m = direct.manifest
    assert (info["model"], info["layer"], info["threshold"], info["max_positions"]) == \
        (Path(m.base_model).name, m.layer, m.default_threshold, m.max_positions)  # a name, not a server path
    assert (info["precision"], info["provider"]) == ("fp32", "cpu")
    assert info["languages"] == sorted(m.tokenizer.lang_code_ids) and "bam_Latn" in info["languages"]
    assert info["limits"]["max_pairs_per_request"] == 8
    assert (info["methods"], info["word_levels"]) == (list(METHODS), list(WORD_LEVELS))
    client.post("/v1/align", json={"pairs": [{"src": "a", "tgt": "b"}], **LANGS})
    samples = metric_samples(client.get("/metrics").text)
    assert samples[("transalign_requests_total", (("path", "/v1/align"), ("status", "200")))] >= 1
    assert samples[("transalign_pairs_aligned_total", ())] >= 1
    assert samples[("transalign_batch_tokens_count", ())] >= 1
    assert ("transalign_queue_pairs", ()) in samples
    assert samples[("transalign_request_latency_seconds_count", (("path", "/v1/align"),))] >= 1
    from openapi_spec_validator import validate

    spec = client.get("/openapi.json").json()
    validate(spec)
    assert {"/v1/align", "/v1/info", "/health", "/ready", "/metrics"} <= set(spec["paths"])
    assert set(spec["components"]["schemas"]["AlignRequest"]["properties"]) == \
        {"pairs", "src_lang", "tgt_lang", "threshold", "method", "word_level", "scores"}
    method = spec["components"]["schemas"]["AlignRequest"]["properties"]["method"]  # or null: the bundle's
    assert method["anyOf"] == [{"enum": list(METHODS), "type": "string"}, {"type": "null"}]


@pytest.mark.parametrize(("body", "status", "code", "pair", "words"), [
    ({"pairs": [], **LANGS}, 400, "empty_pairs", None, "empty"),
    ({"pairs": [{"src": "a", "tgt": "b"}, {"src": 5, "tgt": "b"}], **LANGS}, 422, "invalid_request", 1,
     "pairs[1].src must be a string"),
    ({"pairs": [{"src": "a"}], **LANGS}, 422, "invalid_request", 0, "pairs[0].tgt"),
    ({"pairs": [{"src": "a", "tgt": ["b", 3]}], **LANGS}, 422, "invalid_request", 0, "pairs[0].tgt"),
    ({"pairs": [{"src": "a", "tgt": "b"}], "threshold": 1.5, **LANGS}, 422, "invalid_request", None, "threshold"),
    ({"pairs": [{"src": "a", "tgt": "b"}], "treshold": 0.1, **LANGS}, 422, "invalid_request", None, "treshold"),
    ({"pairs": "a b", **LANGS}, 422, "invalid_request", None, "pairs"),
    ({"pairs": [{"src": "a", "tgt": "b"}], "src_lang": "english", "tgt_lang": "ces_Latn"}, 400,
     "unknown_language", None, "closest: eng_Latn"),
    ({"pairs": [{"src": "a", "tgt": "b"}], "src_lang": "eng_Latn"}, 400, "missing_language", None, "tgt_lang"),
    ({"pairs": [{"src": "a", "tgt": "b"}, {"src": "x", "tgt": "w " * 300}], **LANGS}, 400, "too_long", 1,
     "pair 1: the target sentence has more than 256 tokens"),  # not tokenized in full
    ({"pairs": [{"src": "a", "tgt": "b"}, {"src": "qz" * 300, "tgt": "b"}], **LANGS}, 400, "too_long", 1,
     "tokens (special tokens included), more than the model's maximum of 256"),  # one word, counted exactly
    ({"pairs": [{"src": "a", "tgt": "b"}] * 9, **LANGS}, 413, "too_many_pairs", None, "limit of 8"),
    ({"pairs": [{"src": "a", "tgt": "b"}], "method": "maxmax", **LANGS}, 422, "invalid_request", None,
     "method: Input should be " + " or ".join([", ".join(f"'{m}'" for m in METHODS[:-1]), f"'{METHODS[-1]}'"])),
    ({"pairs": [{"src": "a", "tgt": "b"}], "word_level": "max", **LANGS}, 422, "invalid_request", None,
     "word_level: Input should be " + " or ".join([", ".join(f"'{w}'" for w in WORD_LEVELS[:-1]),
                                                   f"'{WORD_LEVELS[-1]}'"])),
    ({"pairs": [{"src": "a", "tgt": "b"}], "scores": "yes", **LANGS}, 422, "invalid_request", None, "scores"),
    ({"pairs": [{"src": "a", "tgt": "b"}], "method": "argmax", "threshold": 0.1, **LANGS}, 422, "invalid_request",
     None, "threshold 0.1: applies to method softmax only"),
    ({"pairs": [{"src": "a" * 70_000, "tgt": "b"}], **LANGS}, 413, "body_too_large", None, "65536 bytes"),
])
def test_bad_requests(client, body, status, code, pair, words):
    response = client.post("/v1/align", json=body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert (error["code"], error["pair"]) == (code, pair)
    assert words in error["message"]


def test_malformed_json_chunked_body_and_unknown_routes(client):
    response = client.post("/v1/align", content=b'{"pairs": [', headers={"content-type": "application/json"})
    assert response.status_code == 422 and "not valid JSON" in response.json()["error"]["message"]
    chunks = (b"x" * 16_384 for _ in range(5))  # no Content-Length: the limit counts what arrives
    response = client.post("/v1/align", content=chunks, headers={"content-type": "application/json"})
    assert response.status_code == 413 and response.json()["error"]["code"] == "body_too_large"
    assert client.get("/v2/nothing").json()["error"]["code"] == "not_found"
    assert client.get("/v1/align").json()["error"]["code"] == "method_not_allowed"


def test_not_ready_then_ready(tiny_bundle, direct):
    release = threading.Event()

    def slow_load():
        assert release.wait(DEADLINE_S)
        return Aligner.load(tiny_bundle, provider="cpu")

    with app_client(tiny_bundle, load=slow_load) as c:
        assert c.get("/health").status_code == 200
        for response in (c.get("/ready"), c.get("/v1/info"),
                         c.post("/v1/align", json={"pairs": [{"src": "a", "tgt": "b"}], **LANGS})):
            assert response.status_code == 503 and response.json()["error"]["code"] == "not_ready"
            assert response.headers["retry-after"] == "1"
        release.set()
        wait_ready(c.get)
        response = c.post("/v1/align", json={"pairs": [{"src": "a b", "tgt": "c"}], **LANGS})
        assert response.json()["results"][0]["links"] == links(direct.align(["a b"], ["c"], **LANGS))[0]


def test_load_failure_is_reported(tmp_path):
    failures = []

    def broken():
        raise ValueError("bundle is damaged")

    app = create_app(ServeConfig(tmp_path, provider="cpu"), load=broken, on_fatal=failures.append)
    with TestClient(app) as c:
        app.state.batcher.close()
        response = c.get("/ready")
        assert response.status_code == 503 and "bundle is damaged" in response.json()["error"]["message"]
    assert [str(f) for f in failures] == ["bundle is damaged"]


def load_cpu(bundle, pipeline: str = "off") -> Aligner:
    """The tiny bundle on CPU; pipeline "on": the service's worker then extracts on a second thread."""
    return Aligner.load(bundle, options=LoadOptions(provider="cpu", pipeline=pipeline))


@pytest.mark.parametrize("pipeline", ["off", "on"])
def test_queue_full_answers_429(tiny_bundle, direct, pipeline):
    gate = Gate(load_cpu(tiny_bundle, pipeline), closed=False)
    body = {"pairs": [{"src": "a b", "tgt": "c d"}] * 4, **LANGS}
    with app_client(tiny_bundle, load=lambda: gate, max_queue_pairs=4, max_pairs_per_request=4,
                    max_batch_requests=1, max_wait_ms=0) as c, ThreadPoolExecutor(2) as pool:
        wait_ready(c.get)
        gate.open.clear()
        gate.entered.clear()
        first = pool.submit(c.post, "/v1/align", json=body)  # taken by the worker, held in align
        assert gate.entered.wait(DEADLINE_S)
        second = pool.submit(c.post, "/v1/align", json=body)  # fills the queue
        end = time.monotonic() + DEADLINE_S
        while c.app.state.batcher.queued_pairs < 4:
            assert time.monotonic() < end
            time.sleep(0.01)
        response = c.post("/v1/align", json={"pairs": [{"src": "a", "tgt": "b"}], **LANGS})
        assert response.status_code == 429 and response.headers["retry-after"] == "1"
        assert response.json()["error"]["code"] == "overloaded"
        gate.open.set()
        expected = links(direct.align(["a b"] * 4, ["c d"] * 4, **LANGS))
        assert first.result().json()["results"] == [{"links": r} for r in expected]
        assert second.result().json()["results"] == [{"links": r} for r in expected]
        samples = metric_samples(c.get("/metrics").text)
        assert samples[("transalign_requests_total", (("path", "/v1/align"), ("status", "429")))] == 1


def queued(c, pairs: int) -> None:
    """Wait until the service's queue holds ``pairs`` pairs."""
    end = time.monotonic() + DEADLINE_S
    while c.app.state.batcher.queued_pairs < pairs:
        assert time.monotonic() < end
        time.sleep(0.01)


def hold_the_worker(c, gate: Gate, pool):
    """Close the gate and send one request: the worker waits inside it, so the requests sent
    next queue up and share the next batch. Returns that request's future."""
    wait_ready(c.get)
    gate.open.clear()
    gate.entered.clear()
    gate.calls.clear()
    blocker = pool.submit(c.post, "/v1/align", json={"pairs": [{"src": "x", "tgt": "y"}], **LANGS})
    assert gate.entered.wait(DEADLINE_S)
    return blocker


@pytest.mark.parametrize("pipeline", ["off", "on"])
def test_a_failing_request_does_not_fail_its_batch(tiny_bundle, direct, pipeline):
    """Two requests queue while the worker is held; they share the next batch (one group), the
    engine raises on one of them: only that one fails."""
    gate = Gate(load_cpu(tiny_bundle, pipeline))
    with app_client(tiny_bundle, load=lambda: gate, max_wait_ms=0) as c, ThreadPoolExecutor(3) as pool:
        blocker = hold_the_worker(c, gate, pool)
        good = pool.submit(c.post, "/v1/align", json={"pairs": [{"src": "a b", "tgt": "c"}] * 2, **LANGS})
        bad = pool.submit(c.post, "/v1/align", json={"pairs": [{"src": "BOOM", "tgt": "c"}], **LANGS})
        queued(c, 3)
        gate.open.set()
        assert blocker.result().status_code == 200
        expected = links(direct.align(["a b"] * 2, ["c"] * 2, **LANGS))
        assert good.result().json()["results"] == [{"links": r} for r in expected]
        assert bad.result().status_code == 400
        assert bad.result().json()["error"] == {"code": "invalid_request", "message": "a sentence contains BOOM",
                                                "pair": None}
    assert gate.calls[0] == 1 and gate.calls[1] == 3 and sorted(gate.calls[2:]) == [1, 2]  # merged, then alone


class NanGate(Gate):
    """A `Gate` whose encoder half also writes NaN into the hidden rows of every source sentence
    holding the word NAN: the extraction half (`check_finite`) then refuses the whole group."""

    def __init__(self, inner: Aligner, closed: bool = False):
        super().__init__(inner, closed)
        self.extract_open = threading.Event()
        self.extract_open.set()
        self.extracting = 0
        self.buffers: list = []  # EncodedPairs.buffer of each encoder call

    def encode_prepared(self, prepared, *args, **kwargs):
        encoded = super().encode_prepared(prepared, *args, **kwargs)
        self.buffers.append(encoded.buffer)
        rows = encoded.rows
        for k, words in enumerate(prepared.src):
            if "NAN" in words:
                rows.hidden[rows.offsets[k]:rows.offsets[k] + rows.lengths[k]] = float("nan")
        return encoded

    def extract_encoded(self, encoded, *args, **kwargs):
        self.extracting += 1
        assert self.extract_open.wait(DEADLINE_S)
        return self.inner.extract_encoded(encoded, *args, **kwargs)


@pytest.mark.parametrize("pipeline", ["off", "on"])
def test_a_group_failing_in_extraction_is_retried_request_by_request(tiny_bundle, direct, pipeline):
    """The encoder half succeeds, the extraction half refuses the merged group (NaN in one
    request's rows): every request runs again alone, only the one with NaN fails."""
    gate = NanGate(load_cpu(tiny_bundle, pipeline))
    with app_client(tiny_bundle, load=lambda: gate, max_wait_ms=0) as c, ThreadPoolExecutor(4) as pool:
        blocker = hold_the_worker(c, gate, pool)
        good = pool.submit(c.post, "/v1/align", json={"pairs": [{"src": "a b", "tgt": "c"}] * 2, **LANGS})
        bad = pool.submit(c.post, "/v1/align", json={"pairs": [{"src": "NAN here", "tgt": "c"}], **LANGS})
        other = pool.submit(c.post, "/v1/align", json={"pairs": [{"src": "d e", "tgt": "f g"}], **LANGS})
        queued(c, 4)
        gate.open.set()
        assert blocker.result().status_code == 200
        expected = links(direct.align(["a b"] * 2, ["c"] * 2, **LANGS))
        assert good.result().json()["results"] == [{"links": r} for r in expected]
        assert other.result().json()["results"] == [{"links": r} for r in links(direct.align(["d e"], ["f g"],
                                                                                            **LANGS))]
        assert bad.result().status_code == 400
        assert "NaN" in bad.result().json()["error"]["message"]
    assert gate.calls[:2] == [1, 4] and sorted(gate.calls[2:]) == [1, 1, 2]  # merged, then each alone


def test_the_pipelined_worker_keeps_at_most_two_groups_between_encoder_and_answer(tiny_bundle, direct):
    """With extraction held, the encoder runs ahead by `PIPELINE_BUFFERS` groups and no more (the
    hidden states in memory stay bounded); once released, every request gets its links."""
    gate = NanGate(load_cpu(tiny_bundle, "on"))
    with app_client(tiny_bundle, load=lambda: gate, max_wait_ms=0, max_batch_requests=1) as c, \
            ThreadPoolExecutor(5) as pool:
        wait_ready(c.get)
        gate.calls.clear()
        gate.extract_open.clear()
        sent = [pool.submit(c.post, "/v1/align", json={"pairs": [{"src": f"w{k} a", "tgt": "b c"}], **LANGS})
                for k in range(5)]
        queued(c, 5 - PIPELINE_BUFFERS)  # taken: one group per slot; the rest wait in the queue
        time.sleep(0.3)  # time for a worker that ignored the bound to take and encode more
        assert len(gate.calls) == PIPELINE_BUFFERS and c.app.state.batcher.queued_pairs == 5 - PIPELINE_BUFFERS
        gate.extract_open.set()
        for k, future in enumerate(sent):
            assert future.result().json()["results"] == [{"links": r} for r in
                                                         links(direct.align([f"w{k} a"], ["b c"], **LANGS))]


@pytest.mark.parametrize("pipeline, kept", [("off", 1), ("on", PIPELINE_BUFFERS)])
def test_the_worker_reuses_its_hidden_state_buffers(tiny_bundle, direct, pipeline, kept):
    """Group after group the hidden states go into the same buffers (one in series, one per
    slot pipelined), taken from the worker's pool and given back once extracted."""
    gate = NanGate(load_cpu(tiny_bundle, pipeline))
    with app_client(tiny_bundle, load=lambda: gate, max_wait_ms=0, max_batch_requests=1) as c, \
            ThreadPoolExecutor(4) as pool:
        wait_ready(c.get)
        gate.buffers.clear()
        body = {"pairs": [{"src": "a b c", "tgt": "d e"}], **LANGS}
        answers = list(pool.map(lambda _: c.post("/v1/align", json=body), range(12)))
    expected = [{"links": r} for r in links(direct.align(["a b c"], ["d e"], **LANGS))]
    assert all(a.json()["results"] == expected for a in answers)
    assert len(gate.buffers) == 12 and all(b is not None for b in gate.buffers)
    assert len({id(b) for b in gate.buffers}) <= kept


def test_closing_the_pipelined_worker_answers_what_it_holds(tiny_bundle, direct):
    """`Batcher.close` finishes the queue and the groups waiting for extraction before it returns."""
    from transalign.serve.batcher import Batcher
    from transalign.serve.prepare import Prepared

    gate = NanGate(load_cpu(tiny_bundle, "on"))
    batcher = Batcher(lambda: gate, max_batch_tokens=None, max_wait_ms=0, max_batch_requests=1,
                      max_queue_pairs=100)
    batcher.start()
    assert batcher.ready.wait(DEADLINE_S)
    gate.extract_open.clear()
    pairs = [(f"w{k} a", "b c") for k in range(4)]
    jobs = [batcher.submit(Prepared(gate.prepare([s], [t], **LANGS), gate.extraction())) for s, t in pairs]
    threading.Timer(0.3, gate.extract_open.set).start()
    batcher.close(DEADLINE_S)
    assert all(job.future.done() for job in jobs)
    for job, (s, t) in zip(jobs, pairs):
        assert links(job.future.result()) == links(direct.align([s], [t], **LANGS))


def test_a_lone_request_does_not_wait_for_company(tiny_bundle):
    """--max-wait-ms bounds the wait for requests already on their way; none are: no wait."""
    with app_client(tiny_bundle, max_wait_ms=5000) as c:
        wait_ready(c.get)
        for _ in range(3):
            clock = time.monotonic()
            assert c.post("/v1/align", json={"pairs": [{"src": "a", "tgt": "b"}], **LANGS}).status_code == 200
            assert time.monotonic() - clock < 2.5


# -- a real server: the CLI, concurrency, micro-batching, API key, SIGTERM ----------------------


class Server:
    """`transalign serve` in a subprocess on a free loopback port; stderr drained by a thread."""

    def __init__(self, bundle: Path, *args: str):
        self.proc = subprocess.Popen([sys.executable, "-m", "transalign", "serve", str(bundle), "--port", "0",
                                      "--provider", "cpu", *args], stderr=subprocess.PIPE, text=True, cwd=ROOT)
        self.lines: list[str] = []
        self._url = threading.Event()
        threading.Thread(target=self._drain, daemon=True).start()
        assert self._url.wait(DEADLINE_S), f"no 'listening on' line: {self.lines}"
        match = re.search(r"listening on (http://127\.0\.0\.1:\d+)", "".join(self.lines))
        assert match, self.lines
        self.url = match.group(1)
        wait_ready(lambda path: httpx.get(self.url + path))

    def _drain(self) -> None:
        for line in self.proc.stderr:
            self.lines.append(line)
            if "listening on" in line:
                self._url.set()
        self._url.set()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture(scope="module", params=["off", "on"], ids=["serial", "pipelined"])
def server(request, tiny_bundle, tmp_path_factory):
    """The worker in series, and pipelined (extraction on its own thread, `batcher._Extractor`):
    the same answers either way."""
    key = tmp_path_factory.mktemp("key") / "api-key"
    key.write_text("s3cret-token\n")
    s = Server(tiny_bundle, "--max-wait-ms", "20", "--max-pairs-per-request", "8", "--api-key-file", str(key),
               "--pipeline", request.param)
    s.headers = {"Authorization": "Bearer s3cret-token"}
    info = httpx.get(s.url + "/v1/info", headers=s.headers).json()
    assert info["pipeline"] is (request.param == "on")
    yield s
    s.close()


def test_concurrent_clients_get_exactly_the_aligners_links(server, direct, bam_pairs):
    """32 clients, 300 pairs in requests of 1-8, two directions and two thresholds: each request's
    links equal one direct `Aligner.align` over all pairs of its settings; batches did merge."""
    rng = random.Random(14)
    settings = [("bam_Latn", "eng_Latn", None), ("eng_Latn", "bam_Latn", None), ("bam_Latn", "eng_Latn", 0.05)]
    requests, start = [], 0
    while start < len(bam_pairs):
        size = rng.randint(1, 8)
        chunk, setting = bam_pairs[start:start + size], rng.choice(settings)
        requests.append((setting, list(range(start, start + len(chunk)))))
        start += len(chunk)
    truth = {}
    for setting in settings:
        src_lang, tgt_lang, threshold = setting
        index = [i for s, ids in requests if s == setting for i in ids]
        swap = src_lang == "eng_Latn"
        src = [bam_pairs[i][swap] for i in index]
        tgt = [bam_pairs[i][not swap] for i in index]
        truth.update({(setting, i): r for i, r in zip(index, links(direct.align(src, tgt, src_lang, tgt_lang,
                                                                                   threshold)))})
    local = threading.local()

    def send(request):
        setting, index = request
        if not hasattr(local, "client"):
            local.client = httpx.Client(base_url=server.url, headers=server.headers, timeout=DEADLINE_S)
        src_lang, tgt_lang, threshold = setting
        swap = src_lang == "eng_Latn"
        pairs = [{"src": bam_pairs[i][swap], "tgt": " ".join(bam_pairs[i][not swap])} for i in index]
        body = {"pairs": pairs, "src_lang": src_lang, "tgt_lang": tgt_lang}
        if threshold is not None:
            body["threshold"] = threshold
        response = local.client.post("/v1/align", json=body)
        assert response.status_code == 200, response.text
        return request, response.json()["results"]

    clock = time.monotonic()
    with ThreadPoolExecutor(32) as pool:
        answers = list(pool.map(send, requests))
    assert time.monotonic() - clock < DEADLINE_S
    assert sum(len(index) for (_, index), _ in answers) == 300
    for (setting, index), results in answers:
        assert [r["links"] for r in results] == [truth[(setting, i)] for i in index]
    samples = metric_samples(httpx.get(server.url + "/metrics").text)
    assert multi_request_batches(samples) > 0, "no batch merged two requests under 32 concurrent clients"
    assert samples[("transalign_batch_pairs_sum", ())] / samples[("transalign_batch_pairs_count", ())] > 1
    assert samples[("transalign_pairs_aligned_total", ())] >= 300


def test_concurrent_mixed_methods_get_exactly_the_aligners_links_and_scores(server, direct, bam_pairs):
    """32 clients, requests of 1-6 pairs with a random extraction setting each (method, word level,
    scores, threshold, direction): every answer equals `Aligner.align` with those options, whatever
    shared its batch (the batcher groups by the full setting)."""
    rng = random.Random(1414)
    settings = [(lang, method, word_level, scores, threshold)
                for lang in (("bam_Latn", "eng_Latn"), ("eng_Latn", "bam_Latn"))
                for method, word_level, scores in OPTION_SETTINGS
                for threshold in ((None, 0.05) if method == "softmax" else (None,))]
    pool_pairs = bam_pairs[:120]
    requests = []
    for _ in range(96):
        start = rng.randrange(len(pool_pairs))
        requests.append((rng.choice(settings), list(range(start, min(len(pool_pairs), start + rng.randint(1, 6))))))
    truth = {}
    for setting in set(s for s, _ in requests):
        (src_lang, tgt_lang), method, word_level, scores, threshold = setting
        swap = src_lang == "eng_Latn"
        results = direct.align([p[swap] for p in pool_pairs], [p[not swap] for p in pool_pairs], src_lang, tgt_lang,
                               threshold, method=method, word_level=word_level, with_scores=scores)
        truth[setting] = as_json(results, scores)
    local = threading.local()

    def send(request):
        setting, index = request
        if not hasattr(local, "client"):
            local.client = httpx.Client(base_url=server.url, headers=server.headers, timeout=DEADLINE_S)
        (src_lang, tgt_lang), method, word_level, scores, threshold = setting
        swap = src_lang == "eng_Latn"
        body = {"pairs": [{"src": pool_pairs[i][swap], "tgt": pool_pairs[i][not swap]} for i in index],
                "src_lang": src_lang, "tgt_lang": tgt_lang, "method": method, "word_level": word_level,
                "scores": scores}
        if threshold is not None:
            body["threshold"] = threshold
        response = local.client.post("/v1/align", json=body)
        assert response.status_code == 200, response.text
        return request, response.json()["results"]

    before = metric_samples(httpx.get(server.url + "/metrics").text)
    with ThreadPoolExecutor(32) as pool:
        answers = list(pool.map(send, requests))
    for (setting, index), results in answers:
        assert results == [truth[setting][i] for i in index], setting
    samples = metric_samples(httpx.get(server.url + "/metrics").text)
    assert multi_request_batches(samples) > multi_request_batches(before), "no batch merged two requests"
    sent = sum(len(index) for _, index in requests)
    pairs = ("transalign_pairs_aligned_total", ())
    assert samples[pairs] - before[pairs] == sent  # from the calls' own stats: every pair counted once
    encode = ("transalign_engine_seconds_total", (("phase", "encode"),))
    assert samples[encode] > before[encode]
    padded, real = ("transalign_padded_tokens_total", ()), ("transalign_batch_tokens_sum", ())
    assert samples[padded] - before[padded] >= samples[real] - before[real] > 0


def test_api_key(server):
    body = {"pairs": [{"src": "a", "tgt": "b"}], **LANGS}
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret-token"}):
        response = httpx.post(server.url + "/v1/align", json=body, headers=headers)
        assert response.status_code == 401 and response.json()["error"]["code"] == "unauthorized"
        assert response.headers["www-authenticate"] == "Bearer"
    assert httpx.get(server.url + "/v1/info").status_code == 401
    assert httpx.get(server.url + "/v1/info", headers=server.headers).status_code == 200
    assert httpx.get(server.url + "/health").status_code == 200
    assert httpx.post(server.url + "/v1/align", json=body, headers=server.headers).status_code == 200


def test_sigterm_answers_requests_in_flight_and_exits_0(tiny_bundle, direct):
    """Six requests have sent their headers and half their body when SIGTERM arrives: the server
    stops accepting connections, still answers all six (body finished after the signal), exits 0."""
    s = Server(tiny_bundle)
    host, port = s.url.removeprefix("http://").split(":")
    try:
        sentences = [(f"a b {k}", "c d") for k in range(6)]
        bodies = [json.dumps({"pairs": [{"src": a, "tgt": b}], **LANGS}).encode() for a, b in sentences]
        conns = []
        for body in bodies:
            conn = socket.create_connection((host, int(port)), timeout=DEADLINE_S)
            conn.sendall(b"POST /v1/align HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body[:10])
            conns.append(conn)
        in_flight, end = ("transalign_align_requests_in_flight", ()), time.monotonic() + DEADLINE_S
        while metric_samples(httpx.get(s.url + "/metrics").text)[in_flight] < len(bodies):
            assert time.monotonic() < end and s.proc.poll() is None
            time.sleep(0.02)
        s.proc.send_signal(signal.SIGTERM)
        end = time.monotonic() + DEADLINE_S
        while "Shutting down" not in "".join(s.lines):
            assert time.monotonic() < end
            time.sleep(0.02)
        with pytest.raises(httpx.TransportError):  # no new connections
            httpx.get(s.url + "/health", timeout=2)
        answers = []
        for conn, body in zip(conns, bodies):
            conn.sendall(body[10:])
            answers.append(b"".join(iter(lambda: conn.recv(65536), b"")).decode())
            conn.close()
        assert s.proc.wait(DEADLINE_S) == 0, "".join(s.lines)
        for (src, tgt), answer in zip(sentences, answers):
            head, _, payload = answer.partition("\r\n\r\n")
            assert head.startswith("HTTP/1.1 200"), answer
            assert json.loads(payload)["results"][0]["links"] == links(direct.align([src], [tgt], **LANGS))[0]
    finally:
        s.close()


def test_cli_refuses_a_missing_bundle_before_listening(tmp_path):
    out = subprocess.run([sys.executable, "-m", "transalign", "serve", str(tmp_path / "nope"), "--port", "0"],
                         capture_output=True, text=True, cwd=ROOT, timeout=DEADLINE_S)
    assert out.returncode == 2 and "does not exist" in out.stderr and "listening" not in out.stderr


def test_listening_socket_is_tcp_so_responses_are_not_delayed():
    """asyncio sets TCP_NODELAY only on sockets whose proto is TCP; without it every response
    waited ~40 ms for a delayed ACK (Nagle)."""
    from transalign.cli.serve_cmd import _bind

    sock = _bind("127.0.0.1", 0)
    try:
        assert sock.proto == socket.IPPROTO_TCP and sock.getsockname()[1] > 0
    finally:
        sock.close()


def test_serve_config_limits(tiny_bundle):
    with pytest.raises(ValueError, match="max_pairs_per_request"):
        ServeConfig(tiny_bundle, max_pairs_per_request=100, max_queue_pairs=10)
    with pytest.raises(ValueError, match="max_batch_requests"):
        ServeConfig(tiny_bundle, max_batch_requests=0)


def test_import_stays_light():
    code = ("import sys, transalign, transalign.serve, transalign.serve.batcher, transalign.serve.prepare, "
            "transalign.cli.serve_cmd; bad = {'torch', 'transformers', 'peft', 'fastapi', 'uvicorn'} & "
            "set(sys.modules); print(json.dumps(sorted(bad)))")
    out = subprocess.run([sys.executable, "-c", "import json; " + code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == []


def test_int8_answers_do_not_depend_on_the_batch(tiny_bundle, bam_pairs):
    """int8 has constant activation scales: pairs merged with other clients' requests get exactly
    the links they get alone (before static scales, a batch's loudest pair moved everyone's)."""
    import concurrent.futures

    alone = Aligner.load(tiny_bundle, provider="cpu", precision="int8")
    pairs = bam_pairs[:96]
    expected = [alone.align([s], [t], "bam_Latn", "eng_Latn")[0].links for s, t in pairs]
    config = ServeConfig(tiny_bundle, provider="cpu", precision="int8", max_wait_ms=20.0)
    with TestClient(create_app(config)) as c:
        wait_ready(c.get)

        def ask(k):
            body = {"pairs": [{"src": s, "tgt": t} for s, t in pairs[k:k + 4]], "src_lang": "bam_Latn",
                    "tgt_lang": "eng_Latn"}
            response = c.post("/v1/align", json=body)
            assert response.status_code == 200, response.text
            return [[tuple(link) for link in r["links"]] for r in response.json()["results"]]

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            got = [r for chunk in pool.map(ask, range(0, len(pairs), 4)) for r in chunk]
    assert got == [list(e) for e in expected]
