//! Schema migrations embedded in the binary, one list per SQL backend.
//!
//! Each backend applies the migrations its `schema_migrations` table does not list yet, in
//! order, each in its own transaction, and refuses a database whose schema is newer than this
//! binary knows. Never edit a released migration: add the next one.

/// One schema change.
pub(crate) struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub sql: &'static str,
}

pub(crate) const SQLITE: &[Migration] = &[
    Migration {
        version: 1,
        name: "init",
        sql: include_str!("../migrations/sqlite/0001_init.sql"),
    },
    Migration {
        version: 2,
        name: "list_speed",
        sql: include_str!("../migrations/sqlite/0002_list_speed.sql"),
    },
];

pub(crate) const POSTGRES: &[Migration] = &[
    Migration {
        version: 1,
        name: "init",
        sql: include_str!("../migrations/postgres/0001_init.sql"),
    },
    Migration {
        version: 2,
        name: "list_speed",
        sql: include_str!("../migrations/postgres/0002_list_speed.sql"),
    },
    Migration {
        version: 3,
        name: "change_log",
        sql: include_str!("../migrations/postgres/0003_change_log.sql"),
    },
];

/// The pending migrations, given the versions a database lists as applied; an error when the
/// database has a version this binary does not know (written by a newer Atoll).
pub(crate) fn pending<'a>(
    known: &'a [Migration],
    applied: &[i64],
) -> Result<Vec<&'a Migration>, String> {
    let latest = known.iter().map(|m| m.version).max().unwrap_or(0);
    if let Some(newer) = applied.iter().copied().filter(|v| *v > latest).max() {
        return Err(format!(
            "the database schema is at version {newer}, newer than this binary supports \
             ({latest}); upgrade Atoll"
        ));
    }
    Ok(known
        .iter()
        .filter(|m| !applied.contains(&m.version))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_increasing_and_unique() {
        for list in [SQLITE, POSTGRES] {
            let versions: Vec<i64> = list.iter().map(|m| m.version).collect();
            assert!(versions.windows(2).all(|w| w[0] < w[1]), "{versions:?}");
            assert_eq!(versions.first(), Some(&1));
        }
    }

    #[test]
    fn pending_skips_applied_and_rejects_newer() {
        assert_eq!(pending(SQLITE, &[]).expect("ok").len(), SQLITE.len());
        assert!(
            pending(SQLITE, &[1])
                .expect("ok")
                .iter()
                .all(|m| m.version != 1)
        );
        let err = pending(SQLITE, &[1, 999]).err().expect("newer schema");
        assert!(err.contains("999"), "{err}");
    }
}
