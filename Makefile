# Every target sets up its own virtual environment (.venv) on first use.
VENV ?= .venv
PYTHON := $(VENV)/bin/python
PIP := $(PYTHON) -m pip
# A directory of local torch wheels (a CPU build) to prefer over a multi-GB CUDA download.
TORCH_WHEELS ?= /opt/wheels
PYTEST_ARGS ?=

.PHONY: setup demo test lint type doc check clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml setup.cfg
	python3 -m venv $(VENV)
	@if [ -d "$(TORCH_WHEELS)" ]; then \
		$(PIP) install -q --no-deps --no-index --find-links "$(TORCH_WHEELS)" "torch>=2.3" || true; \
	fi
	$(PIP) install -q -e ".[tests,docs,zoo]"
	touch $@

demo: setup
	$(VENV)/bin/sb3-pathways train

test: setup
	$(PYTHON) -m pytest -q $(PYTEST_ARGS)

lint: setup
	$(PYTHON) -m ruff check sb3_pathways tests benchmarks
	$(PYTHON) -m ruff format --check sb3_pathways tests benchmarks

type: setup
	$(PYTHON) -m mypy

doc: setup
	$(PYTHON) -m sphinx -W --keep-going -b html docs docs/_build/html

check: lint type test doc

clean:
	rm -rf $(VENV) docs/_build .pytest_cache .mypy_cache .ruff_cache
