# virtfleet: `make plan` (offline plan of a stack) and `make test` set everything up themselves.
STACK ?= dev
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: plan drift diff diagram schema docs test lint bench clean engine plugins preview lab lab-down mutate backend-db backend-db-stop

$(STAMP): requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

## plan: show and render everything stack $(STACK) would deploy (no Pulumi CLI, credentials or hosts)
plan: $(STAMP)
	$(PY) -m plan --stack $(STACK)

## drift: is stack $(STACK) what it says? Every step checked read-only over SSH, provider resources
## refreshed read-only by the engine; table + build/$(STACK)/drift.json. python -m drift gives the
## exit status 0 in sync / 2 drift / 1 error (make turns any failure into 2); DRIFT_ARGS: its options
drift: $(STAMP)
	$(PY) -m drift $(STACK) $(DRIFT_ARGS)

## diff: what differs between two stacks' models, e.g. make diff FROM=staging TO=prod
FROM ?= staging
TO ?= prod
diff: $(STAMP)
	$(PY) -m plan.diff $(FROM) $(TO)

## diagram: regenerate the dev stack's topology committed as docs/topology-dev.svg (needs graphviz)
diagram: $(STAMP)
	$(PY) -m plan.topology --write-docs

## schema: regenerate schema/stack.schema.json (the JSON Schema of Pulumi.<stack>.yaml) from the model
schema: $(STAMP)
	$(PY) -m plan.schema --write

## docs: the documentation site (docs/, mkdocs.yml) into build/site/, strictly (a broken link fails)
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --quiet
	@echo "built build/site/index.html"

## test: the whole suite (real tools skip locally when missing; REQUIRE_REAL_TOOLS=1 makes them fail)
test: $(STAMP)
	$(PY) -m pytest -q

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

## bench: benchmarks/, printed as ratios measured in one run
bench: $(STAMP)
	$(PY) benchmarks/haproxy_tier.py
	$(PY) benchmarks/rolling_change.py
	$(PY) benchmarks/state_backend.py
	$(PY) benchmarks/lab_up.py

## engine: build the real Pulumi CLI and Python language host from their Go modules into .engine/
engine:
	bash engine/build.sh

## plugins: the provider plugin of each SDK pin in the plugin cache (~/.pulumi, shared by every checkout)
plugins: $(STAMP) engine
	bash engine/plugins.sh

## lab: stack $(STACK) deployed for real on this machine (namespaces, libvirtd/QEMU, dockerd, EL fakes)
lab: $(STAMP) engine
	@bash engine/plugins.sh --check >/dev/null || { bash engine/plugins.sh --check; exit 1; }
	$(PY) -m lab --stack $(STACK) up

## lab-down: destroy the lab's stack and remove every namespace, process and file of the lab
lab-down: $(STAMP)
	$(PY) -m lab --stack $(STACK) down

## preview: the real `pulumi preview --diff` of stack $(STACK) through the built engine
preview: $(STAMP) engine
	bash engine/preview.sh $(STACK)

## mutate: mutation score of the templates (mutation/templates.py) and of the Python modules in
## pyproject.toml [tool.mutmut] (mutmut, time-bounded); not part of `make test` or CI; ~2 h on 2 cores
mutate: $(STAMP)
	$(PY) -m mutation.templates
	$(PY) -m mutation.python --time-limit $(or $(MUTATE_SECONDS),5400)

## backend-db: a local PostgreSQL for Pulumi's state (TLS, least-privilege role, pgpass); prints what to export
backend-db:
	bash engine/backend-db.sh up

## backend-db-stop: stop it (its data stays in .backend-db/, or $$BACKEND_DB_DIR)
backend-db-stop:
	bash engine/backend-db.sh down

clean:
	rm -rf build .pytest_cache .ruff_cache mutants
