# Two commands do everything on a fresh machine (Python 3.11, no GPU needed):
#   make run    set up, then simulate the default seed network and write results + plots
#   make test   set up, then run the whole test suite
VENV ?= .venv
PY := $(VENV)/bin/python
ARGS ?=

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $@

.PHONY: setup run test bench demo demo-gpu
setup: $(VENV)/.installed

run: $(VENV)/.installed
	$(VENV)/bin/wmnet run configs/seed.yaml $(ARGS)

# Lint, format and types first (pyproject.toml configures ruff and mypy), then the tests.
test: $(VENV)/.installed
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench
	$(VENV)/bin/mypy
	$(PY) -m pytest -q

bench: $(VENV)/.installed
	$(PY) bench/bench.py $(ARGS)

# The working-memory experiment (docs/tutorial.md): reduced size on a CPU, full size on a GPU.
demo: $(VENV)/.installed
	$(VENV)/bin/wmnet run configs/working_memory_cpu.yaml --out runs/working_memory_cpu --overwrite $(ARGS)

demo-gpu: $(VENV)/.installed
	$(VENV)/bin/wmnet run configs/working_memory.yaml --out runs/working_memory --overwrite $(ARGS)
