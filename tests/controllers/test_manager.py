"""The controller manager's flags and options (no server)."""
from __future__ import annotations

import argparse

import pytest

from pyk8s.cli.main import _add_controller_args, controller_options, parse_duration
from pyk8s.controllers.manager import ControllerManagerOptions


def test_parse_duration_like_go() -> None:
    assert parse_duration("15s") == 15.0
    assert parse_duration("1m30s") == 90.0
    assert parse_duration("500ms") == 0.5
    assert parse_duration("2") == 2.0
    with pytest.raises(argparse.ArgumentTypeError):
        parse_duration("15 seconds")


def parse(*argv: str) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    _add_controller_args(p)
    return p.parse_args(list(argv))


def test_flags_map_to_options_with_upstream_defaults() -> None:
    o = controller_options(parse())
    assert (o.leader_elect, o.lease_duration, o.renew_deadline, o.retry_period) == (
        True, 15.0, 10.0, 2.0)
    assert (o.lock_namespace, o.lock_name) == ("kube-system", "kube-controller-manager")
    assert o.terminated_pod_gc_threshold == 12500
    assert o.kube_api_qps > 20 and o.kube_api_burst > 30  # far past upstream's 20 / 30
    o = controller_options(parse("--leader-elect=false", "--leader-elect-lease-duration=3s",
                                 "--concurrent_rc_syncs=2", "--kube-api-qps=20",
                                 "--controllers=*,-podgc"), identity="me")
    assert not o.leader_elect and o.lease_duration == 3.0 and o.concurrent_rc_syncs == 2
    assert o.kube_api_qps == 20 and o.identity == "me"
    assert o.enabled("replicaset") and not o.enabled("podgc")
    assert controller_options(parse("--leader-elect")).leader_elect is True


def test_controllers_flag_rule() -> None:
    o = ControllerManagerOptions(controllers=("replicaset",))
    assert o.enabled("replicaset") and not o.enabled("namespace")
