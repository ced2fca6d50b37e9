"""Encryption at rest (`--encryption-provider-config`) with real servers and real kubectl:
Secrets never reach the SQLite files or etcd in the clear, read back decrypted (GET, LIST,
WATCH), key rotation by `kubectl replace`, and a missing key is an error, not garbage."""
from __future__ import annotations

import asyncio
import base64
import json
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from pyk8s.storage.etcd import EtcdStorage
from tests.conftest import KUBECTL, ROOT, ServerProcess, WatchReader, wait_for
from tests.etcd_cluster import EtcdCluster

KEY1 = base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()
KEY2 = base64.b64encode(b"fedcba9876543210fedcba9876543210").decode()
PASSWORD = b"hunter2"
PASSWORD_B64 = base64.b64encode(PASSWORD)  # aHVudGVyMg==
SECRET_KEY = "/registry/secrets/default/s"


def write_config(path: Path, *providers: dict[str, Any], resources: tuple[str, ...] = ("secrets",)
                 ) -> Path:
    path.write_text(json.dumps({
        "apiVersion": "apiserver.config.k8s.io/v1", "kind": "EncryptionConfiguration",
        "resources": [{"resources": list(resources), "providers": list(providers)}]}))
    return path


def aescbc(*keys: tuple[str, str]) -> dict[str, Any]:
    return {"aescbc": {"keys": [{"name": n, "secret": s} for n, s in keys]}}


def encrypted_server(data_dir: Path, config: Path, storage: str = "sqlite",
                     extra: tuple[str, ...] = (), command: str = "server") -> ServerProcess:
    return ServerProcess(data_dir, storage=storage, command=command,
                         extra=["--encryption-provider-config", str(config), *extra])


def sqlite_raw(data_dir: Path, prefix: str) -> dict[str, bytes]:
    """Stored values under `prefix`, read from the database file (the server may run)."""
    conn = sqlite3.connect(f"file:{data_dir / 'state.db'}?mode=ro", uri=True)
    try:
        rows = conn.execute("SELECT key, value FROM kv WHERE key >= ? AND key < ?",
                            (prefix, prefix + "\xff")).fetchall()
    finally:
        conn.close()
    return {k: bytes(v) for k, v in rows}


def sqlite_file_bytes(data_dir: Path) -> bytes:
    """The database file and its write-ahead log, as they are on disk."""
    return b"".join(p.read_bytes() for p in (data_dir / "state.db", data_dir / "state.db-wal")
                    if p.exists())


def create_secret(srv: ServerProcess, name: str = "s", namespace: str = "default",
                  password: str = "hunter2") -> None:
    srv.kubectl("create", "secret", "generic", name, f"--from-literal=password={password}",
                "-n", namespace)


def password_of(srv: ServerProcess, name: str = "s", namespace: str = "default") -> bytes:
    out = srv.kubectl("get", "secret", name, "-n", namespace,
                      "-o", "jsonpath={.data.password}").stdout
    return base64.b64decode(out)


# -- SQLite ----------------------------------------------------------------------------------

def test_secrets_are_encrypted_in_the_sqlite_files_and_read_back(tmp_path: Path) -> None:
    config = write_config(tmp_path / "enc.yaml", aescbc(("key1", KEY1)), {"identity": {}})
    srv = encrypted_server(tmp_path / "d", config).start()
    try:
        w = WatchReader(srv, "/api/v1/namespaces/default/secrets?watch=1&timeoutSeconds=20")
        create_secret(srv)
        srv.kubectl("create", "configmap", "c", "--from-literal=color=hunter2-blue")

        stored = sqlite_raw(srv.data_dir, "/registry/secrets/")[SECRET_KEY]
        assert stored.startswith(b"k8s:enc:aescbc:v1:key1:")
        assert PASSWORD not in stored and PASSWORD_B64 not in stored
        on_disk = sqlite_file_bytes(srv.data_dir)
        assert PASSWORD_B64 not in on_disk
        assert on_disk.count(b"hunter2-blue") >= 1  # the files are read: the ConfigMap is
        assert on_disk.count(PASSWORD) == on_disk.count(b"hunter2-blue")  # its only hunter2
        # Only Secrets are listed: ConfigMaps stay plain JSON.
        cm = sqlite_raw(srv.data_dir, "/registry/configmaps/")["/registry/configmaps/default/c"]
        assert json.loads(cm)["data"] == {"color": "hunter2-blue"}

        assert password_of(srv) == PASSWORD  # GET
        listed = srv.kubectl_json("get", "secrets")  # LIST (from the watch cache)
        assert [base64.b64decode(i["data"]["password"]) for i in listed["items"]] == [PASSWORD]
        ev = w.wait_for(1)[0]  # WATCH
        assert ev["type"] == "ADDED" and ev["object"]["data"]["password"] == "aHVudGVyMg=="
        w.close()

        # Updates are encrypted too, with a fresh IV: the stored bytes change.
        srv.kubectl("patch", "secret", "s", "-p", '{"stringData":{"password":"swordfish"}}')
        again = sqlite_raw(srv.data_dir, "/registry/secrets/")[SECRET_KEY]
        assert again.startswith(b"k8s:enc:aescbc:v1:key1:") and again != stored
        assert password_of(srv) == b"swordfish"
        assert b"swordfish" not in sqlite_file_bytes(srv.data_dir)
    finally:
        srv.stop()
    # After a restart everything is read back from the encrypted values.
    srv = encrypted_server(tmp_path / "d", config).start()
    try:
        assert password_of(srv) == b"swordfish"
    finally:
        srv.stop()


def test_kubectl_watch_delivers_decrypted_secrets(tmp_path: Path) -> None:
    config = write_config(tmp_path / "enc.yaml",
                          {"secretbox": {"keys": [{"name": "sb", "secret": KEY1}]}})
    srv = encrypted_server(tmp_path / "d", config).start()
    env = {"KUBECONFIG": str(srv.kubeconfig), "HOME": str(srv.data_dir)}
    watch = subprocess.Popen([KUBECTL, "get", "secrets", "-w", "-o",
                              'jsonpath={.metadata.name} {.data.password}{"\\n"}'],
                             stdout=subprocess.PIPE, text=True, env=env)
    lines: list[str] = []
    assert watch.stdout is not None
    threading.Thread(target=lambda: lines.extend(ln.strip() for ln in watch.stdout),
                     daemon=True).start()
    try:
        create_secret(srv, "watched")
        assert sqlite_raw(srv.data_dir, "/registry/secrets/")[
            "/registry/secrets/default/watched"].startswith(b"k8s:enc:secretbox:v1:sb:")
        wait_for("kubectl to print the Secret", lambda: lines)
        srv.kubectl("patch", "secret", "watched", "-p", '{"stringData":{"password":"x"}}')
        wait_for("kubectl to print the update", lambda: len(lines) >= 2)
        assert lines == ["watched aHVudGVyMg==", "watched eA=="]
    finally:
        watch.kill()
        watch.wait()
        srv.stop()


def test_key_rotation_with_kubectl_replace(tmp_path: Path) -> None:
    data = tmp_path / "d"
    one = write_config(tmp_path / "one.yaml", aescbc(("key1", KEY1)))
    srv = encrypted_server(data, one, command="up").start()
    try:
        srv.kubectl("create", "namespace", "other")
        create_secret(srv, "a")
        create_secret(srv, "b", "other", password="b-pass")
    finally:
        srv.stop()

    def prefixes() -> set[bytes]:
        return {v[:23] for v in sqlite_raw(data, "/registry/secrets/").values()}

    assert prefixes() == {b"k8s:enc:aescbc:v1:key1:"}
    # A new first key; the old one stays for reading.
    two = write_config(tmp_path / "two.yaml", aescbc(("key2", KEY2), ("key1", KEY1)))
    srv = encrypted_server(data, two, command="up").start()
    try:
        assert password_of(srv, "a") == PASSWORD
        objects = srv.kubectl("get", "secrets", "-A", "-o", "json").stdout
        replaced = srv.kubectl("replace", "-f", "-", input=objects).stdout
        assert "secret/a replaced" in replaced and "secret/b replaced" in replaced
        assert prefixes() == {b"k8s:enc:aescbc:v1:key2:"}
        assert password_of(srv, "a") == PASSWORD
        assert password_of(srv, "b", "other") == b"b-pass"
    finally:
        srv.stop()
    # The old key can go now.
    only_two = write_config(tmp_path / "only-two.yaml", aescbc(("key2", KEY2)))
    srv = encrypted_server(data, only_two).start()
    try:
        assert password_of(srv, "b", "other") == b"b-pass"
    finally:
        srv.stop()


def test_a_server_lacking_the_key_reports_an_error(tmp_path: Path) -> None:
    data = tmp_path / "d"
    srv = encrypted_server(data, write_config(tmp_path / "one.yaml",
                                              aescbc(("key1", KEY1)))).start()
    try:
        create_secret(srv, "old")
    finally:
        srv.stop()
    lacking = write_config(tmp_path / "two.yaml", aescbc(("key2", KEY2)))
    srv = encrypted_server(data, lacking).start()  # starts: the watch cache skips it
    try:
        p = srv.kubectl("get", "secret", "old", "-o", "json", check=False)
        assert p.returncode != 0 and p.stdout == ""
        assert "Error from server (InternalError): Internal error occurred: no matching key " \
               "was found for the provided AES transformer" in p.stderr
        r = srv.get("/api/v1/namespaces/default/secrets/old")
        assert r.status == 500 and r.json()["reason"] == "InternalError"
        assert "skipping /registry/secrets/default/old" in srv.log_path.read_text()
        # Everything else works: new Secrets are written with key2 and read back.
        create_secret(srv, "new", password="fresh")
        assert password_of(srv, "new") == b"fresh"
        assert [i["metadata"]["name"] for i in srv.kubectl_json("get", "secrets")["items"]] \
            == ["new"]
    finally:
        srv.stop()


def test_bad_config_stops_the_server_with_a_clear_error(tmp_path: Path) -> None:
    short = base64.b64encode(b"too short").decode()
    config = write_config(tmp_path / "bad.yaml", aescbc(("good", KEY1), ("mykey", short)))
    p = subprocess.run([sys.executable, "-m", "pyk8s.cli.main", "server", "--data-dir",
                        str(tmp_path / "d"), "--port", "0", "--encryption-provider-config",
                        str(config)], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert p.returncode == 2
    assert ("resources[0].providers[0].aescbc.keys[1].secret: Invalid value: \"REDACTED\": "
            "secret is not of the expected length, got 9, expected one of [16 24 32] "
            "(key \"mykey\")") in p.stderr
    assert "Traceback" not in p.stderr


# -- etcd ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def etcd() -> Any:
    with EtcdCluster(1) as c:
        yield c


def etcd_raw(endpoints: str, key: str) -> bytes:
    """The value as etcd holds it, read by a plain gRPC client."""
    async def read() -> bytes:
        raw = await EtcdStorage.open(endpoints, wait=10)
        try:
            return (await raw.get(key)).value
        finally:
            await raw.close()
    return asyncio.run(read())


def test_secrets_are_encrypted_in_etcd(tmp_path: Path, etcd: EtcdCluster) -> None:
    config = write_config(tmp_path / "enc.yaml",
                          {"aesgcm": {"keys": [{"name": "gcm1", "secret": KEY1}]}},
                          aescbc(("key1", KEY1)))
    srv = encrypted_server(tmp_path / "d", config, storage="etcd",
                           extra=("--etcd-servers", etcd.endpoints)).start()
    try:
        create_secret(srv)
        srv.kubectl("create", "configmap", "c", "--from-literal=color=blue")
        stored = etcd_raw(etcd.endpoints, SECRET_KEY)
        assert stored.startswith(b"k8s:enc:aesgcm:v1:gcm1:")
        assert PASSWORD not in stored and PASSWORD_B64 not in stored
        assert json.loads(etcd_raw(etcd.endpoints, "/registry/configmaps/default/c"))[
            "data"] == {"color": "blue"}
        assert password_of(srv) == PASSWORD
        assert "rotated every 200,000 writes" in srv.log_path.read_text()
        w = WatchReader(srv, "/api/v1/secrets?watch=1&timeoutSeconds=20")
        ev = w.wait_for(1)[0]
        assert ev["object"]["data"]["password"] == "aHVudGVyMg=="
        w.close()
    finally:
        srv.stop()
