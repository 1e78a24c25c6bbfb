# Everything a fresh machine needs: `make demo` and `make test` create .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test lint proto proto-check install clean clean-data

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null || { \
	  echo "findlora needs Python 3.11 or newer with venv; '$(PYTHON)' is not: run make $(MAKECMDGOALS) PYTHON=python3.11" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch first, pinned: pip takes these builds from the local wheel store when it has them.
	$(BIN)/python -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(BIN)/python -m pip install -q -e '.[bot,service,worker,lab,dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/findlora demo

test: $(STAMP)
	$(BIN)/ruff check findlora findlora_client bot inference_service db lab tests fuzz
	$(BIN)/ruff format --check findlora findlora_client bot inference_service db lab tests fuzz
	$(BIN)/mypy
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check findlora findlora_client bot inference_service db lab tests fuzz
	$(BIN)/ruff format --check findlora findlora_client bot inference_service db lab tests fuzz
	$(BIN)/mypy

proto: $(STAMP)
	$(BIN)/python -m grpc_tools.protoc -I . --python_out=. --pyi_out=. --grpc_python_out=. protos/findlora.proto

# The committed generated code is what `make proto` would write (also part of `make test`).
proto-check: $(STAMP)
	$(BIN)/python -m pytest -q tests/test_protos.py

# The virtual environment only: .findlora holds the embedded database, its client token and the
# imported catalog (`make clean-data` removes those).
clean:
	rm -rf $(VENV)

clean-data:
	rm -rf .findlora
