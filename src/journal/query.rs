//! The journal's look-up of entries, written for the filter given: only the terms it sets,
//! so that the database plans each with the index that serves it (by event, by order, by
//! destination and time, by time), rather than one statement with optional terms
//! (`?1 IS NULL OR event_id = ?1`), which both SQLite and PostgreSQL plan as a scan of every
//! entry. The same terms for the file and for PostgreSQL; `tests` checks each plan.

use super::Filter;

/// Where the statement runs: the placeholders and the list test differ.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Dialect {
    Sqlite,
    Postgres,
}

/// A value the statement takes.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum Param {
    Text(String),
    Int(i64),
    /// A list, for PostgreSQL's `= ANY($n)`.
    Texts(Vec<String>),
}

/// A statement and its values, in order.
#[derive(Debug)]
pub(super) struct Query {
    pub sql: String,
    pub params: Vec<Param>,
}

/// The columns an [`super::Entry`] is read from, in the order the readers take them.
pub(super) const COLUMNS: &str = "event_id, order_id, event_type, destination, attempt, at, \
    outcome, detail, http_status, error_class, latency_ms, request, response, recovery, trace_id";

/// The entries `f` selects, oldest first, at most `f.limit`.
pub(super) fn entries(f: &Filter, dialect: Dialect) -> Query {
    let mut params = Vec::new();
    let next = |p: Param, params: &mut Vec<Param>| -> String {
        params.push(p);
        match dialect {
            Dialect::Sqlite => format!("?{}", params.len()),
            Dialect::Postgres => format!("${}", params.len()),
        }
    };
    let mut terms = Vec::new();
    let mut equal = |column: &str, v: &Option<String>, params: &mut Vec<Param>| {
        if let Some(v) = v {
            terms.push(format!(
                "{column} = {}",
                next(Param::Text(v.clone()), params)
            ));
        }
    };
    equal("event_id", &f.event_id, &mut params);
    equal("order_id", &f.order_id, &mut params);
    equal("destination", &f.destination, &mut params);
    if let Some(since) = f.since {
        terms.push(format!(
            "at >= {}",
            next(Param::Int(since.timestamp_millis()), &mut params)
        ));
    }
    if let Some(until) = f.until {
        terms.push(format!(
            "at < {}",
            next(Param::Int(until.timestamp_millis()), &mut params)
        ));
    }
    if !f.outcomes.is_empty() {
        let term = match dialect {
            Dialect::Sqlite => {
                let each: Vec<String> = f
                    .outcomes
                    .iter()
                    .map(|o| next(Param::Text(o.clone()), &mut params))
                    .collect();
                format!("outcome IN ({})", each.join(", "))
            }
            Dialect::Postgres => {
                let list = next(Param::Texts(f.outcomes.clone()), &mut params);
                format!("outcome = ANY({list}::text[])")
            }
        };
        terms.push(term);
    }
    let limit = next(
        Param::Int(i64::try_from(f.limit).unwrap_or(i64::MAX)),
        &mut params,
    );
    let filter = match terms.is_empty() {
        true => String::new(),
        false => format!(" WHERE {}", terms.join(" AND ")),
    };
    Query {
        sql: format!("SELECT {COLUMNS} FROM entries{filter} ORDER BY at, id LIMIT {limit}"),
        params,
    }
}

impl rusqlite::ToSql for Param {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        match self {
            Param::Text(s) => s.to_sql(),
            Param::Int(i) => i.to_sql(),
            Param::Texts(_) => Err(rusqlite::Error::ToSqlConversionFailure(
                "a list is for PostgreSQL".into(),
            )),
        }
    }
}

impl Param {
    /// The value as tokio-postgres takes it.
    pub(super) fn pg(&self) -> &(dyn tokio_postgres::types::ToSql + Sync) {
        match self {
            Param::Text(s) => s,
            Param::Int(i) => i,
            Param::Texts(v) => v,
        }
    }
}

#[cfg(test)]
pub(in crate::journal) mod tests {
    use super::*;

    #[test]
    fn only_the_terms_a_filter_sets_are_written() {
        let f = Filter {
            destination: Some("hoqu".into()),
            since: Some("2026-11-20T14:00:00Z".parse().unwrap()),
            outcomes: vec!["delivered".into(), "duplicate".into()],
            limit: 10,
            ..Filter::default()
        };
        let q = entries(&f, Dialect::Sqlite);
        assert!(
            q.sql.ends_with(
                "FROM entries WHERE destination = ?1 AND at >= ?2 AND outcome IN (?3, ?4) ORDER BY at, id LIMIT ?5"
            ),
            "{}",
            q.sql
        );
        assert_eq!(q.params.len(), 5);
        let q = entries(&f, Dialect::Postgres);
        assert!(
            q.sql.ends_with(
                "WHERE destination = $1 AND at >= $2 AND outcome = ANY($3::text[]) ORDER BY at, id LIMIT $4"
            ),
            "{}",
            q.sql
        );
        let by_event = Filter {
            event_id: Some("e'; DROP TABLE entries; --".into()),
            limit: 1,
            ..Filter::default()
        };
        let q = entries(&by_event, Dialect::Sqlite);
        assert!(!q.sql.contains("DROP"), "values are parameters: {}", q.sql);
    }

    /// Every filter the commands, the console and recoveries ask for.
    pub(in crate::journal) fn every_filter() -> Vec<(&'static str, Filter)> {
        let t = |s: &str| Some(s.parse().unwrap());
        let f = |event: Option<&str>, order: Option<&str>, dest: Option<&str>| Filter {
            event_id: event.map(str::to_owned),
            order_id: order.map(str::to_owned),
            destination: dest.map(str::to_owned),
            limit: 10_000,
            ..Filter::default()
        };
        let window = |outcomes: &[&str], until: bool| Filter {
            since: t("2026-11-20T14:00:00Z"),
            until: if until {
                t("2026-11-20T16:00:00Z")
            } else {
                None
            },
            outcomes: outcomes.iter().map(|o| (*o).to_owned()).collect(),
            ..f(None, None, Some("hoqu"))
        };
        vec![
            ("by event", f(Some("e-1"), None, None)),
            ("by order", f(None, Some("o-1"), None)),
            (
                "by event at a destination",
                f(Some("e-1"), None, Some("hoqu")),
            ),
            (
                "by order at a destination",
                f(None, Some("o-1"), Some("hoqu")),
            ),
            (
                "by event, some outcomes",
                Filter {
                    outcomes: vec!["delivered".into()],
                    ..f(Some("e-1"), None, None)
                },
            ),
            ("a destination since", window(&[], false)),
            ("a destination's window", window(&[], true)),
            (
                "a destination's window, some outcomes",
                window(&["delivered", "dead_lettered"], true),
            ),
        ]
    }

    /// Each filter is served by an index: SQLite searches one, it never scans the table nor
    /// walks a whole index.
    #[test]
    fn every_filter_searches_an_index_in_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.db");
        let db = crate::journal::sqlite::Db::open_now(&path).unwrap();
        let conn = db.into_conn();
        for (what, f) in every_filter() {
            let q = entries(&f, Dialect::Sqlite);
            let mut stmt = conn
                .prepare(&format!("EXPLAIN QUERY PLAN {}", q.sql))
                .unwrap();
            let plan: Vec<String> = stmt
                .query_map(rusqlite::params_from_iter(q.params.iter()), |r| r.get(3))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            let on_entries: Vec<&String> = plan.iter().filter(|l| l.contains("entries")).collect();
            assert!(
                !on_entries.is_empty()
                    && on_entries
                        .iter()
                        .all(|l| l.starts_with("SEARCH entries USING")),
                "{what}: {plan:?}"
            );
        }
    }
}
