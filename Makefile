# Everything a fresh machine needs: `make demo` and `make test` create .venv themselves.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
DEMO   ?= demo-out

.PHONY: install test test-fast lint demo bench clean

install: $(STAMP)

# torch first (the local CPU wheel), then the package with its pinned SNN stack while torch stays
# pinned, then drop the CUDA torchvision that Norse drags in (it cannot import beside CPU torch).
$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e ".[backends,dev]"
	$(BIN)/python -m pip install --quiet --no-deps sinabs==3.1.3 pbr==7.1.3
	$(BIN)/python -m pip uninstall --quiet -y torchvision || true
	$(BIN)/python scripts/install_lava.py
	$(BIN)/python -c "from nrf_nir.targets.xylo.kernel import warm; print(f'xylo kernel compiled and cached ({warm():.0f} s)')"
	$(BIN)/python -c "from nrf_nir.fused import warm; print(f'reference neuron kernel compiled and cached ({warm():.0f} s)')"
	$(BIN)/python -c "import torch, nir, norse, nrf_nir; print('installed: torch', torch.__version__, 'nir', nir.__version__, 'nrf_nir', nrf_nir.__version__)"
	touch $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -q

# the inner loop: the suite without the tests marked slow (conftest.py)
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

# lint-imports checks the walls between the layers ([tool.importlinter] in pyproject.toml). Its
# engine finds submodules by walking nrf_nir/'s folder, which setuptools' package-dir does not
# fill: build/walls/nrf_nir links nrf_nir/'s files and the four mapped folders under their package
# names, and lint-imports runs there (it puts its working folder first on sys.path).
WALLS := build/walls
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy
	rm -rf $(WALLS) && mkdir -p $(WALLS)/nrf_nir
	ln -s $(CURDIR)/nrf_nir/* $(WALLS)/nrf_nir/
	for p in targets exporters models conformance; do ln -s $(CURDIR)/$$p $(WALLS)/nrf_nir/$$p; done
	cd $(WALLS) && $(CURDIR)/$(BIN)/lint-imports --no-logo --no-cache $(CURDIR)/pyproject.toml

demo: $(STAMP)
	$(BIN)/python examples/demo.py --out $(DEMO)

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_reference.py
	$(BIN)/python benchmarks/bench_xylo.py
	$(BIN)/python benchmarks/bench_loihi.py

clean:
	rm -rf $(VENV) $(DEMO) $(WALLS) .pytest_cache .mypy_cache .ruff_cache
