# Two commands for a fresh machine: `make crawl` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
SEEDS  ?= data/seeds

.PHONY: install crawl test bench sandbox clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

crawl: install
	$(BIN)/scrapy crawl imagesearch -a seeds=$(SEEDS)

test: install
	$(BIN)/python -m pytest -q

bench: install
	for f in bench/bench_*.py; do $(BIN)/python $$f || exit 1; done

sandbox: install
	$(BIN)/python -m sandbox

clean:
	rm -rf $(VENV) data/datasets .pytest_cache
