# hydrarec: every target creates .venv when missing and installs into it.
PY        ?= python3
VENV      ?= .venv
BIN        = $(VENV)/bin
STAMP      = $(VENV)/.installed
export HF_HUB_OFFLINE = 1
export TRANSFORMERS_OFFLINE = 1
# MovieLens is read from HYDRAREC_DATA_DIR; the shared copy beside the checkout is the default here.
HYDRAREC_DATA_DIR ?= $(abspath ../shared/data)
export HYDRAREC_DATA_DIR

.PHONY: install demo test lint typecheck unit bench clean browser

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Torch first, explicitly: the CPU wheel on disk (or the user's own build) must not be replaced by
# whatever pip would resolve (a multi-GB CUDA build). Then the package with every extra.
$(STAMP): $(BIN)/python pyproject.toml
	@$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install --quiet "torch==2.13.0" || $(BIN)/python -m pip install --quiet "torch>=2.3" --index-url https://download.pytorch.org/whl/cpu
	$(BIN)/python -m pip install --quiet -e ".[all]"
	@touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/hydrarec demo --out runs/demo

lint: install
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

typecheck: install
	$(BIN)/mypy

unit: install
	$(BIN)/python -m pytest -q -x -m "not slow"

# Headless Chromium renders the HTML report in one test (Debian package; needs root to install).
browser:
	@command -v chromium >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null) || echo "warning: chromium is missing and could not be installed; the report rendering test will fail"

test: lint typecheck browser
	$(BIN)/python -m pytest -q

# Peers (Surprise, implicit, LightFM, torch-rechub) live in the "bench" extra; lightfm-next compiles.
bench: install
	$(BIN)/python -m pip install --quiet -e ".[bench]"
	$(BIN)/python benchmarks/bench_data.py
	$(BIN)/python benchmarks/quality.py ML100K-U1
	$(BIN)/python benchmarks/quality.py ML100K-LOO
	$(BIN)/python benchmarks/mmoe_syn.py --seeds 3

clean:
	rm -rf $(VENV) runs .pytest_cache .mypy_cache .ruff_cache
