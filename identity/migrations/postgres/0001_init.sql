-- Users: one global account per email (stored lowercased).
CREATE TABLE users (
    id            TEXT PRIMARY KEY,
    email         TEXT NOT NULL UNIQUE,
    display_name  TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    is_admin      BIGINT NOT NULL DEFAULT 0,
    disabled      BIGINT NOT NULL DEFAULT 0,
    created_at    BIGINT NOT NULL
);

-- Sessions and personal access tokens: only the SHA-256 of the token.
CREATE TABLE credentials (
    id          TEXT PRIMARY KEY,
    token_hash  TEXT NOT NULL UNIQUE,
    user_id     TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    kind        TEXT NOT NULL CHECK (kind IN ('session', 'pat')),
    name        TEXT,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL
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
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL
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
    private_pkcs8 BYTEA NOT NULL,
    public_key    BYTEA NOT NULL,
    created_at    BIGINT NOT NULL,
    not_before    BIGINT NOT NULL UNIQUE
);

-- Rate-limit windows and lockouts, shared by every replica.
CREATE TABLE throttle (
    key          TEXT PRIMARY KEY,
    hits         BIGINT NOT NULL,
    window_start BIGINT NOT NULL,
    locked_until BIGINT
);

CREATE TABLE audit_log (
    id        BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at        BIGINT NOT NULL,
    actor     TEXT,
    action    TEXT NOT NULL,
    subject   TEXT,
    outcome   TEXT NOT NULL,
    client_ip TEXT
);

CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only';
END;
$$;

CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
