# pyk8s: the two set-up commands are `make up` and `make test`.
PY ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
DATA_DIR ?= .pyk8s
PORT ?= 6443
# Parallel test workers (pytest-xdist); CI has 2 cores.
TEST_WORKERS ?= 4

.PHONY: up down test venv dev-venv system-deps bench bench-controllers bench-scheduler bench-pods bench-proxy bench-network clean

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

# System packages the suite drives: real kubectl is expected at /usr/bin/kubectl, etcd
# (Debian's etcd-server) for the etcd storage backend's tests, and for real containers
# (the oci runtime): runc, crun, the CNI plugins, busybox-static (test images),
# docker-registry and skopeo (a local registry to pull from), iptables, ipset (network
# policies); iperf3 for bench/network.py.
SYSTEM_PACKAGES := kubectl:kubectl etcd:etcd-server runc:runc crun:crun \
	/usr/lib/cni/bridge:containernetworking-plugins busybox:busybox-static \
	docker-registry:docker-registry skopeo:skopeo iptables:iptables ip:iproute2 \
	zstd:zstd ipset:ipset iperf3:iperf3
system-deps:
	@missing=""; for pair in $(SYSTEM_PACKAGES); do \
	  cmd=$${pair%%:*}; pkg=$${pair#*:}; \
	  if ! command -v $$cmd >/dev/null 2>&1 && [ ! -e $$cmd ]; then missing="$$missing $$pkg"; fi; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing system packages:$$missing"; \
	  echo "  (kubectl: the client; runc / crun, containernetworking-plugins, iptables, iproute2:"; \
	  echo "  real containers and their network; etcd-server: the etcd backend; busybox-static,"; \
	  echo "  docker-registry, skopeo, zstd: test images and a local registry)"; \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -q && apt-get install -y -q $$missing; \
	  else echo "missing:$$missing (apt-get install$$missing)" >&2; exit 1; fi; \
	fi

# The local node runs real containers when it can (root, runc, CNI plugins). More flags of
# `pyk8s up`: make up ARGS="--cluster-cidr 10.44.0.0/16 --cni-bridge cni1".
ARGS ?=
up: venv system-deps
	@echo "Starting pyk8s (SQLite state in $(DATA_DIR)/). When it is listening:"
	@echo "  export KUBECONFIG=$(abspath $(DATA_DIR))/kubeconfig.yaml"
	@echo "  kubectl get namespaces"
	@echo "  $(VENV)/bin/python tools/build_test_image.py busybox.tar --name busybox:local"
	@echo "  $(VENV)/bin/pyk8s image import --data-dir $(DATA_DIR) busybox.tar   # no internet needed"
	@echo "  kubectl create deployment hello --image=busybox:local -- sleep 3600   # on the local node"
	@echo "  kubectl get pods -o wide"
	$(VENV)/bin/pyk8s up --data-dir $(DATA_DIR) --port $(PORT) $(ARGS)

# Stop the cluster of DATA_DIR and remove everything it left on the host (containers,
# mounts, pod network, cgroups, iptables chains), e.g. after it was killed with SIGKILL.
down: venv
	$(VENV)/bin/pyk8s killall --data-dir $(DATA_DIR)

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

# Pod start-up on real containers (root, runc, CNI plugins, docker-registry, skopeo);
# BENCH_PODS_ARGS="--runtime process" for the process runtime.
BENCH_PODS_ARGS ?= --runtime oci
bench-pods: dev-venv
	$(VPY) bench/pods.py $(BENCH_PODS_ARGS)

# Service proxy: rule sync for 1,000 services x 10 endpoints, and the data path through a
# cluster IP (root, runc, CNI plugins, docker-registry, iptables).
bench-proxy: dev-venv
	$(VPY) bench/proxy.py

# The pod network: throughput and latency between pods on one host, across hosts through
# the VXLAN overlay, host to host, through a cluster IP (root, runc, CNI plugins, iperf3).
bench-network: dev-venv
	$(VPY) bench/network.py

clean:
	rm -rf $(VENV) .pytest_cache
