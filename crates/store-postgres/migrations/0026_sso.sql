-- Single sign-on (OpenID Connect): an organization's provider and rules,
-- the sign-ins under way, and which provider identity is which member.

-- One row per organization that has single sign-on. No issuer: the
-- platform's provider, configured by the operator.
CREATE TABLE sso_settings (
    org_id           uuid PRIMARY KEY REFERENCES organizations (id) ON DELETE CASCADE,
    slug             text NOT NULL UNIQUE,
    issuer           text,
    client_id        text,
    client_secret    bytea,
    allowed_domains  jsonb NOT NULL,
    default_role     text NOT NULL CHECK (default_role IN ('admin', 'member', 'advisor')),
    required         boolean NOT NULL,
    updated_at       timestamptz NOT NULL
);

-- A sign-in sent to the provider and not yet back: taken (deleted) by the
-- callback that names its state, so a state works once.
CREATE TABLE sso_attempts (
    state_hash     text PRIMARY KEY,
    org_id         uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    browser_hash   text NOT NULL,
    nonce          text NOT NULL,
    code_verifier  text NOT NULL,
    wants_token    boolean NOT NULL,
    next           text,
    expires_at     timestamptz NOT NULL
);
CREATE INDEX sso_attempts_expiry ON sso_attempts (expires_at);

-- The provider's subject a member signed in as: later sign-ins find the
-- member by it, whatever the provider then says their address is.
CREATE TABLE sso_identities (
    issuer      text NOT NULL,
    subject     text NOT NULL,
    user_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at  timestamptz NOT NULL,
    PRIMARY KEY (issuer, subject)
);
CREATE INDEX sso_identities_user ON sso_identities (user_id);
