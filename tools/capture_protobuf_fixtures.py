"""Capture kubectl's protobuf request bodies as test fixtures.

    python tools/capture_protobuf_fixtures.py [1.32 1.33 …]

For each kubectl version: starts `pyk8s server --insecure-http` (memory storage) behind
tools/capture_proxy.py, runs every command in COMMANDS through the proxy, and writes
tests/api/protobuf_fixtures/<version>/<name>.bin (each protobuf body the command sent; a
second one is <name>.2.bin) and <name>.json: the command, method, path, Content-Type and
Accept of each request with a body (JSON ones are listed but not kept), and what
`--dry-run=client -o json` prints for the same command
(the object kubectl builds, as JSON), where kubectl offers it.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "api" / "protobuf_fixtures"
KUBECTL = "/usr/lib/google-cloud-sdk/bin/kubectl.{version}"
PROTOBUF = "application/vnd.kubernetes.protobuf"

SETUP = [  # objects the commands need, created as JSON
    {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}},
    {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n2"}},
    {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "evictme", "namespace": "default"},
     "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "busybox"}]}},
    {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "deleteme", "namespace": "default"},
     "spec": {"nodeName": "n2", "containers": [{"name": "c", "image": "busybox"}]}},
]

# (fixture name, kubectl arguments, has --dry-run=client -o json). {dir} is a folder with
# cert.pem, key.pem and blob.bin.
COMMANDS: list[tuple[str, list[str], bool]] = [
    ("configmap", ["create", "configmap", "cm1", "--from-literal=a=b", "--from-literal=c=d",
                   "--from-file=blob={dir}/blob.bin"], True),
    ("secret-generic", ["create", "secret", "generic", "s1", "--from-literal=pw=s3cr3t",
                        "--from-literal=empty=", "--type=Opaque"], True),
    ("secret-docker-registry", ["create", "secret", "docker-registry", "reg1",
                                "--docker-server=r.example.com", "--docker-username=u",
                                "--docker-password=p", "--docker-email=u@example.com"], True),
    ("secret-tls", ["create", "secret", "tls", "tls1", "--cert={dir}/cert.pem",
                    "--key={dir}/key.pem"], True),
    ("namespace", ["create", "namespace", "ns1"], True),
    ("serviceaccount", ["create", "serviceaccount", "sa1"], True),
    ("service-clusterip", ["create", "service", "clusterip", "svc1", "--tcp=80:8080",
                           "--tcp=443:https"], True),
    ("service-headless", ["create", "service", "clusterip", "hl", "--clusterip=None"], True),
    ("service-nodeport", ["create", "service", "nodeport", "np1", "--tcp=80:8080",
                          "--node-port=30080"], True),
    ("service-loadbalancer", ["create", "service", "loadbalancer", "lb1", "--tcp=80"], True),
    ("service-externalname", ["create", "service", "externalname", "ex1",
                              "--external-name=example.com"], True),
    ("deployment", ["create", "deployment", "web", "--image=nginx", "--replicas=3",
                    "--port=80"], True),
    ("deployment-command", ["create", "deployment", "sleeper", "--image=busybox",
                            "--replicas=0", "--", "sleep", "3600"], True),
    ("cronjob", ["create", "cronjob", "cj1", "--image=busybox", "--schedule=*/5 * * * *",
                 "--restart=OnFailure", "--", "date"], True),
    ("job", ["create", "job", "j1", "--image=busybox", "--", "echo", "hi"], True),
    ("job-from-cronjob", ["create", "job", "j2", "--from=cronjob/cj1"], True),
    ("role", ["create", "role", "r1", "--verb=get,list,watch",
              "--resource=pods,deployments.apps,pods/log", "--resource-name=a",
              "--resource-name=b"], True),
    ("rolebinding", ["create", "rolebinding", "rb1", "--role=r1", "--user=alice",
                     "--group=devs", "--serviceaccount=default:sa1"], True),
    ("clusterrole", ["create", "clusterrole", "cr1", "--verb=get,list", "--resource=nodes"],
     True),
    ("clusterrole-nonresource", ["create", "clusterrole", "cr2", "--verb=get",
                                 "--non-resource-url=/healthz", "--non-resource-url=/logs/*"],
     True),
    ("clusterrole-aggregation", ["create", "clusterrole", "cr3",
                                 "--aggregation-rule=rbac.example.com/aggregate=true"], True),
    ("clusterrolebinding", ["create", "clusterrolebinding", "crb1", "--clusterrole=cr1",
                            "--user=bob", "--serviceaccount=default:sa1"], True),
    ("quota", ["create", "quota", "q1", "--hard=cpu=500m,memory=1Gi,pods=2",
               "--scopes=NotBestEffort"], True),
    ("priorityclass", ["create", "priorityclass", "pc1", "--value=1000",
                       "--description=high priority", "--preemption-policy=Never"], True),
    ("priorityclass-default", ["create", "priorityclass", "pc2", "--value=0",
                               "--global-default=true"], True),
    ("poddisruptionbudget", ["create", "poddisruptionbudget", "pdb1", "--selector=app=web",
                             "--min-available=1"], True),
    ("poddisruptionbudget-percent", ["create", "pdb", "pdb2", "--selector=app=web",
                                     "--max-unavailable=50%"], True),
    ("ingress", ["create", "ingress", "ing1", "--class=nginx",
                 "--rule=foo.com/bar=svc1:80,tls=my-cert", "--rule=bar.com/*=svc2:http",
                 "--default-backend=defsvc:8080", "--annotation=a=b"], True),
    ("autoscale", ["autoscale", "deployment", "web", "--min=2", "--max=5",
                   "--cpu-percent=80"], True),
    ("token", ["create", "token", "sa1", "--duration=1h", "--audience=api",
               "--audience=vault"], False),
    ("token-bound", ["create", "token", "sa1", "--bound-object-kind=Pod",
                     "--bound-object-name=evictme"], False),
    ("auth-can-i", ["auth", "can-i", "list", "deployments.apps", "-n", "default"], False),
    ("auth-can-i-subresource", ["auth", "can-i", "get", "pods", "--subresource=log"], False),
    ("auth-can-i-nonresource", ["auth", "can-i", "get", "/logs"], False),
    ("drain-eviction", ["drain", "n1", "--force", "--grace-period=7", "--timeout=5s"], False),
    ("drain-delete", ["drain", "n2", "--force", "--disable-eviction", "--grace-period=3",
                      "--timeout=5s"], False),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(url: str) -> None:
    for _ in range(200):
        try:
            with urllib.request.urlopen(url + "/readyz", timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{url} did not become ready")


def write_inputs(d: Path) -> None:
    """A self-signed certificate and key for `create secret tls`, and a non-UTF-8 file."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "example.com")])
    now = datetime.datetime(2025, 1, 1, tzinfo=datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(1).not_valid_before(now)
            .not_valid_after(now + datetime.timedelta(days=3650)).sign(key, hashes.SHA256()))
    (d / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (d / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                  serialization.PrivateFormat.PKCS8,
                                                  serialization.NoEncryption()))
    (d / "blob.bin").write_bytes(bytes([0xFF, 0x00, 0xFE, 0x01]))


def kubeconfig(path: Path, port: int) -> None:
    path.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "c", "cluster": {"server": f"http://127.0.0.1:{port}"}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u",
                                               "namespace": "default"}}],
        "users": [{"name": "u", "user": {}}]}))


def capture(version: str, work: Path) -> None:
    out = FIXTURES / version
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    bodies = work / f"bodies-{version}"
    server_port, proxy_port = free_port(), free_port()
    py = sys.executable
    server = subprocess.Popen([py, "-m", "pyk8s.cli.main", "server", "--insecure-http",
                               "--port", str(server_port), "--storage", "memory",
                               "--data-dir", str(work / f"data-{version}")], cwd=ROOT,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    proxy = subprocess.Popen([py, str(ROOT / "tools" / "capture_proxy.py"), str(proxy_port),
                              f"http://127.0.0.1:{server_port}", str(bodies),
                              "--advertise-eviction"], cwd=ROOT)
    try:
        wait_ready(f"http://127.0.0.1:{server_port}")
        wait_ready(f"http://127.0.0.1:{proxy_port}")
        cfg = work / f"kubeconfig-{version}"
        kubeconfig(cfg, proxy_port)
        kubectl = [KUBECTL.format(version=version), "--kubeconfig", str(cfg)]
        env = dict(os.environ, HOME=str(work))
        subprocess.run(kubectl + ["apply", "-f", "-"], input=json.dumps(
            {"apiVersion": "v1", "kind": "List", "items": SETUP}), text=True, check=True,
            env=env, capture_output=True)
        for name, args, has_dry_run in COMMANDS:
            args = [a.replace("{dir}", str(work)) for a in args]
            before = set(bodies.glob("*.bin"))
            p = subprocess.run(kubectl + args, text=True, capture_output=True, env=env)
            sent = sorted(set(bodies.glob("*.bin")) - before)
            requests = [(b, json.loads(b.with_suffix(".json").read_text())) for b in sent]
            fixtures: list[tuple[Path, str]] = []
            for b, r in requests:
                if r["headers"].get("Content-Type") == PROTOBUF:
                    n = len(fixtures)
                    fixtures.append((b, f"{name}.bin" if n == 0 else f"{name}.{n + 1}.bin"))
                    r["fixture"] = fixtures[-1][1]
            dry = None
            if has_dry_run:
                cut = args.index("--") if "--" in args else len(args)
                dry_args = args[:cut] + ["--dry-run=client", "-o", "json"] + args[cut:]
                d = subprocess.run(kubectl + dry_args,
                                   text=True, capture_output=True, env=env, check=True)
                dry = json.loads(d.stdout)
            meta = {"kubectl": version, "args": args, "exit": p.returncode,
                    "stderr": p.stderr.strip().splitlines()[-1:],
                    "requests": [{"method": r["method"], "path": r["path"],
                                  "contentType": r["headers"].get("Content-Type"),
                                  "accept": r["headers"].get("Accept"),
                                  "fixture": r.get("fixture")} for _, r in requests],
                    "dryRun": dry}
            for b, fixture in fixtures:
                shutil.copy(b, out / fixture)
            text = json.dumps(meta, indent=1).replace(str(work), "{dir}")
            (out / f"{name}.json").write_text(text + "\n")
            print(f"{version} {name}: {len(requests)} bodies, {len(fixtures)} protobuf, "
                  f"exit {p.returncode}")
    finally:
        for proc in (proxy, server):
            proc.terminate()
            proc.wait(10)


def main() -> None:
    versions = sys.argv[1:] or ["1.32", "1.33"]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        write_inputs(work)
        for v in versions:
            capture(v, work)


if __name__ == "__main__":
    main()
