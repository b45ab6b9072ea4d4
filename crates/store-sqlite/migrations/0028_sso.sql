-- Single sign-on (OpenID Connect): an organization's provider and rules,
-- the sign-ins under way, and which provider identity is which member.

-- One row per organization that has single sign-on. No issuer: the
-- platform's provider, configured by the operator.
CREATE TABLE sso_settings (
    org_id           BLOB PRIMARY KEY REFERENCES organizations (id) ON DELETE CASCADE,
    slug             TEXT NOT NULL UNIQUE,
    issuer           TEXT,
    client_id        TEXT,
    client_secret    BLOB,
    allowed_domains  TEXT NOT NULL,
    default_role     TEXT NOT NULL CHECK (default_role IN ('admin', 'member', 'advisor')),
    required         INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL
) STRICT;

-- A sign-in sent to the provider and not yet back: taken (deleted) by the
-- callback that names its state, so a state works once.
CREATE TABLE sso_attempts (
    state_hash     TEXT PRIMARY KEY,
    org_id         BLOB NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    browser_hash   TEXT NOT NULL,
    nonce          TEXT NOT NULL,
    code_verifier  TEXT NOT NULL,
    wants_token    INTEGER NOT NULL,
    next           TEXT,
    expires_at     INTEGER NOT NULL
) STRICT;
CREATE INDEX sso_attempts_expiry ON sso_attempts (expires_at);

-- The provider's subject a member signed in as: later sign-ins find the
-- member by it, whatever the provider then says their address is.
CREATE TABLE sso_identities (
    issuer      TEXT NOT NULL,
    subject     TEXT NOT NULL,
    user_id     BLOB NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (issuer, subject)
) STRICT;
CREATE INDEX sso_identities_user ON sso_identities (user_id);
