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
## and every page of the built book opened in Chromium (tests/test_browser.py). Then every notebook a
## second time with ATEN_CPU_CAPABILITY=default: torch's unvectorized kernels, another floating-point
## rounding path standing in for another CPU, so a check that holds only on this CPU fails here.
test: $(STAMP)
	$(PY) -m pytest
	ATEN_CPU_CAPABILITY=default $(PY) -m pytest -p no:cacheprovider book solutions exercises

## Run the notebooks locally in JupyterLab (from the top, so book/, solutions/ and exercises/ are all reachable).
lab: $(STAMP)
	$(VENV)/bin/jupyter lab

## Execute every book notebook and print wall time and peak memory per notebook; exits 1 if one
## fails or exceeds quick mode's budget (25 s, 1536 MB: a chapter must fit Binder's 2 GB).
## Then benchmark every from-scratch model against torch's reference (ratios, targets met/missed;
## about a minute on a 2-core CPU). JSON in _build/bench/ (notebooks.json, models.json).
## BENCH_ARGS passes options to the notebook run, e.g. BENCH_ARGS="--budget-seconds 600" (CI checks
## memory only); MODEL_BENCH_ARGS to the model run, e.g. "--device cuda" or "--repeats 9" (see
## python -m seqcourse bench --help). The model run's tensors pass glibc's 32 MB mmap threshold, where
## page faults, not the arithmetic, decide the time on small VMs (DESIGN.md §7), so it runs with
## BENCH_TUNABLES as GLIBC_TUNABLES (recorded in models.json); the notebooks run as readers run them.
BENCH_TUNABLES ?= glibc.malloc.hugetlb=1
bench: $(STAMP)
	$(PY) -m seqcourse bench --skip-models $(BENCH_ARGS)
	GLIBC_TUNABLES=$(BENCH_TUNABLES) $(PY) -m seqcourse bench --skip-notebooks $(MODEL_BENCH_ARGS)

## Regenerate the student notebooks in exercises/ from solutions/.
exercises: $(STAMP)
	$(PY) -m seqcourse generate solutions exercises

clean:
	rm -rf _build
