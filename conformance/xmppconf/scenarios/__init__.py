"""Every scenario, in the order the runner executes them. One module per protocol area."""

from . import app_server, auth, messaging, push, register, roster, services, stream_management

ALL = [
    *register.SCENARIOS,
    *auth.SCENARIOS,
    *roster.SCENARIOS,
    *messaging.SCENARIOS,
    *services.SCENARIOS,
    *stream_management.SCENARIOS,
    *push.SCENARIOS,
    *app_server.SCENARIOS,
]
