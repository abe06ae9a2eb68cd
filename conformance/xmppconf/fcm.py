"""A stand-in for Google's FCM HTTP v1 API and OAuth2 token endpoint, so the push scenarios can watch what the
server under test sends: a service-account JSON generated for the run (RSA-2048, PKCS#8, `token_uri` pointing
here), the RFC 7523 JWT bearer grant (the assertion must be RS256-signed by that key, with the account as `iss`,
the token URL as `aud` and the firebase.messaging scope), and `POST /v1/projects/<project>/messages:send`, which
needs a bearer token issued here and records every request for the scenario to await.

It runs in its own thread (http.server), so it serves while the scenarios' asyncio loop is busy.
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from .client import ScenarioFailure
from .pushservice import ComponentSetup

JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
FCM_SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
TOKEN_PATH = "/token"
# Google accepts assertions valid for at most an hour; allow a little clock skew on top.
MAX_ASSERTION_LIFETIME = 3600
CLOCK_SKEW = 300


def _b64url_decode(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


class Recorder:
    """Requests recorded by the server thread, awaitable from any asyncio loop by predicate."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: list = []
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []

    def add(self, item) -> None:
        with self._lock:
            self._items.append(item)
            waiters = list(self._waiters)
        for loop, event in waiters:
            try:
                loop.call_soon_threadsafe(event.set)
            except RuntimeError:  # that loop is closed; its waiter is gone with it
                pass

    def matching(self, pred: Callable) -> list:
        with self._lock:
            return [i for i in self._items if pred(i)]

    async def wait_for(self, pred: Callable, timeout: float, what: str):
        """The first recorded item matching `pred`, waiting up to `timeout` seconds for one to arrive."""
        loop = asyncio.get_running_loop()
        event = asyncio.Event()
        waiter = (loop, event)
        with self._lock:
            self._waiters.append(waiter)
        try:
            deadline = loop.time() + timeout
            while True:
                # Clear before scanning: an item added after the scan sets the event again.
                event.clear()
                found = self.matching(pred)
                if found:
                    return found[0]
                remaining = deadline - loop.time()
                if remaining <= 0:
                    raise ScenarioFailure(f"timed out after {timeout:g}s waiting for {what}")
                try:
                    await asyncio.wait_for(event.wait(), remaining)
                except TimeoutError:
                    pass
        finally:
            with self._lock:
                self._waiters.remove(waiter)


@dataclass
class TokenRequest:
    """One POST to the token endpoint and the verdict on its assertion (`error` is None when accepted)."""

    form: dict[str, str]
    error: str | None
    access_token: str | None


@dataclass
class SendRequest:
    """One request to the FCM send path, as received."""

    method: str
    path: str
    authorization: str
    raw: str
    body: dict | None
    authorized: bool
    at: float = field(default_factory=time.monotonic)

    @property
    def message(self) -> dict:
        msg = (self.body or {}).get("message")
        return msg if isinstance(msg, dict) else {}


@dataclass(frozen=True)
class PushSetup:
    """What the push scenarios get from a target with a built-in relay: its API and the FCM stand-in it sends to."""

    relay_url: str
    fcm: FcmStandIn
    # Where a XEP-0357 app server may attach as a component (capability PUSH_COMPONENT), if the target has one.
    component: ComponentSetup | None = None
    # The relay's XEP-0357 push service (app server) domain, when the target serves one.
    app_server_jid: str | None = None


class FcmStandIn:
    """The stand-in server and the service account it trusts. `start()` binds 127.0.0.1:0 and writes the
    service-account file; `stop()` shuts the thread down."""

    def __init__(self, directory: Path, project_id: str = "herald-conformance") -> None:
        self.project_id = project_id
        self.client_email = f"firebase-adminsdk@{project_id}.iam.gserviceaccount.com"
        self.service_account_file = directory / "fcm-service-account.json"
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self._public = self._key.public_key()
        self.tokens = Recorder()
        self.sends = Recorder()
        self._issued: set[str] = set()
        self._issued_lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def token_url(self) -> str:
        return self.base_url + TOKEN_PATH

    @property
    def send_path(self) -> str:
        return f"/v1/projects/{self.project_id}/messages:send"

    def start(self) -> None:
        handler = type("FcmHandler", (_Handler,), {"standin": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="fcm-stand-in", daemon=True)
        self._thread.start()
        pem = self._key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()
        account = {
            "type": "service_account",
            "project_id": self.project_id,
            "private_key_id": secrets.token_hex(20),
            "private_key": pem,
            "client_email": self.client_email,
            "client_id": str(secrets.randbelow(10**20)),
            "auth_uri": self.base_url + "/o/oauth2/auth",
            "token_uri": self.token_url,
        }
        self.service_account_file.write_text(json.dumps(account, indent=2) + "\n")

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    # Called from the server thread.
    def exchange(self, form: dict[str, str]) -> TokenRequest:
        error = self.check_assertion(form)
        token = None
        if error is None:
            token = "ya29.standin-" + secrets.token_urlsafe(24)
            with self._issued_lock:
                self._issued.add(token)
        request = TokenRequest(form=form, error=error, access_token=token)
        self.tokens.add(request)
        return request

    def is_issued(self, token: str) -> bool:
        with self._issued_lock:
            return token in self._issued

    def check_assertion(self, form: dict[str, str]) -> str | None:
        """Why the grant is refused (RFC 7523 section 3 and Google's service-account rules), or None."""
        if form.get("grant_type") != JWT_BEARER:
            return f"grant_type is {form.get('grant_type')!r}"
        parts = form.get("assertion", "").split(".")
        if len(parts) != 3:
            return "assertion is not a compact JWS (three dot-separated parts)"
        try:
            header = json.loads(_b64url_decode(parts[0]))
            claims = json.loads(_b64url_decode(parts[1]))
            signature = _b64url_decode(parts[2])
        except ValueError as err:
            return f"assertion does not decode: {err}"
        if not isinstance(header, dict) or header.get("alg") != "RS256":
            return f"JWT header alg is not RS256: {header!r}"
        try:
            self._public.verify(signature, f"{parts[0]}.{parts[1]}".encode(), padding.PKCS1v15(), hashes.SHA256())
        except InvalidSignature:
            return "JWT signature does not verify with the service account's key"
        if not isinstance(claims, dict):
            return "JWT claims are not an object"
        if claims.get("iss") != self.client_email:
            return f"JWT iss is {claims.get('iss')!r}, not the service account's client_email"
        if claims.get("aud") != self.token_url:
            return f"JWT aud is {claims.get('aud')!r}, not the token URL {self.token_url}"
        if FCM_SCOPE not in str(claims.get("scope", "")).split():
            return f"JWT scope {claims.get('scope')!r} lacks {FCM_SCOPE}"
        iat, exp, now = claims.get("iat"), claims.get("exp"), time.time()
        if not isinstance(iat, int) or not isinstance(exp, int):
            return "JWT iat/exp are not integers"
        if iat > now + CLOCK_SKEW or exp < now - CLOCK_SKEW or exp - iat > MAX_ASSERTION_LIFETIME:
            return f"JWT iat {iat} / exp {exp} out of range (now {int(now)}, at most {MAX_ASSERTION_LIFETIME}s)"
        return None


class _Handler(BaseHTTPRequestHandler):
    standin: FcmStandIn

    def log_message(self, format: str, *args) -> None:
        pass  # quiet: the scenarios report what matters

    def _answer(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=UTF-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def do_POST(self) -> None:
        raw = self._body()
        if self.path == TOKEN_PATH:
            form = dict(urllib.parse.parse_qsl(raw.decode(errors="replace")))
            request = self.standin.exchange(form)
            if request.error is not None:
                self._answer(400, {"error": "invalid_grant", "error_description": request.error})
            else:
                self._answer(200, {"access_token": request.access_token, "expires_in": 3600, "token_type": "Bearer"})
            return
        self._record_send("POST", raw)

    def do_GET(self) -> None:
        self._record_send("GET", self._body())

    def do_PUT(self) -> None:
        self._record_send("PUT", self._body())

    def _record_send(self, method: str, raw: bytes) -> None:
        """Every non-token request is recorded (so a wrong path or method shows up in a failure reason)."""
        auth = self.headers.get("Authorization", "")
        bearer = auth[len("Bearer ") :] if auth.startswith("Bearer ") else ""
        authorized = bool(bearer) and self.standin.is_issued(bearer)
        text = raw.decode(errors="replace")
        try:
            body = json.loads(text) if text else None
        except ValueError:
            body = None
        self.standin.sends.add(
            SendRequest(
                method=method,
                path=self.path,
                authorization=auth,
                raw=text,
                body=body if isinstance(body, dict) else None,
                authorized=authorized,
            )
        )
        if method != "POST" or self.path != self.standin.send_path:
            self._answer(404, {"error": {"code": 404, "message": "not found", "status": "NOT_FOUND"}})
        elif not authorized:
            self._answer(401, {"error": {"code": 401, "message": "bad bearer", "status": "UNAUTHENTICATED"}})
        elif body is None or not isinstance(body.get("message"), dict):
            self._answer(400, {"error": {"code": 400, "message": "no message", "status": "INVALID_ARGUMENT"}})
        else:
            name = f"projects/{self.standin.project_id}/messages/{secrets.randbelow(10**16)}"
            self._answer(200, {"name": name})
