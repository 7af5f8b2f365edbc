"""Secrets never reach the logs: app secrets, the number pepper and PasswordDigest values.

The edge runs as `callstream edge` at DEBUG with secrets from a file and the environment, receives good,
forged, replayed and malformed pushes, and its whole captured output is searched for the secret values.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from core.broker import free_port, stop_process
from core.settings import Settings
from ingest.auth import sign_headers
from tests.conftest import TEST_PRIVACY_APP_KEY, TEST_PRIVACY_APP_SECRET, sample_bytes
from tests.test_edge_tls import edge_env, running_edge, wait_ready

PEPPER = "pepper-value-that-must-not-leak-7f3a"
FILE_SECRET = "file-secret-that-must-not-leak-91c2"
FILE_APP = "FileApp0000000000000000000001"


def _digest(headers: dict[str, str]) -> str:
    token = headers["X-AKSK"]
    return token.split('PasswordDigest="', 1)[1].split('"', 1)[0]


def test_edge_logs_hold_no_secret_pepper_or_digest(settings: Settings, tmp_path: Path) -> None:
    apps_file = tmp_path / "apps"
    apps_file.write_text(f"{FILE_APP}:{FILE_SECRET}\n")
    pepper_file = tmp_path / "pepper"
    pepper_file.write_text(PEPPER)
    env = edge_env(
        settings,
        CALLSTREAM_APPS_FILE=str(apps_file),
        CALLSTREAM_NUMBER_PEPPER_FILE=str(pepper_file),
        CALLSTREAM_NUMBER_PEPPER=PEPPER,
    )
    log = tmp_path / "edge.log"
    body = sample_bytes("privacy_axb_cdr_single.json")
    digests: list[str] = []
    with running_edge(env, log, "--log-level", "DEBUG") as port:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            wait_ready(client, log)
            good = sign_headers(TEST_PRIVACY_APP_KEY, TEST_PRIVACY_APP_SECRET)
            from_file = sign_headers(FILE_APP, FILE_SECRET)
            forged = sign_headers(TEST_PRIVACY_APP_KEY, "not-the-secret")
            digests += [_digest(good), _digest(from_file), _digest(forged)]
            assert client.post("/notify/privacy", content=body, headers=good).status_code == 200
            own_body = body.replace(TEST_PRIVACY_APP_KEY.encode(), FILE_APP.encode())  # a push names its signer
            assert client.post("/notify/privacy", content=own_body, headers=from_file).status_code == 200
            assert client.post("/notify/privacy", content=body, headers=good).status_code == 401  # replay
            assert client.post("/notify/privacy", content=body, headers=forged).status_code == 401
            assert (
                client.post(
                    "/notify/privacy",
                    content=b"{not json",
                    headers=sign_headers(TEST_PRIVACY_APP_KEY, TEST_PRIVACY_APP_SECRET),
                ).status_code
                == 400
            )
            broken = dict(good, **{"X-AKSK": good["X-AKSK"].replace("Nonce=", "Nonc=")})
            assert client.post("/notify/privacy", content=body, headers=broken).status_code == 401
    text = log.read_text(errors="replace")
    assert "Uvicorn running" in text or "Application startup complete" in text  # the capture worked
    for secret in (TEST_PRIVACY_APP_SECRET, FILE_SECRET, PEPPER, *digests):
        assert secret not in text, f"a secret value reached the edge log: {secret[:4]}…"


def test_settings_repr_hides_secrets() -> None:
    settings = Settings(apps=f"k:{FILE_SECRET}", number_pepper=PEPPER, kafka_sasl_password="sasl-pw-xyz")
    shown = repr(settings) + str(settings)
    assert FILE_SECRET not in shown and PEPPER not in shown and "sasl-pw-xyz" not in shown


def test_up_at_debug_leaks_no_secret_and_stores_no_clear_number(tmp_path: Path) -> None:
    """The whole stack: pushes with a recording URL, then the warehouse and every log are searched."""
    data_dir = tmp_path / "data"
    edge_port, query_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLSTREAM_")}
    env.update(
        CALLSTREAM_APPS=f"{TEST_PRIVACY_APP_KEY}:{TEST_PRIVACY_APP_SECRET}",
        CALLSTREAM_NUMBER_PEPPER=PEPPER,
        CALLSTREAM_SHUTDOWN_GRACE_S="3",
    )
    log = tmp_path / "up.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "callstream.cli",
                "--log-level",
                "DEBUG",
                "up",
                "--data-dir",
                str(data_dir),
                "--host",
                "127.0.0.1",
                "--port",
                str(edge_port),
                "--query-port",
                str(query_port),
                "--metrics-port",
                str(free_port()),
            ],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    fee = json.loads(sample_bytes("privacy_axb_cdr_single.json"))
    url = "https://obs.example/rec.wav?X-Amz-Signature=url-secret-5e1d"
    fee["feeLst"][0]["recordFileDownloadUrl"] = url
    body = json.dumps(fee).encode()
    digests: list[str] = []
    try:
        deadline = time.monotonic() + 90
        while not (data_dir / "stack.json").exists():
            assert process.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        query_url = json.loads((data_dir / "stack.json").read_text())["query_url"]
        with httpx.Client(base_url=f"http://127.0.0.1:{edge_port}", timeout=10) as client:
            good = sign_headers(TEST_PRIVACY_APP_KEY, TEST_PRIVACY_APP_SECRET)
            forged = sign_headers(TEST_PRIVACY_APP_KEY, "not-the-secret")
            digests += [_digest(good), _digest(forged)]
            assert client.post("/notify/privacy", content=body, headers=good).status_code == 200
            assert client.post("/notify/privacy", content=body, headers=forged).status_code == 401
            assert (
                client.post(
                    "/notify/privacy",
                    content=b"[1]",
                    headers=sign_headers(TEST_PRIVACY_APP_KEY, TEST_PRIVACY_APP_SECRET),
                ).status_code
                == 400
            )

        def sql(text: str) -> str:
            return httpx.post(
                query_url, content=text.encode(), params={"default_format": "TSV"}, timeout=10
            ).text

        while sql("SELECT count() FROM callstream.cdrs").strip() != "1":
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        stored = sql("SELECT * FROM callstream.cdrs FORMAT JSONEachRow")
        assert "8613800000021" not in stored and "8613866000021" not in stored  # A and B hashed
        assert "+8617000000001" in stored  # X kept
        assert "url-secret-5e1d" not in stored
    finally:
        stop_process(process, 30)
    logs = log.read_text(errors="replace")
    for extra in data_dir.glob("*.log"):
        logs += extra.read_text(errors="replace")
    assert "Uvicorn running" in logs or "Application startup complete" in logs
    for secret in (TEST_PRIVACY_APP_SECRET, PEPPER, "url-secret-5e1d", *digests):
        assert secret not in logs, f"a secret value reached the logs: {secret[:4]}…"
