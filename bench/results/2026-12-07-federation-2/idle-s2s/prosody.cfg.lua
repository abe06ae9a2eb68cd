pidfile = "/tmp/idle/prosody.pid"
data_path = "/tmp/idle/pdata"
run_as_root = true
daemonize = false
log = { info = "/tmp/idle/prosody.log" }
interfaces = { "127.0.0.1" }
c2s_ports = { 25322 }
s2s_ports = { 25369 }
modules_enabled = { "roster", "saslauth", "tls", "disco", "dialback" }
s2s_secure_auth = true
s2s_require_encryption = true
ssl = { key = "/tmp/idle/a.idle.test.key", certificate = "/tmp/idle/a.idle.test.pem", cafile = "/tmp/idle/ca.pem" }
VirtualHost "a.idle.test"
