"""The pod network of the OCI runtime: a pod sandbox's pinned namespaces (namespaces.py),
a CNI driver calling the plugin binaries (cni.py) and the node's bridge network on its
spec.podCIDR (podnetwork.py)."""
