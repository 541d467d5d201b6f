# Every target builds or refreshes the virtual environment from requirements.txt first, so on a
# fresh machine `make book` and `make test` are the whole set-up.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: book test lab bench exercises clean venv

venv: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $(STAMP)

## Build the rendered book from the notebooks' stored outputs into _build/html (warnings are errors).
## The first build on a machine fetches MathJax and the widget scripts with npm (book/_ext/offline_assets.py).
book: $(STAMP)
	$(VENV)/bin/jupyter-book build . -W --keep-going
	@echo "Book built: open $(CURDIR)/_build/html/index.html"

## The whole test suite: unit tests, grading tests, nbval over book/ solutions/ exercises/, book build,
## and every page of the built book opened in Chromium (tests/test_browser.py).
test: $(STAMP)
	$(PY) -m pytest

## Run the notebooks locally in JupyterLab (from the top, so book/, solutions/ and exercises/ are all reachable).
lab: $(STAMP)
	$(VENV)/bin/jupyter lab

## Execute every book notebook and print wall time and peak memory per notebook; exits 1 if one
## fails or exceeds quick mode's budget (30 s, 1536 MB: a chapter must fit Binder's 2 GB).
## Then benchmark every from-scratch model against torch's reference (ratios, targets met/missed;
## about 3 minutes on a 2-core CPU). JSON in _build/bench/ (notebooks.json, models.json).
## BENCH_ARGS passes options, e.g. BENCH_ARGS="--budget-seconds 600" (CI checks memory only),
## "--skip-models", "--skip-notebooks", "--device cuda" (see python -m seqcourse bench --help).
bench: $(STAMP)
	$(PY) -m seqcourse bench $(BENCH_ARGS)

## Regenerate the student notebooks in exercises/ from solutions/.
exercises: $(STAMP)
	$(PY) -m seqcourse generate solutions exercises

clean:
	rm -rf _build
