"""Cluster DNS (CoreDNS's `kubernetes` plugin): Services, EndpointSlices and Namespaces, read
through the API server by informers, answered as `cluster.local` names; other names are
forwarded to the host's resolvers.

`records` turns names into answers (pure, over informer stores); `server` holds the UDP and
TCP listeners and the wire format (dnslib); `forwarder` passes other names upstream;
`publish` writes the `kube-dns` Service and this server's EndpointSlice; `component` wires
them into `run_dns`; `cli` is `pyk8s dns`. Nothing here imports another component.
"""
from pyk8s.dns.component import DNSOptions, run_dns

__all__ = ["DNSOptions", "run_dns"]
