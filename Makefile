# ddlib: `make test` and `make report` set themselves up (a .venv with pip) on a fresh machine.
PYTHON  ?= python3
VENV    := .venv
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.ddlib-installed
PROFILE ?= quick

.PHONY: setup test report pdf lab clean

setup: $(STAMP)

# Reinstall when the dependency list changes. torch/torchvision are pinned in pyproject.toml.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e ".[dev]"
	$(PY) -m ipykernel install --sys-prefix --name ddlib --display-name "Python (ddlib)" >/dev/null
	touch $@

test: setup
	$(PY) -m pytest

lab: setup
	$(VENV)/bin/jupyter lab notebooks/

clean:
	rm -rf $(VENV) .cache reports/smoke .pytest_cache
