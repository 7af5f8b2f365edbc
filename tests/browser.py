"""Headless Chromium driven over the DevTools protocol (the ``websockets`` package), for the page tests.

    async with Chromium(binary, tmp_path / "profile") as browser:
        await browser.open("http://127.0.0.1:8123/dashboard/")
        await browser.wait_for("document.body.dataset.calls !== undefined")
        rows = await browser.evaluate("document.querySelectorAll('tr').length")
        await browser.screenshot(tmp_path / "page.png")

The browser listens on a port it picks itself (``--remote-debugging-port=0``, read back from the
profile's ``DevToolsActivePort`` file); it is stopped and waited for on exit.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect

CHROMIUM = "/usr/bin/chromium"
FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--remote-debugging-port=0", "--remote-debugging-address=127.0.0.1",
)


def chromium_binary() -> str | None:
    """Debian's chromium, if installed (``apt-get install chromium``; ``.ci/run`` installs it)."""
    if Path(CHROMIUM).exists():
        return CHROMIUM
    return shutil.which("chromium")


class BrowserError(Exception):
    """The browser reported an error, or a page condition did not come true in time."""


class Chromium:
    def __init__(self, binary: str, profile: Path, width: int = 1400, height: int = 1000) -> None:
        self.binary, self.profile, self.width, self.height = binary, profile, width, height
        self.process: subprocess.Popen[bytes] | None = None
        self.socket: ClientConnection | None = None
        self._ids = itertools.count(1)
        self.console: list[str] = []
        self.requests: list[str] = []  # every URL the page asked for (Network.requestWillBeSent)

    async def __aenter__(self) -> Chromium:
        self.profile.mkdir(parents=True, exist_ok=True)
        (self.profile / "DevToolsActivePort").unlink(missing_ok=True)  # a reused profile names an old port
        log = open(self.profile.parent / "chromium.log", "wb")  # noqa: SIM115
        self.process = subprocess.Popen(
            [self.binary, *FLAGS, f"--user-data-dir={self.profile}", f"--window-size={self.width},{self.height}",
             "about:blank"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )
        log.close()
        try:
            port = await self._port(30)
            async with httpx.AsyncClient() as client:
                pages = (await client.get(f"http://127.0.0.1:{port}/json/list", timeout=10)).json()
            page = next(p for p in pages if p.get("type") == "page")
            # loopback: no keepalive pings; events queue unbounded while a test waits without reading
            self.socket = await connect(page["webSocketDebuggerUrl"], max_size=64 * 1024 * 1024, ping_interval=None,
                                        max_queue=None)
            await self.call("Page.enable")
            await self.call("Runtime.enable")
            await self.call("Network.enable")
            await self.call("Emulation.setDeviceMetricsOverride", width=self.width, height=self.height,
                            deviceScaleFactor=1, mobile=False)
        except BaseException:
            await self.__aexit__()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.socket is not None:
            await self.socket.close()
            self.socket = None
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)

    async def _port(self, timeout_s: float) -> int:
        marker = self.profile / "DevToolsActivePort"
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise BrowserError(f"chromium exited with code {self.process.returncode}")
            if marker.exists():
                text = marker.read_text().split()
                if text:
                    return int(text[0])
            await asyncio.sleep(0.1)
        raise BrowserError(f"chromium did not open its DevTools port within {timeout_s:.0f}s")

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        assert self.socket is not None
        call_id = next(self._ids)
        await self.socket.send(json.dumps({"id": call_id, "method": method, "params": params}))
        while True:
            message = json.loads(await asyncio.wait_for(self.socket.recv(), 60))
            if message.get("method") == "Runtime.consoleAPICalled":
                args = message["params"].get("args", [])
                self.console.append(" ".join(str(a.get("value", a.get("description", ""))) for a in args))
            elif message.get("method") == "Network.requestWillBeSent":
                self.requests.append(message["params"]["request"]["url"])
            elif message.get("method") == "Runtime.exceptionThrown":
                self.console.append("exception: " + json.dumps(message["params"].get("exceptionDetails", {})))
            if message.get("id") == call_id:
                if "error" in message:
                    raise BrowserError(f"{method}: {message['error']}")
                return dict(message.get("result", {}))

    async def open(self, url: str) -> None:
        result = await self.call("Page.navigate", url=url)
        if result.get("errorText"):
            raise BrowserError(f"navigating to {url}: {result['errorText']}")

    async def evaluate(self, expression: str) -> Any:
        result = await self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise BrowserError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def wait_for(self, expression: str, timeout_s: float = 30) -> Any:
        deadline = time.monotonic() + timeout_s
        while True:
            value = await self.evaluate(f"(() => {{ try {{ return {expression}; }} catch (e) {{ return null; }} }})()")
            if value:
                return value
            if time.monotonic() > deadline:
                raise BrowserError(f"{expression!r} not true after {timeout_s:.0f}s; console: {self.console[-5:]}")
            await asyncio.sleep(0.2)

    async def screenshot(self, path: Path) -> Path:
        """A PNG of the whole page (the viewport grown to the document's height)."""
        height = int(await self.evaluate("document.documentElement.scrollHeight") or self.height)
        await self.call("Emulation.setDeviceMetricsOverride", width=self.width, height=max(height, 200),
                        deviceScaleFactor=1, mobile=False)
        await asyncio.sleep(0.3)
        shot = await self.call("Page.captureScreenshot", format="png")
        path.write_bytes(base64.b64decode(shot["data"]))
        return path
