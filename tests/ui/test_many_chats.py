"""Many readers opening a chat at the same moment, on the real server (Chainlit's own protocol).

Chainlit 2.12 recomputes a session's config by running the chat-profile callback inside the
running event loop (nest_asyncio); one nested loop per simultaneous connect once exceeded
Python's recursion limit at 40 readers, and their sign-ins failed with HTTP 500."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import httpx

from chat_client import ChatClient

READERS = 40
PASSWORD = "many-readers-password"


def test_forty_readers_sign_in_and_open_a_chat_at_once(ui_server, ui_store):
    for i in range(READERS):
        if ui_store.get_user(f"crowd{i}") is None:
            ui_store.add_user(f"crowd{i}", PASSWORD, "reader")

    async def reader(i: int, start: asyncio.Event) -> str:
        client = ChatClient(ui_server, f"crowd{i}", PASSWORD, "Sherlock Holmes")
        await start.wait()
        try:
            async with httpx.AsyncClient(timeout=120) as http:
                await client.login(http)
            await client.connect(timeout=120)
            return "greeted" if client.greeting.is_set() else "no greeting"
        except Exception as exc:  # noqa: BLE001 - reported per reader below
            return f"failed: {exc!r}"[:300]
        finally:
            await client.close()

    async def crowd() -> list[str]:
        start = asyncio.Event()
        tasks = [asyncio.create_task(reader(i, start)) for i in range(READERS)]
        await asyncio.sleep(0)
        start.set()
        return await asyncio.gather(*tasks)

    with ThreadPoolExecutor(1) as pool:        # a loop of its own: Playwright's may be running here
        outcomes = pool.submit(asyncio.run, crowd()).result()
    failed = [o for o in outcomes if o != "greeted"]
    assert not failed, f"{len(failed)} of {READERS} readers could not open a chat: {failed[:3]}"
