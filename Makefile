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
book: $(STAMP)
	$(VENV)/bin/jupyter-book build . -W --keep-going
	@echo "Book built: open $(CURDIR)/_build/html/index.html"

## The whole test suite: unit tests, grading tests, nbval over book/ solutions/ exercises/, book build.
test: $(STAMP)
	$(PY) -m pytest

## Run the notebooks locally in JupyterLab (from the top, so book/, solutions/ and exercises/ are all reachable).
lab: $(STAMP)
	$(VENV)/bin/jupyter lab

## Execute every book notebook and print wall time and peak memory per notebook.
bench: $(STAMP)
	$(PY) -m seqcourse bench

## Regenerate the student notebooks in exercises/ from solutions/.
exercises: $(STAMP)
	$(PY) -m seqcourse generate solutions exercises

clean:
	rm -rf _build
