-- Single sign-on (#18). Each tenant is an OpenID client: its exact
-- redirect and back-channel logout URIs ('' for records from before: read
-- as derived from url until the operator's next sync stores them).
ALTER TABLE tenants ADD COLUMN redirect_uri TEXT NOT NULL DEFAULT '';
ALTER TABLE tenants ADD COLUMN backchannel_logout_uri TEXT NOT NULL DEFAULT '';

-- The tenants an SSO session (a 'session' credential) entered: where
-- back-channel logout goes when it ends.
CREATE TABLE sso_entered (
    session_id TEXT NOT NULL REFERENCES credentials (id) ON DELETE CASCADE,
    tenant     TEXT NOT NULL,
    PRIMARY KEY (session_id, tenant)
);

-- Authorization codes: only the SHA-256 of the code; single use (deleted
-- when presented), 60 s, bound to client, redirect URI, PKCE challenge,
-- nonce, user and SSO session.
CREATE TABLE auth_codes (
    code_hash      TEXT PRIMARY KEY,
    client_id      TEXT NOT NULL,
    redirect_uri   TEXT NOT NULL,
    code_challenge TEXT NOT NULL,
    nonce          TEXT NOT NULL,
    user_id        TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    session_id     TEXT NOT NULL REFERENCES credentials (id) ON DELETE CASCADE,
    auth_time      INTEGER NOT NULL,
    expires_at     INTEGER NOT NULL
);

-- Refresh tokens: only the SHA-256; bound to an SSO session (they end with
-- it) and a client.
CREATE TABLE refresh_tokens (
    token_hash TEXT PRIMARY KEY,
    session_id TEXT NOT NULL REFERENCES credentials (id) ON DELETE CASCADE,
    client_id  TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX refresh_tokens_session ON refresh_tokens (session_id);
