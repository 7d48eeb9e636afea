# The two commands of the README: `make demo` and `make test`. Both create .venv on first use.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3
# tcmalloc makes JAX on CPU 1.2-2.5x faster (docs/cpu_convolutions.md); used when installed
# (`apt-get install libtcmalloc-minimal4`).
TCMALLOC := $(firstword $(wildcard /usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4 /usr/lib/aarch64-linux-gnu/libtcmalloc_minimal.so.4))
RUN := $(if $(TCMALLOC),LD_PRELOAD=$(TCMALLOC) ,)TF_CPP_MIN_LOG_LEVEL=2
DEMO_DIR ?= runs/demo

.PHONY: install test test-slow demo clean

$(VENV)/.installed: setup.cfg pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade --quiet pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $@

install: $(VENV)/.installed

# The whole fast suite (slow tests are marked and run by `make test-slow`).
# pytest exits 5 when it collects nothing: that is a broken suite, not a pass.
test: $(VENV)/.installed
	@$(RUN) $(PY) -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests - the suite is broken" >&2; fi; \
	exit $$rc

test-slow: $(VENV)/.installed
	$(RUN) $(PY) -m pytest -m slow $(PYTEST_ARGS)

demo: $(VENV)/.installed
	$(RUN) $(PY) -m pointseg_jax.experiments.demo --workdir=$(DEMO_DIR)

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache
