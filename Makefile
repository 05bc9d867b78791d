# deepfit: two commands.
#   make demo   set everything up, train the demo recipe (deepfit.recipes.FMNIST_DEMO) on Fashion-MNIST,
#               evaluate it on the test set, write runs/<timestamp>/
#   make test   set everything up and run the tests
# TORCH picks the torch requirement (default: the CPU build); a CUDA user runs `make demo TORCH=torch`.

PYTHON ?= python3
TORCH ?= torch==2.13.0
VENV := .venv
PY := $(VENV)/bin/python
DEEPFIT_DATA ?= $(HOME)/.cache/deepfit
FMNIST_DEB := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
FORTUNES_DEB := /usr/share/games/fortunes/computers
DEPS := numpy pillow matplotlib tqdm pytest ruff "spacy>=3.5" tensorboard safetensors onnx onnxscript onnxruntime
DEMO_ARGS ?= --recipe fmnist_demo

.PHONY: demo test setup data lint clean

demo: setup data
	$(VENV)/bin/deepfit train-vision fashion-mnist $(DEMO_ARGS) --out runs

test: setup data
	$(PY) -m pytest -q

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH)" $(DEPS)
	$(PY) -m pip install -q --no-deps -e .
	touch $@

# Real data: the Debian packages when apt-get is usable, else a checksummed download into $(DEEPFIT_DATA).
data: setup
	@if [ -f $(FMNIST_DEB) ] || [ -f $(DEEPFIT_DATA)/fashion-mnist/train-images-idx3-ubyte.gz ]; then \
	  echo "Fashion-MNIST: found"; \
	elif command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	  (apt-get install -y -qq dataset-fashion-mnist || (apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist)) \
	  || DEEPFIT_DATA=$(DEEPFIT_DATA) $(PY) -m deepfit download fashion-mnist; \
	else \
	  DEEPFIT_DATA=$(DEEPFIT_DATA) $(PY) -m deepfit download fashion-mnist; \
	fi
	@if [ -f $(FORTUNES_DEB) ]; then echo "fortunes: found"; \
	elif command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	  apt-get install -y -qq fortunes >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq fortunes) \
	  || echo "fortunes: not installable here; text tests on real data will be skipped"; \
	else echo "fortunes: not installed (Debian package 'fortunes'); text tests on real data will be skipped"; fi

lint: setup
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) runs .pytest_cache
