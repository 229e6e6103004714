# The two commands a newcomer needs (see README.md):
#   make demo   set everything up, then run the main job on the embedded synthetic data
#   make test   set everything up, then run lint and the whole test suite
# Both are idempotent: the virtual environment is rebuilt only when pyproject.toml,
# constraints.txt or the C extension (setup.py, curation/_speedups.c) change.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.pebr-installed
DEMO_OUT ?= runs/demo
PYTEST_ARGS ?=

.PHONY: setup demo test lint format lock bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt setup.py curation/_speedups.c
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 10), "pebr needs Python >= 3.10, got " + sys.version'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch first, pinned, so that nothing later pulls a CUDA build from the registry
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[dev,embed]'
	touch $(STAMP)

demo: setup
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-$$(nproc)} $(BIN)/pebr demo --out $(DEMO_OUT)

test: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest $(PYTEST_ARGS)

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: setup
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# Refresh the pinned versions after changing dependencies in pyproject.toml.
lock:
	$(BIN)/python -m pip freeze --exclude-editable | grep -v '^torch==' > constraints.txt

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache build curation/_speedups*.so
