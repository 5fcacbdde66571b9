-- Rate-limit windows end: each counter says when (epoch seconds), so ended ones can be deleted by an
-- index scan. Rows from before this migration end at once.
ALTER TABLE rate_limits ADD COLUMN expires_at bigint NOT NULL DEFAULT 0;
CREATE INDEX rate_limits_expiry ON rate_limits (expires_at);
