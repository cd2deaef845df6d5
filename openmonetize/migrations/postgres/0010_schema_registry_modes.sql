-- The schema registry's modes (Confluent's GET/PUT/DELETE /mode[/{subject}]; schemas/registry.py).
-- Subject '' holds the global mode (READWRITE when absent). READONLY and READONLY_OVERRIDE refuse
-- registrations of new schemas and deletions; IMPORT is not offered (this registry assigns ids).
CREATE TABLE registry_mode (
    subject    text PRIMARY KEY,
    mode       text NOT NULL CHECK (mode IN ('READWRITE', 'READONLY', 'READONLY_OVERRIDE')),
    updated_at timestamptz NOT NULL DEFAULT now()
);
