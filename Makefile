# Every target sets up what it needs: the first run creates .venv and installs the project (editable, with dev extras).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: install test train demo bench report lint format clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

test: install
	$(PY) -m pytest -q

train: install
	$(PY) scripts/train.py fit --config lightning_ref/recipes/cifar10.yaml

demo: install
	$(PY) -m manualnet.gradient_report
	$(PY) -m lightning_ref.crosscheck_train --dataset synthetic

bench: install
	$(PY) -m lightning_ref.bench --json runs/bench/benchmark.json --plot runs/bench/step_time.png

report: install
	$(PY) -m manualnet.gradient_report

lint: install
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .

format: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

clean:
	rm -rf $(VENV) runs lightning_logs .pytest_cache
