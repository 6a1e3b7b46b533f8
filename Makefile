# Two commands matter: `make eval` (everything, on the bundled COCO images) and `make test`.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
REPO ?= model_repository
ONNX := $(REPO)/hrnet_om/1/model.onnx
GRPC_PORT ?= 8001
CHECKPOINT ?=

.PHONY: install model serve eval test proto bench fuzz soak check-perf-analyzer clean

install: $(VENV)/.installed

$(VENV)/.installed: requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements.lock
	# xtcocotools' wheel is built for numpy 1: build it against the pinned numpy 2.
	$(BIN)/pip install -q --no-binary xtcocotools --no-build-isolation xtcocotools==1.14.3
	# Export only (the server never imports torch): the CPU build.
	$(BIN)/pip install -q torch==2.13.0
	touch $@

# The ONNX network: random weights (loud warning) unless CHECKPOINT=path/to/hrnet_w32_coco_512x512-bcb8c247_20200816.pth
model: install
	@if [ -n "$(CHECKPOINT)" ] || [ ! -f $(ONNX) ]; then \
		$(PY) -m hrnet.export --out $(ONNX) $(if $(CHECKPOINT),--checkpoint $(CHECKPOINT)); \
	else echo "$(ONNX) exists (make model CHECKPOINT=... to rebuild)"; fi

serve: model
	$(PY) -m backend.server --model-repository $(REPO) --grpc-port $(GRPC_PORT)

eval: model
	PYTHON=$(PY) REPO=$(REPO) bash scripts/eval.sh

test: install
	$(PY) -m pytest -q $(PYTEST_ARGS)

proto: install
	$(PY) proto/generate.py

bench: model
	$(PY) -m bench.pipeline --repo $(REPO)

check-perf-analyzer: install
	$(PY) -m pytest -q tests/backend/test_perf_analyzer.py

fuzz: install
	FUZZ_EXAMPLES=$${FUZZ_EXAMPLES:-10000} $(PY) -m pytest -q -s tests/reliability/test_fuzz.py -m slow

soak: install
	$(PY) -m tests.reliability.soak

clean:
	rm -rf $(VENV) $(ONNX) results .pytest_cache
