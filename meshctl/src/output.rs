//! Printing for the inspection commands (`proxy-status`, `proxy-config`): the
//! `-o table|json|yaml` switch, a small aligned-columns [`Table`] in `kubectl`'s style,
//! humanized ages ([`age`]) and RFC 3339 times ([`rfc3339`]).
//!
//! JSON and YAML print the control plane's documents as they are (pretty JSON, YAML via
//! serde-saphyr), so scripts read the same shapes that `mesh_api::status` defines.

use std::io::{self, Write};
use std::time::Duration;

use serde::Serialize;

/// What `-o` selects for commands that print tables.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Aligned columns for people.
    #[default]
    Table,
    /// The document as pretty-printed JSON.
    Json,
    /// The document as YAML.
    Yaml,
}

/// Writes `value` as pretty JSON or YAML (ending in a newline). Panics on
/// [`Format::Table`], which each command renders itself.
pub fn write_document<T: Serialize>(
    format: Format,
    value: &T,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    match format {
        Format::Json => {
            serde_json::to_writer_pretty(&mut *out, value)?;
            writeln!(out)?;
        }
        Format::Yaml => {
            let text = serde_saphyr::to_string(value)?;
            out.write_all(text.as_bytes())?;
            if !text.ends_with('\n') {
                writeln!(out)?;
            }
        }
        Format::Table => unreachable!("tables are rendered by each command"),
    }
    Ok(())
}

/// Columns separated by at least [`Table::GAP`] spaces, each as wide as its widest cell;
/// the last column is not padded. A row may carry detail lines, printed under it as they
/// are (indented by the caller) and left out of the column widths.
#[derive(Debug, Clone, Default)]
pub struct Table {
    header: Vec<String>,
    rows: Vec<Row>,
}

#[derive(Debug, Clone)]
struct Row {
    cells: Vec<String>,
    details: Vec<String>,
}

// === impl Table ===

impl Table {
    /// Spaces between columns.
    pub const GAP: usize = 3;

    /// A table with these column headers.
    pub fn new(header: &[&str]) -> Self {
        Self {
            header: header.iter().map(|h| (*h).to_owned()).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row; missing cells print empty, extra cells are kept.
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(Row {
            cells,
            details: Vec::new(),
        });
    }

    /// Adds a detail line under the last row (or, before any row, under the header).
    pub fn detail(&mut self, line: String) {
        match self.rows.last_mut() {
            Some(row) => row.details.push(line),
            None => self.rows.push(Row {
                cells: Vec::new(),
                details: vec![line],
            }),
        }
    }

    /// Whether no row was added.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Writes the header and the rows.
    pub fn write(&self, out: &mut impl Write) -> io::Result<()> {
        let columns = self
            .rows
            .iter()
            .map(|r| r.cells.len())
            .chain([self.header.len()])
            .max()
            .unwrap_or(0);
        let mut widths = vec![0; columns];
        for cells in std::iter::once(&self.header).chain(self.rows.iter().map(|r| &r.cells)) {
            for (w, cell) in widths.iter_mut().zip(cells) {
                *w = (*w).max(cell.chars().count());
            }
        }
        write_cells(&self.header, &widths, out)?;
        for row in &self.rows {
            if !row.cells.is_empty() {
                write_cells(&row.cells, &widths, out)?;
            }
            for line in &row.details {
                writeln!(out, "{line}")?;
            }
        }
        Ok(())
    }

    /// The table as a string.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        self.write(&mut buf).expect("writing to a Vec cannot fail");
        String::from_utf8(buf).expect("cells are strings")
    }
}

fn write_cells(cells: &[String], widths: &[usize], out: &mut impl Write) -> io::Result<()> {
    let mut line = String::new();
    let last = cells.len().saturating_sub(1);
    for (i, cell) in cells.iter().enumerate() {
        line.push_str(cell);
        if i < last {
            let pad = widths[i] - cell.chars().count() + Table::GAP;
            line.extend(std::iter::repeat_n(' ', pad));
        }
    }
    writeln!(out, "{}", line.trim_end())
}

/// A duration for people, two units at most: `850ms`, `12s`, `3m4s`, `2h5m`, `3d4h`
/// (a zero second unit is left out: `3m`, `2h`, `3d`).
pub fn age(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let s = d.as_secs();
    let (big, small, units) = match s {
        0..60 => return format!("{s}s"),
        60..3600 => (s / 60, s % 60, ("m", "s")),
        3600..86400 => (s / 3600, (s % 3600) / 60, ("h", "m")),
        _ => (s / 86400, (s % 86400) / 3600, ("d", "h")),
    };
    if small == 0 {
        format!("{big}{}", units.0)
    } else {
        format!("{big}{}{small}{}", units.0, units.1)
    }
}

/// The age at `now_ms` of something that happened at `then_ms` (both Unix milliseconds of
/// one clock); zero when `then_ms` is in the future.
pub fn age_between(then_ms: u64, now_ms: u64) -> String {
    age(Duration::from_millis(now_ms.saturating_sub(then_ms)))
}

/// A Unix time in seconds as an RFC 3339 UTC timestamp, `2023-11-14T22:13:20Z`.
pub fn rfc3339(unix_s: i64) -> String {
    let (y, m, d) = civil_from_days(unix_s.div_euclid(86_400));
    let s = unix_s.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        s / 3600,
        s % 3600 / 60,
        s % 60
    )
}

/// The proleptic Gregorian (year, month, day) `days` after 1970-01-01 (Howard Hinnant's
/// `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // day of era, [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // day of year from March 1, [0, 365]
    let mp = (5 * doy + 2) / 153; // month from March, [0, 11]
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// The name serde gives a unit enum variant (`p2cEwma`, `istioMutual`): the spelling users
/// write in YAML, so tables and config agree.
pub fn serde_name<T: Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(_) => "?".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn humanizes_ages() {
        let ms = Duration::from_millis;
        let s = Duration::from_secs;
        assert_eq!(age(ms(0)), "0ms");
        assert_eq!(age(ms(850)), "850ms");
        assert_eq!(age(ms(999)), "999ms");
        assert_eq!(age(ms(1000)), "1s");
        assert_eq!(age(ms(12_400)), "12s");
        assert_eq!(age(s(59)), "59s");
        assert_eq!(age(s(60)), "1m");
        assert_eq!(age(s(184)), "3m4s");
        assert_eq!(age(s(3599)), "59m59s");
        assert_eq!(age(s(3600)), "1h");
        assert_eq!(age(s(2 * 3600 + 5 * 60 + 59)), "2h5m");
        assert_eq!(age(s(86_399)), "23h59m");
        assert_eq!(age(s(86_400)), "1d");
        assert_eq!(age(s(3 * 86_400 + 4 * 3600 + 7)), "3d4h");
        assert_eq!(age_between(1_000, 13_000), "12s");
        // A timestamp after `now` (another clock, rounding) is not negative.
        assert_eq!(age_between(13_000, 1_000), "0ms");
    }

    #[test]
    fn formats_rfc3339_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        // A leap day, the last second before it, and a century that is not a leap year.
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(951_782_399), "2000-02-28T23:59:59Z");
        assert_eq!(rfc3339(4_107_542_400), "2100-03-01T00:00:00Z");
        assert_eq!(rfc3339(-1), "1969-12-31T23:59:59Z");
        assert_eq!(rfc3339(253_402_300_799), "9999-12-31T23:59:59Z");
    }

    #[test]
    fn aligns_columns_without_trailing_spaces() {
        let mut t = Table::new(&["NAME", "SYNC", "AGE"]);
        t.row(vec!["a.default".into(), "SYNCED".into(), "3s".into()]);
        t.row(vec![
            "longer-name.ns".into(),
            "NACKED".into(),
            String::new(),
        ]);
        t.detail("  detail line that is wider than every column".into());
        t.row(vec!["é.x".into(), "STALE".into(), "1m".into()]);
        assert_eq!(
            t.render(),
            "\
NAME             SYNC     AGE
a.default        SYNCED   3s
longer-name.ns   NACKED
  detail line that is wider than every column
é.x              STALE    1m
"
        );
        assert!(!t.is_empty());
        assert!(Table::new(&["X"]).is_empty());
        assert_eq!(Table::new(&["X", "Y"]).render(), "X   Y\n");
    }

    #[test]
    fn names_enum_values_as_serde_does() {
        use mesh_api::model::{LoadBalancer, TlsMode};
        assert_eq!(serde_name(&LoadBalancer::P2cEwma), "p2cEwma");
        assert_eq!(serde_name(&TlsMode::IstioMutual), "istioMutual");
    }

    #[test]
    fn writes_json_and_yaml() {
        let value = serde_json::json!({"a": [1, 2], "b": "x"});
        let mut json = Vec::new();
        write_document(Format::Json, &value, &mut json).unwrap();
        let back: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(back, value);
        let mut yaml = Vec::new();
        write_document(Format::Yaml, &value, &mut yaml).unwrap();
        let text = String::from_utf8(yaml).unwrap();
        assert!(text.ends_with('\n'), "{text}");
        let back: serde_json::Value = serde_saphyr::from_str(&text).unwrap();
        assert_eq!(back, value);
    }
}
