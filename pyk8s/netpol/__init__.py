"""NetworkPolicy enforcement on a node, as k3s does with kube-router's policy controller:
`rules` turns the policies, pods and namespaces into filter chains and ipsets for this
node's pods (pure); `iptables` writes them with `ipset restore` and
`iptables-restore --noflush` (only what changed) and keeps the jump from FORWARD first;
`controller` wires informers on NetworkPolicies, Pods and Namespaces to a coalescing sync
loop and reports failures as Warning events on the policies."""
