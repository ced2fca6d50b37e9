"""The containers' service environment variables (upstream's envvars.FromServices and
getServiceEnvVarMap)."""
from __future__ import annotations

import asyncio
from typing import Any

from pyk8s.kubelet.envvars import make_environment, service_environment, service_variables


def svc(name: str, ns: str, ip: str, *ports: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": ns},
            "spec": {"clusterIP": ip, "ports": list(ports)}}


KUBERNETES = svc("kubernetes", "default", "10.96.0.1", {"name": "https", "port": 443,
                                                          "protocol": "TCP"})
WEB = svc("web-app", "shop", "10.96.0.20", {"name": "http", "port": 80},
          {"name": "dns", "port": 53, "protocol": "UDP"})
HEADLESS = svc("db", "shop", "None", {"port": 5432})


def test_variables_as_upstream() -> None:
    assert service_variables([KUBERNETES]) == {
        "KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443",
        "KUBERNETES_SERVICE_PORT_HTTPS": "443", "KUBERNETES_PORT": "tcp://10.96.0.1:443",
        "KUBERNETES_PORT_443_TCP": "tcp://10.96.0.1:443",
        "KUBERNETES_PORT_443_TCP_PROTO": "tcp", "KUBERNETES_PORT_443_TCP_PORT": "443",
        "KUBERNETES_PORT_443_TCP_ADDR": "10.96.0.1"}
    web = service_variables([WEB])
    assert web["WEB_APP_SERVICE_HOST"] == "10.96.0.20" and web["WEB_APP_SERVICE_PORT"] == "80"
    assert web["WEB_APP_SERVICE_PORT_DNS"] == "53"
    assert web["WEB_APP_PORT_53_UDP"] == "udp://10.96.0.20:53"
    assert service_variables([HEADLESS]) == {}


def test_which_services_a_pod_sees() -> None:
    pod = {"metadata": {"namespace": "shop"}, "spec": {}}
    other = svc("other", "elsewhere", "10.96.0.30", {"port": 1})
    env = service_environment(pod, [KUBERNETES, WEB, HEADLESS, other])
    assert "KUBERNETES_SERVICE_HOST" in env and "WEB_APP_SERVICE_HOST" in env
    assert not any(k.startswith(("OTHER_", "DB_")) for k in env)
    pod["spec"]["enableServiceLinks"] = False
    env = service_environment(pod, [KUBERNETES, WEB])
    assert "KUBERNETES_SERVICE_HOST" in env and "WEB_APP_SERVICE_HOST" not in env


def test_container_env_wins_and_may_refer_to_services() -> None:
    pod = {"metadata": {"namespace": "default"}, "spec": {}}
    ctr = {"name": "c", "env": [{"name": "KUBERNETES_SERVICE_PORT", "value": "1"},
                                {"name": "API", "value": "https://$(KUBERNETES_SERVICE_HOST)"}]}

    async def getter(kind: str, ns: str, name: str) -> None:
        return None
    env = dict(asyncio.run(make_environment(pod, ctr, getter,  # type: ignore[arg-type]
                                            service_env=service_environment(pod, [KUBERNETES]))))
    assert env["KUBERNETES_SERVICE_PORT"] == "1" and env["API"] == "https://10.96.0.1"
    assert env["KUBERNETES_PORT_443_TCP_ADDR"] == "10.96.0.1"
