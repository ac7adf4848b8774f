-- The KV store (Kestra's): one typed value per namespace and key, as JSON
-- text, with an optional expiry (microseconds since the epoch).
CREATE TABLE kv (
    namespace   TEXT    NOT NULL,
    key         TEXT    NOT NULL,
    value       TEXT    NOT NULL,
    type        TEXT    NOT NULL,
    description TEXT,
    expires_at  INTEGER,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (namespace, key)
);
CREATE INDEX kv_expiry ON kv (expires_at);
