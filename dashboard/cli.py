"""`sitesentry dashboard ...`: serve, users, API tokens, database migrations. Parses and hands off."""

from __future__ import annotations

import errno
import getpass
import logging
import socket
import sys
from pathlib import Path
from typing import Annotated

import typer

from dashboard.settings import ENV_PREFIX, DashboardSettings, load_settings

app = typer.Typer(
    help="The site dashboard: web pages and API over the alerts the edges publish.", no_args_is_help=True
)
user_app = typer.Typer(help="Dashboard users.", no_args_is_help=True)
token_app = typer.Typer(help="API tokens (Authorization: Bearer) for scripts.", no_args_is_help=True)
db_app = typer.Typer(help="The dashboard database.", no_args_is_help=True)
app.add_typer(user_app, name="user")
app.add_typer(token_app, name="token")
app.add_typer(db_app, name="db")

ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="Dashboard settings YAML (SITESENTRY_DASHBOARD_* override)."),
]


def _settings(config: Path | None) -> DashboardSettings:
    """Load settings or exit with the error."""
    try:
        return load_settings(config)
    except (OSError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


def _database(settings: DashboardSettings):  # type: ignore[no-untyped-def]
    """Open and migrate the database."""
    from dashboard.storage.db import Database
    from dashboard.storage.migrate import upgrade

    database = Database(settings.database_url)
    upgrade(database.engine)
    return database


@app.command()
def serve(
    config: ConfigOption = None,
    host: Annotated[str | None, typer.Option(help="Listen address (default: bind_host).")] = None,
    port: Annotated[int | None, typer.Option(help="Listen port (default: bind_port).")] = None,
) -> None:
    """Run the dashboard (uvicorn): migrations, MQTT ingest, retention, pages and API."""
    from dashboard.app import DashboardServer, create_app

    settings = _settings(config)
    address = (host or settings.bind_host, port or settings.bind_port)
    # Bound here, not by uvicorn: a taken port must say which setting to change, not just "[Errno 98]".
    sock = _listen(*address, from_option=port is not None)
    setup_logging(settings.log_level)
    # uvicorn names its address only when it binds the socket itself; this one is bound above.
    logging.getLogger("dashboard").info("dashboard on http://%s:%d/", *address)
    server = DashboardServer(
        create_app(settings),
        host=address[0],
        port=address[1],
        proxy_headers=False,  # client addresses for the audit log come from trusted_proxies only
        log_config=None,  # uvicorn's lines go through the root logger set up above, with times
    )
    server.run(sockets=[sock])


def setup_logging(level: str) -> None:
    """Log the dashboard's own lines (ingest, retention) and uvicorn's on stderr, each with its time in this
    box's zone and offset, its level and logger; without this the dashboard's INFO lines went nowhere."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%Y-%m-%dT%H:%M:%S%z")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    if level != "DEBUG":  # paho and the SQL engine narrate every step at DEBUG/INFO
        for name in ("paho", "sqlalchemy.engine", "alembic.runtime.migration"):
            logging.getLogger(name).setLevel(logging.WARNING)


def _listen(host: str, port: int, *, from_option: bool) -> socket.socket:
    """Bind the listening socket as uvicorn would, or exit 2 with one line naming the port and the setting."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        where = f"cannot serve the dashboard on {host}:{port}"
        setting = "--port" if from_option else f"bind_port (or {ENV_PREFIX}BIND_PORT) or --port"
        if exc.errno == errno.EADDRINUSE:
            reason = (
                f"the port is already in use (another dashboard on this box?); set {setting} to a free port"
            )
        elif exc.errno == errno.EADDRNOTAVAIL:
            reason = "this box has no such address; check bind_host or --host"
        else:
            reason = f"{exc.strerror or exc}; check bind_host and bind_port"
        typer.echo(f"error: {where}: {reason}", err=True)
        raise typer.Exit(2) from None
    sock.set_inheritable(True)
    return sock


@db_app.command("upgrade")
def db_upgrade(config: ConfigOption = None) -> None:
    """Bring the database schema up to date (also done at every start)."""
    from dashboard.storage.migrate import current_revision

    database = _database(_settings(config))
    typer.echo(f"database at revision {current_revision(database.engine)}")
    database.dispose()


@user_app.command("add")
def user_add(
    username: Annotated[str, typer.Argument(help="Login name.")],
    role: Annotated[str, typer.Option(help="viewer, safety_officer or admin.")] = "viewer",
    site: Annotated[
        list[str] | None, typer.Option(help="Site the user may see ('*': all); repeatable.")
    ] = None,
    camera: Annotated[
        list[str] | None, typer.Option(help="Single camera as site/camera; repeatable.")
    ] = None,
    display_name: Annotated[str | None, typer.Option(help="Name shown on pages.")] = None,
    password_file: Annotated[
        Path | None, typer.Option(help="Read the password from this file (first line) instead of a prompt.")
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Add a user; the password is asked for twice unless --password-file is given."""
    from dashboard.auth import service
    from dashboard.storage.models import Role

    try:
        role_value = Role(role)
    except ValueError:
        typer.echo(f"error: role must be one of {', '.join(r.value for r in Role)}", err=True)
        raise typer.Exit(2) from None
    if password_file is not None:
        password = (
            password_file.read_text(encoding="utf-8").splitlines()[0] if password_file.stat().st_size else ""
        )
    else:
        password = getpass.getpass("Password: ")
        if getpass.getpass("Again: ") != password:
            typer.echo("error: the passwords differ", err=True)
            raise typer.Exit(2)
    database = _database(_settings(config))
    try:
        with database.session() as db:
            service.create_user(
                db,
                username,
                password,
                role_value,
                sites=site or [],
                cameras=camera or [],
                display_name=display_name,
            )
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    finally:
        database.dispose()
    typer.echo(f"user {username} added ({role_value.value})")


@user_app.command("list")
def user_list(config: ConfigOption = None) -> None:
    """List users with role and scope."""
    from dashboard.auth import service

    database = _database(_settings(config))
    with database.session() as db:
        for user in service.list_users(db):
            scope = ", ".join([*user.sites, *user.cameras]) or "-"
            state = "" if user.active else " (disabled)"
            typer.echo(f"{user.username}\t{user.role}\t{scope}{state}")
    database.dispose()


@token_app.command("add")
def token_add(
    username: Annotated[str, typer.Argument(help="The user the token acts as.")],
    name: Annotated[str, typer.Option(help="What the token is for.")] = "script",
    days: Annotated[int | None, typer.Option(help="Expires after this many days (default: never).")] = None,
    config: ConfigOption = None,
) -> None:
    """Issue an API token; it is printed once and stored only as a hash."""
    from sqlalchemy import select

    from dashboard.auth import service
    from dashboard.storage.models import User

    database = _database(_settings(config))
    with database.session() as db:
        user = db.scalar(select(User).where(User.username == username))
        if user is None:
            typer.echo(f"error: no user {username!r}", err=True)
            raise typer.Exit(2)
        token, _ = service.create_api_token(db, user, name, days=days)
    database.dispose()
    typer.echo(token)
