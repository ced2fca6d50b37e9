"""The CNI driver without root: results, names, errors, and CNINetwork running fake plugin
scripts (each records its CNI_* environment and stdin, then acts as its config says)."""
from __future__ import annotations

import asyncio
import base64
import json
import os
import time
from pathlib import Path

import pytest

from pyk8s.kubelet.network import cni
from pyk8s.kubelet.network.cni import (CNIError, CNINetwork, CNIResult, _plugin_error,
                                       cached_entries, chain_comment, chain_name, cni_args,
                                       delete_all_cached, find_plugin, plugin_versions)
from tests.conftest import require
from tests.kubelet.network.conftest import Fakes

# -- CNIResult ----------------------------------------------------------------------------


def test_result_1_0_0_v4_first() -> None:
    raw = {"cniVersion": "1.0.0",
           "interfaces": [{"name": "cni0", "mac": "aa"}, {"name": "veth1", "mac": "bb"},
                          {"name": "eth0", "mac": "cc", "sandbox": "/run/netns/x"}],
           "ips": [{"address": "fd00:1::5/64", "gateway": "fd00:1::1", "interface": 2},
                   {"address": "10.1.2.5/24", "gateway": "10.1.2.1", "interface": 2},
                   {"address": "10.1.2.5/24", "interface": 2}]}
    r = CNIResult.from_raw(raw)
    assert r.ips == ["10.1.2.5", "fd00:1::5"] and r.ip == "10.1.2.5"
    assert r.host_interfaces() == ["cni0", "veth1"]
    assert r.sandbox_interfaces() == ["eth0"]
    assert r.raw is raw


def test_result_0_2_0_and_empty() -> None:
    r = CNIResult.from_raw({"cniVersion": "0.2.0", "ip6": {"ip": "fd00::7/64"},
                            "ip4": {"ip": "10.9.0.7/16", "gateway": "10.9.0.1"}})
    assert r.ips == ["10.9.0.7", "fd00::7"] and r.interfaces == []
    empty = CNIResult.from_raw({})
    assert empty.ips == [] and empty.ip == "" and empty.host_interfaces() == []
    # An unusable entry is skipped rather than failing the whole result.
    r = CNIResult.from_raw({"ips": [{"address": "bogus"}, {"gateway": "10.0.0.1"},
                                    {"address": "10.0.0.9/8"}]})
    assert r.ips == ["10.0.0.9"]


# -- names ----------------------------------------------------------------------------------


def test_cni_args() -> None:
    assert cni_args("cid", None) == [("IgnoreUnknown", "1")]
    assert cni_args("cid", ("ns", "pod", "uid-1")) == [
        ("IgnoreUnknown", "1"), ("K8S_POD_NAMESPACE", "ns"), ("K8S_POD_NAME", "pod"),
        ("K8S_POD_INFRA_CONTAINER_ID", "cid"), ("K8S_POD_UID", "uid-1")]


def test_chain_name_and_comment() -> None:
    c = chain_name("pyk8s", "2117b064-c128-4682-a630-bbc379d4bc82")
    # The bridge plugin's own chain for that network / container (seen in `iptables -S`).
    assert c == "CNI-14d04a744052702c5ce201d6"
    assert len(c) == 28 and c.startswith("CNI-")
    dn = chain_name("pyk8s", "2117b064-c128-4682-a630-bbc379d4bc82", "DN-")
    assert len(dn) == 28 and dn.startswith("CNI-DN-") and dn[7:] == c[4:25]
    assert chain_name("pyk8s", "a") != chain_name("pyk8s", "b") != chain_name("other", "a")
    assert chain_comment("pyk8s", "abc") == 'name: "pyk8s" id: "abc"'


def test_find_plugin(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    p = tmp_path / "b" / "x"
    p.write_text("#!/bin/sh\n")
    (tmp_path / "a" / "x").write_text("not executable")
    assert find_plugin("x", [tmp_path / "a", tmp_path / "b"]) is None
    p.chmod(0o755)
    assert find_plugin("x", [tmp_path / "a", tmp_path / "b"]) == p
    (tmp_path / "a" / "x").chmod(0o755)
    assert find_plugin("x", [tmp_path / "a", tmp_path / "b"]) == tmp_path / "a" / "x"
    assert find_plugin("../b/x", [tmp_path / "a"]) is None
    assert find_plugin("", [tmp_path / "a"]) is None
    assert find_plugin("b", [tmp_path]) is None          # a directory


# -- plugin errors --------------------------------------------------------------------------


def test_plugin_error_json_on_stdout() -> None:
    e = _plugin_error("bridge", "ADD", 1, b'{"cniVersion": "1.0.0", "code": 7, '
                      b'"msg": "bad config", "details": "no bridge"}', b"some log\n")
    assert (e.msg, e.code, e.details, e.plugin, e.command) == (
        "bad config", 7, "no bridge", "bridge", "ADD")
    assert str(e) == "bad config; no bridge"


def test_plugin_error_json_on_stderr_and_code_only() -> None:
    e = _plugin_error("x", "DEL", 1, b"", b'{"code": 11}')
    assert e.msg == "error code 11" and e.code == 11 and e.details == "" and str(e) == e.msg
    e = _plugin_error("x", "DEL", 1, b'{"code": "oops", "msg": "m"}', b"")
    assert e.msg == "m" and e.code == 0


def test_plugin_error_plain_text() -> None:
    e = _plugin_error("portmap", "ADD", 2, b"", b"panic: runtime error\n")
    assert e.msg == "plugin portmap failed (ADD): panic: runtime error"
    assert e.code == 0 and e.plugin == "portmap"
    e = _plugin_error("portmap", "ADD", 2, b"plain out\n", b"")
    assert e.msg.endswith("plain out")
    e = _plugin_error("portmap", "ADD", 3, b"", b"")
    assert e.msg.endswith("exit status 3")
    e = _plugin_error("p", "ADD", 1, b"[1, 2]", b"x" * 5000)     # JSON but not an error
    assert e.msg.endswith("x" * 2000) and len(e.msg) < 2100


# -- CNINetwork with fake plugins ------------------------------------------------------


def test_conflist_validation(fakes: Fakes) -> None:
    with pytest.raises(ValueError):
        CNINetwork({"name": "n", "plugins": []})
    with pytest.raises(ValueError):
        CNINetwork({"plugins": [{"type": "x"}]})
    with pytest.raises(ValueError):
        CNINetwork({"name": "n", "plugins": [{"name": "no type"}]})
    assert CNINetwork({"name": "n", "plugins": [{"type": "x"}]}).cni_version == "0.4.0"


async def test_add_chains_prev_result_and_runtime_config(fakes: Fakes, tmp_path: Path) -> None:
    net = fakes.network([{"type": "main", "ip": "10.5.0.3/24", "runtimeConfig": {"x": 1}},
                         {"type": "meta", "capabilities": {"portMappings": True,
                                                           "bandwidth": True}},
                         {"type": "other", "capabilities": {"portMappings": False}}])
    pm = [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp", "hostIP": ""}]
    netns = str(tmp_path / "netns")
    res = await net.add("c1", netns, "eth0", pm, ("ns1", "pod1", "uid1"))
    assert res.ips == ["10.5.0.3"]
    assert [i["name"] for i in res.interfaces] == ["main-if", "meta-if", "other-if"]
    calls = fakes.calls()
    assert [(c["type"], c["cmd"]) for c in calls] == [("main", "ADD"), ("meta", "ADD"),
                                                      ("other", "ADD")]
    main, meta, other = (c["conf"] for c in calls)
    for c in calls:
        env = c["env"]
        assert env["CNI_CONTAINERID"] == "c1" and env["CNI_NETNS"] == netns
        assert env["CNI_IFNAME"] == "eth0" and env["CNI_PATH"] == str(fakes.bin)
        assert env["CNI_ARGS"] == ("IgnoreUnknown=1;K8S_POD_NAMESPACE=ns1;K8S_POD_NAME=pod1;"
                                   "K8S_POD_INFRA_CONTAINER_ID=c1;K8S_POD_UID=uid1")
        assert c["conf"]["name"] == "testnet" and c["conf"]["cniVersion"] == "1.0.0"
    # The first plugin: no prevResult; its static runtimeConfig is not passed on.
    assert "prevResult" not in main and "runtimeConfig" not in main
    # portMappings only for the plugin declaring (and enabling) the capability; an enabled
    # capability without runtime data ("bandwidth") is not passed.
    assert meta["runtimeConfig"] == {"portMappings": pm}
    assert "runtimeConfig" not in other
    assert meta["prevResult"]["ips"] == [{"address": "10.5.0.3/24"}]
    assert [i["name"] for i in other["prevResult"]["interfaces"]] == ["main-if", "meta-if"]


async def test_cache_and_del_in_reverse_with_cached_config(fakes: Fakes,
                                                           tmp_path: Path) -> None:
    plugins = [{"type": "main", "ip": "10.5.0.4/24"},
               {"type": "meta", "capabilities": {"portMappings": True}}]
    net = fakes.network(plugins)
    pm = [{"hostPort": 1, "containerPort": 2, "protocol": "udp", "hostIP": "10.0.0.1"}]
    res = await net.add("c2", "/nonexistent/netns", "eth0", pm, ("ns", "p", "u"))
    path = fakes.cache / "results" / "testnet-c2-eth0"
    assert path == net.cache_path("c2", "eth0") and path.is_file()
    entry = json.loads(path.read_text())
    assert entry["kind"] == "cniCacheV1" and entry["containerId"] == "c2"
    assert entry["ifName"] == "eth0" and entry["networkName"] == "testnet"
    assert entry["netns"] == "/nonexistent/netns"
    assert json.loads(base64.b64decode(entry["config"])) == net.conflist
    assert entry["result"] == res.raw
    assert entry["capabilityArgs"] == {"portMappings": pm}
    assert net.cached_result("c2").ips == ["10.5.0.4"]          # type: ignore[union-attr]
    assert [p.name for p, _ in cached_entries(fakes.cache)] == ["testnet-c2-eth0"]

    # DEL by a network object whose config has changed since: the cached one is used.
    fakes.clear()
    changed = fakes.network([{"type": "new"}])
    await changed.delete("c2", None)
    calls = fakes.calls()
    assert [(c["type"], c["cmd"]) for c in calls] == [("meta", "DEL"), ("main", "DEL")]
    for c in calls:
        assert c["conf"]["prevResult"] == res.raw
        assert c["env"]["CNI_NETNS"] == ""            # None / not a namespace: empty
        assert c["env"]["CNI_ARGS"].endswith("K8S_POD_UID=u")   # the cached CNI_ARGS
    assert calls[0]["conf"]["runtimeConfig"] == {"portMappings": pm}
    assert "runtimeConfig" not in calls[1]["conf"]
    assert not path.exists() and net.cached("c2") is None

    # Idempotent: an unknown container is DELeted with the current config, no prevResult.
    fakes.clear()
    await net.delete("c2", "/nonexistent/netns")
    await net.delete("c2")
    calls = fakes.calls()
    assert [(c["type"], c["cmd"]) for c in calls] == [("meta", "DEL"), ("main", "DEL")] * 2
    assert all("prevResult" not in c["conf"] for c in calls)
    assert calls[0]["env"]["CNI_ARGS"] == "IgnoreUnknown=1"


async def test_failing_plugin_rolls_back(fakes: Fakes) -> None:
    net = fakes.network([
        {"type": "main", "ip": "10.5.0.5/24"},
        {"type": "mid", "act": {"ADD": {"error": {"cniVersion": "1.0.0", "code": 100,
                                                  "msg": "port is taken",
                                                  "details": "8080/tcp"}}}},
        {"type": "last"}])
    with pytest.raises(CNIError) as ei:
        await net.add("c3", "", "eth0")
    e = ei.value
    assert (e.msg, e.code, e.details, e.plugin, e.command) == (
        "port is taken", 100, "8080/tcp", "mid", "ADD")
    # The failed plugin and the ones before it are DELeted (reverse order, with the
    # result so far); the later one never runs; nothing is cached.
    assert fakes.summary() == [("main", "ADD"), ("mid", "ADD"), ("mid", "DEL"),
                               ("main", "DEL")]
    dels = fakes.calls()[2:]
    assert all(c["conf"]["prevResult"]["ips"] == [{"address": "10.5.0.5/24"}] for c in dels)
    assert net.cached("c3") is None and cached_entries(fakes.cache) == []


async def test_plain_stderr_failure_and_invalid_result(fakes: Fakes) -> None:
    net = fakes.network([{"type": "a", "act": {"ADD": {"stderr": "no such device\n",
                                                       "rc": 2}}}])
    with pytest.raises(CNIError, match=r"^plugin a failed \(ADD\): no such device$"):
        await net.add("c4", "")
    net = fakes.network([{"type": "b", "act": {"ADD": {"stdout": "not json"}}}])
    with pytest.raises(CNIError, match="plugin b returned an invalid result"):
        await net.add("c4", "")
    net = fakes.network([{"type": "c", "act": {"ADD": {"stdout": "[]"}}}])
    with pytest.raises(CNIError, match="invalid result"):
        await net.add("c4", "")
    assert fakes.summary()[-2:] == [("c", "ADD"), ("c", "DEL")]
    assert net.cached("c4") is None


async def test_missing_plugin(fakes: Fakes) -> None:
    net = CNINetwork({"name": "n", "plugins": [{"type": "absent"}]}, [fakes.bin], fakes.cache)
    with pytest.raises(CNIError, match='failed to find plugin "absent"') as ei:
        await net.add("c", "")
    assert ei.value.plugin == "absent" and ei.value.command == "ADD"


async def test_del_errors_reported_after_all_plugins_ran(fakes: Fakes) -> None:
    net = fakes.network([{"type": "a"},
                         {"type": "b", "act": {"DEL": {"error": {"code": 5, "msg": "b!"}}}},
                         {"type": "c", "act": {"DEL": {"error": {"code": 6, "msg": "c!"}}}}])
    await net.add("c5", "")
    fakes.clear()
    with pytest.raises(CNIError, match="c!"):         # the first error (c runs first)
        await net.delete("c5")
    assert fakes.summary() == [("c", "DEL"), ("b", "DEL"), ("a", "DEL")]
    assert net.cached("c5") is not None               # kept: DEL can be retried


async def test_version_without_reading_stdin(fakes: Fakes) -> None:
    fakes.plugin("v")
    assert await plugin_versions("v", [fakes.bin]) == ["0.4.0", "1.0.0"]
    # A big config makes a pipe writer block / fail if the plugin does not read it.
    net = fakes.network([{"type": "v"}])
    out = await net._run("v", "VERSION", "", "", "", [], b"{" + b" " * 1_000_000 + b"}")
    assert json.loads(out)["supportedVersions"] == ["0.4.0", "1.0.0"]
    p = fakes.bin / "bad"
    p.write_text("#!/bin/sh\necho nope\n")
    p.chmod(0o755)
    with pytest.raises(CNIError, match="invalid VERSION output"):
        await plugin_versions("bad", [fakes.bin])


async def test_real_plugin_version() -> None:
    require(find_plugin("bridge", cni.DEFAULT_BIN_DIRS) is not None,
            "no CNI plugins installed")
    assert "1.0.0" in await plugin_versions("bridge")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead too.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


async def test_timeout_kills_plugin_and_rolls_back(fakes: Fakes) -> None:
    net = fakes.network([{"type": "a"}, {"type": "slow", "act": {"ADD": {"sleep": 30}}}],
                        timeout=1.0)
    t0 = time.monotonic()
    with pytest.raises(CNIError, match=r"plugin slow \(ADD\) timed out after 1s") as ei:
        await net.add("c6", "")
    assert time.monotonic() - t0 < 10
    assert ei.value.code == cni.ERR_TRY_AGAIN_LATER
    calls = fakes.calls()
    assert [(c["type"], c["cmd"]) for c in calls] == [("a", "ADD"), ("slow", "ADD"),
                                                      ("slow", "DEL"), ("a", "DEL")]
    assert not _alive(calls[1]["pid"])
    assert net.cached("c6") is None


async def test_cancelled_add_still_rolls_back(fakes: Fakes) -> None:
    net = fakes.network([{"type": "a"}, {"type": "slow", "act": {"ADD": {"sleep": 30}}}])
    task = asyncio.create_task(net.add("c7", ""))
    for _ in range(200):
        if len(fakes.calls()) >= 2:
            break
        await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    calls = fakes.calls()
    assert [(c["type"], c["cmd"]) for c in calls] == [("a", "ADD"), ("slow", "ADD"),
                                                      ("slow", "DEL"), ("a", "DEL")]
    assert not _alive(calls[1]["pid"])


async def test_max_parallel(fakes: Fakes) -> None:
    net = fakes.network([{"type": "s", "act": {"ADD": {"sleep": 0.3}}}], max_parallel=2)
    t0 = time.monotonic()
    await asyncio.gather(*(net.add(f"p{i}", "") for i in range(4)))
    assert time.monotonic() - t0 >= 0.6         # two rounds of two
    assert len(cached_entries(fakes.cache)) == 4


async def test_check(fakes: Fakes) -> None:
    net = fakes.network([{"type": "a", "ip": "10.0.0.2/24"}, {"type": "b"}])
    with pytest.raises(CNIError, match="no cached result"):
        await net.check("c8", "/x")
    res = await net.add("c8", "/x")
    fakes.clear()
    await net.check("c8", "/x")
    calls = fakes.calls()
    assert [(c["type"], c["cmd"]) for c in calls] == [("a", "CHECK"), ("b", "CHECK")]
    assert all(c["conf"]["prevResult"] == res.raw for c in calls)
    old = CNINetwork({"cniVersion": "0.3.1", "name": "n", "plugins": [{"type": "a"}]},
                     [fakes.bin], fakes.cache)
    fakes.clear()
    await old.check("c8", "/x")                   # no CHECK before spec 0.4.0
    assert fakes.calls() == []


async def test_delete_all_cached(fakes: Fakes) -> None:
    a = fakes.network([{"type": "a", "ip": "10.0.0.2/24"}])
    await a.add("x1", "/ns1")
    await a.add("x2", "/ns2", "net1")
    (fakes.cache / "results" / "garbage").write_text("{")
    (fakes.cache / "results" / "testnet-x3-eth0.tmp").write_text("{}")
    (fakes.cache / "results" / "noconf").write_text(json.dumps({"containerId": "z"}))
    fakes.clear()
    done = await delete_all_cached(fakes.cache, [fakes.bin])
    assert sorted((cid, err) for cid, _, err in done) == [("x1", None), ("x2", None)]
    calls = fakes.calls()
    assert sorted((c["env"]["CNI_CONTAINERID"], c["env"]["CNI_IFNAME"]) for c in calls) == [
        ("x1", "eth0"), ("x2", "net1")]
    # The entries' netns paths are not namespaces here: DEL gets CNI_NETNS="".
    assert all(c["env"]["CNI_NETNS"] == "" for c in calls)
    left = sorted(p.name for p in (fakes.cache / "results").iterdir())
    assert left == ["garbage"]               # unreadable: left alone, never DELeted


async def test_cache_write_failure_undoes_the_add(fakes: Fakes) -> None:
    net = fakes.network([{"type": "a", "ip": "10.0.0.2/24"}, {"type": "b"}])
    fakes.cache.mkdir()
    (fakes.cache / "results").write_text("a file where the directory should be")
    with pytest.raises(OSError):
        await net.add("c9", "")
    assert fakes.summary() == [("a", "ADD"), ("b", "ADD"), ("b", "DEL"), ("a", "DEL")]
    assert fakes.calls()[-1]["conf"]["prevResult"]["ips"] == [{"address": "10.0.0.2/24"}]
