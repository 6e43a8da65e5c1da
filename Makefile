# dogops: every task is one target; `make help` lists them.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
DEMO   := demo
PORT   ?= 8080

.PHONY: help setup demo serve tune test images test-images bench-train bench-serve bench-tune clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

setup: $(BIN)/.installed  ## create .venv and install dogops, train (and their pinned dependencies)

demo: setup  ## generated data -> a real training run -> its artifact -> served and asked for a prediction
	$(BIN)/dogops data synthetic --out $(DEMO)/data --classes 10 --per-class 30 --size 96
	$(BIN)/train --data $(DEMO)/data --model-dir $(DEMO)/model --checkpoint-dir $(DEMO)/checkpoints \
		--backbone efficientnet_lite0 --image_size 96 --epochs 15 --learning_rate 0.003 --batch_size 32
	tar -C $(DEMO)/model -czf $(DEMO)/model.tar.gz .
	@echo; echo "artifact ($(DEMO)/model, packed as SageMaker would in $(DEMO)/model.tar.gz):"
	@ls -l $(DEMO)/model
	@cat $(DEMO)/model/manifest.json
	@echo; echo "serving it on 127.0.0.1:$(PORT) (the SageMaker hosting contract) and asking for a prediction:"
	@DOGOPS_BIND_HOST=127.0.0.1 SAGEMAKER_BASE_DIR=$(DEMO) SAGEMAKER_BIND_TO_PORT=$(PORT) $(BIN)/serve > $(DEMO)/serve.log 2>&1 & pid=$$!; \
	  $(BIN)/dogops predict --endpoint http://127.0.0.1:$(PORT) --wait 120 \
	    $$(ls $(DEMO)/data/test/004.Akita/* | head -1); rc=$$?; \
	  kill $$pid; wait $$pid; exit $$rc

serve: setup  ## serve demo/model on 127.0.0.1:8080 (PORT=...) until Ctrl-C
	DOGOPS_BIND_HOST=127.0.0.1 SAGEMAKER_BASE_DIR=$(DEMO) SAGEMAKER_BIND_TO_PORT=$(PORT) $(BIN)/serve

tune: setup  ## tune on demo/data with the default spec (SPEC=file to change); records the best model
	$(BIN)/dogops tune --data $(DEMO)/data $(if $(SPEC),--spec $(SPEC)) --jobs-dir $(DEMO)/tuning-jobs

test: setup  ## the whole test suite (real training runs, real servers on loopback)
	$(BIN)/pytest

images:  ## build the training and serving images (needs Docker)
	docker build -f training/Dockerfile -t dogops-training:dev .
	docker build -f serving/Dockerfile -t dogops-serving:dev .

test-images: setup images  ## the test suite with the image tests (docker run IMAGE train / serve) switched on
	DOGOPS_TEST_IMAGES=1 $(BIN)/pytest

bench-train: setup  ## training throughput vs a bare PyTorch loop; trial time with vs without the feature cache
	$(BIN)/python benchmarks/bench_train.py

bench-serve: setup  ## serve's p50/p99 latency and throughput as ratios to the raw in-process path
	$(BIN)/python benchmarks/bench_serve.py

bench-tune: setup  ## 8 trials: with vs without the feature cache, 2-parallel vs sequential
	$(BIN)/python benchmarks/bench_tune.py

clean:  ## remove the demo output (keeps .venv)
	rm -rf $(DEMO)
