# The two commands a newcomer needs: `make demo` and `make test`.
SHELL := bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: test test-slow test-all demo images docs venv venv-ray venv-studio studio-screenshots clean-venv

$(PY): requirements.txt pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found; install Python 3.11 or run make PYTHON=python3"; exit 2; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet -e ".[test]"
	$(PY) -m pip install --quiet --no-deps matplotlib==3.11.2  # the demo's photo (below)
	touch $(PY)

venv: $(PY)

# Ray, for stage 2's --workers: an optional extra (without it those tests skip). The
# same install keeps torch at its pin.
$(VENV)/.ray: $(PY)
	$(PY) -m pip install --quiet -e ".[test,ray]"
	touch $@

venv-ray: $(VENV)/.ray

# The studio (dreamvideo studio): Starlette and uvicorn, an optional extra, and its tests'
# own: httpx for Starlette's TestClient, Playwright's Python package for the browser test
# (which drives Debian's chromium: apt-get install chromium; no browser is downloaded).
# Without them those tests skip. The same install keeps torch at its pin.
$(VENV)/.studio: $(PY)
	$(PY) -m pip install --quiet -e ".[test,studio,studio-test]"
	touch $@

venv-studio: $(VENV)/.studio

# docs/studio.md's screenshots, taken by the browser test
studio-screenshots: $(VENV)/.studio $(VENV)/.demo-photo
	STUDIO_SCREENSHOTS=docs/images $(PY) -m pytest -q -m slow tests/studio/test_studio_browser.py

# The default run: everything but the tests marked slow (a few minutes at most).
test: $(PY)
	$(PY) -m pytest -q -m "not slow"

# Only the slow ones: real GoogLeNet against Caffe's goldens, kill -9 and resume, ...
test-slow: $(PY)
	$(PY) -m pytest -q -m slow

test-all: $(PY)
	$(PY) -m pytest -q

# The demo's photo ships inside matplotlib; only that file is read, so none of its
# dependencies are needed.
$(VENV)/.demo-photo: $(PY)
	$(PY) -m pip install --quiet --no-deps matplotlib==3.11.2
	touch $@

# Builds a sample clip, dreams it with the defaults, writes demo/grace_hopper_done.mp4 and
# demo/contact_sheet.png. Needs GoogLeNet (dreamvideo models download bvlc_googlenet).
demo: $(VENV)/.demo-photo
	$(VENV)/bin/dreamvideo demo

# The README's pictures in images/, from the demo's frames.
images: $(VENV)/.demo-photo
	$(PY) -m dreamer.cli.gallery

# The documentation site (docs/, mkdocs.yml) into site/. Strict: a broken link or anchor, a
# page left out of the nav or a stale flags page (docs/flags.md, generated from the
# settings schema) fails it. mkdocs is pinned in the docs extra.
$(VENV)/.docs: $(PY)
	$(PY) -m pip install --quiet -e ".[docs]"
	touch $@

docs: $(VENV)/.docs
	$(PY) -m dreamer.cli.flagdoc --check
	$(PY) -m mkdocs build --strict

clean-venv:
	rm -rf $(VENV)
