//! Schema migrations embedded in the binary, one sqlx `Migrator` per SQL backend, from
//! `migrations/<backend>/<version>_<name>.sql`.
//!
//! sqlx records what it applied in `_sqlx_migrations` (with each file's checksum, so an edited
//! released migration is refused), applies each pending one in its own transaction, takes
//! PostgreSQL's advisory lock so replicas starting together migrate one at a time, and refuses
//! a database that lists a migration this binary does not know (written by a newer Atoll).
//! Never edit a released migration: add the next one, and list it below (a test checks that
//! every file is listed).
//!
//! The lists are written here rather than by `sqlx::migrate!`, which needs sqlx's `macros`
//! feature: that builds sqlx, its drivers, the bundled SQLite C library, rustls and tokio a
//! second time for the proc-macro (docs/ARCHITECTURE.md, "Store").
//!
//! Databases migrated before sqlx did this recorded their versions in `schema_migrations`;
//! [`adoption`] carries those over to sqlx's table once, so they are not applied twice.

use std::borrow::Cow;
use std::sync::LazyLock;

use sqlx::SqlStr;
use sqlx::migrate::{MigrateError, Migration, MigrationType, Migrator};

use crate::StoreError;

fn migration(version: i64, name: &'static str, sql: &'static str) -> Migration {
    Migration::new(
        version,
        Cow::Borrowed(name),
        MigrationType::Simple,
        SqlStr::from_static(sql),
        false,
    )
}

pub(crate) static SQLITE: LazyLock<Migrator> = LazyLock::new(|| {
    Migrator::with_migrations(vec![
        migration(
            1,
            "init",
            include_str!("../migrations/sqlite/0001_init.sql"),
        ),
        migration(
            2,
            "list_speed",
            include_str!("../migrations/sqlite/0002_list_speed.sql"),
        ),
    ])
});

pub(crate) static POSTGRES: LazyLock<Migrator> = LazyLock::new(|| {
    Migrator::with_migrations(vec![
        migration(
            1,
            "init",
            include_str!("../migrations/postgres/0001_init.sql"),
        ),
        migration(
            2,
            "list_speed",
            include_str!("../migrations/postgres/0002_list_speed.sql"),
        ),
        migration(
            3,
            "change_log",
            include_str!("../migrations/postgres/0003_change_log.sql"),
        ),
    ])
});

/// The table Atoll's own runner kept its applied versions in.
pub(crate) const LEGACY_TABLE: &str = "schema_migrations";

/// The migrations a legacy `schema_migrations` table lists as applied, to record in sqlx's
/// table; an error when it lists a version this binary does not know.
pub(crate) fn adoption<'a>(
    migrator: &'a Migrator,
    legacy_versions: &[i64],
) -> Result<Vec<&'a Migration>, StoreError> {
    if let Some(newer) = legacy_versions
        .iter()
        .copied()
        .filter(|v| !migrator.iter().any(|m| m.version == *v))
        .max()
    {
        return Err(newer_schema(migrator, newer));
    }
    Ok(migrator
        .iter()
        .filter(|m| legacy_versions.contains(&m.version))
        .collect())
}

/// A migration error as the store reports it: a schema from a newer Atoll says so.
pub(crate) fn migrate_error(backend: &str, migrator: &Migrator, e: MigrateError) -> StoreError {
    match e {
        MigrateError::VersionMissing(v) => newer_schema(migrator, v),
        e => StoreError::Backend(format!("{backend} migration: {e}")),
    }
}

fn newer_schema(migrator: &Migrator, version: i64) -> StoreError {
    let latest = migrator.iter().map(|m| m.version).max().unwrap_or(0);
    StoreError::Backend(format!(
        "the database schema is at version {version}, newer than this binary supports \
         ({latest}); upgrade Atoll"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_migration_file_is_listed_in_order() {
        for (backend, migrator) in [("sqlite", &*SQLITE), ("postgres", &*POSTGRES)] {
            let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("migrations")
                .join(backend);
            let mut files: Vec<String> = std::fs::read_dir(&dir)
                .expect("migrations directory")
                .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
                .collect();
            files.sort();
            let listed: Vec<String> = migrator
                .iter()
                .map(|m| format!("{:04}_{}.sql", m.version, m.description))
                .collect();
            assert_eq!(listed, files, "{backend}");
            let versions: Vec<i64> = migrator.iter().map(|m| m.version).collect();
            assert_eq!(versions.first(), Some(&1), "{backend}");
        }
    }

    #[test]
    fn adoption_carries_known_versions_and_refuses_newer_ones() {
        let adopted: Vec<i64> = adoption(&SQLITE, &[1, 2])
            .expect("known")
            .iter()
            .map(|m| m.version)
            .collect();
        assert_eq!(adopted, vec![1, 2]);
        let err = adoption(&SQLITE, &[1, 999]).expect_err("newer schema");
        assert!(err.to_string().contains("999"), "{err}");
        assert!(err.to_string().contains("upgrade Atoll"), "{err}");
    }
}
