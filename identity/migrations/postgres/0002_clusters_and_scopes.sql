-- The Tenant object's Kubernetes uid, as its cluster registered it ('' for
-- records from before: the operator's next sync fills it).
ALTER TABLE tenants ADD COLUMN uid TEXT NOT NULL DEFAULT '';

-- What a personal access token may do: 'read' (tenant tokens capped at
-- Viewer) or 'full'. NULL for sessions. Tokens from before were full.
ALTER TABLE credentials ADD COLUMN scope TEXT CHECK (scope IN ('read', 'full'));
UPDATE credentials SET scope = 'full' WHERE kind = 'pat';
