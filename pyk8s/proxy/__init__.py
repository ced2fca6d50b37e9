"""kube-proxy: Services + EndpointSlices (read through the API server) → the node's packet
path. `model` turns the objects into service ports with their usable endpoints (pure);
`iptables` renders and applies upstream's iptables-mode NAT chains atomically with
iptables-restore; `userspace` relays TCP/UDP in asyncio where packet rules cannot reach
(the process runtime's host processes); `component` wires informers to a backend with a
coalescing sync loop; `cli` is `pyk8s proxy`."""
