# rsbatch: every routine task is a target here. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV      ?= .venv
PY        := $(VENV)/bin/python
PIP       := $(VENV)/bin/pip
APT_PKGS  := python3-venv python3-qgis python3-gdal qgis-providers qgis xvfb xauth imagemagick
SUDO      := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# Where `make demo` writes; the job's outputs, task log and rendering land here.
DEMO_DIR  ?= demo-output
BENCH_SIZE ?= 10980
WHEELHOUSE ?= build/wheelhouse

.PHONY: help
help:  ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

# --- set-up -----------------------------------------------------------------
.PHONY: setup
setup: $(VENV)/.installed $(WHEELHOUSE)/.complete  ## install apt packages, the .venv, pinned deps and the project (idempotent)

$(VENV)/.apt:
	@if ! dpkg -s $(APT_PKGS) >/dev/null 2>&1; then \
	  echo "installing apt packages: $(APT_PKGS)"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $(APT_PKGS) >/dev/null; \
	fi
	@# Debian's python3, not a pyenv build: only it can import QGIS's bindings.
	@[ -x $(PY) ] || /usr/bin/python3 -m venv --system-site-packages $(VENV)
	@touch $@

$(VENV)/.installed: $(VENV)/.apt requirements.txt pyproject.toml
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -r requirements.txt
	$(PIP) install -q --no-deps -e .
	@touch $@

# The worker's wheels, for the offline tests of the plugin's worker-environment set-up (and
# for air-gapped sites: PIP_FIND_LINKS=$(WHEELHOUSE) PIP_NO_INDEX=1).
$(WHEELHOUSE)/.complete: qgis_rsbatch/worker_requirements.txt | $(VENV)/.installed
	@rm -rf $(WHEELHOUSE) && mkdir -p $(WHEELHOUSE)
	$(PY) -m pip download -q -d $(WHEELHOUSE) --only-binary=:all: -r qgis_rsbatch/worker_requirements.txt
	@touch $@

.PHONY: wheelhouse
wheelhouse: $(WHEELHOUSE)/.complete  ## download the worker's wheels into build/wheelhouse

# The AWS stack's targets (deploy, destroy, push-image, its lint tools) live beside it.
# infra.mk may add prerequisites of `make test` to TEST_DEPS (e.g. asl-validator, checkov).
TEST_DEPS :=
-include infra/infra.mk
# The QGIS plugin's targets: package, install-plugin, screenshots.
-include plugin.mk

# --- checks -------------------------------------------------------------------
.PHONY: test
test: setup $(TEST_DEPS)  ## run the whole offline test suite
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest -q

.PHONY: lint
lint: setup  ## ruff and mypy on core and worker
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

# --- the product ---------------------------------------------------------------
.PHONY: demo
demo: setup  ## run the main job on generated sample scenes, on the local backend
	$(PY) tools/demo.py --out $(DEMO_DIR)

.PHONY: bench
bench: setup  ## benchmarks: worker vs alternatives, each index, AOI over HTTP vs odc-stac, AOI → tiles, local backend, mosaics and composites, GUI stalls, the AWS stack at 10,000+ cells (bench/results)
	$(PY) -m bench.worker_bench --size $(BENCH_SIZE)
	$(PY) -m bench.cog_writer_bench --size $(BENCH_SIZE)
	$(PY) -m bench.indices_bench --size $(BENCH_SIZE)
	$(PY) -m bench.reduce_bench --size $(BENCH_SIZE)
	$(PY) -m bench.grid_bench
	$(PY) -m bench.backend_bench
	$(PY) -m bench.aoi_bench
	$(PY) -m bench.profile_worker --size $(BENCH_SIZE)
	QT_QPA_PLATFORM=offscreen $(PY) -m bench.gui_bench
	$(PY) -m bench.aws_bench

.PHONY: bench-aws
bench-aws: setup  ## the AWS stack on moto: estimate, plan time and memory, summary, cancel at 10,000 and 30,000 cells
	$(PY) -m bench.aws_bench

.PHONY: clean
clean:  ## remove build products and demo output (keeps .venv)
	rm -rf build dist $(DEMO_DIR) *.egg-info
