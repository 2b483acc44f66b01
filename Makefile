# hydrarec: every target creates .venv when missing and installs into it.
PY        ?= python3
VENV      ?= .venv
BIN        = $(VENV)/bin
STAMP      = $(VENV)/.installed
export HF_HUB_OFFLINE = 1
export TRANSFORMERS_OFFLINE = 1
# MovieLens is read from HYDRAREC_DATA_DIR when set. The shared copy beside the checkout is only a
# fallback: the demo tries it after the cache and a download; tests and benchmarks use it when
# HYDRAREC_DATA_DIR is unset.
DATA_FALLBACK := $(abspath ../shared/data)
WITH_DATA = HYDRAREC_DATA_DIR="$${HYDRAREC_DATA_DIR:-$(DATA_FALLBACK)}"

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
	$(BIN)/hydrarec demo --out runs/demo --fallback-data $(DATA_FALLBACK)

lint: install
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

typecheck: install
	$(BIN)/mypy

unit: install
	$(WITH_DATA) $(BIN)/python -m pytest -q -x -m "not slow"

# Headless Chromium renders the HTML report in one test (Debian package; needs root to install).
browser:
	@command -v chromium >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null) || echo "warning: chromium is missing and could not be installed; the report rendering test will fail"

test: lint typecheck browser
	$(WITH_DATA) $(BIN)/python -m pytest -q

# Peers (Surprise, implicit, LightFM, torch-rechub) live in the "bench" extra; lightfm-next compiles.
bench: install
	$(BIN)/python -m pip install --quiet -e ".[bench]"
	$(WITH_DATA) $(BIN)/python benchmarks/bench_data.py
	$(WITH_DATA) $(BIN)/python benchmarks/quality.py ML100K-U1
	$(WITH_DATA) $(BIN)/python benchmarks/quality.py ML100K-LOO
	$(WITH_DATA) $(BIN)/python benchmarks/mmoe_syn.py --seeds 3

clean:
	rm -rf $(VENV) runs .pytest_cache .mypy_cache .ruff_cache
