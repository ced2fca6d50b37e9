"""pyk8s: Kubernetes, implemented in Python."""
