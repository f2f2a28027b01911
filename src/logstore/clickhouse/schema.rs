//! Janus's tables in ClickHouse: created when missing, checked at start-up. One row per stored
//! line, `kind, target, stream, container, ts, time, seq, line` (`stream` is the pod or
//! process, `target` the namespace or node, `time` the time as a Lethe file wrote it when it was
//! imported — empty for pushes —, `seq` the push order of lines with the same time), daily
//! partitions (retention drops whole days), sorted by stream and time.
//!
//! The base schema runs on 18.16, the oldest server tested here; on servers from 21.8 on, the
//! stream columns are `LowCardinality`, the time and line are compressed with codecs that suit
//! them, and the line has an n-gram bloom-filter index that lets `LIKE '%x%'` skip granules
//! (`docs/storage.md` has the numbers).

use super::client::{ChError, Client};
use super::sql::quote;

/// Columns and types every server gets: what the reader and writer rely on.
pub const COLUMNS: [(&str, &str); 8] = [
    ("kind", "Enum8('pod' = 1, 'node' = 2)"),
    ("target", "String"),
    ("stream", "String"),
    ("container", "String"),
    ("ts", "Int64"),
    ("time", "String"),
    ("seq", "UInt64"),
    ("line", "String"),
];

/// A server version, major and minor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version(pub u32, pub u32);

impl Version {
    pub fn parse(text: &str) -> Option<Version> {
        let mut parts = text.trim().split('.');
        let major = parts.next()?.parse().ok()?;
        let minor = parts.next()?.parse().ok()?;
        Some(Version(major, minor))
    }

    /// `LowCardinality`, column codecs and n-gram skip indexes without experimental settings.
    pub fn is_modern(self) -> bool {
        self >= Version(21, 8)
    }
}

/// Where the tables are, and how they are made.
#[derive(Debug, Clone)]
pub struct Layout {
    pub database: String,
    /// `remote_servers` cluster: local tables on every node plus a `Distributed` table.
    pub cluster: Option<String>,
    pub version: Version,
}

impl Layout {
    /// The table every read and write names (the `Distributed` one on a cluster).
    pub fn table(&self) -> String {
        format!("{}.logs", ident(&self.database))
    }

    /// The table holding the rows on this node (partitions are dropped there).
    pub fn local_table(&self) -> String {
        match self.cluster {
            Some(_) => format!("{}.logs_local", ident(&self.database)),
            None => self.table(),
        }
    }

    fn on_cluster(&self) -> String {
        match &self.cluster {
            Some(c) => format!(" ON CLUSTER {}", ident(c)),
            None => String::new(),
        }
    }

    /// The statements that create the database and tables when missing.
    pub fn create_statements(&self) -> Vec<String> {
        let modern = self.version.is_modern();
        let columns: Vec<String> = COLUMNS
            .iter()
            .map(|(name, ty)| {
                let ty = match (*name, modern) {
                    ("target" | "stream" | "container", true) => "LowCardinality(String)".into(),
                    ("ts", true) => format!("{ty} CODEC(DoubleDelta, ZSTD(1))"),
                    ("seq", true) => format!("{ty} CODEC(Delta, ZSTD(1))"),
                    ("time", true) => format!("{ty} CODEC(ZSTD(1))"),
                    ("line", true) => format!("{ty} CODEC(ZSTD(1))"),
                    _ => ty.to_string(),
                };
                format!("{name} {ty}")
            })
            .collect();
        let mut body = columns.join(", ");
        if modern {
            body.push_str(", INDEX line_ngrams line TYPE ngrambf_v1(3, 65536, 2, 0) GRANULARITY 1");
        }
        let engine = "ENGINE = MergeTree PARTITION BY toDate(intDiv(ts, 1000000000)) \
                      ORDER BY (kind, target, stream, container, ts)";
        let mut out = vec![format!(
            "CREATE DATABASE IF NOT EXISTS {}{}",
            ident(&self.database),
            self.on_cluster()
        )];
        out.push(format!(
            "CREATE TABLE IF NOT EXISTS {}{} ({body}) {engine}",
            self.local_table(),
            self.on_cluster()
        ));
        if let Some(cluster) = &self.cluster {
            out.push(format!(
                "CREATE TABLE IF NOT EXISTS {}{} AS {} ENGINE = Distributed({}, {}, logs_local, sipHash64(target))",
                self.table(),
                self.on_cluster(),
                self.local_table(),
                ident(cluster),
                ident(&self.database),
            ));
        }
        out
    }
}

/// A name as an identifier: backquoted, so any database or cluster name is safe.
pub fn ident(name: &str) -> String {
    format!("`{}`", name.replace('\\', "\\\\").replace('`', "\\`"))
}

/// Detects the version, creates what is missing and checks that the table has every column
/// Janus reads and writes with its type, naming what is wrong.
pub fn prepare(client: &Client, database: &str, cluster: Option<&str>) -> Result<Layout, String> {
    let version_text = client
        .execute("ddl", "SELECT version()")
        .map_err(|e| e.to_string())?;
    let version = Version::parse(&version_text).ok_or_else(|| {
        format!(
            "ClickHouse at {} answered version {version_text:?}, which Janus cannot read",
            client.url()
        )
    })?;
    let layout = Layout {
        database: database.to_string(),
        cluster: cluster.map(str::to_string),
        version,
    };
    // Only what is missing is created: on a cluster, `ON CLUSTER` needs distributed DDL
    // (ZooKeeper), which a cluster whose tables an operator made beforehand may not have.
    let existing = client
        .execute(
            "ddl",
            &format!(
                "SELECT name FROM system.tables WHERE database = {} FORMAT TabSeparated",
                quote(database)
            ),
        )
        .map_err(|e| e.to_string())?;
    let exists = |table: &str| {
        let name = table.rsplit('.').next().unwrap_or(table);
        existing.lines().any(|l| l == name)
    };
    let statements = layout.create_statements();
    let needed: Vec<&String> = if exists(&layout.table()) && exists(&layout.local_table()) {
        Vec::new()
    } else {
        statements.iter().collect()
    };
    for statement in needed {
        client
            .execute("ddl", statement)
            .map_err(|e| format!("creating Janus's tables: {e}"))?;
    }
    for table in [layout.table(), layout.local_table()] {
        check(client, &layout, &table).map_err(|e| e.to_string())?;
    }
    Ok(layout)
}

fn check(client: &Client, layout: &Layout, table: &str) -> Result<(), String> {
    let name = table.rsplit('.').next().unwrap_or("logs").trim_matches('`');
    let sql = format!(
        "SELECT name, type FROM system.columns WHERE database = {} AND table = {} FORMAT TabSeparated",
        quote(&layout.database),
        quote(name)
    );
    let answer = client
        .execute("ddl", &sql)
        .map_err(|e: ChError| e.to_string())?;
    let found: Vec<(&str, &str)> = answer.lines().filter_map(|l| l.split_once('\t')).collect();
    if found.is_empty() {
        return Err(format!("ClickHouse table {table} does not exist"));
    }
    for (column, ty) in COLUMNS {
        let Some((_, have)) = found.iter().find(|(n, _)| *n == column) else {
            return Err(format!(
                "ClickHouse table {table} has no column {column} (was it made by another program? Janus needs {})",
                COLUMNS.map(|(n, _)| n).join(", ")
            ));
        };
        let have = have.replace("\\'", "'");
        let base = have
            .strip_prefix("LowCardinality(")
            .and_then(|t| t.strip_suffix(')'))
            .unwrap_or(&have);
        if base != ty {
            return Err(format!(
                "ClickHouse table {table} column {column} is {have}, Janus needs {ty}"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_choose_the_schema() {
        assert_eq!(Version::parse("18.16.1\n"), Some(Version(18, 16)));
        assert!(!Version(18, 16).is_modern());
        assert!(Version(26, 9).is_modern());
        let old = Layout {
            database: "janus".into(),
            cluster: None,
            version: Version(18, 16),
        };
        let ddl = old.create_statements();
        assert_eq!(ddl.len(), 2);
        assert!(!ddl[1].contains("LowCardinality") && !ddl[1].contains("CODEC"));
        let modern = Layout {
            cluster: Some("two".into()),
            version: Version(24, 3),
            ..old
        };
        let ddl = modern.create_statements();
        assert_eq!(ddl.len(), 3);
        assert!(ddl[1].contains("`janus`.logs_local ON CLUSTER `two`"));
        assert!(ddl[1].contains("LowCardinality(String)") && ddl[1].contains("ngrambf_v1"));
        assert!(ddl[2].contains("Distributed(`two`, `janus`, logs_local"));
        assert_eq!(ident("a`b"), "`a\\`b`");
    }
}
