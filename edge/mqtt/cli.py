"""The MQTT stage's commands: `sitesentry broker`, `sitesentry alerts tail`, `sitesentry mqtt schemas`."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Annotated

import typer
from pydantic import SecretStr, ValidationError
from rich.console import Console
from rich.markup import escape

from edge.config.loader import ConfigError, load_config
from edge.config.models import MqttConfig, TlsConfig
from edge.mqtt.connection import MqttConfigError, MqttConnectError, broker_address


def register(app: typer.Typer) -> None:
    """Add the MQTT commands to the `sitesentry` app."""
    app.command("broker")(broker)
    alerts = typer.Typer(help="Watch alerts as they arrive over MQTT.", no_args_is_help=True)
    alerts.command("tail")(tail)
    app.add_typer(alerts, name="alerts")
    mqtt_app = typer.Typer(help="MQTT payload schemas.", no_args_is_help=True)
    mqtt_app.command("schemas")(schemas)
    app.add_typer(mqtt_app, name="mqtt")


def _fail(message: str, code: int = 1) -> typer.Exit:
    Console(stderr=True, soft_wrap=True).print(f"[red]error:[/] {escape(message)}", highlight=False)
    return typer.Exit(code)


def broker(
    host: Annotated[
        str, typer.Option(help="Address to listen on (anonymous clients are accepted).")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port to listen on (0: a free one).")] = 1883,
) -> None:
    """Run the embedded MQTT broker (amqtt, MQTT 3.1.1) until Ctrl-C or SIGTERM."""
    from edge.mqtt.broker import EmbeddedBroker, EmbeddedBrokerError

    console = Console()
    stop = threading.Event()
    # Explicit handlers: a shell that starts us in the background leaves SIGINT ignored, and a service
    # manager stops us with SIGTERM.
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    embedded = EmbeddedBroker(host, port, keys=("--host", "--port"))
    try:
        embedded.start()
        console.print(
            f"Embedded MQTT broker listening on {host}:{embedded.port} (MQTT 3.1.1); Ctrl-C stops it."
        )
        while not stop.wait(0.5):
            pass
    except EmbeddedBrokerError as exc:
        raise _fail(str(exc), code=2 if exc.cannot_bind else 1) from None
    finally:
        embedded.stop(timeout=4.0)  # it must end promptly, even if a client connection lingers


def tail(
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", help="Site YAML: broker, credentials, prefix and site id."),
    ] = None,
    host: Annotated[str | None, typer.Option(help="Broker host (overrides the config).")] = None,
    port: Annotated[
        int | None, typer.Option(min=1, max=65535, help="Broker port (overrides the config).")
    ] = None,
    site: Annotated[
        str | None, typer.Option(help="Site id to watch; default: the config's, else every site.")
    ] = None,
    prefix: Annotated[str | None, typer.Option(help="Topic prefix (overrides the config).")] = None,
    username: Annotated[str | None, typer.Option(help="User name (overrides the config).")] = None,
    password: Annotated[
        str | None,
        typer.Option(
            envvar="SITESENTRY_MQTT_PASSWORD", show_envvar=True, help="Password; better via the env var."
        ),
    ] = None,
    ca_file: Annotated[Path | None, typer.Option(help="CA bundle: connect with TLS.")] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="One JSON object per line instead of text.")
    ] = False,
    count: Annotated[int | None, typer.Option(min=1, help="Exit after this many messages.")] = None,
    seconds: Annotated[float | None, typer.Option(min=0, help="Exit after this many seconds.")] = None,
    timeout: Annotated[
        float | None,
        typer.Option(
            min=0,
            help="Give up waiting for a broker that is not up yet after this many seconds (default: wait).",
        ),
    ] = None,
) -> None:
    """Subscribe to a site's events, status, alarms and heartbeats and print them as they arrive.

    Over 60 lines only because of its typer options; the body lays the overrides over the config and
    hands over to edge.mqtt.tail.
    """
    from edge.mqtt.tail import tail as run_tail

    mqtt_config = MqttConfig.model_validate({})
    site_id: str | None = None
    if config is not None:
        try:
            loaded = load_config(config)
        except ConfigError as exc:
            raise _fail(str(exc)) from None
        mqtt_config, site_id = loaded.mqtt, loaded.site.id
    updates: dict[str, object] = {}
    if host is not None:
        updates["host"] = host
    if port is not None:
        updates["port"] = port
    if prefix is not None:
        updates["prefix"] = prefix
    if username is not None:
        updates["username"] = username
    if password is not None:
        updates["password"] = SecretStr(password)
    if ca_file is not None:
        updates["tls"] = TlsConfig.model_validate({"ca_file": ca_file})
    try:
        mqtt_config = MqttConfig.model_validate({**mqtt_config.model_dump(), **updates})
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        raise _fail(f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}") from None
    console = Console(soft_wrap=True)
    where = "{}:{}".format(*broker_address(mqtt_config))
    watched = f"{mqtt_config.prefix}/{site or site_id or '+'}/#"
    try:
        run_tail(
            mqtt_config,
            site or site_id,
            console,
            raw_json=as_json,
            count=count,
            seconds=seconds,
            connected=None if as_json else lambda: console.print(f"[dim]Watching {watched} on {where}[/]"),
            waiting=lambda why: Console(stderr=True, soft_wrap=True).print(
                f"waiting for broker {where}… ({escape(why)}); Ctrl-C to stop", highlight=False
            ),
            wait_s=min((t for t in (timeout, seconds) if t is not None), default=None),
        )
    except (MqttConnectError, MqttConfigError) as exc:
        raise _fail(str(exc)) from None


def schemas(
    out: Annotated[Path, typer.Option(help="Folder of the schema files.")] = Path("docs/schemas"),
    check: Annotated[bool, typer.Option("--check", help="Only check that the files are up to date.")] = False,
) -> None:
    """Write the JSON Schemas of every MQTT payload from the payload models (or check them)."""
    from contract.schemas import stale_schemas, write_schemas

    if check:
        stale = stale_schemas(out)
        if stale:
            raise _fail(f"{out}: out of date: {', '.join(stale)}; run `sitesentry mqtt schemas`")
        Console().print(f"{out}: all MQTT schemas are up to date.")
        return
    paths = write_schemas(out)
    Console().print(f"Wrote {len(paths)} MQTT schemas to {out}.")
