# Two commands do all set-up: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test lint typecheck install clean bench kernel

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "bdx needs Python 3.11 or newer")'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

# Compiles fingerprint search's numba stages (kernel, pre-selection) into their on-disk cache
# (first time after an install or a change: tens of seconds; then about one), so servers
# started by the tests or the demo do not each wait for it.
kernel: $(STAMP)
	$(PY) -c 'from matcher.search.fingerprint import warm_up; warm_up()'

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(STAMP)
	$(VENV)/bin/mypy

test: lint typecheck kernel
	$(PY) -m pytest

demo: kernel
	$(VENV)/bin/bdx demo

bench: $(STAMP)
	$(PY) -m pip install --quiet -e '.[test,bench]'
	@echo "see benchmarks/README.md for the benchmark commands"

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build *.egg-info
