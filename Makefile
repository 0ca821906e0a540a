# medseg — two commands: `make demo` (set up + run the main job on synthetic data)
# and `make test` (set up + run the test suite). `make bench` runs the benchmarks.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
TORCH  := torch==2.13.0

export PYTHONUNBUFFERED := 1

.PHONY: all setup demo test bench notebook clean distclean

all: test

setup: $(STAMP)

# torch is installed first: the CPU wheel of 2.13.0 is what this project is built and
# tested against. The package itself asks for a range (torch>=2.4), which 2.13.0
# satisfies, so pip keeps it when monai/lightning are resolved; the last line asserts it.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH)
	$(BIN)/python -m pip install --quiet -e ".[test]"
	$(BIN)/python -c "import torch, sys; v = torch.__version__.split('+')[0]; sys.exit(0 if v == '2.13.0' else 'torch %s installed, 2.13.0 required' % v)"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m medseg.demo

test: $(STAMP)
	$(BIN)/python -m pytest -q tests

# the quickstart notebook in JupyterLab (installs the `notebook` extra once; needs PyPI)
notebook: $(STAMP)
	$(BIN)/python -c "import jupyterlab" 2>/dev/null || $(BIN)/python -m pip install --quiet -e ".[notebook]"
	$(BIN)/jupyter lab notebooks/quickstart.ipynb

bench: $(STAMP)
	$(BIN)/medseg bench --out bench/results.json --force

clean:
	rm -rf runs outputs bench experiments .pytest_cache

distclean: clean
	rm -rf $(VENV) data/synthetic data/cache
