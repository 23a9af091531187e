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

# Another PORT moves the whole stack (sidecar PORT+1, Envoy admin PORT+2, demo provider PORT+3, status
# page PORT+4, scrape listener PORT+5, quota state in .gateway-state/PORT), so two gateways on different
# PORTs do not collide; a taken port stops the start with its name.
PORT_ENV = $(if $(filter-out 8080,$(PORT)),GATEWAY_SIDECAR_PORT=$$(($(PORT)+1)) GATEWAY_ADMIN_PORT=$$(($(PORT)+2)) \
	GATEWAY_DEMO_PROVIDER_PORT=$$(($(PORT)+3)) GATEWAY_STATUS_PORT=$$(($(PORT)+4)) \
	GATEWAY_METRICS_PORT=$$(($(PORT)+5)) GATEWAY_STATE_DIR=.gateway-state/$(PORT),)

run: $(STAMP)
	GATEWAY_PORT=$(PORT) $(PORT_ENV) GATEWAY_POLICIES=$(POLICIES) $(PY) -m sidecar run

# Tools the suite needs (redis-server, kubectl) are installed when missing; tests that still lack one
# skip with `TOOL MISSING` and the run ends with a banner naming them (in CI they fail instead).
test: $(STAMP)
	@VENV=$(VENV) bash .ci/install-tools || echo "WARNING: some test tools are missing; see NOT RUN at the end"
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
	env -i GATEWAY_LISTEN_ADDRESS=0.0.0.0 GATEWAY_SIDECAR_SOCKET=/var/run/gateway/sidecar.sock $(PY) -m sidecar envoy-config -o deploy/base/envoy/envoy.yaml
	rm -f deploy/base/policies/*.yaml deploy/base/policies/*.yml
	cp policies/*.y*ml deploy/base/policies/
	$(PY) deploy/monitoring/prometheusrule.py

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .mypy_cache .ruff_cache
