-- Atoll store schema v1 (SQLite): one table of resources keyed on (kind, mesh, name).
-- mesh is '' for global-scoped kinds. labels and spec are JSON text; spec keeps the field order
-- it was written in. Times are RFC 3339 UTC text with microseconds.
CREATE TABLE resources (
    kind              TEXT    NOT NULL,
    mesh              TEXT    NOT NULL,
    name              TEXT    NOT NULL,
    version           INTEGER NOT NULL CHECK (version > 0),
    labels            TEXT    NOT NULL DEFAULT '{}',
    spec              TEXT    NOT NULL DEFAULT '{}',
    creation_time     TEXT    NOT NULL,
    modification_time TEXT    NOT NULL,
    PRIMARY KEY (kind, mesh, name)
) WITHOUT ROWID;

-- delete_mesh_contents deletes by mesh across kinds.
CREATE INDEX resources_by_mesh ON resources (mesh);
