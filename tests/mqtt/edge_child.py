"""A minimal edge process for the SIGKILL and Last Will tests: an AlertPublisher writing numbered events.

    python tests/mqtt/edge_child.py --port P --outbox FILE --events N [--connect] [--drain]

Prints `WRITTEN <pending>` once the events are in the outbox, `CONNECTED` once the broker accepted it, and
with --drain waits until everything is delivered, stops cleanly and prints `DRAINED`. Otherwise it waits to
be killed.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
import uuid
from pathlib import Path

from mqtt_fixtures import EDGE_PASSWORD, EDGE_USER, make_event, site

from edge.config.models import MqttConfig
from edge.mqtt import AlertPublisher, ModelInfo

NAMESPACE = uuid.UUID("5f0c1d8e-0000-4000-8000-000000000000")


def event_id(n: int) -> uuid.UUID:
    """The id of the n-th event the child writes, so the test knows what to expect."""
    return uuid.uuid5(NAMESPACE, str(n))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--outbox", type=Path, required=True)
    parser.add_argument("--events", type=int, default=0)
    parser.add_argument("--connect", action="store_true")
    parser.add_argument("--drain", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    config = MqttConfig(
        host="127.0.0.1",
        port=args.port,
        username=EDGE_USER,
        password=EDGE_PASSWORD,
        outbox=args.outbox,
        keepalive_s=5,
    )
    publisher = AlertPublisher(config, site(), ModelInfo("ppe-yolo", "1"))
    publisher.start()
    for n in range(args.events):
        publisher.publish_event(make_event(camera=("gate", "yard")[n % 2], seq=n, event_id=event_id(n)))
    print(f"WRITTEN {publisher.pending}", flush=True)
    if args.connect:
        if not publisher.wait_connected(20):
            print(f"NOT CONNECTED {publisher.last_error}", flush=True)
            return 1
        print("CONNECTED", flush=True)
    if args.drain:
        drained = publisher.wait_delivered(30)
        publisher.stop()
        print("DRAINED" if drained else "NOT DRAINED", flush=True)
        return 0 if drained else 1
    time.sleep(600)  # the test kills us
    return 0


if __name__ == "__main__":
    sys.exit(main())
