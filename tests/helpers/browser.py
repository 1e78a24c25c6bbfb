"""A real headless Chromium driven over the Chrome DevTools protocol: load a page, read back what
the DOM says about it, every console/log error, and a screenshot."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import itertools
import json
import os
import shutil
import signal
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from PIL import Image

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
INSTALL_HINT = "no headless Chromium: install it with `apt-get install chromium` (Debian package)"


def find_chromium() -> str | None:
    return next((path for name in BROWSERS if (path := shutil.which(name))), None)


@dataclass
class PageReport:
    facts: Any  # what the page's probe expression returned
    errors: list[str] = field(default_factory=list)
    screenshot: Image.Image | None = None


class DevTools:
    """One page target's websocket: commands answered by id, events kept in order."""

    def __init__(self, socket: aiohttp.ClientWebSocketResponse) -> None:
        self.socket = socket
        self.ids = itertools.count(1)
        self.pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.events: list[dict[str, Any]] = []
        self.loaded = asyncio.Event()
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for message in self.socket:
            data = json.loads(message.data)
            if "id" in data:
                future = self.pending.pop(data["id"])
                if "error" in data:
                    future.set_exception(RuntimeError(f"DevTools: {data['error']}"))
                else:
                    future.set_result(data.get("result", {}))
            else:
                self.events.append(data)
                if data.get("method") == "Page.loadEventFired":
                    self.loaded.set()

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        call_id = next(self.ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.pending[call_id] = future
        await self.socket.send_json({"id": call_id, "method": method, "params": params})
        return await asyncio.wait_for(future, 60)

    def errors(self) -> list[str]:
        found = []
        for event in self.events:
            method, params = event.get("method"), event.get("params", {})
            if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                found.append("console: " + " ".join(str(a.get("value", a)) for a in params["args"]))
            elif method == "Runtime.exceptionThrown":
                found.append(f"exception: {params['exceptionDetails']}")
            elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
                found.append(f"log ({params['entry']['source']}): {params['entry']['text']}")
        return found


@contextlib.asynccontextmanager
async def chromium(binary: str) -> AsyncIterator[DevTools]:
    """A fresh headless Chromium with its own profile, and the DevTools socket of its page."""
    # Chromium's helpers (zygote, crashpad) can outlive the browser process for a moment and still
    # write into the profile: the whole process group is stopped, and a late file left behind in a
    # scratch profile is not a test failure.
    with tempfile.TemporaryDirectory(prefix="findlora-chromium-", ignore_cleanup_errors=True) as profile:
        args = [
            binary,
            "--headless",
            "--disable-gpu",
            "--no-first-run",
            "--no-default-browser-check",
            "--hide-scrollbars",
            "--remote-debugging-port=0",
            f"--user-data-dir={profile}",
            "about:blank",
        ]
        if os.geteuid() == 0:
            args.insert(1, "--no-sandbox")  # Chromium refuses to run its sandbox as root
        process = await asyncio.create_subprocess_exec(
            *args,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            port_file = Path(profile) / "DevToolsActivePort"
            for _ in range(600):
                if port_file.exists() and port_file.read_text().count("\n") >= 1:
                    break
                if process.returncode is not None:
                    raise RuntimeError(f"chromium exited with {process.returncode}")
                await asyncio.sleep(0.1)
            else:
                raise RuntimeError("chromium did not open its DevTools port within 60 s")
            port = int(port_file.read_text().splitlines()[0])
            async with aiohttp.ClientSession() as session:
                async with session.get(f"http://127.0.0.1:{port}/json/list") as answer:
                    targets = await answer.json()
                page = next(t for t in targets if t["type"] == "page")
                async with session.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0) as socket:
                    tools = DevTools(socket)
                    try:
                        yield tools
                    finally:
                        tools.reader.cancel()
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), 10)
            except TimeoutError:
                process.kill()
                await process.wait()
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)  # helpers that ignored SIGTERM


async def load_page(binary: str, page: Path, probe: str, width: int = 1400, height: int = 1000) -> PageReport:
    """Open `page` at `width` x `height`, wait for it to load and its images to decode, evaluate
    `probe` (a JavaScript expression; its value comes back as facts) and take a screenshot."""
    async with chromium(binary) as tools:
        for domain in ("Page", "Runtime", "Log"):
            await tools.call(f"{domain}.enable")
        await tools.call(
            "Emulation.setDeviceMetricsOverride",
            width=width,
            height=height,
            deviceScaleFactor=1,
            mobile=False,
        )
        await tools.call("Page.navigate", url=page.resolve().as_uri())
        await asyncio.wait_for(tools.loaded.wait(), 60)
        await tools.call(
            "Runtime.evaluate",
            expression="Promise.all([...document.images].map(i => i.decode().catch(() => null)))",
            awaitPromise=True,
        )
        facts = await tools.call("Runtime.evaluate", expression=probe, returnByValue=True)
        if "exceptionDetails" in facts:
            raise RuntimeError(f"probe failed: {facts['exceptionDetails']}")
        shot = await tools.call("Page.captureScreenshot", format="png")
        await asyncio.sleep(0.2)  # late console/log events
        return PageReport(
            facts=facts["result"].get("value"),
            errors=tools.errors(),
            screenshot=Image.open(io.BytesIO(base64.b64decode(shot["data"]))).convert("RGB"),
        )
