# The two commands a newcomer needs: `make test` (and later `make demo`).
SHELL := bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: test test-slow test-all venv clean-venv

$(PY): requirements.txt requirements-dev.txt
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found; install Python 3.11 or run make PYTHON=python3"; exit 2; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $(PY)

venv: $(PY)

# The default run: everything but the tests marked slow (a few minutes at most).
test: $(PY)
	$(PY) -m pytest -q -m "not slow"

# Only the slow ones: real GoogLeNet against Caffe's goldens, kill -9 and resume, ...
test-slow: $(PY)
	$(PY) -m pytest -q -m slow

test-all: $(PY)
	$(PY) -m pytest -q

clean-venv:
	rm -rf $(VENV)
