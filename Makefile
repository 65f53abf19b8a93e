# Two commands for a fresh machine: `make crawl` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
SEEDS  ?= data/seeds
# uv never downloads a Python of its own; it installs into $(VENV).
UV     := UV_PYTHON_DOWNLOADS=never UV_PROJECT_ENVIRONMENT=$(abspath $(VENV)) $(BIN)/uv

.PHONY: install system-packages lock lint test coverage test-clock crawl bench sandbox clean

install: $(VENV)/.installed system-packages

# What the tests need from the system, from Debian's packages: Chromium for the report's browser test
# (driven by Playwright from the venv; no browser is downloaded), a font with Chinese glyphs for
# its screenshot, and redis-server for the shared-run tests (each test starts its own on a free port).
# As root they are installed; otherwise one line says what to install.
SYSTEM_PACKAGES := chromium fonts-wqy-microhei redis-server
system-packages:
	@missing=""; \
	for pkg in $(SYSTEM_PACKAGES); do dpkg-query -W -f='$${Status}' $$pkg 2>/dev/null | grep -q "ok installed" || missing="$$missing $$pkg"; done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "make install: apt-get install$$missing"; \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing >/dev/null \
	  || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing >/dev/null; }; \
	else \
	  echo "make install: the browser and shared-run tests need Debian's$$missing: sudo apt-get install$$missing"; \
	fi

# uv, at the version uv.lock holds, from PyPI into the venv (uv sync keeps it there).
$(BIN)/uv: uv.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check \
	  "uv==$$($(PYTHON) -c 'import tomllib; print(next(p["version"] for p in tomllib.load(open("uv.lock", "rb"))["package"] if p["name"] == "uv"))')"
	touch $@

# Exactly what uv.lock holds (hash-checked, every transitive dependency, the developers' tools of
# pyproject.toml's dependency groups included) and the project itself, editable. --locked refuses
# a uv.lock that no longer matches pyproject.toml: run `make lock` after changing a dependency.
# --compile-bytecode: every test that runs `scrapy crawl` starts a Python that imports Scrapy,
# Twisted, pyarrow and pandas; without .pyc files (uv writes none by default, and
# PYTHONDONTWRITEBYTECODE keeps Python from writing them) each start compiles them again:
# 1.9 s a start instead of 0.8 s, over 100 starts in `make test`.
$(VENV)/.installed: pyproject.toml uv.lock $(BIN)/uv Makefile
	$(UV) sync --locked --quiet --compile-bytecode
	touch $@

# Re-resolve uv.lock to the newest versions pyproject.toml's ranges admit, for every platform and
# Python >= 3.11, and install them; commit uv.lock with the change. (`.venv/bin/uv lock` alone
# only adds what a changed pyproject.toml needs and keeps every other version.)
lock: $(BIN)/uv
	$(UV) lock --upgrade
	$(MAKE) install

# lint-imports: the import layers and no import cycle (pyproject.toml's [tool.importlinter], docs/architecture.md).
lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports --no-logo --no-cache

# --durations=15: the slowest tests, so that a slow one is seen when it lands. compileall: the
# project's own .pyc too, for the `scrapy crawl` processes the tests start (see --compile-bytecode).
# No coverage here: tracing every crawl and sandbox the tests start made the suite 44% slower
# (667 s against 464 s of pytest on 2 cores), past the 12 minutes a change may take; `make coverage`.
PYTEST := $(BIN)/python -m pytest -q -n 2 --dist loadfile --durations=15
test: lint
	$(BIN)/python -m compileall -q pipeline spiders items exporters sandbox
	$(PYTEST)

# The same suite with branch coverage of the test processes and of every crawl and sandbox they start
# (pyproject.toml's [tool.coverage.run] patch = subprocess), reported by module.
coverage: install
	$(BIN)/python -m compileall -q pipeline spiders items exporters sandbox
	$(PYTEST) --cov --cov-report=term:skip-covered

# The suite a year and a month ahead, in a time zone 14 hours from UTC (needs libfaketime:
# apt-get install faketime). Run it before a change lands; `make test` cannot move the clock.
test-clock: install
	@command -v faketime >/dev/null || { echo "make test-clock needs faketime: apt-get install faketime"; exit 2; }
	TZ=Pacific/Kiritimati faketime -f '+400d' $(BIN)/python -m pytest -q -p no:cacheprovider

crawl: install
	$(BIN)/scrapy crawl imagesearch -a seeds=$(SEEDS)

bench: install
	for f in bench/bench_*.py; do $(BIN)/python $$f || exit 1; done

sandbox: install
	$(BIN)/python -m sandbox

clean:
	rm -rf $(VENV) data/datasets data/serve-cache .pytest_cache .mypy_cache .ruff_cache .coverage .coverage.*
