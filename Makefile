# faq-pipeline: `make run` trains and pushes a model on the default corpus; `make test` runs the tests.
# Both create .venv from a Python 3.10 interpreter and install the pinned lock file first.

SHELL := /bin/bash
VENV := .venv
STAMP := $(VENV)/.installed
ARGS ?=

# The first interpreter that really is Python 3.10: a pyenv shim named python3.10 can exist and still fail.
PYTHON ?= $(shell for candidate in python3.10 $$(pyenv root 2>/dev/null)/versions/3.10*/bin/python \
	$$HOME/.pyenv/versions/3.10*/bin/python /usr/local/bin/python3.10 /usr/bin/python3.10; do \
	if "$$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 10))' >/dev/null 2>&1; then \
	echo "$$candidate"; break; fi; done)

.PHONY: run test lock benchmark clean venv

venv: $(STAMP)

$(STAMP): requirements.lock setup.py
	@if [ -z "$(PYTHON)" ]; then \
	  echo "No Python 3.10 interpreter found. TFX 1.16 needs Python 3.10: install it (for example" >&2; \
	  echo "'pyenv install 3.10.13', or your distribution's python3.10 package) or pass" >&2; \
	  echo "PYTHON=/path/to/python3.10 to make." >&2; \
	  exit 1; \
	fi
	@echo "Creating $(VENV) with $(PYTHON)"
	test -x $(VENV)/bin/pip || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --requirement requirements.lock
	$(VENV)/bin/pip install --quiet --no-deps --editable .
	touch $(STAMP)

run: $(STAMP)
	TF_USE_LEGACY_KERAS=1 $(VENV)/bin/faq-pipeline run $(ARGS)

test: $(STAMP)
	TF_USE_LEGACY_KERAS=1 $(VENV)/bin/python -m pytest tests $(ARGS)

benchmark: $(STAMP)
	TF_USE_LEGACY_KERAS=1 $(VENV)/bin/python benchmarks/pipeline_benchmark.py $(ARGS)

# Re-resolve every pin from requirements.in (PyPI, under a minute with uv), for Linux x86_64, Python 3.10.
lock: $(STAMP)
	$(VENV)/bin/pip install --quiet uv
	$(VENV)/bin/uv pip compile requirements.in --python-version 3.10 \
	  --python-platform x86_64-manylinux_2_31 --output-file requirements.lock

clean:
	rm -rf pipeline_root serving_model kubeflow/build .pytest_cache
