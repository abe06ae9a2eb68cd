"""A minimal client of the ChatSecure-compatible push relay API (push.md section 5.1), as a phone app uses it:
log in with the XMPP account's credentials (`POST /api/v1/accounts/`, answering an API key) and register a
device (`POST /api/v1/device/gcm/` with `Authorization: Token <key>`). Form-encoded, like ChatSecure.
Blocking (urllib); scenarios call it through asyncio.to_thread.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass

from .client import ScenarioFailure

TIMEOUT = 10.0


@dataclass(frozen=True)
class RelayApi:
    base_url: str

    def _post(self, path: str, fields: dict[str, str], key: str | None = None) -> tuple[int, object]:
        data = urllib.parse.urlencode(fields).encode()
        req = urllib.request.Request(self.base_url.rstrip("/") + path, data=data, method="POST")
        req.add_header("Content-Type", "application/x-www-form-urlencoded")
        req.add_header("Accept", "application/json")
        if key is not None:
            req.add_header("Authorization", f"Token {key}")
        try:
            with urllib.request.urlopen(req, timeout=TIMEOUT) as resp:
                status, raw = resp.status, resp.read()
        except urllib.error.HTTPError as err:
            status, raw = err.code, err.read()
        except OSError as err:
            raise ScenarioFailure(f"relay API POST {path}: {err}") from err
        try:
            return status, json.loads(raw) if raw else None
        except ValueError:
            return status, raw.decode(errors="replace")[:200]

    def login(self, username: str, password: str) -> str:
        """The API key for an account (ChatSecure's create-or-login answers `{username, email, id, token}`)."""
        status, body = self._post("/api/v1/accounts/", {"username": username, "password": password})
        if status != 200 or not isinstance(body, dict) or not body.get("token"):
            raise ScenarioFailure(f"relay login as {username}: HTTP {status} {body}")
        return str(body["token"])

    def add_fcm_device(self, key: str, registration_id: str, name: str) -> dict:
        """Registers an FCM device (ChatSecure's `gcm` kind); 201 with the device's JSON."""
        fields = {"registration_id": registration_id, "name": name, "active": "true"}
        status, body = self._post("/api/v1/device/gcm/", fields, key=key)
        if status != 201 or not isinstance(body, dict):
            raise ScenarioFailure(f"relay FCM device registration: HTTP {status} {body}")
        return body
