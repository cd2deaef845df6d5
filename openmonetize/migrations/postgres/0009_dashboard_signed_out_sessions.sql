-- Dashboard sessions signed out before their cookie expires (api/dashboard/sessions.py). The
-- cookie is sealed and stateless, so signing out cannot take it back from a copy: each session
-- carries a random id, and every API process refuses an id listed here. Rows live until the
-- cookie would have expired anyway (expires_at), then sign-out prunes them.

CREATE TABLE dashboard_signed_out_sessions (
    session_id text PRIMARY KEY CHECK (length(session_id) BETWEEN 16 AND 64),
    expires_at timestamptz NOT NULL
);

CREATE INDEX dashboard_signed_out_sessions_expiry ON dashboard_signed_out_sessions (expires_at);
