-- A change log beside the notifications: NOTIFY is lost for a listener whose connection is down,
-- so the trigger also writes every change here, in the same transaction. A listener that
-- reconnects reads the changes committed since the last snapshot it had fully delivered
-- (`xid` visible in the new snapshot and not in the old one), so its watchers miss nothing,
-- deletions included. Rows are pruned after an hour by the listeners.
CREATE TABLE resource_changes (
    id         BIGSERIAL PRIMARY KEY,
    xid        XID8        NOT NULL DEFAULT pg_current_xact_id(),
    op         TEXT        NOT NULL,
    kind       TEXT COLLATE "C" NOT NULL,
    mesh       TEXT COLLATE "C" NOT NULL,
    name       TEXT COLLATE "C" NOT NULL,
    version    BIGINT      NOT NULL,
    changed_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Catch-up reads the transactions at or after a snapshot's xmin; pruning goes by time.
CREATE INDEX resource_changes_by_xid ON resource_changes (xid);
CREATE INDEX resource_changes_by_time ON resource_changes (changed_at);

CREATE OR REPLACE FUNCTION atoll_notify_change() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    r resources%ROWTYPE;
    change_id BIGINT;
BEGIN
    IF TG_OP = 'DELETE' THEN
        r := OLD;
    ELSE
        r := NEW;
    END IF;
    INSERT INTO resource_changes (op, kind, mesh, name, version)
        VALUES (TG_OP, r.kind, r.mesh, r.name, r.version)
        RETURNING id INTO change_id;
    PERFORM pg_notify('atoll_changes', json_build_object(
        'id', change_id,
        'op', TG_OP,
        'kind', r.kind,
        'mesh', r.mesh,
        'name', r.name,
        'version', r.version
    )::text);
    RETURN NULL;
END;
$$;
