# The two commands a newcomer needs: `make run` and `make test`. Everything else is set up on the way.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
STAMP := $(VENV)/.ragpress-installed
QUESTION ?= When was the Millau Viaduct opened?

.PHONY: run test install models models-all models-test lint clean browser

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch first, pinned: a looser requirement would pull a multi-GB CUDA build.
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

models: install
	$(BIN)/ragpress models fetch

models-all: install
	$(BIN)/ragpress models fetch --all

models-test: install  # what the tests load: the defaults and the second generator architecture
	$(BIN)/ragpress models fetch all-MiniLM-L6-v2 SmolLM2-135M-Instruct gemma-3-270m

run: models
	$(BIN)/ragpress ingest samples --collection demo
	$(BIN)/ragpress query "$(QUESTION)" --collection demo

lint: install
	$(BIN)/ruff check .

# The console's browser test needs Debian's chromium + chromedriver; install them where we can (root with apt),
# quietly and never failing: elsewhere the test skips with its reason.
browser:
	@if [ ! -x /usr/bin/chromium ] && command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver) \
			>/dev/null 2>&1 || echo "chromium not installed; the browser test will skip"; \
	fi

test: models-test lint browser
	$(BIN)/pytest

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
