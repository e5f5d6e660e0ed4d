# The two commands a newcomer needs: `make test` (and later `make demo`).
SHELL := bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: test test-fast venv clean-venv

$(PY): requirements.txt requirements-dev.txt
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found; install Python 3.11 or run make PYTHON=python3"; exit 2; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $(PY)

venv: $(PY)

# Everything, slow tests included (what CI runs).
test: $(PY)
	$(PY) -m pytest -q

# The default developer loop: skips tests marked slow.
test-fast: $(PY)
	$(PY) -m pytest -q -m "not slow"

clean-venv:
	rm -rf $(VENV)
