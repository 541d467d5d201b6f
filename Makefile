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
## Then benchmark every from-scratch model against torch's reference (ratios, targets met/missed) at
## the sizes people use: the linear scan at B=8, d=128, n=16, L=1024 and 4096 against a Blelloch scan
## and the memory-traffic floor, the readable LSTM and GRU over a grid of sizes at 1 and 2 threads
## (several minutes on a 2-core CPU; MODEL_BENCH_ARGS="--quick" runs the earlier, smaller sizes).
## The model benchmark runs twice: as readers run it, and with BENCH_TUNABLES as GLIBC_TUNABLES. Its
## large tensors pass glibc's 32 MB mmap threshold, above which every allocation is fresh memory from
## the kernel, and on small VMs the page faults of touching it, not the arithmetic, decide much of the
## time; hugetlb=1 makes them rarer. A reader's machine may behave either way, so every target should
## hold in both runs. JSON in _build/bench/: notebooks.json, models.json, models_hugetlb.json (each
## records threads, CPU capability and GLIBC_TUNABLES).
## BENCH_ARGS passes options to the notebook run, e.g. BENCH_ARGS="--budget-seconds 600" (CI checks
## memory only); MODEL_BENCH_ARGS to the model runs, e.g. "--device cuda" or "--repeats 9" (see
## python -m seqcourse bench --help).
BENCH_TUNABLES ?= glibc.malloc.hugetlb=1
bench: $(STAMP)
	$(PY) -m seqcourse bench --skip-models $(BENCH_ARGS)
	$(PY) -m seqcourse bench --skip-notebooks --models-json _build/bench/models.json $(MODEL_BENCH_ARGS)
	GLIBC_TUNABLES=$(BENCH_TUNABLES) $(PY) -m seqcourse bench --skip-notebooks $(MODEL_BENCH_ARGS) \
		--models-json _build/bench/models_hugetlb.json

## Regenerate the student notebooks in exercises/ from solutions/.
exercises: $(STAMP)
	$(PY) -m seqcourse generate solutions exercises

clean:
	rm -rf _build
