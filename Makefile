# Developer checks. `make check` is what CI runs (after the README's test command):
# formatting, lint, types, the import contracts, the SQL lint, and every test,
# the slow ones (large worlds) included.
PY ?= python

.PHONY: check lint format test slow fix

check: lint test slow

lint:
	$(PY) -m ruff format --check src tests benchmarks
	$(PY) -m ruff check src tests benchmarks
	$(PY) -m mypy
	lint-imports
	sqlfluff lint queries src/warroom/impact

test:
	$(PY) -m pytest -q

slow:
	$(PY) -m pytest -q -m slow

format fix:
	$(PY) -m ruff format src tests benchmarks
	$(PY) -m ruff check --fix src tests benchmarks
