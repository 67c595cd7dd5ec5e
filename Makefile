# The two commands a new user needs (README): `make demo` and `make test`. Both do their own setup.
.PHONY: setup demo test test-fast bench clean help

help:
	@echo "make demo   - run the node on the bundled sample frames over real DDS; outputs in out/demo/"
	@echo "make test   - run the test suite (unit + end-to-end over DDS)"
	@echo "make setup  - create/update .venv (pinned ROS 2 Jazzy wheels, torch CPU, msgs build)"
	@echo "make bench  - run the benchmarks and write out/bench/BENCHMARKS.md"

setup:
	@bash scripts/setup.sh

demo: setup
	@bash scripts/demo.sh

test: setup
	@bash scripts/test.sh

bench: setup
	@bash scripts/bench.sh

clean:
	rm -rf build out .pytest_cache
