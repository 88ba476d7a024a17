# glidein-triton: `make demo` runs the main job, `make test` runs the checks and the tests, `make dist` builds
# the sdist and the wheel into dist/.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# the test toolchain (the [test] extra: everything, ~525 MB) for `make test`; the [local] extra alone for
# `make demo` (the test toolchain includes it)
STAMP := $(VENV)/.installed
LOCAL_STAMP := $(VENV)/.installed-local
# `make dist` builds offline (--no-isolation) with the build, setuptools and wheel of DIST_PYTHON: by default
# a small virtual environment of their own; `make dist DIST_PYTHON=.venv/bin/python` uses the test toolchain's.
DIST_VENV ?= .dist-venv
DIST_PYTHON ?= $(DIST_VENV)/bin/python

# Every shell script of the project (the sourced ones name their shell in a directive).
SHELL_SCRIPTS = .ci/run $(wildcard glidein_triton/scripts/*.sh glidein_triton/local/glidein_doubles/*.sh \
	glidein_triton/local/glidein_doubles/*.source examples/*.sh)

.PHONY: demo test lint unit venv clean docs bench dist

venv: $(STAMP)

$(STAMP): pyproject.toml
	@echo "make: installing glidein-triton (editable) with the test toolchain, the [test] extra, into $(VENV)"
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP) $(LOCAL_STAMP)

$(LOCAL_STAMP): pyproject.toml
	@echo "make demo: installing glidein-triton (editable) with what the demo needs, the [local] extra"
	@echo "make demo: (the CPU Triton server of nvidia-pytriton, tritonclient, numpy, htcondor, lxml, jinja2)"
	@echo "make demo: into $(VENV); the first time this downloads a few hundred MB"
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --progress-bar off -e '.[local]'
	touch $(LOCAL_STAMP)

demo: $(LOCAL_STAMP)
	@echo "make demo: glidein-triton demo (a whole glidein lifecycle on the real local Triton server)"
	$(BIN)/glidein-triton demo

$(DIST_VENV)/.installed:
	@echo "make dist: a small virtual environment with build, setuptools and wheel, in $(DIST_VENV)"
	$(PYTHON) -m venv $(DIST_VENV)
	$(DIST_VENV)/bin/python -m pip install --quiet 'build>=1.2' 'setuptools>=77' wheel
	touch $@

dist: $(if $(filter $(DIST_VENV)/bin/python,$(DIST_PYTHON)),$(DIST_VENV)/.installed)
	$(DIST_PYTHON) -m build --no-isolation --outdir dist .
	@echo "make dist: built $$(ls dist/glidein_triton-*.tar.gz dist/glidein_triton-*.whl | tr '\n' ' ')"

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/shellcheck $(SHELL_SCRIPTS)

# The pure logic alone, in parallel: no real server (server), no script or simulated glidein run end to end,
# no make dist and no pip install (scripts); under 30 s on 2 cores.
unit: $(STAMP)
	$(BIN)/pytest -n 2 -m 'not server and not scripts'

# The documentation site, into site/; --strict fails on any warning (broken links, pages not in the nav).
docs: $(STAMP)
	$(BIN)/mkdocs build --strict --quiet

# In parallel (pytest-xdist): the real-server tests mostly wait, so three workers fit these 2 cores.
test: lint docs
	$(BIN)/pytest -n 3

bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[test,bench]'
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) $(DIST_VENV) build dist site *.egg-info .pytest_cache .mypy_cache .ruff_cache
