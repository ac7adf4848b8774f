-- Users: one global account per email (stored lowercased).
CREATE TABLE users (
    id            TEXT PRIMARY KEY,
    email         TEXT NOT NULL UNIQUE,
    display_name  TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    is_admin      INTEGER NOT NULL DEFAULT 0,
    disabled      INTEGER NOT NULL DEFAULT 0,
    created_at    INTEGER NOT NULL
);

-- Sessions and personal access tokens: only the SHA-256 of the token.
CREATE TABLE credentials (
    id          TEXT PRIMARY KEY,
    token_hash  TEXT NOT NULL UNIQUE,
    user_id     TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    kind        TEXT NOT NULL CHECK (kind IN ('session', 'pat')),
    name        TEXT,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL
);
CREATE INDEX credentials_user ON credentials (user_id, kind);

-- The tenant directory, pushed by operators.
CREATE TABLE tenants (
    name         TEXT PRIMARY KEY,
    id           TEXT NOT NULL UNIQUE,
    display_name TEXT NOT NULL,
    url          TEXT NOT NULL,
    phase        TEXT NOT NULL,
    cluster      TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL
);

-- Members by email, so that a membership applies when the person signs up.
CREATE TABLE memberships (
    tenant TEXT NOT NULL REFERENCES tenants (name) ON DELETE CASCADE,
    email  TEXT NOT NULL,
    role   TEXT NOT NULL CHECK (role IN ('Admin', 'Editor', 'Viewer')),
    PRIMARY KEY (tenant, email)
);
CREATE INDEX memberships_email ON memberships (email);

CREATE TABLE signing_keys (
    kid           TEXT PRIMARY KEY,
    private_pkcs8 BLOB NOT NULL,
    public_key    BLOB NOT NULL,
    created_at    INTEGER NOT NULL,
    not_before    INTEGER NOT NULL UNIQUE
);

-- Rate-limit windows and lockouts, shared by every replica.
CREATE TABLE throttle (
    key          TEXT PRIMARY KEY,
    hits         INTEGER NOT NULL,
    window_start INTEGER NOT NULL,
    locked_until INTEGER
);

CREATE TABLE audit_log (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    at        INTEGER NOT NULL,
    actor     TEXT,
    action    TEXT NOT NULL,
    subject   TEXT,
    outcome   TEXT NOT NULL,
    client_ip TEXT
);

CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only');
END;

CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only');
END;
