-- A tenant's users and teams (the ids its usage events carry) and team membership, managed
-- through the control plane (api/users_and_teams.py). Ids are the tenant's own, unique within
-- the tenant only. Listing a user here is not required to send usage for it: this is the
-- tenant's directory, not a gate on ingest.
CREATE TABLE users (
    customer_id text NOT NULL REFERENCES customers (customer_id),
    user_id     text NOT NULL CHECK (user_id ~ '^[A-Za-z0-9][A-Za-z0-9._:@+-]{0,127}$'),
    name        text CHECK (length(name) BETWEEN 1 AND 200),
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (customer_id, user_id)
);

CREATE TABLE teams (
    customer_id text NOT NULL REFERENCES customers (customer_id),
    team_id     text NOT NULL CHECK (team_id ~ '^[A-Za-z0-9][A-Za-z0-9._:@+-]{0,127}$'),
    name        text CHECK (length(name) BETWEEN 1 AND 200),
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (customer_id, team_id)
);

CREATE TABLE team_members (
    customer_id text NOT NULL,
    team_id     text NOT NULL,
    user_id     text NOT NULL,
    added_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (customer_id, team_id, user_id),
    FOREIGN KEY (customer_id, team_id) REFERENCES teams (customer_id, team_id),
    FOREIGN KEY (customer_id, user_id) REFERENCES users (customer_id, user_id)
);

CREATE INDEX team_members_user ON team_members (customer_id, user_id);

-- Revoking a key notifies every API process (api/auth.py LISTENs on this channel), which drops
-- the key from its cache at once; a revocation by hand in SQL is announced the same way.
CREATE FUNCTION api_key_revoked_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('om_api_key_revoked', encode(NEW.key_hash, 'hex'));
    RETURN NULL;
END
$$;

CREATE TRIGGER api_key_revoked
    AFTER UPDATE OF revoked_at ON api_keys
    FOR EACH ROW WHEN (OLD.revoked_at IS NULL AND NEW.revoked_at IS NOT NULL)
    EXECUTE FUNCTION api_key_revoked_notify();
