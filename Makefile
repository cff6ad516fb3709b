# Set-up is two commands: `make demo` and `make test`. Both create .venv if missing.
PYTHON ?= python3
VENV ?= .venv
# A bare `torch` requirement pulls a multi-GB CUDA build into a fresh environment,
# so torch is installed first, pinned; override with e.g. `make TORCH='torch==2.9.1' test`.
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin
STORE ?= results/optlab.db
REPORT ?= results/report.html
CHROMIUM := /usr/bin/chromium

.PHONY: demo test lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet "$(TORCH)"
	$(BIN)/pip install --quiet -e ".[test]"
	touch $@

demo: $(VENV)/.installed
	$(BIN)/optlab run ladder --profile quick --store $(STORE)
	@echo "results: $(STORE)  (optlab show --store $(STORE); python -c 'import optlab; optlab.load(\"$(STORE)\")')"
	$(BIN)/optlab report --store $(STORE) --out $(REPORT)

# The report's browser test opens it in Debian's Chromium (installed here if missing).
$(CHROMIUM):
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium

test: $(VENV)/.installed $(CHROMIUM)
	$(BIN)/python -m pytest

bench: $(VENV)/.installed
	$(BIN)/optlab bench

lint: $(VENV)/.installed
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests

clean:
	rm -rf $(VENV) results
