# The two commands a new user runs: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup demo test test-slow bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch first, pinned: an unpinned torch pulls gigabytes of CUDA packages
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e ".[test,label]"
	touch $@

setup: $(STAMP)

# The main job on the shipped data: train NequIP on 1000 ethanol frames (GFN2-xTB) for 5 minutes,
# evaluate it on a disjoint block of 500 later frames, write the report; then the o3 tour.
DEMO := runs/demo
demo: $(STAMP)
	$(BIN)/euclidnn train ethanol --index :1250 --n-valid 250 --minutes 5 --out $(DEMO)/train --overwrite
	$(BIN)/euclidnn evaluate $(DEMO)/train/model.safetensors ethanol --index 1500: \
		--json $(DEMO)/report/metrics.json --plots $(DEMO)/report --overwrite
	$(BIN)/python examples/o3_demo.py
	@echo "report: $(DEMO)/report (metrics.txt, metrics.json, parity.png, force_errors.png, training_curve.png)"

# The model, nn and o3 tests run twice: with the C kernels, then with EUCLIDNN_NATIVE=0 (the
# PyTorch reference path alone), so that neither path can drift from the other.
test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest -q -m "not slow"
	EUCLIDNN_NATIVE=0 $(BIN)/python -m pytest -q -m "not slow" tests/models tests/nn tests/o3

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

# Peers for the side-by-side benchmarks live in their own venv: nequip and schnetpack are
# benchmark-only, and schnetpack 2.2 needs --no-deps on Python 3.11 (it declares >= 3.12).
BENCH := .venv-bench/bin
$(BENCH)/.installed: pyproject.toml
	test -x $(BENCH)/python || $(PYTHON) -m venv .venv-bench
	$(BENCH)/python -m pip install -q torch==2.13.0
	$(BENCH)/python -m pip install -q -e ".[bench]" "nequip==0.19.*"
	$(BENCH)/python -m pip install -q --no-deps --ignore-requires-python "schnetpack==2.2.0"
	$(BENCH)/python -m pip install -q h5py hydra-colorlog rich fasteners dirsync tensorboardX progressbar petname
	$(BENCH)/python -m pip install -q --no-deps torch-ema
	$(BENCH)/python -m pip install -q "nequip-allegro==0.8.3"
	touch $@

# MACE for bench/md.py, in a venv of its own: mace-torch 0.3.14 pins e3nn 0.4.4, nequip 0.19
# needs e3nn >= 0.6. bench/md.py runs it in a worker process started from this venv.
MACE := .venv-mace/bin
$(MACE)/.installed:
	test -x $(MACE)/python || $(PYTHON) -m venv .venv-mace
	$(MACE)/python -m pip install -q torch==2.13.0
	$(MACE)/python -m pip install -q "mace-torch==0.3.14"
	touch $@

bench: $(BENCH)/.installed $(MACE)/.installed
	$(BENCH)/python bench/o3.py
	$(BENCH)/python bench/tensor_product.py
	$(BENCH)/python bench/models.py
	$(BENCH)/python bench/schnet_kernel.py
	$(BENCH)/python bench/md.py

clean:
	rm -rf $(VENV) .venv-bench .venv-mace build *.egg-info
