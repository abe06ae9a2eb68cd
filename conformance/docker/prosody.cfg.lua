-- Prosody 0.12 as a live federation peer (docker-compose.yml, profile `conformance`; prosody.Dockerfile):
-- domain prosody.test, federating with herald.test and ejabberd.test by Server Dialback (XEP-0220) over TLS with
-- a self-signed certificate made on first start (s2s_secure_auth off: the peers' certificates are self-signed
-- too), and XEP-0357 push with mod_cloud_notify from prosody-modules. Accounts: in-band registration is open (a
-- throwaway test peer on the compose network), or
--   docker-compose --profile conformance exec prosody prosodyctl register alice prosody.test PASSWORD
pidfile = "/var/lib/prosody/prosody.pid"
log = { info = "*console" }
interfaces = { "0.0.0.0" }
c2s_ports = { 5222 }
s2s_ports = { 5269 }
http_ports = { }
https_ports = { }
modules_enabled = {
	"roster"; "saslauth"; "tls"; "dialback"; "disco"; "ping"; "time"; "version"; "uptime";
	"register"; "vcard"; "blocklist"; "offline"; "carbons"; "mam"; "pep"; "private"; "bookmarks";
	"csi_simple"; "smacks";
	"cloud_notify"; -- XEP-0357, prosody-modules
}
allow_registration = true
authentication = "internal_hashed"
storage = "internal"
c2s_require_encryption = true
s2s_require_encryption = true
s2s_secure_auth = false
ssl = { key = "/var/lib/prosody/prosody.test.key"; certificate = "/var/lib/prosody/prosody.test.crt" }
VirtualHost "prosody.test"
