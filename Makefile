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
	$(PY) -c "import vectorbt, nbclient" && touch $@

$(VENV)/.installed-bench: pyproject.toml $(VENV)/.installed-test
	$(PIP) install -e ".[bench]" 2>&1 | grep -v "is ignored: it is neither" || true
	$(PY) -c "import backtrader" && touch $@

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

demo: $(VENV)/.installed
	$(VENV)/bin/parity demo

test: $(VENV)/.installed-test
	$(PY) -m pytest -q

bench: $(VENV)/.installed-bench
	$(PY) -m benchmarks

clean:
	rm -rf $(VENV) build *.egg-info
