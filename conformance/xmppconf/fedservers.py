"""Servers of a federation run: Herald, Prosody and ejabberd, each serving one domain on its own loopback address
with generated configuration, a certificate from the run's PKI, and the run's DNS stub as resolver. Two modes:
`external` (every server trusts the run's CA: XEP-0178 SASL EXTERNAL) and `dialback` (certificates from a CA
nobody trusts, so peers must fall back to XEP-0220 Server Dialback). Each server also reads its own log for how
its s2s streams were authenticated, so a run reports the method actually used.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from . import ejabberd
from .client import Endpoint
from .fcm import FcmStandIn, PushSetup
from .pki import CertificateAuthority
from .scenario import PUSH_RELAY
from .targets import TargetError, _run, _tail, free_ports, stop_process_group

EXTERNAL = "external"
DIALBACK = "dialback"
MODES = (EXTERNAL, DIALBACK)

C2S_PORT = 5222
DIRECT_TLS_PORT = 5223
# Not 5269, so a peer that ignores the SRV record (RFC 6120 section 3.2.1) cannot reach the server.
S2S_PORT = 5299
START_TIMEOUT = 60.0
# Short, so the queue scenarios see the bounce within a scenario's timeout.
QUEUE_TIMEOUT_SECONDS = 12

# Capabilities beyond XMPP a federation scenario may need on one side.
S2S_QUEUE = "s2s-queue"  # stanzas to an unreachable peer wait in a durable queue (Herald's [s2s])
CLOUD_NOTIFY = "cloud-notify"  # the server publishes XEP-0357 push notifications (Prosody's mod_cloud_notify)
PEP = "pep"  # every account is a XEP-0163 service (Herald's features/pep, Prosody's mod_pep)


@dataclass(frozen=True)
class RunPki:
    """The run's trusted CA (given to every server in `external` mode) and an untrusted one (`dialback` mode)."""

    trusted: CertificateAuthority
    untrusted: CertificateAuthority


def port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


class FedServer:
    """One domain on one loopback address; `start()`/`stop()` may be called again (the fault scenarios)."""

    kind = "server"
    capabilities: frozenset[str] = frozenset()

    def __init__(self, run_dir: Path, address: str, mode: str, pki: RunPki, dns: str) -> None:
        # Not .test: libunbound (Prosody) answers NXDOMAIN for test. itself (a default local zone, RFC 6761).
        self.domain = f"{self.kind}.fed.example"
        self.address = address
        self.mode = mode
        self.dns = dns
        self.dir = run_dir / self.kind
        self.dir.mkdir()
        self.dir.chmod(0o755)
        self.ca = pki.trusted
        issuer = pki.trusted if mode == EXTERNAL else pki.untrusted
        self.cert = issuer.issue(self.domain, self.extra_names())
        self.log = self.dir / "server.log"
        self.proc: subprocess.Popen | None = None
        self.peers: list[FedServer] = []

    @property
    def endpoint(self) -> Endpoint:
        return Endpoint(self.domain, self.address, C2S_PORT, DIRECT_TLS_PORT)

    @property
    def push(self) -> PushSetup | None:
        return None

    def extra_names(self) -> tuple[str, ...]:
        """Further domains the certificate must name (Herald: its push service)."""
        return ()

    def extra_domains(self) -> tuple[str, ...]:
        """Further domains served on this address (DNS names pointing here)."""
        return ()

    # Subclasses.
    def configure(self, peers: list[FedServer]) -> None:
        raise NotImplementedError

    def create_accounts(self, users: list[str], password: str) -> None:
        raise NotImplementedError

    async def create_accounts_inband(self, users: list[str], password: str) -> None:
        """Accounts a server can only make over XMPP (XEP-0077), after start."""

    def command(self) -> list[str]:
        raise NotImplementedError

    def env(self) -> dict[str, str]:
        return dict(os.environ)

    def auth_methods(self, peer: str) -> dict[str, set[str]]:
        """From this server's log: {"in": methods the peer authenticated with to us, "out": methods we used}."""
        return {"in": set(), "out": set()}

    def start(self) -> None:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                self.command(),
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env(),
                cwd=self.dir,
                start_new_session=True,
            )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise TargetError(f"{self.kind} exited with {self.proc.returncode}:\n{self.log_tail()}")
            if port_open(self.address, C2S_PORT) and port_open(self.address, S2S_PORT):
                return
            time.sleep(0.2)  # polling ports that have no readiness event
        raise TargetError(f"{self.kind} did not listen on {self.address}:{C2S_PORT} within {START_TIMEOUT:g}s")

    def stop(self) -> None:
        if self.proc is not None:
            stop_process_group(self.proc)
        self.proc = None

    def cleanup(self) -> None:
        pass

    def log_tail(self, lines: int = 30) -> str:
        return _tail(self.log, lines)


class FedHerald(FedServer):
    """Herald with `[s2s]` (the federation contract): SRV lookups through the stub (`nameserver`), the run's CA
    in `ca_files` (external), or the peers listed with allow_dialback_without_certificate (dialback); its relay
    with the FCM stand-in and `pubsub_jid` push.<domain>, the XEP-0357 push service remote servers publish to."""

    kind = "herald"
    capabilities = frozenset({PUSH_RELAY, S2S_QUEUE, PEP})

    def __init__(
        self, run_dir: Path, address: str, mode: str, pki: RunPki, dns: str, binary: str, static_peers: bool = False
    ) -> None:
        super().__init__(run_dir, address, mode, pki, dns)
        # Also list each peer's address in [[s2s.peers]] (skipping DNS), to tell DNS problems from the rest.
        self.static_peers = static_peers
        self.binary = str(Path(binary).resolve())
        self.config = self.dir / "herald.toml"
        self.fcm = FcmStandIn(self.dir)
        (self.relay_port,) = free_ports(1)
        self.push_domain = f"push.{self.domain}"

    def extra_names(self) -> tuple[str, ...]:
        return (f"push.{self.kind}.fed.example",)

    def extra_domains(self) -> tuple[str, ...]:
        return (self.push_domain,)

    @property
    def push(self) -> PushSetup:
        return PushSetup(relay_url=f"http://127.0.0.1:{self.relay_port}", fcm=self.fcm, app_server_jid=self.push_domain)

    def configure(self, peers: list[FedServer]) -> None:
        if not os.access(self.binary, os.X_OK):
            raise TargetError(f"herald binary {self.binary} is not executable")
        data = self.dir / "data"
        data.mkdir()
        try:
            self.fcm.start()
        except OSError as err:
            raise TargetError(f"starting the FCM stand-in: {err}") from err
        lines = [
            "[server]",
            f'domains = ["{self.domain}"]',
            f'data_dir = "{data}"',
            "[storage]",
            f'url = "sqlite://{self.dir}/herald.db"',
            "[c2s]",
            f'listen = "{self.address}:{C2S_PORT}"',
            f'direct_tls_listen = "{self.address}:{DIRECT_TLS_PORT}"',
            "require_tls = true",
            "[registration]",
            "allow_in_band = true",
            "[relay]",
            "enabled = true",
            f'listen = "127.0.0.1:{self.relay_port}"',
            f'public_url = "{self.push.relay_url}"',
            f'pubsub_jid = "{self.push_domain}"',
            "[relay.fcm]",
            f'service_account_file = "{self.fcm.service_account_file}"',
            f'project_id = "{self.fcm.project_id}"',
            f'base_url = "{self.fcm.base_url}"',
            f'token_url = "{self.fcm.token_url}"',
            # The peers' users may register devices with the push service (their servers then publish
            # to it over s2s).
            "[relay.push_service]",
            "remote_domains = [{}]".format(", ".join(f'"{peer.domain}"' for peer in peers)),
            "[s2s]",
            f'listen = "{self.address}:{S2S_PORT}"',
            f'nameserver = "{self.dns}:53"',
            f"queue_timeout_seconds = {QUEUE_TIMEOUT_SECONDS}",
        ]
        if self.mode == EXTERNAL:
            lines.append(f'ca_files = ["{self.ca.path}"]')
        for peer in peers:
            entry = []
            if self.mode == DIALBACK:
                entry.append("allow_dialback_without_certificate = true")
            if self.static_peers:
                entry.append(f'address = "{peer.address}:{S2S_PORT}"')
            if entry:
                lines += ["[[s2s.peers]]", f'domain = "{peer.domain}"', *entry]
        lines += [
            "[[tls.certificates]]",
            f'domain = "{self.domain}"',
            f'cert = "{self.cert.cert}"',
            f'key = "{self.cert.key}"',
            "",
        ]
        self.config.write_text("\n".join(lines))
        _run([self.binary, "--config", str(self.config), "check-config"], "herald check-config", cwd=self.dir)

    def create_accounts(self, users: list[str], password: str) -> None:
        for user in users:
            _run(
                [
                    self.binary,
                    "--config",
                    str(self.config),
                    "user",
                    "add",
                    f"{user}@{self.domain}",
                    "--password",
                    password,
                ],
                f"herald user add {user}",
                cwd=self.dir,
                env=self.env(),
            )

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.setdefault("RUST_LOG", "info,herald::s2s=debug")
        env.setdefault("NO_COLOR", "1")
        return env

    def command(self) -> list[str]:
        return [self.binary, "--config", str(self.config), "serve"]

    def auth_methods(self, peer: str) -> dict[str, set[str]]:
        """Herald's tracing lines: `s2s inbound authenticated with SASL EXTERNAL ... remote=<peer>` (or `...
        with dialback`) and `s2s outbound stream ready ... remote="<peer>" method=external|dialback`."""
        found: dict[str, set[str]] = {"in": set(), "out": set()}
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return found
        inbound = re.compile(
            r"s2s (inbound|outbound)\b.*?authenticated (?:with|by|using) (SASL EXTERNAL|EXTERNAL|dialback)"
        )
        outbound = re.compile(r"s2s outbound stream ready\b.*?\bmethod=\"?(external|dialback)\b")
        for line in text.splitlines():
            if not re.search(rf"\bremote=\"?{re.escape(peer)}\b", line):
                continue
            m = inbound.search(line)
            if m is not None:
                method = DIALBACK if m.group(2) == "dialback" else EXTERNAL
                found["in" if m.group(1) == "inbound" else "out"].add(method)
                continue
            m = outbound.search(line)
            if m is not None:
                found["out"].add(DIALBACK if m.group(1) == "dialback" else EXTERNAL)
        return found

    def cleanup(self) -> None:
        self.fcm.stop()


class FedProsody(FedServer):
    """Prosody 0.12 (Debian): dialback and s2s modules, mod_pep, mod_cloud_notify (prosody-modules) for XEP-0357, DNS through
    its libunbound resolver pointed at the stub; s2s_secure_auth on with the run's CA as cafile (external), off
    with the system store, which does not know the untrusted CA (dialback)."""

    kind = "prosody"
    capabilities = frozenset({CLOUD_NOTIFY, PEP})
    MODULES = (
        "roster",
        "saslauth",
        "tls",
        "disco",
        "ping",
        "offline",
        "presence",
        "message",
        "iq",
        "dialback",
        "cloud_notify",
        "pep",
    )

    def configure(self, peers: list[FedServer]) -> None:
        if shutil.which("prosody") is None:
            raise TargetError("prosody is not installed (apt-get install prosody prosody-modules)")
        (self.dir / "data").mkdir()
        (self.dir / "resolv.conf").write_text(f"nameserver {self.dns}\n")
        (self.dir / "hosts").write_text("")
        self.config = self.dir / "prosody.cfg.lua"
        modules = ", ".join(f'"{m}"' for m in self.MODULES)
        secure = "true" if self.mode == EXTERNAL else "false"
        cafile = f'cafile = "{self.ca.path}", ' if self.mode == EXTERNAL else ""
        self.config.write_text(
            f"""-- generated by conformance/run.py --federation
run_as_root = true
daemonize = false
pidfile = "{self.dir}/prosody.pid"
data_path = "{self.dir}/data"
log = {{ debug = "{self.dir}/prosody-debug.log", info = "*stdout" }}
interfaces = {{ "{self.address}" }}
local_interfaces = {{ "{self.address}" }}
c2s_ports = {{ {C2S_PORT} }}
c2s_direct_tls_ports = {{ {DIRECT_TLS_PORT} }}
s2s_ports = {{ {S2S_PORT} }}
http_ports = {{ }}
https_ports = {{ }}
admin_socket = "{self.dir}/admin.sock"
modules_enabled = {{ {modules} }}
authentication = "internal_plain"
storage = "internal"
c2s_require_encryption = true
s2s_require_encryption = true
s2s_secure_auth = {secure}
unbound = {{ resolvconf = "{self.dir}/resolv.conf", hoststxt = "{self.dir}/hosts" }}
ssl = {{ {cafile}key = "{self.cert.key}", certificate = "{self.cert.cert}" }}
VirtualHost "{self.domain}"
"""
        )

    def create_accounts(self, users: list[str], password: str) -> None:
        for user in users:
            _run(
                ["prosodyctl", "--config", str(self.config), "register", user, self.domain, password],
                f"prosodyctl register {user}",
            )

    def command(self) -> list[str]:
        return ["prosody", "--config", str(self.config), "-F"]

    def auth_methods(self, peer: str) -> dict[str, set[str]]:
        found: dict[str, set[str]] = {"in": set(), "out": set()}
        try:
            text = (self.dir / "prosody-debug.log").read_text(errors="replace")
        except OSError:
            return found
        for line in text.splitlines():
            if f"Accepting SASL EXTERNAL identity from {peer}" in line:
                found["in"].add(EXTERNAL)
            elif f"SASL EXTERNAL with {peer} succeeded" in line:
                found["out"].add(EXTERNAL)
            elif re.search(rf"asking {re.escape(peer)} if key \S+ belongs to them", line):
                found["in"].add(DIALBACK)
            elif "s2sout" in line and "sent dialback key on outgoing s2s stream" in line:
                found["out"].add(DIALBACK)
        return found


class FedEjabberd(FedServer):
    """ejabberd 23.01 (Debian), run in the foreground as the ejabberd user with its own config, spool and log dirs
    and node name; Erlang's resolver reads inetrc (ejabberdctl sets ERL_INETRC to the config dir's), which names
    only the stub. STARTTLS required on s2s, mod_s2s_dialback and PEP (mod_pubsub, mod_caps) loaded; the run's CA as ca_file (external), or the
    system store (dialback). Accounts are registered in-band (XEP-0077): one ejabberdctl call per account would
    start an Erlang node each."""

    kind = "ejabberd"
    capabilities = frozenset({PEP})  # mod_pubsub with the pep plugin, mod_caps

    def configure(self, peers: list[FedServer]) -> None:
        try:
            self.node = ejabberd.prepare(self.dir)
        except ejabberd.EjabberdError as err:
            raise TargetError(str(err)) from err
        octets = ",".join(self.dns.split("."))
        (self.dir / "inetrc").write_text(
            # resolv_conf "" clears the name servers, so it comes before the stub's.
            f'{{resolv_conf, ""}}.\n{{hosts_file, ""}}.\n{{nameserver, {{{octets}}}, 53}}.\n{{lookup, [dns]}}.\n'
        )
        (self.dir / "resolv.conf").write_text(f"nameserver {self.dns}\n")
        cafile = f'ca_file: "{self.ca.path}"\n' if self.mode == EXTERNAL else ""
        self.config = self.dir / "ejabberd.yml"
        self.config.write_text(
            f"""# generated by conformance/run.py --federation
hosts: ["{self.domain}"]
loglevel: info
certfiles: ["{self.cert.combined}"]
{cafile}listen:
  - {{port: {C2S_PORT}, ip: "{self.address}", module: ejabberd_c2s, starttls_required: true}}
  - {{port: {DIRECT_TLS_PORT}, ip: "{self.address}", module: ejabberd_c2s, tls: true}}
  - {{port: {S2S_PORT}, ip: "{self.address}", module: ejabberd_s2s_in}}
s2s_use_starttls: required
s2s_access: all
outgoing_s2s_families: [ipv4]
s2s_dns_timeout: 5
s2s_max_retry_delay: 2
auth_method: internal
registration_timeout: infinity
acl:
  local: {{user_regexp: ""}}
access_rules:
  local: {{allow: local}}
  register: {{allow: all}}
  pubsub_createnode: {{allow: local}}
modules:
  mod_caps: {{}}
  mod_disco: {{}}
  mod_offline: {{}}
  mod_ping: {{}}
  mod_pubsub:
    access_createnode: pubsub_createnode
    plugins: ["flat", "pep"]
  mod_register: {{access: register, ip_access: all}}
  mod_roster: {{}}
  mod_s2s_dialback: {{}}
"""
        )
        ejabberd.hand_over(self.dir)

    def create_accounts(self, users: list[str], password: str) -> None:
        pass  # in-band after start, see create_accounts_inband

    async def create_accounts_inband(self, users: list[str], password: str) -> None:
        try:
            await ejabberd.register_inband(self.endpoint, users, password)
        except ejabberd.EjabberdError as err:
            raise TargetError(str(err)) from err

    def command(self) -> list[str]:
        # ejabberd's SRV lookups use Erlang's resolver (inetrc), but its address lookups go through libc's
        # getaddrinfo (p1_xmpp's xmpp_stream_out:a_lookup), which reads /etc/resolv.conf only: so ejabberd runs
        # in a mount namespace of its own where /etc/resolv.conf names the stub. Nothing outside it changes.
        resolv = self.dir / "resolv.conf"
        return [
            "unshare", "--mount", "--propagation", "private", "sh", "-c",
            f'mount --bind "{resolv}" /etc/resolv.conf && exec "$@"', "ejabberd-ns",
            *ejabberd.command(self.dir, self.config, self.node),
        ]  # fmt: skip

    def log_tail(self, lines: int = 30) -> str:
        return _tail(self.log, lines) + "\n" + _tail(ejabberd.log_file(self.dir), lines)

    def auth_methods(self, peer: str) -> dict[str, set[str]]:
        found: dict[str, set[str]] = {"in": set(), "out": set()}
        try:
            text = ejabberd.log_file(self.dir).read_text(errors="replace")
        except OSError:
            return found
        # ejabberd_s2s_in / ejabberd_s2s_out: "Accepted inbound s2s EXTERNAL authentication a -> b (ip)".
        for m in re.finditer(r"Accepted (inbound|outbound) s2s (\S+) authentication (\S+) -> (\S+)", text):
            direction, mech, src, dst = m.groups()
            method = EXTERNAL if mech.upper() == "EXTERNAL" else DIALBACK if mech.lower() == "dialback" else mech
            if direction == "inbound" and src == peer:
                found["in"].add(method)
            elif direction == "outbound" and dst == peer:
                found["out"].add(method)
        return found
