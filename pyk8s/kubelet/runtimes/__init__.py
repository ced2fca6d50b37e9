"""Container runtimes for the kubelet (see `pyk8s.kubelet.runtime.Runtime`)."""
