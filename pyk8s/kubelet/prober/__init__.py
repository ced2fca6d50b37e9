"""Container probes (upstream pkg/kubelet/prober): liveness, readiness and startup probes
run by one worker per (pod, container, probe type); their results drive the container's
`ready` / `started` and, on liveness or startup failure, its restart."""
from pyk8s.kubelet.prober.manager import ProbeManager
from pyk8s.kubelet.prober.results import Result

__all__ = ["ProbeManager", "Result"]
