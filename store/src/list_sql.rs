//! The SQL of `list`, shared by the SQL backends. The WHERE clause is built from the filters that
//! are set (no `? IS NULL OR ...` patterns: those hide the key index from the query planner), and
//! a page is found by its keys first, so skipping to a deep offset never reads the skipped rows.

use crate::ListFilter;

/// Placeholder syntax of a backend: `?N` (SQLite) or `$N` (PostgreSQL).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Dialect {
    Sqlite,
    Postgres,
}

/// The statements of one list call and the text values to bind, in placeholder order. The page
/// statement takes two more integer binds after these: limit, then offset.
#[derive(Debug)]
pub(crate) struct ListSql {
    pub count: String,
    pub page: String,
    pub binds: Vec<String>,
}

impl Dialect {
    fn placeholder(self, n: usize) -> String {
        match self {
            Dialect::Sqlite => format!("?{n}"),
            Dialect::Postgres => format!("${n}"),
        }
    }

    fn prefix_match(self, p: &str) -> String {
        match self {
            Dialect::Sqlite => format!("name >= {p} AND substr(name, 1, length({p})) = {p}"),
            Dialect::Postgres => format!("name >= {p} AND left(name, length({p})) = {p}"),
        }
    }

    /// The index that holds keys only (SQLite's table is WITHOUT ROWID, so its primary key holds
    /// whole rows; PostgreSQL's primary key index is already narrow).
    fn key_index(self) -> &'static str {
        match self {
            Dialect::Sqlite => " INDEXED BY resources_keys",
            Dialect::Postgres => "",
        }
    }
}

pub(crate) fn build(dialect: Dialect, columns: &str, filter: &ListFilter) -> ListSql {
    let mut binds = vec![filter.kind.name().to_string()];
    let mut conditions = vec![format!("kind = {}", dialect.placeholder(1))];
    if let Some(mesh) = &filter.mesh {
        binds.push(mesh.clone());
        conditions.push(format!("mesh = {}", dialect.placeholder(binds.len())));
    }
    if let Some(prefix) = &filter.name_prefix {
        binds.push(prefix.clone());
        conditions.push(dialect.prefix_match(&dialect.placeholder(binds.len())));
    }
    let where_clause = conditions.join(" AND ");
    // Both backends keep per-(kind, mesh) counters (their migrations 0002); a name prefix still
    // needs a scan.
    let count = match &filter.name_prefix {
        None => {
            let mesh = if filter.mesh.is_some() {
                format!(" AND mesh = {}", dialect.placeholder(2))
            } else {
                String::new()
            };
            format!(
                "SELECT CAST(COALESCE(SUM(n), 0) AS BIGINT) FROM resource_counts WHERE kind = {}{mesh}",
                dialect.placeholder(1)
            )
        }
        Some(_) => format!(
            "SELECT COUNT(*) FROM resources{} WHERE {where_clause}",
            dialect.key_index()
        ),
    };
    let index = dialect.key_index();
    let limit = dialect.placeholder(binds.len() + 1);
    let offset = dialect.placeholder(binds.len() + 2);
    ListSql {
        count,
        page: format!(
            "SELECT {columns} FROM resources WHERE (kind, mesh, name) IN \
             (SELECT kind, mesh, name FROM resources{index} WHERE {where_clause} \
             ORDER BY mesh, name LIMIT {limit} OFFSET {offset}) \
             ORDER BY mesh, name"
        ),
        binds,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use atoll_core::Kind;

    #[test]
    fn only_set_filters_become_conditions() {
        let all = build(Dialect::Postgres, "name", &ListFilter::all(Kind::Mesh));
        assert_eq!(all.binds, ["Mesh"]);
        assert!(
            all.count.ends_with("FROM resource_counts WHERE kind = $1"),
            "{}",
            all.count
        );
        assert!(all.page.contains("LIMIT $2 OFFSET $3"), "{}", all.page);

        let mut f = ListFilter::in_mesh(Kind::MeshTimeout, "default");
        f.name_prefix = Some("web".into());
        let sql = build(Dialect::Sqlite, "name", &f);
        assert_eq!(sql.binds, ["MeshTimeout", "default", "web"]);
        assert!(
            sql.count.contains("INDEXED BY resources_keys"),
            "{}",
            sql.count
        );
        let counted = build(
            Dialect::Sqlite,
            "name",
            &ListFilter::in_mesh(Kind::MeshTimeout, "default"),
        );
        assert!(
            counted
                .count
                .contains("FROM resource_counts WHERE kind = ?1 AND mesh = ?2")
        );
        assert!(
            sql.page.contains("mesh = ?2 AND name >= ?3"),
            "{}",
            sql.page
        );
        assert!(sql.page.contains("LIMIT ?4 OFFSET ?5"), "{}", sql.page);
    }
}
