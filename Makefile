# dogops: every task is one target; `make help` lists them.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
DEMO   := demo

.PHONY: help setup demo test bench-train clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

setup: $(BIN)/.installed  ## create .venv and install dogops, train (and their pinned dependencies)

demo: setup  ## generated data -> a real training run -> the model artifact it wrote
	$(BIN)/dogops data synthetic --out $(DEMO)/data --classes 10 --per-class 30 --size 96
	$(BIN)/train --data $(DEMO)/data --model-dir $(DEMO)/model --checkpoint-dir $(DEMO)/checkpoints \
		--backbone efficientnet_lite0 --image_size 96 --epochs 15 --learning_rate 0.003 --batch_size 32
	tar -C $(DEMO)/model -czf $(DEMO)/model.tar.gz .
	@echo; echo "artifact ($(DEMO)/model, packed as SageMaker would in $(DEMO)/model.tar.gz):"
	@ls -l $(DEMO)/model
	@cat $(DEMO)/model/manifest.json

test: setup  ## the whole test suite (real training runs, a real S3 emulator server)
	$(BIN)/pytest

bench-train: setup  ## training throughput vs a bare PyTorch loop; trial time with vs without the feature cache
	$(BIN)/python benchmarks/bench_train.py

clean:  ## remove the demo output (keeps .venv)
	rm -rf $(DEMO)
