pidfile = "/tmp/herald-bench.RoJquV/prosody/prosody.pid"
daemonize = false
data_path = "/tmp/herald-bench.RoJquV/prosody/data"
plugin_paths = {}
admins = {}
log = { warn = "/tmp/herald-bench.RoJquV/prosody/prosody.log" }
-- "pep": XEP-0163 with its XEP-0115 caps handling (Debian's own prosody.cfg.lua enables it too); the pep
-- phase publishes to it, and a server without it answers the publish with an error.
modules_enabled = { "roster", "saslauth", "tls", "disco", "register", "offline", "smacks", "ping", "presence", "message", "iq", "mam", "pep" }
modules_disabled = { "s2s" }
c2s_ports = { 15822 }
c2s_direct_tls_ports = { 15823 }
c2s_interfaces = { "127.0.0.1" }
s2s_ports = {}
http_ports = {}
https_ports = {}
c2s_require_encryption = true
-- Same accept backlog as the others (Herald: tokio default 1024; ejabberd: set below).
network_settings = { tcp_backlog = 1024 }
allow_registration = true
-- Registration throttles off: the benchmark registers thousands of accounts from loopback.
min_seconds_between_registrations = 0
registration_throttle_max = 100000000
authentication = "internal_hashed"
-- Same SCRAM iteration count as Herald and ejabberd (Prosody 0.12 defaults to 10000).
default_iteration_count = 4096
-- Prosody's default storage (Debian's prosody.cfg.lua leaves storage = "sql" commented out): flat files,
-- archives included (mod_mam over the internal archive store).
storage = "internal"
-- XEP-0313 like Herald, which archives every chat message: mod_mam archives by default
-- (default_archive_policy = true); the default expiry (1 week) would run mod_mam's cleanup.
archive_expires_after = "never"
-- The internal store keeps at most 10,000 messages per archive by default and truncates the oldest
-- beyond: raised so the archive phase queries the same archive on every server.
storage_archive_item_limit = 1000000
certificates = "/tmp/herald-bench.RoJquV/prosody/certs"
ssl = { certificate = "/tmp/herald-bench.RoJquV/cert.pem", key = "/tmp/herald-bench.RoJquV/key.pem" }
VirtualHost "localhost"
