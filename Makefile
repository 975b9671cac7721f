# gpr_ros developer entry points. `make help` lists them.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=
# pytest-xdist workers (one file per worker at a time, each on a DDS domain of its own):
# most of the suite waits on node processes starting, so 2 workers help on 2 cores too.
# TEST_WORKERS=0 runs everything in one process.
TEST_WORKERS ?= 2

.PHONY: help setup test demo model bench lint typecheck clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

setup:  ## create .venv, install pinned deps, build gpr_msgs, write env.sh (idempotent)
	@bash scripts/setup.sh

test: setup  ## run the test suite (core, conversions, ROS over DDS on localhost)
	@ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST $(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

demo: setup  ## run the main job: the simulated clutter removal, every node its own process over DDS
	@ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST $(VENV)/bin/gpr-ros demo

model: setup  ## reproduce models/gpr_default.pt from scratch (datasets, end-to-end Adam training, stage C, evaluation; 2 h 8 min on a 2-core VM, setup included, docs: models/MODEL_CARD.md)
	@bash scripts/train_default.sh

bench: setup  ## print timings (benchmarks, not tests)
	@$(PY) -m gpr_ros.bench

lint: setup  ## ruff and mypy on the package and tests
	@$(VENV)/bin/ruff check gpr_ros test
	@$(VENV)/bin/mypy gpr_ros/core

clean:  ## remove build outputs (keeps .venv)
	rm -rf build install log .pytest_cache .mypy_cache .ruff_cache env.sh
