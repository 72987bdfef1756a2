-- Lists over many resources (100,000 and more) stay fast.
--
-- A narrow index of the keys alone. The table is WITHOUT ROWID, so its primary key b-tree holds
-- whole rows: skipping to a page's offset through it reads every spec on the way. Lists find a
-- page's keys through this index, then read only the page's rows.
CREATE INDEX resources_keys ON resources (kind, mesh, name);

-- Resource counts per (kind, mesh), kept by triggers, so a list's total costs one lookup instead
-- of a scan. SQLite serializes writers, so the counter rows are never contended.
CREATE TABLE resource_counts (
    kind TEXT    NOT NULL,
    mesh TEXT    NOT NULL,
    n    INTEGER NOT NULL,
    PRIMARY KEY (kind, mesh)
) WITHOUT ROWID;

INSERT INTO resource_counts (kind, mesh, n)
    SELECT kind, mesh, COUNT(*) FROM resources GROUP BY kind, mesh;

CREATE TRIGGER resources_counted_on_insert AFTER INSERT ON resources
BEGIN
    INSERT OR IGNORE INTO resource_counts (kind, mesh, n) VALUES (NEW.kind, NEW.mesh, 0);
    UPDATE resource_counts SET n = n + 1 WHERE kind = NEW.kind AND mesh = NEW.mesh;
END;

CREATE TRIGGER resources_counted_on_delete AFTER DELETE ON resources
BEGIN
    UPDATE resource_counts SET n = n - 1 WHERE kind = OLD.kind AND mesh = OLD.mesh;
END;
