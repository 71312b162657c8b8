"""The live hub and the live page's SSE stream: a quiet spell gives a keepalive and keeps the subscription,
and a subscription that ends (shutdown) ends the stream without an error."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

from dashboard.auth.scope import Scope
from dashboard.live import LiveHub
from dashboard.web.pages.live import live_stream


def test_a_quiet_spell_gives_none_and_keeps_the_subscription() -> None:
    async def scenario() -> None:
        hub = LiveHub()
        hub.bind(asyncio.get_running_loop())
        items = hub.subscribe(idle_s=0.05)
        assert await anext(items) is None  # nothing for idle_s: time for a keepalive
        assert hub.subscribers == 1
        hub.publish({"type": "camera", "site": "site-a"})
        assert await anext(items) == {"type": "camera", "site": "site-a"}
        await items.aclose()  # type: ignore[attr-defined]
        assert hub.subscribers == 0

    asyncio.run(scenario())


class EndingHub:
    """A hub whose subscription ends after a quiet spell and one item, as at shutdown."""

    async def subscribe(self, idle_s: float | None = None) -> AsyncIterator[dict[str, Any] | None]:
        yield None
        yield {"type": "camera", "site": "site-a", "camera": "gate", "state": "online"}


class Request:
    """The little of a request the stream asks: whether the browser is still there."""

    async def is_disconnected(self) -> bool:
        return False


def test_the_stream_ends_cleanly_when_the_subscription_ends() -> None:
    setup = SimpleNamespace(
        ctx=SimpleNamespace(hub=EndingHub()),
        page=SimpleNamespace(site=None),
        user=SimpleNamespace(scope=Scope.of(["*"], [])),
    )

    async def scenario() -> list[str]:
        response = await live_stream(Request(), setup)  # type: ignore[arg-type]
        return [chunk async for chunk in response.body_iterator]  # type: ignore[misc]

    chunks = asyncio.run(
        scenario()
    )  # before the fix: RuntimeError, async generator raised StopAsyncIteration
    assert chunks[0].startswith("retry:") and chunks[1] == ": keepalive\n\n"
    assert chunks[2].startswith("event: camera\n") and len(chunks) == 3


def test_closing_the_hub_ends_every_subscription_and_refuses_new_ones_until_bound_again() -> None:
    """Shutdown begins (DashboardServer): open live streams must finish, not hold the server open."""

    async def scenario() -> None:
        hub = LiveHub()
        hub.bind(asyncio.get_running_loop())
        first, second = hub.subscribe(idle_s=None), hub.subscribe(idle_s=None)
        waiting = [asyncio.ensure_future(anext(first)), asyncio.ensure_future(anext(second))]
        await asyncio.sleep(0.01)
        assert hub.subscribers == 2
        hub.close()
        done = await asyncio.wait_for(asyncio.gather(*waiting, return_exceptions=True), 2)
        assert all(isinstance(result, StopAsyncIteration) for result in done)
        assert hub.subscribers == 0
        late = hub.subscribe(idle_s=0.01)
        assert [item async for item in late] == []  # closing: a new page gets an empty stream
        hub.bind(asyncio.get_running_loop())  # started again
        again = hub.subscribe(idle_s=0.01)
        assert await anext(again) is None

    asyncio.run(scenario())
