# pyk8s: the two set-up commands are `make up` and `make test`.
PY ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
DATA_DIR ?= .pyk8s
PORT ?= 6443
# Parallel test workers (pytest-xdist); CI has 2 cores.
TEST_WORKERS ?= 4

.PHONY: up test venv dev-venv system-deps bench bench-controllers bench-scheduler clean

$(VENV)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(VPY) -m pip install -q --upgrade pip
	$(VPY) -m pip install -q -e .
	touch $@

$(VENV)/.dev-installed: $(VENV)/.installed pyproject.toml
	$(VPY) -m pip install -q -e '.[dev]'
	touch $@

venv: $(VENV)/.installed

dev-venv: $(VENV)/.dev-installed

# System packages the suite drives: real kubectl is expected at /usr/bin/kubectl, and
# etcd (Debian's etcd-server) for the etcd storage backend's tests.
system-deps:
	@if ! command -v kubectl >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -q && apt-get install -y -q kubectl; \
	  else echo "kubectl missing: install it (apt-get install kubectl)" >&2; exit 1; fi; \
	fi
	@if ! command -v etcd >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -q && apt-get install -y -q etcd-server; \
	  else echo "etcd missing: install it (apt-get install etcd-server)" >&2; exit 1; fi; \
	fi

up: venv
	@echo "Starting pyk8s (SQLite state in $(DATA_DIR)/). When it is listening:"
	@echo "  export KUBECONFIG=$(abspath $(DATA_DIR))/kubeconfig.yaml"
	@echo "  kubectl get namespaces"
	@echo "  kubectl create deployment hello --image=busybox -- sleep 3600   # on the local node"
	@echo "  kubectl get pods -o wide"
	$(VENV)/bin/pyk8s up --data-dir $(DATA_DIR) --port $(PORT)

# The REST suite runs once more on the etcd backend, alongside the main run (it mostly
# waits, so it adds little time); its output follows the main run's.
test: dev-venv system-deps
	@log=$$(mktemp); \
	PYK8S_TEST_STORAGE=etcd $(VPY) -m pytest -q -p no:cacheprovider tests/e2e/test_rest.py \
	  > $$log 2>&1 & etcd_run=$$!; \
	$(VPY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile; rc=$$?; \
	wait $$etcd_run; etcd_rc=$$?; \
	echo "== tests/e2e/test_rest.py again, on etcd (PYK8S_TEST_STORAGE=etcd) =="; \
	cat $$log; rm -f $$log; \
	[ $$rc -eq 0 ] && [ $$etcd_rc -eq 0 ]

bench: venv
	$(VPY) bench/api.py

bench-controllers: venv
	$(VPY) bench/controllers.py

bench-scheduler: venv
	$(VPY) bench/scheduler.py

clean:
	rm -rf $(VENV) .pytest_cache
