-- Who leads what (the scheduler), until when. A holder renews before expiry;
-- once expired, another holder may take the name.
CREATE TABLE leader_leases (
    name        TEXT PRIMARY KEY,
    holder      TEXT NOT NULL,
    expires_at  INTEGER NOT NULL
) STRICT;
