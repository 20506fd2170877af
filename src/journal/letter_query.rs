//! The index's statements, written for the filter given (only the terms it sets), so that
//! each is planned on the index that serves it; the same for the file and PostgreSQL. The
//! tests check each plan.

use super::letter::LetterFilter;
use crate::journal::query::{Dialect, Param, Query};

/// The columns a listed letter is read from, in order.
pub(in crate::journal) const LISTED: &str =
    "id, at, destination, reason, event_id, attempts, detail";

/// Whether the filter asks only what the kept counts answer (a destination, a reason).
pub(in crate::journal) fn counted(f: &LetterFilter) -> bool {
    f.since.is_none() && f.until.is_none() && f.event_id.is_none() && f.ids.is_empty()
}

struct Terms {
    dialect: Dialect,
    params: Vec<Param>,
    terms: Vec<String>,
}

impl Terms {
    fn new(dialect: Dialect) -> Terms {
        Terms {
            dialect,
            params: Vec::new(),
            terms: Vec::new(),
        }
    }

    fn next(&mut self, p: Param) -> String {
        self.params.push(p);
        match self.dialect {
            Dialect::Sqlite => format!("?{}", self.params.len()),
            Dialect::Postgres => format!("${}", self.params.len()),
        }
    }

    fn equal(&mut self, column: &str, v: &Option<String>) {
        if let Some(v) = v {
            let p = self.next(Param::Text(v.clone()));
            self.terms.push(format!("{column} = {p}"));
        }
    }

    fn filter(dialect: Dialect, f: &LetterFilter) -> Terms {
        let mut t = Terms::new(dialect);
        t.terms.push("state = 'waiting'".into());
        t.equal("destination", &f.destination);
        t.equal("reason", &f.reason);
        t.equal("event_id", &f.event_id);
        if let Some(since) = f.since {
            let p = t.next(Param::Int(since.timestamp_millis()));
            t.terms.push(format!("at >= {p}"));
        }
        if let Some(until) = f.until {
            let p = t.next(Param::Int(until.timestamp_millis()));
            t.terms.push(format!("at < {p}"));
        }
        if !f.ids.is_empty() {
            let term = match dialect {
                Dialect::Sqlite => {
                    let each: Vec<String> = f
                        .ids
                        .iter()
                        .map(|id| t.next(Param::Text(id.clone())))
                        .collect();
                    format!("id IN ({})", each.join(", "))
                }
                Dialect::Postgres => {
                    let list = t.next(Param::Texts(f.ids.clone()));
                    format!("id = ANY({list}::text[])")
                }
            };
            t.terms.push(term);
        }
        t
    }

    fn sql(&self) -> String {
        self.terms.join(" AND ")
    }
}

/// The kept counts of waiting letters by destination and reason, of the destination and
/// the reason `f` asks for, if any. When `f` asks more ([`counted`] is false), each group
/// is then counted by [`in_group`].
pub(in crate::journal) fn groups(f: &LetterFilter, dialect: Dialect) -> Query {
    let mut t = Terms::new(dialect);
    t.terms.push("waiting > 0".into());
    t.equal("destination", &f.destination);
    t.equal("reason", &f.reason);
    Query {
        sql: format!(
            "SELECT destination, reason, waiting FROM dead_letter_counts WHERE {} \
             ORDER BY destination, reason",
            t.sql()
        ),
        params: t.params,
    }
}

/// Whether `f` names an event or letters: a few rows, found by their own index.
pub(in crate::journal) fn narrow(f: &LetterFilter) -> bool {
    f.event_id.is_some() || !f.ids.is_empty()
}

/// The waiting letters of a [`narrow`] filter, counted by destination and reason, with the
/// oldest of each.
pub(in crate::journal) fn grouped(f: &LetterFilter, dialect: Dialect) -> Query {
    let t = Terms::filter(dialect, f);
    Query {
        sql: format!(
            "SELECT destination, reason, count(*), min(at) FROM dead_letters WHERE {} \
             GROUP BY destination, reason ORDER BY destination, reason",
            t.sql()
        ),
        params: t.params,
    }
}

/// The oldest waiting letter of one destination and reason: one step into the index by
/// destination and reason, for a group the kept counts have counted.
pub(in crate::journal) fn oldest(destination: &str, reason: &str, dialect: Dialect) -> Query {
    let f = LetterFilter {
        destination: Some(destination.to_owned()),
        reason: Some(reason.to_owned()),
        ..LetterFilter::default()
    };
    let t = Terms::filter(dialect, &f);
    Query {
        sql: format!("SELECT min(at) FROM dead_letters WHERE {}", t.sql()),
        params: t.params,
    }
}

/// How many waiting letters of one destination and reason `f` selects, and the oldest: one
/// search of the index by destination and reason (and time), whatever else `f` asks.
pub(in crate::journal) fn in_group(
    f: &LetterFilter,
    destination: &str,
    reason: &str,
    dialect: Dialect,
) -> Query {
    let f = LetterFilter {
        destination: Some(destination.to_owned()),
        reason: Some(reason.to_owned()),
        ..f.clone()
    };
    let t = Terms::filter(dialect, &f);
    Query {
        sql: format!(
            "SELECT count(*), min(at) FROM dead_letters WHERE {}",
            t.sql()
        ),
        params: t.params,
    }
}

/// The waiting letters `f` selects, oldest first, `limit` of them after the first `skip`.
pub(in crate::journal) fn page(f: &LetterFilter, skip: u64, limit: u64, dialect: Dialect) -> Query {
    let mut t = Terms::filter(dialect, f);
    let int = |v: u64| Param::Int(i64::try_from(v).unwrap_or(i64::MAX));
    let limit = t.next(int(limit));
    let skip = t.next(int(skip));
    // A narrow filter's few letters are found by their own index and then sorted: `+at`
    // keeps SQLite from walking another index in time order to spare that sort.
    let by = if narrow(f) { "+at" } else { "at" };
    Query {
        sql: format!(
            "SELECT {LISTED} FROM dead_letters WHERE {} ORDER BY {by}, destination, reason, seq \
             LIMIT {limit} OFFSET {skip}",
            t.sql()
        ),
        params: t.params,
    }
}

#[cfg(test)]
pub(in crate::journal) mod tests {
    use super::*;

    /// Every filter the console's pages and previews ask for.
    pub(in crate::journal) fn every_filter() -> Vec<(&'static str, LetterFilter)> {
        let t = |s: &str| Some(s.parse().unwrap());
        let d = |dest: Option<&str>, reason: Option<&str>| LetterFilter {
            destination: dest.map(str::to_owned),
            reason: reason.map(str::to_owned),
            ..LetterFilter::default()
        };
        let window = |f: LetterFilter| LetterFilter {
            since: t("2026-11-20T14:00:00Z"),
            until: t("2026-11-20T16:00:00Z"),
            ..f
        };
        vec![
            ("everything", d(None, None)),
            ("a destination", d(Some("hoqu"), None)),
            ("a reason", d(None, Some("partner_rejected"))),
            (
                "a destination and a reason",
                d(Some("hoqu"), Some("poison")),
            ),
            ("a window", window(d(None, None))),
            (
                "since",
                LetterFilter {
                    since: t("2026-11-20T14:00:00Z"),
                    ..d(None, None)
                },
            ),
            ("a destination's window", window(d(Some("hoqu"), None))),
            ("a reason's window", window(d(None, Some("poison")))),
            ("both in a window", window(d(Some("hoqu"), Some("poison")))),
            (
                "an event",
                LetterFilter {
                    event_id: Some("e-1".into()),
                    ..d(Some("hoqu"), None)
                },
            ),
            (
                "chosen letters",
                LetterFilter {
                    ids: vec!["a".into(), "b".into()],
                    ..d(None, None)
                },
            ),
        ]
    }

    #[test]
    fn only_the_terms_a_filter_sets_are_written_and_values_are_parameters() {
        let f = LetterFilter {
            destination: Some("x'; DROP TABLE dead_letters; --".into()),
            since: Some("2026-11-20T14:00:00Z".parse().unwrap()),
            ..LetterFilter::default()
        };
        let q = page(&f, 50, 50, Dialect::Sqlite);
        assert!(!q.sql.contains("DROP"), "{}", q.sql);
        assert!(
            q.sql.contains("WHERE state = 'waiting' AND destination = ?1 AND at >= ?2 ORDER BY at, destination, reason, seq LIMIT ?3 OFFSET ?4"),
            "{}",
            q.sql
        );
        let q = groups(&LetterFilter::default(), Dialect::Postgres);
        assert!(q.sql.contains("FROM dead_letter_counts"), "{}", q.sql);
        let q = in_group(&f, "hoqu", "poison", Dialect::Postgres);
        assert!(
            q.sql
                .contains("destination = $1 AND reason = $2 AND at >= $3"),
            "{}",
            q.sql
        );
    }
}
