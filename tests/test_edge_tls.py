"""`callstream edge` serves HTTPS itself with a certificate from the settings (self-signed in the test)."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from core.broker import free_port, stop_process, wait_for_port
from core.settings import Settings
from ingest.auth import sign_headers
from tests.conftest import TEST_PRIVACY_APP_KEY, TEST_PRIVACY_APP_SECRET, sample_bytes


def self_signed(tmp_path: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, written as PEM."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "callstream-edge-test")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "edge.crt", tmp_path / "edge.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


def edge_env(settings: Settings, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLSTREAM_")}
    env.update(
        CALLSTREAM_KAFKA_BOOTSTRAP=settings.kafka_bootstrap,
        CALLSTREAM_APPS=f"{TEST_PRIVACY_APP_KEY}:{TEST_PRIVACY_APP_SECRET}",
        CALLSTREAM_RAW_TOPIC=settings.raw_topic,
        CALLSTREAM_DEAD_TOPIC=settings.dead_topic,
        CALLSTREAM_TOPIC_PARTITIONS=str(settings.topic_partitions),
        CALLSTREAM_SHUTDOWN_GRACE_S="2",
    )
    env.update(extra)
    return env


@contextmanager
def running_edge(env: dict[str, str], log: Path, *flags: str) -> Iterator[int]:
    """`callstream edge` on a free 127.0.0.1 port; stopped with SIGTERM (killed after 15 s)."""
    port = free_port()
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "callstream.cli",
                *flags,
                "edge",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for_port("127.0.0.1", port, 20)
        yield port
    finally:
        stop_process(process, 15)


def wait_ready(client: httpx.Client, log: Path) -> None:
    deadline = time.monotonic() + 15
    while client.get("/health/ready").status_code != 200:
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.1)


def test_edge_serves_https_with_the_configured_certificate(settings: Settings, tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    env = edge_env(settings, CALLSTREAM_EDGE_TLS_CERTFILE=str(cert), CALLSTREAM_EDGE_TLS_KEYFILE=str(key))
    log = tmp_path / "edge.log"
    with running_edge(env, log) as port:
        trust = ssl.create_default_context(cafile=str(cert))
        with httpx.Client(base_url=f"https://127.0.0.1:{port}", verify=trust, timeout=10) as client:
            wait_ready(client, log)
            headers = sign_headers(TEST_PRIVACY_APP_KEY, TEST_PRIVACY_APP_SECRET)
            answer = client.post(
                "/notify/privacy", content=sample_bytes("privacy_axb_cdr_single.json"), headers=headers
            )
            assert answer.status_code == 200, answer.text
        with httpx.Client(base_url=f"https://127.0.0.1:{port}", timeout=5) as untrusting:
            with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
                untrusting.get("/health/live")
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as plain:
            with pytest.raises(httpx.HTTPError):
                plain.get("/health/live").raise_for_status()


def test_half_configured_tls_is_refused(settings: Settings, tmp_path: Path) -> None:
    cert, _ = self_signed(tmp_path)
    env = edge_env(settings, CALLSTREAM_EDGE_TLS_CERTFILE=str(cert))
    result = subprocess.run(
        [sys.executable, "-m", "callstream.cli", "edge", "--port", str(free_port())],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2 and "--tls-key go together" in result.stderr
