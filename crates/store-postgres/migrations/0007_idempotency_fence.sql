-- A keyed request's claim carries the token of the run that holds it, and
-- whether a write of that run has committed (see store/src/idempotency.rs).
ALTER TABLE idempotency_keys ADD COLUMN token text NOT NULL DEFAULT '';
ALTER TABLE idempotency_keys ADD COLUMN took_effect boolean NOT NULL DEFAULT false;
