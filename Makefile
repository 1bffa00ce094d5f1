# The two commands of the README:  make lab  ·  make test
# Both install what they need first (a virtualenv in .venv, system tools when root).

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: lab lab-instructor test install lint bench clean

lab: install  # JupyterLab on your student workspace (workspace/, never tracked by git)
	$(BIN)/labkit lab

lab-instructor: install  # JupyterLab on the instructor notebooks (notebooks/, with solutions)
	$(BIN)/labkit lab --instructor

test: install
	LABKIT_TEST_TOOLS=1 scripts/system-packages
	$(BIN)/ruff check labkit tests benchmarks scripts
	$(BIN)/python -m pytest

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml scripts/install scripts/system-packages
	PYTHON=$(PYTHON) VENV=$(VENV) scripts/install
	@touch $@

bench: install
	$(BIN)/python benchmarks/bench_shop.py

clean:
	rm -rf $(VENV) .pytest_cache
