# Two commands matter: `make eval` (everything, on the bundled COCO images) and `make test`.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
REPO ?= model_repository
ONNX := $(REPO)/hrnet_om/1/model.onnx
GRPC_PORT ?= 8001
HTTP_PORT ?= 8000
METRICS_PORT ?= 8002
CHECKPOINT ?=
TRUST_CHECKPOINT ?=
CONFIG ?=
SOC ?=
GEARS ?=
GPU ?=
REPLICAS ?= 2

.PHONY: install model serve eval test proto bench bench-transport fuzz soak check-perf-analyzer om check-gpu cluster install-cluster clean

install: $(VENV)/.installed $(if $(GPU),$(VENV)/.installed-gpu)

$(VENV)/.installed: requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements.lock
	# xtcocotools' wheel is built for numpy 1: build it against the pinned numpy 2.
	$(BIN)/pip install -q --no-binary xtcocotools --no-build-isolation xtcocotools==1.14.3
	# Export only (the server never imports torch): the CPU build.
	$(BIN)/pip install -q torch==2.13.0
	touch $@

# GPU=1: onnxruntime-gpu (TensorRT and CUDA providers; CUDA 12 + cuDNN 9 from pip's nvidia wheels)
# in place of onnxruntime; 1.22.0 is the GPU build of the lock's 1.22 (there is no 1.22.1 GPU build).
$(VENV)/.installed-gpu: $(VENV)/.installed
	$(BIN)/pip uninstall -q -y onnxruntime onnxruntime-gpu
	$(BIN)/pip install -q "onnxruntime-gpu[cuda,cudnn]==1.22.0"
	touch $@

# The ONNX network: random weights (loud warning) unless CHECKPOINT=path/to/hrnet_w32_coco_512x512-bcb8c247_20200816.pth
# (TRUST_CHECKPOINT=1: --trust-checkpoint, full unpickling, for a trusted file the safe loader refuses)
model: install
	@if [ -n "$(CHECKPOINT)" ] || [ ! -f $(ONNX) ]; then \
		$(PY) -m hrnet.export --out $(ONNX) $(if $(CHECKPOINT),--checkpoint $(CHECKPOINT)) $(if $(TRUST_CHECKPOINT),--trust-checkpoint); \
	else echo "$(ONNX) exists (make model CHECKPOINT=... to rebuild)"; fi

# CONFIG=ascend: hrnet_om from configs/ascend.pbtxt (the Ascend NPU path; make om first)
serve: model
	$(PY) -m backend.server --model-repository $(REPO) --grpc-port $(GRPC_PORT) --http-port $(HTTP_PORT) --metrics-port $(METRICS_PORT) $(if $(CONFIG),--model-config-name $(CONFIG))

# REPLICAS servers behind nginx (gRPC on GRPC_PORT, HTTP on HTTP_PORT); state in results/cluster.json
cluster: model install-cluster
	$(PY) -m deploy.cluster --replicas $(REPLICAS) --model-repository $(REPO) --grpc-port $(GRPC_PORT) --http-port $(HTTP_PORT)

# Debian's nginx for make cluster (apt-get update && apt-get install nginx, when absent)
install-cluster:
	bash deploy/install_nginx.sh

# The OM for an Ascend chip (ATC, CANN toolkit): make om SOC=Ascend310P3 [GEARS="512,512;512,576;..."]
ifneq ($(filter om,$(MAKECMDGOALS)),)
ifeq ($(SOC),)
$(error usage: make om SOC=Ascend310P3 [GEARS=...] (SOC: the chip as npu-smi info names it))
endif
endif
om: model
	PYTHON=$(PY) REPO=$(REPO) bash scripts/atc_hrnet.sh "$(SOC)" "$(GEARS)"

eval: model
	PYTHON=$(PY) REPO=$(REPO) bash scripts/eval.sh

test: install
	@bash deploy/install_nginx.sh || echo "nginx could not be installed: the cluster tests will be skipped"
	$(PY) -m pytest -q $(PYTEST_ARGS)

proto: install
	$(PY) proto/generate.py

bench: model
	$(PY) -m bench.pipeline --repo $(REPO)
	$(PY) -m bench.emulated_device
	$(PY) -m bench.transport

# Large tensors (3 MiB FP32 echo) over gRPC and HTTP, this server beside PyTriton, perf_analyzer
# (quick re-run: $(PY) -m bench.transport --only ours --protocol grpc --concurrency 1 --rounds 1)
bench-transport: install
	$(PY) -m bench.transport

# hrnet_om on an NVIDIA GPU (needs make install GPU=1): img/s of the network and the pipeline
check-gpu: model
	$(PY) -m bench.check_gpu --repo $(REPO)

check-perf-analyzer: install
	$(PY) -m pytest -q tests/backend/test_perf_analyzer.py

fuzz: install
	FUZZ_EXAMPLES=$${FUZZ_EXAMPLES:-10000} $(PY) -m pytest -q -s tests/reliability/test_fuzz.py -m slow

soak: install
	$(PY) -m tests.reliability.soak

clean:
	rm -rf $(VENV) $(ONNX) results .pytest_cache
