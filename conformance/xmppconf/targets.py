"""Servers under test: a freshly configured Herald (SQLite or PostgreSQL) or Prosody, each in its own temp dir,
listening on free ports, with the scenarios' accounts created before start and the process stopped after.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from . import ejabberd
from .client import Endpoint
from .fcm import FcmStandIn, PushSetup
from .pg import Database
from .pki import CertificateAuthority
from .pushservice import ComponentSetup
from .scenario import BOOKMARKS_COMPAT, PUSH_COMPONENT, PUSH_RELAY, TLS13_CHANNEL_BINDING, TLS_UNIQUE

DOMAIN = "localhost"
HOST = "127.0.0.1"
START_TIMEOUT = 60.0


class TargetError(Exception):
    """The server under test could not be prepared or started; every scenario fails with this reason."""


def free_ports(count: int) -> list[int]:
    """Ports the kernel picks for port-0 binds, all held open at once so they are distinct."""
    socks = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((HOST, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _run(cmd: list[str], what: str, **kwargs) -> None:
    try:
        done = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=120, **kwargs)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise TargetError(f"{what}: {err}") from err
    if done.returncode != 0:
        raise TargetError(f"{what}: exit {done.returncode}: {(done.stderr or done.stdout).strip()[-400:]}")


def stop_process_group(proc: subprocess.Popen) -> None:
    """SIGTERM to the process group `proc` was started in (start_new_session; ejabberd's beam runs under a
    wrapper shell that exits first), then wait until no process of the group is left; SIGKILL after 20 s."""
    group = proc.pid
    try:
        os.killpg(group, signal.SIGTERM)
    except ProcessLookupError:
        pass
    started, killed = time.monotonic(), False
    while _group_alive(proc, group):
        waited = time.monotonic() - started
        if waited > 20 and not killed:
            os.killpg(group, signal.SIGKILL)
            killed = True
        elif waited > 30:
            break  # only unreaped zombies can be left (a container whose init does not reap)
        time.sleep(0.1)  # a process group has no exit event to wait on
    proc.wait(timeout=10)


def _group_alive(proc: subprocess.Popen, group: int) -> bool:
    proc.poll()  # reaps the leader, so it does not linger as a zombie in the group
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    return True


class Target:
    """Common lifecycle: prepare (config, accounts), start, wait for the c2s port, stop, clean up."""

    label = "server"
    # What the target offers beyond XMPP (see Scenario.requires); scenarios needing more are not applicable.
    capabilities: frozenset[str] = frozenset()

    def __init__(self, keep: bool = False) -> None:
        self.keep = keep
        self.dir = Path(tempfile.mkdtemp(prefix=f"conf-{self.label.replace('/', '-')}-"))
        self.c2s_port, self.direct_tls_port, self.s2s_port, self.spare_port = free_ports(4)
        self.log = self.dir / "server.log"
        self.proc: subprocess.Popen | None = None

    @property
    def endpoint(self) -> Endpoint:
        return Endpoint(DOMAIN, HOST, self.c2s_port, self.direct_tls_port)

    @property
    def push(self) -> PushSetup | None:
        """The hosted push relay and the FCM stand-in it sends to, when the target has one."""
        return None

    # Subclasses: configure(), add_user(), command(), env().
    def configure(self) -> None:
        raise NotImplementedError

    def add_user(self, user: str, password: str) -> None:
        raise NotImplementedError

    def command(self) -> list[str]:
        raise NotImplementedError

    def env(self) -> dict[str, str]:
        return dict(os.environ)

    def start(self, accounts: list[str], password: str) -> None:
        self.configure()
        for user in accounts:
            self.add_user(user, password)
        self.launch()

    def launch(self) -> None:
        """Starts the configured server and waits until its c2s port accepts."""
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                self.command(),
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env(),
                cwd=self.dir,
                start_new_session=True,
            )
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise TargetError(f"{self.label} exited with {self.proc.returncode}:\n{_tail(self.log)}")
            try:
                with socket.create_connection((HOST, self.c2s_port), timeout=1):
                    return
            except OSError:
                time.sleep(0.2)  # polling a port that has no readiness event
        raise TargetError(f"{self.label} did not accept on port {self.c2s_port} within {START_TIMEOUT:g}s")

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 10 s. Only the process this target started is signalled."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)

    def cleanup(self) -> None:
        if not self.keep:
            shutil.rmtree(self.dir, ignore_errors=True)

    def log_tail(self, lines: int = 40) -> str:
        return _tail(self.log, lines)


class Herald(Target):
    """Herald per CONTRACT.md: `herald --config F user add JID --password PW`, `herald --config F serve`.

    Its built-in push relay is enabled on the spare port (plain HTTP on loopback), with FCM pointed at a
    stand-in (conformance/xmppconf/fcm.py) started with the target and stopped at cleanup.
    """

    # -PLUS on TLS 1.3 with tls-exporter and tls-server-end-point (server/src/net/channel_binding.rs).
    capabilities = frozenset({PUSH_RELAY, PUSH_COMPONENT, BOOKMARKS_COMPAT, TLS13_CHANNEL_BINDING})

    def __init__(self, binary: str, db: str, keep: bool = False) -> None:
        self.label = f"herald/{db}"
        super().__init__(keep)
        self.binary = str(Path(binary).resolve())
        self.db_kind = db
        self.database = Database() if db == "postgres" else None
        self.config = self.dir / "herald.toml"
        self.relay_port = self.spare_port
        self.fcm = FcmStandIn(self.dir)
        # A XEP-0357 app server attaches here as a XEP-0114 component (scenarios/push_notifications.py).
        (self.component_port,) = free_ports(1)
        self.component = ComponentSetup(HOST, self.component_port, f"push.{DOMAIN}", secrets.token_hex(16))

    @property
    def push(self) -> PushSetup:
        return PushSetup(
            relay_url=f"http://{HOST}:{self.relay_port}",
            fcm=self.fcm,
            component=self.component,
            app_server_jid=f"appserver.{DOMAIN}",
        )

    def configure(self) -> None:
        if not os.access(self.binary, os.X_OK):
            raise TargetError(f"herald binary {self.binary} is not executable")
        if self.database is not None:
            try:
                self.database.create()
            except (OSError, subprocess.SubprocessError) as err:
                raise TargetError(f"creating PostgreSQL database {self.database.name}: {err}") from err
            url = self.database.url
        else:
            url = f"sqlite://{self.dir}/herald.db"
        data = self.dir / "data"
        data.mkdir()
        try:
            self.fcm.start()
        except OSError as err:
            raise TargetError(f"starting the FCM stand-in: {err}") from err
        relay_url = self.push.relay_url
        component_secret = self.dir / "push-component.secret"
        component_secret.write_text(self.component.secret)
        self.config.write_text(
            "\n".join(
                [
                    "[server]",
                    f'domains = ["{DOMAIN}"]',
                    f'data_dir = "{data}"',
                    "[storage]",
                    f'url = "{url}"',
                    "[c2s]",
                    f'listen = "{HOST}:{self.c2s_port}"',
                    f'direct_tls_listen = "{HOST}:{self.direct_tls_port}"',
                    "require_tls = true",
                    "[registration]",
                    "allow_in_band = true",
                    "[component]",
                    f'listen = "{HOST}:{self.component_port}"',
                    "[[component.components]]",
                    f'domain = "{self.component.domain}"',
                    f'secret_file = "{component_secret}"',
                    "[relay]",
                    "enabled = true",
                    f'listen = "{HOST}:{self.relay_port}"',
                    f'public_url = "{relay_url}"',
                    f'pubsub_jid = "{self.push.app_server_jid}"',
                    "[relay.fcm]",
                    f'service_account_file = "{self.fcm.service_account_file}"',
                    f'project_id = "{self.fcm.project_id}"',
                    f'base_url = "{self.fcm.base_url}"',
                    f'token_url = "{self.fcm.token_url}"',
                    "",
                ]
            )
        )
        _run([self.binary, "--config", str(self.config), "check-config"], "herald check-config", cwd=self.dir)

    def add_user(self, user: str, password: str) -> None:
        _run(
            [self.binary, "--config", str(self.config), "user", "add", f"{user}@{DOMAIN}", "--password", password],
            f"herald user add {user}",
            cwd=self.dir,
            env=self.env(),
        )

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.setdefault("RUST_LOG", "info")
        env.setdefault("NO_COLOR", "1")  # plain server.log
        return env

    def command(self) -> list[str]:
        return [self.binary, "--config", str(self.config), "serve"]

    def cleanup(self) -> None:
        if self.database is not None:
            try:
                self.database.drop()
            except (OSError, subprocess.SubprocessError):
                pass
        self.fcm.stop()
        super().cleanup()


class Prosody(Target):
    """Prosody (Debian package) as a reference server that proves the scenarios themselves are right."""

    label = "prosody"
    # Prosody 0.12 (mod_saslauth with LuaSec) offers SCRAM -PLUS with tls-unique only, on TLS 1.2: slixmpp can
    # use it, our rustls client (TLS13_CHANNEL_BINDING) cannot.
    MODULES = (
        "roster",
        "saslauth",
        "tls",
        "disco",
        "ping",
        # XEP-0054 with XEP-0398 and XEP-0292: vcard-temp kept in PEP (vCard4, avatars); replaces mod_vcard.
        "vcard_legacy",
        "blocklist",
        "offline",
        "register",
        "mam",
        "carbons",
        # XEP-0198 (mod_smacks from prosody-modules) and XEP-0352 (mod_csi_simple, a 0.12 built-in).
        "smacks",
        "csi_simple",
        # XEP-0357, the user's server side (mod_cloud_notify from prosody-modules).
        "cloud_notify",
        # XEP-0163, XEP-0049, and XEP-0402 with its XEP-0049 compatibility (Prosody 0.12 built-ins).
        "pep",
        "private",
        "bookmarks",
    )
    capabilities = frozenset({PUSH_COMPONENT, BOOKMARKS_COMPAT, TLS_UNIQUE})

    def __init__(self, keep: bool = False, without: tuple[str, ...] = ()) -> None:
        super().__init__(keep)
        self.config = self.dir / "prosody.cfg.lua"
        # A XEP-0357 app server attaches as a XEP-0114 component (scenarios/push_notifications.py); Prosody
        # publishes to it with mod_cloud_notify (prosody-modules).
        (self.component_port,) = free_ports(1)
        self.component = ComponentSetup(HOST, self.component_port, f"push.{DOMAIN}", secrets.token_hex(16))
        # Dropping modules is how the scenarios are shown to fail (with a clear reason) when a feature is absent.
        # modules_disabled too: some (offline) are auto-loaded by Prosody whether enabled or not.
        self.modules = tuple(m for m in self.MODULES if m not in without)
        self.disabled = ("s2s", *without)

    @property
    def push(self) -> PushSetup:
        """Only the component: Prosody has no relay and no FCM stand-in (no PUSH_RELAY)."""
        return PushSetup(relay_url="", fcm=None, component=self.component)  # type: ignore[arg-type]

    def configure(self) -> None:
        if shutil.which("prosody") is None:
            raise TargetError("prosody is not installed (apt-get install prosody)")
        key, crt = self.dir / "localhost.key", self.dir / "localhost.crt"
        _run(
            [
                "openssl",
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "2",
                "-subj",
                f"/CN={DOMAIN}",
                "-addext",
                f"subjectAltName=DNS:{DOMAIN}",
                "-keyout",
                str(key),
                "-out",
                str(crt),
            ],
            "openssl self-signed certificate",
        )
        (self.dir / "data").mkdir()
        modules = ", ".join(f'"{m}"' for m in self.modules)
        disabled = ", ".join(f'"{m}"' for m in self.disabled)
        self.config.write_text(
            f"""-- generated by conformance/run.py
run_as_root = true
daemonize = false
pidfile = "{self.dir}/prosody.pid"
data_path = "{self.dir}/data"
log = {{ debug = "{self.dir}/prosody-debug.log", info = "*stdout" }}
interfaces = {{ "{HOST}" }}
local_interfaces = {{ "{HOST}" }}
c2s_ports = {{ {self.c2s_port} }}
c2s_direct_tls_ports = {{ {self.direct_tls_port} }}
s2s_ports = {{ {self.s2s_port} }}
http_ports = {{ }}
https_ports = {{ }}
admin_socket = "{self.dir}/admin.sock"
modules_enabled = {{ {modules} }}
modules_disabled = {{ {disabled} }}
-- internal_plain: Prosody 0.12 derives SCRAM-SHA-256(-PLUS) only from a plaintext password (internal_hashed
-- stores SHA-1 keys only), and this throwaway server must offer every mechanism the scenarios exercise.
authentication = "internal_plain"
storage = "internal"
allow_registration = {"true" if "register" in self.modules else "false"}
min_seconds_between_registrations = 0
c2s_require_encryption = true
-- mod_csi_simple stays pseudo-active for this many seconds after a flush (default 5), so an inactive client's
-- IQ round trip would let the next presence through; the CSI scenario needs the hold to resume at once.
csi_resume_inactive_delay = 0
ssl = {{ key = "{key}", certificate = "{crt}" }}
component_ports = {{ {self.component_port} }}
component_interfaces = {{ "{HOST}" }}
VirtualHost "{DOMAIN}"
Component "{self.component.domain}"
    component_secret = "{self.component.secret}"
"""
        )

    def add_user(self, user: str, password: str) -> None:
        _run(
            ["prosodyctl", "--config", str(self.config), "register", user, DOMAIN, password],
            f"prosodyctl register {user}",
        )

    def command(self) -> list[str]:
        return ["prosody", "--config", str(self.config), "-F"]


class Ejabberd(Target):
    """ejabberd 23.01 (Debian) as a second reference server, with the modules of the features the scenarios
    check (mod_stream_mgmt, mod_client_state, mod_mam, mod_carboncopy, mod_pubsub with PEP, mod_avatar,
    mod_private, mod_vcard, mod_blocking, mod_push with the app server attached through ejabberd_service, XEP-0114). Accounts are made
    in-band after start (xmppconf/ejabberd.py); the certificate comes from a throwaway CA (xmppconf/pki.py)."""

    label = "ejabberd"
    # ejabberd 23.01 (p1_xmpp) offers SCRAM -PLUS with tls-unique only, like Prosody.
    capabilities = frozenset({PUSH_COMPONENT, TLS_UNIQUE})

    def __init__(self, keep: bool = False) -> None:
        super().__init__(keep)
        self.config = self.dir / "ejabberd.yml"
        (self.component_port,) = free_ports(1)
        self.component = ComponentSetup(HOST, self.component_port, f"push.{DOMAIN}", secrets.token_hex(16))
        self.node = ""

    @property
    def push(self) -> PushSetup:
        # Only the XEP-0357 component is used (PUSH_COMPONENT); ejabberd has no relay and no FCM stand-in.
        return PushSetup(relay_url="", fcm=None, component=self.component)  # type: ignore[arg-type]

    def configure(self) -> None:
        try:
            self.node = ejabberd.prepare(self.dir)
        except ejabberd.EjabberdError as err:
            raise TargetError(str(err)) from err
        try:
            cert = CertificateAuthority(self.dir, "ca").issue(DOMAIN)
        except (OSError, ValueError) as err:
            raise TargetError(f"certificate for {DOMAIN}: {err}") from err
        self.config.write_text(
            f"""# generated by conformance/run.py --server ejabberd
hosts: ["{DOMAIN}"]
loglevel: info
certfiles: ["{cert.combined}"]
listen:
  - {{port: {self.c2s_port}, ip: "{HOST}", module: ejabberd_c2s, starttls_required: true}}
  - {{port: {self.direct_tls_port}, ip: "{HOST}", module: ejabberd_c2s, tls: true}}
  - port: {self.component_port}
    ip: "{HOST}"
    module: ejabberd_service
    hosts: {{"{self.component.domain}": {{password: "{self.component.secret}"}}}}
# plain: every SCRAM variant can then be offered (scram would store one hash only); a throwaway server.
auth_password_format: plain
auth_method: internal
registration_timeout: infinity
acl:
  local: {{user_regexp: ""}}
access_rules:
  local: {{allow: local}}
  register: {{allow: all}}
  pubsub_createnode: {{allow: local}}
modules:
  mod_adhoc: {{}}
  mod_avatar: {{}}
  mod_blocking: {{}}
  mod_caps: {{}}
  mod_carboncopy: {{}}
  mod_client_state: {{}}
  mod_disco: {{}}
  mod_mam: {{default: always}}
  mod_offline: {{}}
  mod_ping: {{}}
  mod_privacy: {{}}
  mod_private: {{}}
  mod_pubsub:
    access_createnode: pubsub_createnode
    plugins: ["flat", "pep"]
  mod_push: {{}}
  mod_register: {{access: register, ip_access: all}}
  mod_roster: {{}}
  mod_stream_mgmt: {{}}
  mod_vcard: {{}}
  mod_vcard_xupdate: {{}}
"""
        )
        ejabberd.hand_over(self.dir)

    def start(self, accounts: list[str], password: str) -> None:
        self.configure()
        self.launch()
        try:
            asyncio.run(ejabberd.register_inband(self.endpoint, accounts, password))
        except ejabberd.EjabberdError as err:
            raise TargetError(str(err)) from err

    def command(self) -> list[str]:
        return ejabberd.command(self.dir, self.config, self.node)

    def stop(self) -> None:
        if self.proc is not None:
            stop_process_group(self.proc)
            self.proc = None

    def log_tail(self, lines: int = 40) -> str:
        return _tail(self.log, lines) + "\n" + _tail(ejabberd.log_file(self.dir), lines)
