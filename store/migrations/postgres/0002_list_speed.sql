-- Lists over many resources (100,000 and more) stay fast: a list's total comes from counters kept
-- by triggers instead of a COUNT(*) scan. The counters are split into 16 shards per (kind, mesh),
-- picked by a hash of the name, so concurrent writers in one mesh rarely wait on the same row.
CREATE TABLE resource_counts (
    kind  TEXT COLLATE "C" NOT NULL,
    mesh  TEXT COLLATE "C" NOT NULL,
    shard SMALLINT NOT NULL,
    n     BIGINT   NOT NULL,
    PRIMARY KEY (kind, mesh, shard)
);

INSERT INTO resource_counts (kind, mesh, shard, n)
    SELECT kind, mesh, (abs(hashtext(name)) % 16)::smallint, COUNT(*)
    FROM resources GROUP BY 1, 2, 3;

CREATE FUNCTION atoll_count_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO resource_counts (kind, mesh, shard, n)
            VALUES (NEW.kind, NEW.mesh, (abs(hashtext(NEW.name)) % 16)::smallint, 1)
            ON CONFLICT (kind, mesh, shard) DO UPDATE SET n = resource_counts.n + 1;
        RETURN NEW;
    END IF;
    UPDATE resource_counts SET n = n - 1
        WHERE kind = OLD.kind AND mesh = OLD.mesh
          AND shard = (abs(hashtext(OLD.name)) % 16)::smallint;
    RETURN OLD;
END;
$$;

CREATE TRIGGER resources_counted AFTER INSERT OR DELETE ON resources
    FOR EACH ROW EXECUTE FUNCTION atoll_count_change();
