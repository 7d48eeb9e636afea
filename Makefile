# The two commands of the README: `make demo` and `make test`. Both create .venv on first use.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3
# tcmalloc makes JAX on CPU 1.1-1.5x faster (docs/performance.md). It is preloaded whenever it is
# installed; `make install` installs it when run as root (apt-get), else prints a one-line hint.
TCMALLOC_LIBS := /usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4 /usr/lib/aarch64-linux-gnu/libtcmalloc_minimal.so.4
TCMALLOC_FIND = for f in $(TCMALLOC_LIBS); do if [ -f $$f ]; then echo LD_PRELOAD=$$f; break; fi; done
# Looked up when a recipe runs (so a tcmalloc installed earlier in the same make is used).
RUN = env $$($(TCMALLOC_FIND)) TF_CPP_MIN_LOG_LEVEL=2
DEMO_DIR ?= runs/demo
# pytest-xdist workers for `make test`: one per core, at most 4 (each holds a JAX + TF process).
JOBS ?= $(shell n=$$(nproc 2>/dev/null || echo 2); [ $$n -gt 4 ] && n=4; echo $$n)

.PHONY: install test test-fast test-slow demo clean tcmalloc

# uv installs the same pinned set as pip in ~15 s instead of ~60 s (BENCHMARKS.md, "Time to first
# result"); pip is the fallback when uv cannot be installed or fails, and `INSTALLER=pip` forces
# it. uv does not read pip.conf: behind a private index set UV_INDEX_URL (or use INSTALLER=pip).
INSTALLER ?= uv
$(VENV)/.installed: setup.cfg pyproject.toml
	@$(MAKE) --no-print-directory tcmalloc
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@if [ "$(INSTALLER)" = uv ] && $(PY) -m pip install --quiet uv && \
	  $(VENV)/bin/uv pip install --python $(PY) --quiet -e '.[dev]'; then \
	  echo "make: installed .[dev] into $(VENV) with uv"; \
	else \
	  [ "$(INSTALLER)" = pip ] || echo "make: uv unavailable; installing with pip (slower)" >&2; \
	  $(PY) -m pip install --upgrade --quiet pip && $(PY) -m pip install --quiet -e '.[dev]'; \
	fi
	@touch $@

install: $(VENV)/.installed

tcmalloc:
	@if [ -n "$$($(TCMALLOC_FIND))" ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "make: installing libtcmalloc-minimal4 (JAX on CPU runs faster with it)"; \
	  { apt-get install -y -qq libtcmalloc-minimal4 || { apt-get update -qq && \
	    apt-get install -y -qq libtcmalloc-minimal4; }; } >/dev/null 2>&1 || \
	  echo "make: could not install libtcmalloc-minimal4; using the system malloc" >&2; \
	else \
	  echo "hint: 'sudo apt-get install libtcmalloc-minimal4' makes JAX on CPU 1.1-1.5x faster (docs/performance.md)" >&2; \
	fi

# The whole suite but the tests marked slow (`make test-slow`), one pytest-xdist worker per core;
# each test file runs in one worker (--dist loadfile), so its module fixtures are built once.
# pytest exits 5 when it collects nothing: that is a broken suite, not a pass.
test: $(VENV)/.installed
	@$(RUN) $(PY) -m pytest -n $(JOBS) --dist loadfile $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests - the suite is broken" >&2; fi; \
	exit $$rc

# The edit loop: the unit tests only; no process-level (e2e) test, no training, dataset build or
# multi-layout compile (integration), nothing slow. README "Tests" has both measured times.
test-fast: $(VENV)/.installed
	$(RUN) $(PY) -m pytest -n $(JOBS) --dist loadfile -m "not slow and not e2e and not integration" $(PYTEST_ARGS)

test-slow: $(VENV)/.installed
	$(RUN) $(PY) -m pytest -m slow $(PYTEST_ARGS)

demo: $(VENV)/.installed
	$(RUN) $(PY) -m pointseg_jax.experiments.demo --workdir=$(DEMO_DIR)

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache
