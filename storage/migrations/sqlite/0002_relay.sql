-- Push relay: accounts, API keys, devices, whitelist tokens, outbox, audit (storage/src/relay).
CREATE TABLE relay_accounts (
    id TEXT PRIMARY KEY,
    username TEXT NOT NULL UNIQUE,
    email TEXT UNIQUE,
    password_hash TEXT,
    is_local BOOLEAN NOT NULL,
    created_at_ms BIGINT NOT NULL
);
CREATE TABLE relay_api_keys (
    key_hash TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES relay_accounts(id) ON DELETE CASCADE,
    created_at_ms BIGINT NOT NULL
);
CREATE INDEX relay_api_keys_account ON relay_api_keys(account_id);
CREATE TABLE relay_devices (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES relay_accounts(id) ON DELETE CASCADE,
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    device_id TEXT NOT NULL,
    active BOOLEAN NOT NULL,
    token TEXT NOT NULL,
    apns_topic TEXT,
    apns_sandbox BOOLEAN NOT NULL,
    webpush_p256dh TEXT,
    webpush_auth TEXT,
    created_at_ms BIGINT NOT NULL
);
CREATE INDEX relay_devices_account ON relay_devices(account_id);
CREATE TABLE relay_tokens (
    id TEXT PRIMARY KEY,
    token_hash TEXT NOT NULL UNIQUE,
    account_id TEXT NOT NULL REFERENCES relay_accounts(id) ON DELETE CASCADE,
    name TEXT,
    device_ids TEXT NOT NULL,
    sender TEXT,
    rate_per_minute BIGINT,
    created_at_ms BIGINT NOT NULL,
    expires_at_ms BIGINT,
    revoked_at_ms BIGINT
);
CREATE INDEX relay_tokens_account ON relay_tokens(account_id);
CREATE TABLE relay_messages (
    id TEXT PRIMARY KEY,
    account_id TEXT REFERENCES relay_accounts(id) ON DELETE CASCADE,
    token_id TEXT,
    sender TEXT,
    priority TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL
);
CREATE TABLE relay_outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    device_id TEXT,
    remote_endpoint TEXT,
    remote_token TEXT,
    collapse_key TEXT NOT NULL,
    priority TEXT NOT NULL,
    data TEXT,
    status TEXT NOT NULL,
    attempts BIGINT NOT NULL,
    next_attempt_at_ms BIGINT NOT NULL,
    reason TEXT,
    created_at_ms BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL
);
CREATE INDEX relay_outbox_due ON relay_outbox(status, next_attempt_at_ms);
CREATE INDEX relay_outbox_collapse ON relay_outbox(collapse_key, status);
CREATE INDEX relay_outbox_device ON relay_outbox(device_id);
CREATE TABLE relay_message_deliveries (
    message_id TEXT NOT NULL REFERENCES relay_messages(id) ON DELETE CASCADE,
    outbox_id BIGINT NOT NULL REFERENCES relay_outbox(id) ON DELETE CASCADE,
    PRIMARY KEY (message_id, outbox_id)
);
CREATE INDEX relay_message_deliveries_outbox ON relay_message_deliveries(outbox_id);
CREATE TABLE relay_audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id TEXT NOT NULL REFERENCES relay_accounts(id) ON DELETE CASCADE,
    at_ms BIGINT NOT NULL,
    token_id TEXT,
    sender TEXT,
    message_id TEXT,
    outcome TEXT NOT NULL
);
CREATE INDEX relay_audit_account ON relay_audit(account_id, id);
