"""Herald's push relay HTTP API as ChatSecure and a server posting to it use it (the ChatSecure-Push-Server v1
paths, relay/README.md "HTTP API", relay/openapi.json): log in with the XMPP account (an API key), register an
FCM device, issue a whitelist token scoped to it (its secret shown once, never listed), post a message with the
token, which reaches the FCM stand-in as one content-free push, and read the message's delivery status; then
revoke the token, after which posting with it is 404. Bad input is refused with a 4xx status and a JSON object
body: no or a wrong API key, a missing field, a bad `priority`, an unknown token, a malformed JSON body, an
unknown route. Needs PUSH_RELAY: the API is Herald's own, no peer server has it.
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass

from ..client import ScenarioFailure
from ..fcm import SendRequest
from ..relayapi import RelayApi
from ..scenario import PUSH_RELAY, Context, Scenario, expect

HTTP_TIMEOUT = 10.0
PUSH_WAIT = 15.0
# The delivery status is a resource to read, with no notification when it changes: it is read again at
# this interval, within PUSH_WAIT.
STATUS_POLL = 0.1
API_KEY = re.compile(r"[0-9a-f]{40}")


@dataclass(frozen=True)
class Answer:
    status: int
    body: object
    content_type: str

    def show(self) -> str:
        return f"HTTP {self.status} {str(self.body)[:200]}"


def _call(base: str, method: str, path: str, *, form=None, raw=None, key=None) -> Answer:
    """One request, blocking (urllib; run through asyncio.to_thread). `form` goes form-encoded as ChatSecure
    sends it, `raw` as a JSON body."""
    data, headers = None, {"Accept": "application/json"}
    if form is not None:
        data = urllib.parse.urlencode(form).encode()
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    elif raw is not None:
        data = raw.encode()
        headers["Content-Type"] = "application/json"
    if key is not None:
        headers["Authorization"] = f"Token {key}"
    req = urllib.request.Request(base.rstrip("/") + path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=HTTP_TIMEOUT) as resp:
            status, ctype, payload = resp.status, resp.headers.get("Content-Type", ""), resp.read()
    except urllib.error.HTTPError as err:
        status, ctype, payload = err.code, err.headers.get("Content-Type", ""), err.read()
    except OSError as err:
        raise ScenarioFailure(f"relay API {method} {path}: {err}") from err
    try:
        body = json.loads(payload) if payload else None
    except ValueError:
        body = payload.decode(errors="replace")[:200]
    return Answer(status, body, ctype)


class Api:
    def __init__(self, base: str) -> None:
        self.base = base

    async def __call__(self, method: str, path: str, **kwargs) -> Answer:
        return await asyncio.to_thread(_call, self.base, method, path, **kwargs)


def _expect_json_error(answer: Answer, statuses: tuple[int, ...], what: str) -> None:
    expect(answer.status in statuses, f"{what}: {answer.show()}, expected {' or '.join(map(str, statuses))}")
    expect(
        isinstance(answer.body, dict) and answer.body and "json" in answer.content_type,
        f"{what}: the error body is not a JSON object ({answer.content_type}): {answer.body!r}",
    )


async def relay_http_api(ctx: Context) -> str:
    push = ctx.push
    expect(push is not None, "target claims a push relay but gave no relay URL")
    assert push is not None
    api, fcm, bob = Api(push.relay_url), push.fcm, ctx.jid("bob")

    root = await api("GET", "/api/v1/")
    expect(root.status == 200 and isinstance(root.body, dict), f"GET /api/v1/: {root.show()}")

    # ChatSecure's create-or-login with the XMPP account: all-string {username, email, id, token}.
    login = await api("POST", "/api/v1/accounts/", form={"username": bob, "password": ctx.password})
    expect(login.status == 200 and isinstance(login.body, dict), f"login: {login.show()}")
    assert isinstance(login.body, dict)
    key = login.body.get("token")
    expect(isinstance(key, str) and API_KEY.fullmatch(key) is not None, f"API key {key!r} is not 40 hex")
    fields = {f: type(login.body.get(f)).__name__ for f in ("username", "email", "id", "token")}
    expect(set(fields.values()) == {"str"}, f"login answer field types {fields}, ChatSecure expects strings")
    me = await api("GET", "/api/v1/accounts/", key=key)
    expect(me.status == 200, f"GET /api/v1/accounts/ with the key: {me.show()}")
    expect(bob in json.dumps(me.body), f"the caller is not {bob}: {me.show()}")

    _expect_json_error(await api("GET", "/api/v1/device/gcm/"), (401,), "device list without a key")
    wrong_key = secrets.token_hex(20)
    _expect_json_error(await api("GET", "/api/v1/device/gcm/", key=wrong_key), (401,), "device list, wrong key")
    missing = await api("POST", "/api/v1/device/gcm/", form={"name": "no token"}, key=key)
    _expect_json_error(missing, (400,), "FCM device without registration_id")
    expect("registration_id" in missing.body, f"the error does not name registration_id: {missing.show()}")

    registration_id = f"conf{secrets.token_hex(8)}:APA91b{secrets.token_urlsafe(32)}"
    device = await asyncio.to_thread(RelayApi(push.relay_url).add_fcm_device, key, registration_id, "relay api")
    devices = await api("GET", "/api/v1/device/gcm/", key=key)
    expect(devices.status == 200 and registration_id in json.dumps(devices.body), f"device list: {devices.show()}")

    created = await api("POST", "/api/v1/tokens/", form={"name": "conformance", "gcm_device": device["id"]}, key=key)
    expect(created.status == 201 and isinstance(created.body, dict), f"token creation: {created.show()}")
    assert isinstance(created.body, dict)
    token, token_id = created.body.get("token"), created.body.get("id")
    expect(bool(token) and bool(token_id), f"token creation answered no secret or id: {created.show()}")
    expect(str(created.body.get("endpoint", "")).endswith("/messages/"), f"token endpoint: {created.show()}")
    listed = await api("GET", "/api/v1/tokens/", key=key)
    expect(listed.status == 200, f"token list: {listed.show()}")
    expect(token not in json.dumps(listed.body), "the token list shows a token's secret")

    # A server holding the token posts a message (no API key): 202, then one push reaches the device.
    posted = await api("POST", "/api/v1/messages/", form={"token": token, "priority": "high"})
    expect(posted.status == 202 and isinstance(posted.body, dict), f"message post: {posted.show()}")
    assert isinstance(posted.body, dict)
    message_id = posted.body.get("id")
    sent = await fcm.sends.wait_for(
        lambda r: isinstance(r, SendRequest) and r.message.get("token") == registration_id,
        PUSH_WAIT,
        "an FCM push to the token's device",
    )
    expect(sent.authorized, "push carried no bearer token issued by the token endpoint")
    expect(bob not in sent.raw and "bob" not in sent.raw, f"the push names the account: {sent.raw[:200]}")
    status = await _sent_status(api, str(message_id))

    _expect_json_error(
        await api("POST", "/api/v1/messages/", form={"token": token, "priority": "urgent"}), (400,), "bad priority"
    )
    _expect_json_error(await api("POST", "/api/v1/messages/", form={}), (400,), "message without a token")
    _expect_json_error(await api("POST", "/api/v1/messages/", raw='{"token": '), (400,), "malformed JSON body")
    unknown = secrets.token_hex(20)
    _expect_json_error(await api("POST", "/api/v1/messages/", form={"token": unknown}), (404,), "unknown token")
    _expect_json_error(await api("GET", f"/api/v1/nowhere-{secrets.token_hex(3)}/"), (404,), "unknown route")

    revoked = await api("DELETE", f"/api/v1/tokens/{token_id}/", key=key)
    expect(revoked.status == 204, f"token revocation: {revoked.show()}")
    _expect_json_error(await api("POST", "/api/v1/messages/", form={"token": token}), (404,), "revoked token")

    wrong = await api("POST", "/api/v1/accounts/", form={"username": bob, "password": "not " + ctx.password})
    _expect_json_error(wrong, (401, 403), "login with a wrong password")
    pushes = fcm.sends.matching(lambda r: isinstance(r, SendRequest) and r.message.get("token") == registration_id)
    return f"login, device, token, message {status} ({len(pushes)} push), revocation; bad input refused as JSON"


async def _sent_status(api: Api, message_id: str) -> str:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + PUSH_WAIT
    while True:
        answer = await api("GET", f"/api/v1/messages/{message_id}/")
        expect(answer.status == 200 and isinstance(answer.body, dict), f"message status: {answer.show()}")
        assert isinstance(answer.body, dict)
        status = answer.body.get("status")
        expect(status in ("accepted", "sent"), f"message status: {answer.show()}")
        if status == "sent" or loop.time() > deadline:
            expect(status == "sent", f"message still {status} after the push reached the stand-in")
            return str(status)
        await asyncio.sleep(STATUS_POLL)


SCENARIOS = [
    Scenario(
        name="relay_http_api",
        description="the relay's ChatSecure-style HTTP API: account, device, token, message; 4xx JSON for bad input",
        run=relay_http_api,
        accounts=("bob",),
        timeout=45.0,
        requires=(PUSH_RELAY,),
    ),
]
