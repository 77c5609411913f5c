# `make demo` and `make test` work on a fresh machine: each sets up .venv first.
PY := .venv/bin/python
PIP_QUIET := --quiet --disable-pip-version-check
export TF_CPP_MIN_LOG_LEVEL := 3

.PHONY: setup test test-slow demo corpus testbed bench clean

setup: .venv/.installed

.venv/.installed: requirements.txt
	test -x $(PY) || python3 -m venv .venv
	$(PY) -m pip install $(PIP_QUIET) -r requirements.txt
	$(PY) -m pip check
	touch $@

# Two workers, each taking whole files (module fixtures are built once): 2 cores stay busy
# while a test waits on a subprocess or a compile.
test: setup
	$(PY) -m pytest -q -n 2 --dist loadfile

test-slow: setup
	$(PY) -m pytest -q -m slow

corpus: setup
	$(PY) -m data.corpus --data_dir=data_cache
	$(PY) -m data.tokenizer --data_dir=data_cache --vocab_size=8192

# The reproductions' testbed (configs/testbed.py): a 1024-piece BPE and the planted domains.
testbed: corpus
	$(PY) -m data.tokenizer --data_dir=data_cache --vocab_size=1024
	$(PY) -m data.planted --data_dir=data_cache

demo: corpus
	$(PY) main.py --mode=compare --config=configs/compare/demo.py --workdir=workdirs/demo

bench: setup
	$(PY) benchmarks/step_throughput.py --quick

clean:
	rm -rf workdirs
