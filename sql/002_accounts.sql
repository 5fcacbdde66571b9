-- Write side of accounts, changed in the same transaction as the user's events.

-- One account per email: the unique key is the guard (rule 5), not the eventually consistent read table.
CREATE TABLE user_emails (
    email   text PRIMARY KEY,
    user_id uuid NOT NULL UNIQUE
);

-- Password hashes stay here, never in events: events are published to the broker.
CREATE TABLE credentials (
    user_id       uuid PRIMARY KEY,
    password_hash text        NOT NULL,
    updated_at    timestamptz NOT NULL DEFAULT now()
);

-- Refresh-token rotation. A family is one login and every token refreshed from it.
CREATE TABLE token_families (
    family     uuid PRIMARY KEY,
    user_id    uuid        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz
);
CREATE INDEX token_families_user ON token_families (user_id);

CREATE TABLE refresh_tokens (
    jti        uuid PRIMARY KEY,
    family     uuid        NOT NULL REFERENCES token_families,
    expires_at timestamptz NOT NULL,
    spent_at   timestamptz
);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family);

-- Fixed-window request counters shared by every API process (login and register limits).
CREATE TABLE rate_limits (
    key          text PRIMARY KEY,
    window_start bigint NOT NULL,
    hits         integer NOT NULL
);

-- Read table: built only from user events by the users projection.
CREATE TABLE users (
    id         uuid PRIMARY KEY,
    email      text        NOT NULL,
    name       text        NOT NULL,
    role       text        NOT NULL,
    active     boolean     NOT NULL,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    version    integer     NOT NULL
);
CREATE INDEX users_page ON users (created_at, id);
