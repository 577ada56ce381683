# Entry points. `make demo` is the whole job on a fresh machine (tools/demo.py): create the
# virtual environment, install transalign with the export, dev and demo extras, convert the real
# multilingual-e5-small, export it to a bundle, align examples and score the Czech-English gold.
# `make test` and `make bench` use .venv when it exists, else the python on PATH, and install nothing.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH ?= torch==2.13.0
# extra pip options for torch, e.g. TORCH_INDEX="--index-url https://download.pytorch.org/whl/cpu"
TORCH_INDEX ?=
STAMP := $(VENV)/.transalign-installed
PY = $(if $(wildcard $(BIN)/python),$(BIN)/python,$(PYTHON))

.PHONY: demo test bench install c install-c

demo: $(STAMP)
	$(BIN)/python -m tools.demo

test:
	$(PY) -m pytest -q

bench:
	$(PY) -m benchmarks.run

# libtransalign, the C library (README.md "C library"), into build/c/
c:
	$(MAKE) -C c BUILD=$(CURDIR)/build/c PYTHON=$(if $(wildcard $(BIN)/python),$(abspath $(BIN)/python),$(PYTHON))

PREFIX ?= /usr/local
# libtransalign installed under PREFIX: include/, lib/ (+ lib/pkgconfig/transalign.pc), bin/
# (`make install` is the Python set-up)
install-c: c
	$(MAKE) -C c install BUILD=$(CURDIR)/build/c PREFIX=$(abspath $(PREFIX)) PYTHON=$(if $(wildcard $(BIN)/python),$(abspath $(BIN)/python),$(PYTHON))

install: $(STAMP)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# torch first and pinned (the export extra pins the same version), then the package itself
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install $(TORCH_INDEX) "$(TORCH)"
	$(BIN)/python -m pip install -e ".[export,train,serve,ray,eval,dev,demo]"
	touch $@
