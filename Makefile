# make train: set up .venv if needed, then the tutorial run (15 epochs, keep 0.7, bundled MNIST)
# make test:  set up .venv if needed, then the test suite (a few minutes once .venv exists)
# make bench: the speed benchmark (prints; `make bench BENCH_ARGS=--record` appends to benchmarks/results.csv)
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# torch 2.14.1 + torchvision 0.29.1 are the tested pair (other pairs fail: torchvision::nms does not exist)
TORCH  := torch==2.14.1 torchvision==0.29.1

.PHONY: train test bench ablate clean-venv

$(BIN)/dropcli: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH)
	$(BIN)/python -m pip install --quiet -e '.[test,ray]'
	touch $@

train: $(BIN)/dropcli
	$(BIN)/dropcli train

test: $(BIN)/dropcli
	$(BIN)/lint-imports --no-cache
	$(BIN)/python -m pytest

ablate: $(BIN)/dropcli
	$(BIN)/dropcli ablate --grid

bench: $(BIN)/dropcli
	$(BIN)/python benchmarks/bench.py $(BENCH_ARGS)

clean-venv:
	rm -rf $(VENV)
