"""Pod volumes: emptyDir, hostPath, configMap, secret, downwardAPI and projected, set up
under the agent's data dir and refreshed while the pod runs (see manager.py)."""
from pyk8s.kubelet.volumes.manager import VolumeError, VolumeManager

__all__ = ["VolumeError", "VolumeManager"]
