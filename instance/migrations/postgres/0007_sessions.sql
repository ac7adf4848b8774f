-- Browser sessions (#18): the instance is the backend of its web UI's
-- frontend. A session is found by the SHA-256 (hex) of its cookie's value,
-- never by the value itself; the tenant tokens stay here, server-side.
-- Times are microseconds since the epoch; expires_at is the absolute cap.
CREATE TABLE browser_sessions (
    id_hash           TEXT   PRIMARY KEY,
    subject           TEXT   NOT NULL,
    email             TEXT   NOT NULL,
    role              TEXT   NOT NULL,
    sid               TEXT,
    access_token      TEXT   NOT NULL,
    access_expires_at BIGINT  NOT NULL,
    refresh_token     TEXT,
    id_token          TEXT   NOT NULL,
    csrf_token        TEXT   NOT NULL,
    created_at        BIGINT  NOT NULL,
    last_used_at      BIGINT  NOT NULL,
    expires_at        BIGINT  NOT NULL
);
CREATE INDEX browser_sessions_sid ON browser_sessions (sid);
CREATE INDEX browser_sessions_subject ON browser_sessions (subject);
CREATE INDEX browser_sessions_expiry ON browser_sessions (expires_at);

-- Sign-ins under way: found by the SHA-256 (hex) of the atoll_login
-- cookie's value, taken (deleted) by the callback, 10 minutes at most.
CREATE TABLE pending_logins (
    id_hash       TEXT   PRIMARY KEY,
    state         TEXT   NOT NULL,
    nonce         TEXT   NOT NULL,
    code_verifier TEXT   NOT NULL,
    return_to     TEXT   NOT NULL,
    expires_at    BIGINT  NOT NULL
);
CREATE INDEX pending_logins_expiry ON pending_logins (expires_at);

-- The jti of every back-channel logout token accepted, until it could no
-- longer be accepted anyway: a replayed token is refused.
CREATE TABLE logout_tokens_seen (
    jti        TEXT   PRIMARY KEY,
    expires_at BIGINT  NOT NULL
);
CREATE INDEX logout_tokens_seen_expiry ON logout_tokens_seen (expires_at);
