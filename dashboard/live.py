"""In-process broadcaster for live pages: ingest publishes from its MQTT thread, SSE endpoints subscribe."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

log = logging.getLogger(__name__)

#: Put on every queue when the hub closes: the subscription ends (compared by identity).
_END: dict[str, Any] = {}


class LiveHub:
    """Fan-out of small dicts (an event changed, a camera went offline) to every subscribed page.

    `publish` may be called from any thread; it hands the item to the event loop with
    `call_soon_threadsafe`, so ingest never blocks on a slow browser. Each subscriber has a bounded queue;
    when it is full the oldest item is dropped (a live page only needs the newest state) and counted.
    """

    def __init__(self, queue_size: int = 256) -> None:
        self._queue_size = queue_size
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queues: set[asyncio.Queue[dict[str, Any]]] = set()
        self._closing = False
        self.dropped = 0

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """Attach the hub to the server's event loop (the app's lifespan does this)."""
        self._loop = loop
        self._closing = False

    def close(self) -> None:
        """End every subscription now, as shutdown begins, so live pages' streams finish (browsers retry
        later) instead of holding the server open; thread-safe, a no-op without a bound loop."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            loop.call_soon_threadsafe(self._end_all)
        except RuntimeError:  # the loop closed between the check and the call
            pass

    def _end_all(self) -> None:
        self._closing = True
        self._fan_out(_END)

    def unbind(self) -> None:
        """Detach from the loop at shutdown; later publishes are ignored."""
        self._loop = None

    @property
    def subscribers(self) -> int:
        """Return how many pages are listening."""
        return len(self._queues)

    def publish(self, item: dict[str, Any]) -> None:
        """Send `item` to every subscriber; thread-safe, never blocks, a no-op without a bound loop."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            loop.call_soon_threadsafe(self._fan_out, item)
        except RuntimeError:  # the loop closed between the check and the call (shutdown)
            pass

    def _fan_out(self, item: dict[str, Any]) -> None:
        """Put `item` on every queue (runs on the loop)."""
        for queue in self._queues:
            if queue.full():
                queue.get_nowait()
                self.dropped += 1
            queue.put_nowait(item)

    async def subscribe(self, idle_s: float | None = None) -> AsyncIterator[dict[str, Any] | None]:
        """Yield every item published from now on, until the caller stops iterating; None after `idle_s`
        seconds without one (time for a keepalive), never None when `idle_s` is None.

        The timeout waits on the queue inside this generator: a caller timing out its own wait would cancel
        the generator itself, which ends the subscription for good."""
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(self._queue_size)
        self._queues.add(queue)
        try:
            while not self._closing:
                try:
                    item = await asyncio.wait_for(queue.get(), idle_s)
                except TimeoutError:
                    yield None
                    continue
                if item is _END:
                    return
                yield item
        finally:
            self._queues.discard(queue)
