-- Atoll store schema v1 (PostgreSQL): one table of resources keyed on (kind, mesh, name).
-- mesh is '' for global-scoped kinds. Keys use the "C" collation so lists are ordered bytewise,
-- as in the other backends, whatever the database's locale.
-- spec is JSON text, not JSONB: JSONB does not keep object field order, and what an operator
-- wrote must read back unchanged. labels (a map, order irrelevant) are JSONB.
CREATE TABLE resources (
    kind              TEXT COLLATE "C" NOT NULL,
    mesh              TEXT COLLATE "C" NOT NULL,
    name              TEXT COLLATE "C" NOT NULL,
    version           BIGINT      NOT NULL CHECK (version > 0),
    labels            JSONB       NOT NULL DEFAULT '{}',
    spec              TEXT        NOT NULL DEFAULT '{}',
    creation_time     TIMESTAMPTZ NOT NULL,
    modification_time TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (kind, mesh, name)
);

-- delete_mesh_contents deletes by mesh across kinds.
CREATE INDEX resources_by_mesh ON resources (mesh);

-- Every committed change is announced on the atoll_changes channel, so each control-plane
-- replica (all LISTEN) sees writes made through the others. Notifications are delivered at
-- commit, in commit order.
CREATE FUNCTION atoll_notify_change() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    r resources%ROWTYPE;
BEGIN
    IF TG_OP = 'DELETE' THEN
        r := OLD;
    ELSE
        r := NEW;
    END IF;
    PERFORM pg_notify('atoll_changes', json_build_object(
        'op', TG_OP,
        'kind', r.kind,
        'mesh', r.mesh,
        'name', r.name,
        'version', r.version
    )::text);
    RETURN NULL;
END;
$$;

CREATE TRIGGER resources_notify
    AFTER INSERT OR UPDATE OR DELETE ON resources
    FOR EACH ROW EXECUTE FUNCTION atoll_notify_change();
