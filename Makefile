# Two entry points for a fresh machine with only Python 3.11 and pip: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check -q

.PHONY: demo test bench install install-test clean

$(PY):
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(PY)
	$(PIP) install -e . 2>&1 | grep -v "is ignored: it is neither" || true
	$(PY) -c "import framework" && touch $@

$(VENV)/.installed-test: pyproject.toml $(VENV)/.installed
	$(PIP) install -e ".[test]" 2>&1 | grep -v "is ignored: it is neither" || true
	$(PY) -c "import vectorbt, nbclient, ruff, mypy" && touch $@

$(VENV)/.installed-bench: pyproject.toml $(VENV)/.installed-test
	$(PIP) install -e ".[bench]" 2>&1 | grep -v "is ignored: it is neither" || true
	$(PY) -c "import backtrader" && touch $@

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

demo: $(VENV)/.installed
	$(VENV)/bin/parity demo

# the linter, the type checker, then the whole suite (its summary is the last line); every one runs,
# and any failure fails the target
test: $(VENV)/.installed-test
	@status=0; \
	echo "ruff check ."; $(PY) -m ruff check . || status=1; \
	echo "mypy (framework, brokers)"; $(PY) -m mypy || status=1; \
	$(PY) -m pytest -q || status=1; \
	exit $$status

bench: $(VENV)/.installed-bench
	$(PY) -m benchmarks

clean:
	rm -rf $(VENV) build *.egg-info
