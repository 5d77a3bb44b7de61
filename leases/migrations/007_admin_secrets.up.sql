-- 007_admin_secrets: the admin passwords the broker keeps for backends whose
-- root it rotates, envelope-encrypted (see secrets.go). A backend has at most
-- one `current` secret (the password the broker logs in with, which
-- replaces the config's reference once the broker has rotated it) and at
-- most one `candidate` (a rotation recorded before the backend was touched
-- and not yet finished or rolled back).
--
-- No column holds a secret in plain text: value is AES-256-GCM under a data
-- key of its own, which is stored wrapped (AES-256-GCM) by the key-encryption
-- key kek_id names. Both are bound to the row's id and backend (the
-- authenticated data), so a ciphertext copied to another row does not
-- decrypt. version grows with every secret written; replicas poll it to
-- reopen a backend whose admin password changed.
CREATE SEQUENCE admin_secrets_version_seq;
CREATE TABLE admin_secrets (
    id          text        PRIMARY KEY,
    backend     text        NOT NULL CONSTRAINT admin_secrets_backend_check CHECK (backend <> ''),
    slot        text        NOT NULL CONSTRAINT admin_secrets_slot_check CHECK (slot IN ('current', 'candidate')),
    version     bigint      NOT NULL DEFAULT nextval('admin_secrets_version_seq'),
    kek_id      text        NOT NULL,
    wrapped_key bytea       NOT NULL,
    nonce       bytea       NOT NULL,
    ciphertext  bytea       NOT NULL,
    actor       text        NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL,
    rotated_at  timestamptz,
    CONSTRAINT admin_secrets_backend_slot_key UNIQUE (backend, slot)
);
