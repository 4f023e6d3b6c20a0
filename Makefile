# ddlib: `make test` and `make report` set themselves up (a .venv with pip) on a fresh machine.
PYTHON  ?= python3
VENV    := .venv
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.ddlib-installed
PROFILE ?= quick
REPORTS_DIR ?= reports
# FORCE=1 recomputes every cached training run and metric the report touches
FORCE   ?=

# PDF export (nbconvert → LaTeX → xelatex) needs these Debian/Ubuntu packages (about 100 MB download,
# ~1–2 min to install); `make pdf` installs them when xelatex or pandoc is missing (as root, or with sudo).
PDF_PACKAGES := texlive-xetex texlive-fonts-recommended texlive-plain-generic pandoc fonts-dejavu-core poppler-utils
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: setup test test-fast report pdf pdf-deps browser-deps lab clean

setup: $(STAMP)

# Reinstall when the dependency list changes. torch/torchvision are pinned in pyproject.toml.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e ".[dev,course]"
	$(PY) -m ipykernel install --sys-prefix --name ddlib --display-name "Python (ddlib)" >/dev/null
	# JupyterLab opens the notebook sources (jupytext .py files) as notebooks on a double click
	mkdir -p $(VENV)/share/jupyter/lab/settings
	echo '{"@jupyterlab/docmanager-extension:plugin": {"defaultViewers": {"python": "Jupytext Notebook"}}}' \
	  > $(VENV)/share/jupyter/lab/settings/overrides.json
	touch $@

# Both tiers: the fast one first (< 3 min on 2 cores: the mathematics, the wiring, the fault matrix), then the
# slow one (end-to-end runs, notebooks, real processes and signals). `make test-fast` runs the first alone.
test: setup
	$(PY) -m pytest -m "not slow"
	$(PY) -m pytest -m slow

test-fast: setup
	$(PY) -m pytest -m "not slow"

# Run notebooks/NN_*.py with papermill for PROFILE (notebooks/profiles/PROFILE.yaml) into
# REPORTS_DIR/PROFILE/{notebooks,tables,figures}/ and build REPORTS_DIR/PROFILE/report.html.
# A failing notebook stops here with "notebook NN_name failed in cell K: <error>" and no report.html.
report: setup
	FORCE=$(FORCE) $(PY) -m ddlib report --profile $(PROFILE) --reports-dir $(REPORTS_DIR)

# REPORTS_DIR/PROFILE/report.pdf from the finished report (run `make report PROFILE=…` first).
pdf: setup pdf-deps
	$(PY) -m ddlib pdf --profile $(PROFILE) --reports-dir $(REPORTS_DIR)

# Install the LaTeX toolchain only when it is missing.
pdf-deps:
	@if command -v xelatex >/dev/null && command -v pandoc >/dev/null; then :; else \
	  echo "installing the PDF toolchain: apt-get install $(PDF_PACKAGES)"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $(PDF_PACKAGES); \
	fi

# Headless Chromium for the test that opens report.html with the network off (tests/test_report.py).
browser-deps:
	@command -v chromium >/dev/null || { echo "installing chromium (Debian package)"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends chromium; }

# JupyterLab refuses to run as root unless told; containers often run as root.
lab: setup
	$(VENV)/bin/jupyter lab $(if $(filter 0,$(shell id -u)),--allow-root) notebooks/

# The course editions of the notebooks (docs/grading.md): build/exercises/{student,instructor}/*.ipynb
.PHONY: exercises grade
EXERCISES_DIR ?= build/exercises
exercises: setup
	$(PY) -m ddlib exercises --out $(EXERCISES_DIR)

# Autograde SUBMISSIONS (one folder per student) offline into GRADES_DIR/grades.csv and GRADES_DIR/feedback/
GRADES_DIR ?= build/grades
grade: setup
	@test -n "$(SUBMISSIONS)" || { echo "usage: make grade SUBMISSIONS=<folder of submitted notebooks>"; exit 2; }
	$(PY) -m ddlib grade "$(SUBMISSIONS)" --out $(GRADES_DIR)

clean:
	rm -rf $(VENV) .cache reports/smoke .pytest_cache
