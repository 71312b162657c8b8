"""Display names of the codes that travel in payloads and the database (rules, states, phases, roles).

The codes stay English identifiers everywhere (MQTT, database, URLs); only these names are translated.
Each name is marked with `N_` so Babel extracts it, and looked up through the request's catalog when
shown. `tests/dashboard/test_i18n_catalogs.py` checks that every contract enum value has a name here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final


def N_(message: str) -> str:  # noqa: N802 (the gettext convention for "mark, translate later")
    """Mark a string for extraction without translating it now."""
    return message


RULES: Final = {
    "no_helmet": N_("No hard hat"),
    "no_vest": N_("No hi-vis vest"),
    "zone_entry": N_("Danger zone entry"),
}

#: Workflow states of an alert (the dashboard's own, not sent by the edge).
ALERT_STATES: Final = {
    "new": N_("New"),
    "acknowledged": N_("Acknowledged"),
    "assigned": N_("Assigned"),
    "resolved": N_("Resolved"),
    "false_alarm": N_("False alarm"),
}

CAMERA_STATES: Final = {
    "starting": N_("Starting"),
    "online": N_("Online"),
    "reconnecting": N_("Reconnecting"),
    "offline": N_("Offline"),
    "disabled": N_("Disabled"),
    "ended": N_("Ended"),
    "unknown": N_("Unknown"),
}

EDGE_STATES: Final = {
    "online": N_("Online"),
    "offline": N_("Offline"),
    "stale": N_("No heartbeat"),
    "unknown": N_("Unknown"),
}

PHASES: Final = {
    "start": N_("Started"),
    "update": N_("Updated"),
    "end": N_("Ended"),
}

ROLES: Final = {
    "viewer": N_("Viewer"),
    "safety_officer": N_("Safety officer"),
    "admin": N_("Administrator"),
}

#: What the audit trail and the audit log show for each recorded action (the backend's action codes:
#: workflow steps in an alert's history, `event.<step>` and the rest in the audit log).
ACTIONS: Final = {
    "acknowledge": N_("acknowledged"),
    "assign": N_("assigned"),
    "resolve": N_("resolved"),
    "false_alarm": N_("marked as false alarm"),
    "reopen": N_("reopened"),
    "event.acknowledge": N_("acknowledged an alert"),
    "event.assign": N_("assigned an alert"),
    "event.resolve": N_("resolved an alert"),
    "event.false_alarm": N_("marked an alert as false alarm"),
    "event.reopen": N_("reopened an alert"),
    "events.export": N_("exported the alert log"),
    "zones.set": N_("changed danger zones"),
    "login": N_("signed in"),
    "logout": N_("signed out"),
    "user.add": N_("added a user"),
    "user.disable": N_("disabled a user"),
    "token.add": N_("created an API token"),
    "token.revoke": N_("revoked an API token"),
    "retention.sweep": N_("deleted expired alerts"),
}

_TABLES: Final = {
    "rule": RULES,
    "alert_state": ALERT_STATES,
    "camera_state": CAMERA_STATES,
    "edge_state": EDGE_STATES,
    "phase": PHASES,
    "role": ROLES,
    "action": ACTIONS,
}


def label(kind: str, code: str | None, gettext: Callable[[str], str]) -> str:
    """Return the translated name of `code` of `kind` (rule, alert_state, ...); unknown codes as they are."""
    if code is None:
        return ""
    message = _TABLES[kind].get(str(code))
    return gettext(message) if message else str(code)
