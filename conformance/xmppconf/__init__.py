"""Herald conformance harness: third-party client (slixmpp) scenarios run against a freshly started server.

Modules: client (sessions, TLS, SASL pinning, inboxes), scenario (the Scenario type and its runner),
targets (starting Herald or Prosody on free ports), pg (throwaway PostgreSQL databases),
baseline (expected results and regression detection), scenarios/ (one module per protocol area).
"""
