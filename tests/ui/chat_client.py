"""A simulated chat user speaking Chainlit 2.12's own protocol (HTTP login + socket.io).

Used by the role-enforcement test and by ``benchmarks/ui_load.py``: signs in
with a password (cookie), opens a chat session on a chat profile, asks a
question and records when the first reasoning step and the end of the answer
arrive; can also call ``/project/action`` by hand, as a tampering client would.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any
from urllib.parse import quote

import httpx
import socketio


@dataclass
class Timing:
    first_step_s: float | None = None
    answer_s: float | None = None
    steps: list[dict[str, Any]] = field(default_factory=list)
    elements: list[dict[str, Any]] = field(default_factory=list)
    messages: list[dict[str, Any]] = field(default_factory=list)


class ChatClient:
    def __init__(self, base_url: str, username: str, password: str, profile: str):
        self.base_url = base_url.rstrip("/")
        self.username, self.password, self.profile = username, password, profile
        self.session_id = str(uuid.uuid4())
        self.cookies: dict[str, str] = {}
        self.sio = socketio.AsyncClient(reconnection=False)
        self.events: asyncio.Queue[tuple[str, Any, float]] = asyncio.Queue()
        self.greeting = asyncio.Event()
        self.thread_id: str | None = None
        for name in ("new_message", "update_message", "stream_start", "element", "task_end",
                     "task_start", "first_interaction"):
            self.sio.on(name, self._handler(name))

    def _handler(self, name: str):
        async def handle(data: Any = None) -> None:
            if name == "new_message" and isinstance(data, dict) and data.get("type") == "assistant_message":
                self.greeting.set()
            if name == "first_interaction" and isinstance(data, dict):
                self.thread_id = data.get("thread_id")
            await self.events.put((name, data, time.perf_counter()))
        return handle

    async def login(self, http: httpx.AsyncClient) -> None:
        r = await http.post(f"{self.base_url}/login", data={"username": self.username,
                                                            "password": self.password})
        r.raise_for_status()
        self.cookies = {k: v for k, v in r.cookies.items()}

    @property
    def cookie_header(self) -> str:
        return "; ".join(f"{k}={v}" for k, v in self.cookies.items())

    async def connect(self, timeout: float = 30) -> None:
        auth = {"clientType": "webapp", "sessionId": self.session_id, "threadId": "",
                "userEnv": "{}", "chatProfile": quote(self.profile)}
        await self.sio.connect(self.base_url, socketio_path="/ws/socket.io", transports=["websocket"],
                               headers={"Cookie": self.cookie_header}, auth=auth, wait_timeout=timeout)
        await self.sio.emit("connection_successful")
        await asyncio.wait_for(self.greeting.wait(), timeout)
        await self.settle()

    async def settle(self, quiet: float = 0.5) -> None:
        """Wait until the server has said nothing for ``quiet`` seconds (chat start finished)."""
        while True:
            try:
                await asyncio.wait_for(self.events.get(), quiet)
            except asyncio.TimeoutError:
                return

    async def ask(self, question: str, timeout: float = 120, settle: float = 0.3) -> Timing:
        await self.settle(settle)              # late events of the previous exchange are not ours
        timing = Timing()
        msg = {"id": str(uuid.uuid4()), "threadId": "", "name": self.username, "type": "user_message",
               "output": question, "createdAt": datetime.now(timezone.utc).isoformat(), "metadata": {}}
        t0 = time.perf_counter()
        await self.sio.emit("client_message", {"message": msg, "fileReferences": []})
        deadline = t0 + timeout
        started = False
        while True:
            name, data, t = await asyncio.wait_for(self.events.get(), max(0.1, deadline - time.perf_counter()))
            if name == "task_start":
                started = True
            if name in ("new_message", "stream_start") and isinstance(data, dict):
                if data.get("type") == "tool" and timing.first_step_s is None:
                    timing.first_step_s = t - t0
            if name == "update_message" and isinstance(data, dict) and data.get("type") == "tool":
                timing.steps.append(data)
            if name in ("new_message", "update_message") and isinstance(data, dict) \
                    and data.get("type") == "assistant_message":
                timing.messages.append(data)
            if name == "element" and isinstance(data, dict):
                timing.elements.append(data)
            if name == "task_end" and started:
                timing.answer_s = t - t0
                return timing

    async def call_action(self, http: httpx.AsyncClient, name: str, payload: dict) -> dict:
        action = {"name": name, "payload": payload, "label": "", "id": str(uuid.uuid4())}
        r = await http.post(f"{self.base_url}/project/action", headers={"Cookie": self.cookie_header},
                            json={"sessionId": self.session_id, "action": action})
        r.raise_for_status()
        return r.json()

    async def close(self) -> None:
        if self.sio.connected:
            await self.sio.disconnect()
