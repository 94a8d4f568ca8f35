# corral: `make run` serves the example app, `make test` runs the whole suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
WORKERS ?= 4

.PHONY: run test install bench clean options-table test-packages fuzz dist test-versions docs

# setup.py compiles the hot path with Cython where a compiler is (the
# pure-Python build, with a warning, where there is none; CORRAL_PURE=1 forces
# it); an edit of one of these files compiles it again (until then the edited
# file runs from source: corral/_mode.py). Only what measures faster compiled
# is compiled (docs/installation.md: Compiled or pure).
COMPILED_SOURCES := corral/proto/h1.py corral/proto/h1.pxd

$(VENV)/.installed: pyproject.toml setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e .
	touch $@ $(VENV)/.compiled

$(VENV)/.installed-test: $(VENV)/.installed
	$(BIN)/pip install -q -e '.[test]'
	touch $@ $(VENV)/.compiled

$(VENV)/.compiled: $(COMPILED_SOURCES) | $(VENV)/.installed
	$(BIN)/pip install -q --no-deps -e .
	touch $@

install: $(VENV)/.installed

run: $(VENV)/.installed $(VENV)/.compiled
	$(BIN)/corral examples.app:app --host $(HOST) --port $(PORT) --workers $(WORKERS)

# The whole suite on the build as installed (compiled where a compiler is),
# then the protocol and io tiers on the pure-Python modules; first the docs
# site, built strictly.
test: $(VENV)/.installed-test $(VENV)/.compiled test-packages docs
	$(BIN)/python -m pytest $(PYTEST_ARGS)
	CORRAL_PURE=1 $(BIN)/python -m pytest tests/proto tests/io tests/test_build.py $(PYTEST_ARGS)

# The proto/ and io/ tiers and an integration smoke (start, HTTP/1.1, HTTP/2,
# HUP, TERM) on every other Python >= 3.10 that pyenv has here, compiled and
# pure, each in its own .venv-3.X (tests/versions/run.sh; PYTHONS="3.10 3.13"
# picks some). Without pyenv it says so and passes.
test-versions:
	PYTHON=$(PYTHON) tests/versions/run.sh

# The Debian packages tests use, as PACKAGE:EXECUTABLE: each missing one is
# installed; where that fails the build goes on and the tests that need it
# are skipped with the reason. chromium: tests/integration/test_browser.py;
# haproxy: tests/integration/test_proxy_*.py, test_rolling_restart.py;
# tmux: tests/integration/test_top.py; nghttp2-client (nghttp, h2load): tests/integration/test_h2.py.
TEST_PACKAGES := chromium:/usr/bin/chromium haproxy:/usr/sbin/haproxy tmux:/usr/bin/tmux nghttp2-client:/usr/bin/h2load
APT := $(shell [ "$$(id -u)" = 0 ] || echo sudo) env DEBIAN_FRONTEND=noninteractive apt-get
test-packages:
	@for entry in $(TEST_PACKAGES); do package=$${entry%%:*}; [ -x "$${entry#*:}" ] \
		|| $(APT) install -y $$package || { $(APT) update && $(APT) install -y $$package; } \
		|| echo "$$package could not be installed; the tests that need it will be skipped"; done

# The docs site (mkdocs.yml, docs/; mkdocs-material), into SITE_DIR (site/).
# --strict: a broken link, a missing file, a README heading a page names that
# is gone, or a README section no page shows fails the build (docs/hooks.py).
SITE_DIR ?= site
docs: $(VENV)/.installed-test
	NO_MKDOCS_2_WARNING=1 $(BIN)/python -m mkdocs build --strict --quiet --site-dir $(SITE_DIR)

# The release files: the sdist, then a wheel built from it (by `python -m
# build`, in isolated build environments), both checked by twine (--strict:
# the README must render as the long description). Into DIST_DIR (dist/).
# tests/test_dist.py runs this target and installs what it made.
DIST_DIR ?= dist
dist: $(VENV)/.installed-test
	rm -rf $(DIST_DIR)
	$(BIN)/python -m build --outdir $(DIST_DIR) .
	$(BIN)/python -m twine check --strict $(DIST_DIR)/*

clean:
	rm -rf $(VENV) .venv-bench .venv-3.* *.egg-info .pytest_cache build dist site
	find corral \( -name '*.c' -o -name '*.so' \) -delete

-include bench/Makefile.inc

# The options reference is generated from corral/config.py when the docs are
# built (docs/hooks.py: <!-- options-table --> in docs/configuration.md);
# nothing to regenerate by hand. Kept so that old habits get an answer.
options-table: $(VENV)/.installed
	@echo "the options reference is generated at docs build time (make docs): docs/configuration.md"

# Fuzzing (fuzz/README.md): the atheris targets, FUZZ_SECONDS each, then the
# hypothesis property and differential tests with FUZZ_EXAMPLES examples each.
# `make test` runs a seeded slice of all of it. Crashes land in .fuzz/.
FUZZ_SECONDS ?= 300
FUZZ_EXAMPLES ?= 20000
fuzz: $(VENV)/.installed-test
	@mkdir -p .fuzz/corpus-h1 .fuzz/corpus-ws
	@if $(BIN)/python -c "import atheris" 2>/dev/null || $(BIN)/pip install -q atheris; then \
		$(BIN)/python fuzz/h1.py -max_total_time=$(FUZZ_SECONDS) -timeout=10 -artifact_prefix=.fuzz/ .fuzz/corpus-h1 \
		&& $(BIN)/python fuzz/ws.py -max_total_time=$(FUZZ_SECONDS) -timeout=10 -artifact_prefix=.fuzz/ .fuzz/corpus-ws; \
	else \
		echo "atheris could not be installed (no wheel for this Python/platform, and building it needs clang with libFuzzer):"; \
		echo "skipping the coverage-guided targets; running the hypothesis tests longer instead"; \
	fi
	CORRAL_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(BIN)/python -m pytest -q -p no:cacheprovider \
		tests/proto/test_h1_properties.py tests/proto/test_ws_properties.py tests/proto/test_h1_h11.py
