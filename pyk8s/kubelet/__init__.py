"""The node agent (kubelet): registers a Node, heartbeats its Lease, runs the pods bound to
it through a container runtime and reports their status. Only the `fake` runtime exists
so far (hollow nodes, as upstream's kubemark)."""
