-- Write side of "there is always an active admin": the users who are active admins now, changed in the
-- transaction that appends the events making or unmaking one (events/commands/accounts.py). Filled
-- here from the users' streams as events.users.evolve folds them.
CREATE TABLE active_admins (
    user_id uuid PRIMARY KEY
);
INSERT INTO active_admins (user_id)
SELECT (substr(stream_id, 6))::uuid FROM (
    SELECT stream_id,
           (array_agg(data->>'role' ORDER BY version DESC)
                FILTER (WHERE type IN ('user.registered', 'user.role_changed')))[1] AS role,
           (array_agg(type ORDER BY version DESC)
                FILTER (WHERE type IN ('user.deactivated', 'user.reactivated')))[1] AS last_status
    FROM events WHERE stream_id LIKE 'user-%' GROUP BY stream_id
) AS users
WHERE role = 'admin' AND last_status IS DISTINCT FROM 'user.deactivated';
