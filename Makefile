# Two commands set everything up on a fresh machine: `make run` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
PORT ?= 8080
POLICIES ?= policies
STAMP := $(VENV)/.installed

.PHONY: run test check lint typecheck bench install clean deploy-config

$(PY):
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

# Reinstall when the package metadata changes.
$(STAMP): $(PY) setup.cfg pyproject.toml
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	GATEWAY_PORT=$(PORT) GATEWAY_POLICIES=$(POLICIES) $(PY) -m sidecar run

test: $(STAMP)
	@command -v redis-server >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
		(apt-get update -qq && apt-get install -y -qq redis-server >/dev/null); } || \
		echo "note: redis-server missing; the Redis-backed tests are skipped (apt-get install redis-server)"
	@command -v promtool >/dev/null && command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && \
		command -v apt-get >/dev/null && (apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
		apt-get install -y -qq prometheus chromium >/dev/null); } || \
		echo "note: promtool or chromium missing; their tests are skipped (apt-get install prometheus chromium)"
	$(PY) -m ruff check sidecar tests
	$(PY) -m mypy
	$(PY) -m pytest -q -p no:cacheprovider

check: $(STAMP)
	GATEWAY_POLICIES=$(POLICIES) $(PY) -m sidecar check $(POLICIES)

lint: $(STAMP)
	$(PY) -m ruff check sidecar tests

typecheck: $(STAMP)
	$(PY) -m mypy

bench: $(STAMP)
	$(PY) bench/run.py

# Refresh what deploy/base ships: the Envoy config for in-pod settings (listen on 0.0.0.0), a copy of
# policies/ (kustomize cannot read outside deploy/), and the PrometheusRule made from
# deploy/monitoring/alerts.yaml. tests/deploy fails while they are stale.
deploy-config: $(STAMP)
	env -i GATEWAY_LISTEN_ADDRESS=0.0.0.0 $(PY) -m sidecar envoy-config -o deploy/base/envoy/envoy.yaml
	rm -f deploy/base/policies/*.yaml deploy/base/policies/*.yml
	cp policies/*.y*ml deploy/base/policies/
	$(PY) deploy/monitoring/prometheusrule.py

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .mypy_cache .ruff_cache
