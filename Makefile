# The two commands of the README. Both set everything up first (scripts/setup.sh, idempotent).
.PHONY: run test setup lint

run:    ## set up, then run one full cycle on the embedded defaults (cycle 0 first if there is no champion)
	bash scripts/setup.sh
	.venv/bin/python -m loop.run

test:   ## set up, then run the whole test suite (CI runs exactly this)
	bash scripts/setup.sh --with-test-tools
	.venv/bin/ruff check .
	.venv/bin/python -m pytest -q -n 2 --dist loadfile --no-loadscope-reorder --durations=15

setup:
	bash scripts/setup.sh

lint:
	.venv/bin/ruff check . && .venv/bin/ruff format --check .
