"""Drive a JupyterHub like the instructor's tools would: its REST API, an attendee's sign-in, and code run in
an attendee's kernel through the Jupyter Server API and the kernel websocket (no browser)."""

from __future__ import annotations

import asyncio
import json
import ssl
import time
import uuid
from dataclasses import dataclass
from typing import Any

import requests


@dataclass
class Hub:
    url: str  # https://127.0.0.1:PORT
    token: str  # the sharelab service's API token
    ca: str  # the lab CA file

    def api(self, method: str, path: str, **kw: Any) -> requests.Response:
        headers = {"Authorization": f"token {self.token}"}
        return requests.request(
            method, f"{self.url}/hub/api{path}", headers=headers, verify=self.ca, timeout=30, **kw
        )

    def sign_in(self, name: str, code: str) -> requests.Session:
        """The attendee's own sign-in through the login form (a session holding the hub's cookies)."""
        s = requests.Session()
        s.trust_env = False  # REQUESTS_CA_BUNDLE in the environment would win over s.verify
        s.verify = self.ca
        s.get(f"{self.url}/hub/login", timeout=30)
        xsrf = s.cookies.get("_xsrf", "")
        s.post(
            f"{self.url}/hub/login",
            data={"username": name, "password": code, "_xsrf": xsrf},
            timeout=60,
            allow_redirects=False,
        )
        return s

    def start_server(self, user: str, timeout: float = 180) -> float:
        """Start ``user``'s server through the REST API and wait until it is ready; seconds taken."""
        t0 = time.perf_counter()
        r = self.api("POST", f"/users/{user}/server")
        assert r.status_code in (201, 202, 400), r.text  # 400: already running
        while time.perf_counter() - t0 < timeout:
            info = self.api("GET", f"/users/{user}").json()
            server = (info.get("servers") or {}).get("", {})
            if server.get("ready"):
                return time.perf_counter() - t0
            time.sleep(0.5)
        raise AssertionError(f"{user}'s server not ready in {timeout} s")

    def run(self, user: str, code: str, timeout: float = 180) -> dict[str, Any]:
        """Run ``code`` in a new kernel of ``user``'s server; stdout, the error (if any)."""
        base = f"{self.url}/user/{user}/api"
        headers = {"Authorization": f"token {self.token}"}
        # a room starting kernels at once on two cores: the kernel and its websocket can take minutes
        r = requests.post(
            f"{base}/kernels", headers=headers, json={}, verify=self.ca, timeout=timeout
        )
        assert r.status_code == 201, r.text
        kid = r.json()["id"]
        try:
            return asyncio.run(self._execute(f"{base}/kernels/{kid}/channels", code, timeout))
        finally:
            requests.delete(f"{base}/kernels/{kid}", headers=headers, verify=self.ca, timeout=30)

    async def _execute(self, url: str, code: str, timeout: float) -> dict[str, Any]:
        from tornado.httpclient import HTTPRequest
        from tornado.websocket import websocket_connect

        ctx = ssl.create_default_context(cafile=self.ca)
        req = HTTPRequest(
            url.replace("https://", "wss://"),
            headers={"Authorization": f"token {self.token}"},
            ssl_options=ctx,
            connect_timeout=timeout,
            request_timeout=timeout,
        )
        ws = await websocket_connect(req)
        msg_id = uuid.uuid4().hex
        ws.write_message(
            json.dumps(
                {
                    "header": {
                        "msg_id": msg_id, "username": "test", "session": uuid.uuid4().hex,
                        "msg_type": "execute_request", "version": "5.3",
                    },
                    "parent_header": {}, "metadata": {}, "channel": "shell",
                    "content": {"code": code, "silent": False, "store_history": False,
                                "user_expressions": {}, "allow_stdin": False},
                }
            )
        )  # fmt: skip
        out: dict[str, Any] = {"stdout": "", "error": None}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            raw = await asyncio.wait_for(ws.read_message(), timeout=deadline - time.monotonic())
            if raw is None:  # say so: an empty result must not look like a silent success
                out["error"] = (
                    f"websocket closed ({ws.close_code} {ws.close_reason}) before the run ended"
                )
                break
            msg = json.loads(raw)
            status = msg.get("header", {}).get("msg_type") == "status"
            state = msg["content"].get("execution_state") if status else None
            if state in ("dead", "restarting"):  # the server's word that the kernel died
                out["error"] = f"kernel {state} during the run"
                break
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind, content = msg["header"]["msg_type"], msg["content"]
            if kind == "stream" and content.get("name") == "stdout":
                out["stdout"] += content["text"]
            elif kind == "error":
                out["error"] = f"{content['ename']}: {content['evalue']}"
            elif kind == "status" and content.get("execution_state") == "idle":
                break

        ws.close()
        return out
