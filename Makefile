# dogops: every task is one target; `make help` lists them.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
ML     := .dogops/stack/ml
PORT   ?= 8080

.PHONY: help setup lock demo up down serve tune test test-slow test-all test-faults soak images test-images bench-train bench-serve bench-stack bench-lambda bench-hosting bench-tune clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

# The venv installs the dev lock (every role's exact versions, with hashes), then the project itself.
$(BIN)/.installed: requirements/dev.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --require-hashes -r requirements/dev.txt
	$(BIN)/pip install --quiet --no-deps -e .
	touch $@

# checkov and parliament (the promote preflight) in a venv of their own: checkov pins an older boto3.
$(VENV)/preflight/.installed: dogops/promote/preflight-tools.txt
	$(PYTHON) -m venv $(VENV)/preflight
	$(VENV)/preflight/bin/pip install --quiet -r $<
	touch $@

# One venv per Lambda Python runtime (3.11, 3.12, 3.13) that pyenv has here, with the Lambda runtime's packages only
# (requirements/lambda-runtime.txt): a function runs on its configured minor. A minor without pyenv's Python is
# skipped (its functions run on the stack's Python, and say so); a venv already made from the lock is kept.
.venv-lambda/.installed: requirements/lambda-runtime.txt services/gateway/lambda_interpreters.py $(BIN)/.installed
	$(BIN)/python -m services.gateway.lambda_interpreters
	mkdir -p $(@D) && touch $@

setup: $(BIN)/.installed $(VENV)/preflight/.installed .venv-lambda/.installed  ## create .venv from the dev lock (requirements/dev.txt: every role, the tools), the Lambda runtime venvs (.venv-lambda), and install dogops

# One lock per role (pyproject's extras), resolved by uv for Python 3.11 on every platform, with the
# hashes of every file. dev.txt first: each role's lock takes its versions, so images and tests agree.
# Versions already locked are kept; UPGRADE=1 takes the newest each range allows. One version per package
# for every Python (--fork-strategy fewest): a library whose newest release needs a newer Python (scipy)
# would otherwise be pinned twice.
ROLES   := serve train tune stack promote
COMPILE  = $(BIN)/uv pip compile --quiet --universal --python-version 3.11 --generate-hashes \
           --fork-strategy fewest --custom-compile-command 'make lock' $(if $(UPGRADE),--upgrade)

lock: $(BIN)/.installed  ## regenerate requirements/*.txt (the exact, hashed versions) from pyproject.toml's ranges; UPGRADE=1
	$(COMPILE) pyproject.toml --extra dev -o requirements/dev.txt
	for role in $(ROLES); do $(COMPILE) pyproject.toml --extra $$role -c requirements/dev.txt -o requirements/$$role.txt || exit 1; done
	$(COMPILE) requirements/lambda-runtime.in -c requirements/dev.txt -o requirements/lambda-runtime.txt

demo: setup  ## the local stack without Docker: data -> S3 -> train -> endpoint + Lambda -> top-5 for a photo by URL; STOP=1 stops it after
	@if $(BIN)/dogops status > /dev/null 2>&1; then echo "the stack is already up: using it"; \
	  else $(BIN)/dogops up $(if $(DATA),--data $(DATA)); fi
	@eval "$$($(BIN)/dogops env)"; echo; \
	  echo "dogops invoke: Lambda $$DOGOPS_FUNCTION_NAME -> SageMaker Runtime -> endpoint $$DOGOPS_ENDPOINT_NAME, photo $$DOGOPS_SAMPLES_URL/dog.jpg"; \
	  $(BIN)/dogops invoke --url "$$DOGOPS_SAMPLES_URL/dog.jpg"; rc=$$?; echo; \
	  $(if $(STOP),$(BIN)/dogops down;,echo "the stack is up: demo page $${DOGOPS_SAMPLES_URL%/samples}/ (make down stops it)";) \
	  exit $$rc

up: setup  ## start the local stack as host processes (DATA=dir for your own data); `dogops status` checks it
	$(BIN)/dogops up $(if $(DATA),--data $(DATA))

down: setup  ## stop the native stack
	$(BIN)/dogops down

serve: setup  ## serve the stack's trained model alone on 127.0.0.1:8080 (PORT=...; after make demo) until Ctrl-C
	DOGOPS_BIND_HOST=127.0.0.1 SAGEMAKER_BASE_DIR=$(ML) SAGEMAKER_BIND_TO_PORT=$(PORT) $(BIN)/serve

tune: setup  ## tune on the stack's data (after make demo; DATA=dir, SPEC=file to change); records the best model
	$(BIN)/dogops tune --data $(or $(DATA),$(ML)/data) $(if $(SPEC),--spec $(SPEC)) --jobs-dir tuning-jobs

# Two tiers, by the pytest marker `slow` (pyproject.toml): CI runs both, each test once (`make test`, then `make test-slow`).
test: setup  ## the fast tier: unit tests and real end-to-end runs of each role (not the tests marked slow)
	$(BIN)/pytest -m "not slow"

test-slow: setup  ## the slow tier alone: SIGTERM and spot resumes, multi-host training, the native stack up/down, ...
	$(BIN)/pytest -m slow

test-all: setup  ## both tiers: every test (make test + make test-slow)
	$(BIN)/pytest

# A private native stack on free ports (state in a temporary folder): safe beside a running stack.
test-faults: setup  ## load through Lambda on a private stack, then each process SIGKILLed under it (short; CI runs it in test-slow)
	$(BIN)/pytest tests/faults -s

soak: setup  ## 10 min at 16 concurrent through Lambda (model server RSS growth < 5%), then the kills (DURATION=s, CONCURRENCY=)
	$(BIN)/python benchmarks/soak.py --seconds $(or $(DURATION),600) --concurrency $(or $(CONCURRENCY),16) --rss-limit 5

images:  ## build the training and serving images (needs Docker)
	docker build -f training/Dockerfile -t dogops-training:dev .
	docker build -f serving/Dockerfile -t dogops-serving:dev .

test-images: setup images  ## both tiers with the image tests (docker run IMAGE train / serve) switched on
	DOGOPS_TEST_IMAGES=1 $(BIN)/pytest

.PHONY: up-compose down-compose test-compose
COMPOSE ?= docker compose

up-compose: setup  ## the local stack in Docker (compose.yaml): builds missing images, waits until all is healthy
	$(BIN)/dogops env > /dev/null  # writes .env: the stack's secret, for compose
	$(COMPOSE) up --detach --wait
	@mkdir -p .dogops/stack/logs  # the host runner: the stack's SDK jobs and endpoints, in this machine's Docker
	nohup $(BIN)/python -m services.jobs.host_runner >> .dogops/stack/logs/host-runner.log 2>&1 & echo $$! > .dogops/stack/host-runner.pid
	@echo "stack up: demo page http://127.0.0.1:$${DOGOPS_GATEWAY_PORT:-8000}/; eval \"\$$($(BIN)/dogops env)\" points boto3 at it"

down-compose:  ## stop the Docker stack, its host runner and its endpoint containers; drop its volumes
	-[ -f .dogops/stack/host-runner.pid ] && kill $$(cat .dogops/stack/host-runner.pid); rm -f .dogops/stack/host-runner.pid
	-docker ps -aq --filter label=dogops.endpoint | xargs -r docker rm -f
	$(COMPOSE) down --volumes

test-compose: setup  ## the integration suite against the Docker stack (started and stopped here unless running)
	STACK=compose $(BIN)/pytest integration_tests

bench-train: setup  ## training throughput vs a bare PyTorch loop; trial time with vs without the feature cache
	$(BIN)/python benchmarks/bench_train.py

bench-serve: setup  ## serve's p50/p99 latency and throughput as ratios to the raw in-process path
	$(BIN)/python benchmarks/bench_serve.py

bench-stack: setup  ## the native stack's cold start; Lambda -> gateway -> endpoint against /invocations directly
	$(BIN)/python benchmarks/bench_stack.py

bench-lambda: setup  ## a Lambda function's cold start and warm invoke on the gateway (awslambdaric workers)
	$(BIN)/python benchmarks/bench_lambda.py

bench-hosting: setup  ## native hosting: CreateEndpoint to InService, and the memory of 1, 2 and 4 endpoints
	$(BIN)/python benchmarks/bench_hosting.py

bench-tune: setup  ## 8 trials: with vs without the feature cache, warm vs cold trials, 2-parallel vs sequential
	$(BIN)/python benchmarks/bench_tune.py

clean:  ## stop the native stack; remove its state, data, model and logs, and tuning jobs (keeps .venv)
	-$(BIN)/dogops down
	rm -rf .dogops/stack tuning-jobs

# The SageMaker Python SDKs, each in a venv of its own (never a dependency of dogops): .venv-sdk2 has
# the newest 2.x, .venv-sdk3 the newest 3.x, each from its exact, hashed lock in examples/sagemaker-sdk/
# (with nbclient + ipykernel to run the example notebooks headless). The SDK tests and examples use them.
SDK_DIR := examples/sagemaker-sdk
.venv-sdk%/.installed: $(SDK_DIR)/requirements-v%.txt $(BIN)/.installed
	rm -rf .venv-sdk$*
	$(PYTHON) -m venv .venv-sdk$*
	$(BIN)/uv pip install --quiet --python .venv-sdk$*/bin/python --require-hashes -r $<
	touch $@

.PHONY: sdk-venvs sdk-lock
sdk-venvs: .venv-sdk2/.installed .venv-sdk3/.installed  ## the SageMaker SDK venvs: .venv-sdk2 (SDK 2.x), .venv-sdk3 (SDK 3.x), from examples/sagemaker-sdk/requirements-v*.txt

sdk-lock: $(BIN)/.installed  ## regenerate examples/sagemaker-sdk/requirements-v*.txt from their .in files (exact, hashed)
	for v in 2 3; do $(BIN)/uv pip compile $(SDK_DIR)/requirements-v$$v.in --quiet --universal --python-version 3.11 \
	  --generate-hashes --custom-compile-command 'make sdk-lock' -o $(SDK_DIR)/requirements-v$$v.txt || exit 1; done

.PHONY: promote destroy
STAGE ?= dev

promote: setup  ## push dogops-serving:dev (or IMAGE=ECR URI by digest), preflight, plan, confirm, apply the STAGE (MODEL=s3://...; AWS=1; YES=1)
	$(BIN)/dogops promote apply --stage $(STAGE) $(if $(IMAGE),--image $(IMAGE)) $(if $(MODEL),--model-data-url $(MODEL)) $(if $(AWS),--aws) $(if $(YES),--yes)

destroy: setup  ## delete the STAGE's stack (IMAGES=1: and its ECR repositories), check nothing tagged remains (AWS=1 for AWS)
	$(BIN)/dogops destroy --stage $(STAGE) $(if $(IMAGES),--images) $(if $(AWS),--aws)
