"""Every scenario, in the order the runner executes them. One module per protocol area."""

from . import (
    app_server,
    archive,
    auth,
    carbons,
    client_state,
    messaging,
    pep,
    private_xml,
    push,
    push_notifications,
    push_relay,
    register,
    relay_api,
    roster,
    services,
    stream_management,
)

ALL = [
    *register.SCENARIOS,
    *auth.SCENARIOS,
    *roster.SCENARIOS,
    *messaging.SCENARIOS,
    *archive.SCENARIOS,
    *services.SCENARIOS,
    *private_xml.SCENARIOS,
    *pep.SCENARIOS,
    *stream_management.SCENARIOS,
    *carbons.SCENARIOS,
    *client_state.SCENARIOS,
    *push.SCENARIOS,
    *push_notifications.SCENARIOS,
    *app_server.SCENARIOS,
    *push_relay.SCENARIOS,
    *relay_api.SCENARIOS,
]
