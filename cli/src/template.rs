//! The part of Go's text/template that docker's `--format` flags are used with:
//! `{{.Field}}`, `{{.A.B}}`, `{{json .Field}}`, `{{json .}}`, and a `table` prefix that
//! adds a header row and aligns tab-separated columns. Values print as Go prints them
//! (`[a b]` for a list, `map[k:v]` for an object, `<nil>` for null).
//!
//! Written here rather than taken from a crate: the Go-template crates for Rust are
//! unmaintained, and docker users need only these forms.

use serde_json::Value;

/// A parsed `--format` value.
#[derive(Debug)]
pub(crate) struct Template {
    parts: Vec<Part>,
    /// `table ...`: a header row, columns aligned.
    pub(crate) table: bool,
}

#[derive(Debug)]
enum Part {
    Text(String),
    Field { path: Vec<String>, json: bool },
}

impl Template {
    /// Parses `format`; `\t` and `\n` written out stand for a tab and a newline, as
    /// docker reads them.
    pub(crate) fn parse(format: &str) -> Result<Template, String> {
        let (table, body) = match format.strip_prefix("table") {
            Some(rest) if rest.is_empty() || rest.starts_with(char::is_whitespace) => {
                (true, rest.trim_start())
            }
            _ => (false, format),
        };
        let body = body.replace("\\t", "\t").replace("\\n", "\n");
        let mut parts = Vec::new();
        let mut rest = body.as_str();
        while let Some(open) = rest.find("{{") {
            if open > 0 {
                parts.push(Part::Text(rest[..open].to_owned()));
            }
            let after = &rest[open + 2..];
            let close = after
                .find("}}")
                .ok_or_else(|| format!("unclosed {{{{ in format {format:?}"))?;
            let action = after[..close].trim().trim_matches('-').trim();
            parts.push(parse_action(action)?);
            rest = &after[close + 2..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_owned()));
        }
        Ok(Template { parts, table })
    }

    /// The template applied to `value`.
    pub(crate) fn render(&self, value: &Value) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Field { path, json } => {
                    let found = lookup(value, path);
                    if *json {
                        out.push_str(&found.map_or("null".to_owned(), Value::to_string));
                    } else {
                        out.push_str(&found.map_or("<no value>".to_owned(), go_string));
                    }
                }
            }
        }
        out
    }

    /// The header row of a `table` template: each field's name in capitals, words
    /// split (`CreatedSince` is `CREATED SINCE`), or what `header` maps it to.
    pub(crate) fn header(&self, header: impl Fn(&str) -> Option<&'static str>) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Field { path, .. } => {
                    let name = path.join(".");
                    match header(&name) {
                        Some(h) => out.push_str(h),
                        None => out.push_str(&capitals(&name)),
                    }
                }
            }
        }
        out
    }
}

fn parse_action(action: &str) -> Result<Part, String> {
    let (json, path) = match action.strip_prefix("json") {
        Some(rest) if rest.starts_with(char::is_whitespace) => (true, rest.trim()),
        _ => (false, action),
    };
    let unsupported = || {
        format!(
            "unsupported template action {{{{{action}}}}}: rbuild's --format understands \
             {{{{.Field}}}}, {{{{.A.B}}}}, {{{{json .Field}}}} and a table prefix"
        )
    };
    let fields = path.strip_prefix('.').ok_or_else(unsupported)?;
    let path: Vec<String> = if fields.is_empty() {
        Vec::new()
    } else {
        fields.split('.').map(str::to_owned).collect()
    };
    if path
        .iter()
        .any(|p| p.is_empty() || !p.chars().all(|c| c.is_alphanumeric() || c == '_'))
    {
        return Err(unsupported());
    }
    Ok(Part::Field { path, json })
}

fn lookup<'a>(value: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(value, |v, key| v.get(key.as_str()))
}

/// A value as Go's fmt prints it in a template.
fn go_string(value: &Value) -> String {
    match value {
        Value::Null => "<nil>".to_owned(),
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::Array(items) => {
            let inner: Vec<String> = items.iter().map(go_string).collect();
            format!("[{}]", inner.join(" "))
        }
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            let inner: Vec<String> = keys
                .into_iter()
                .map(|k| format!("{k}:{}", go_string(&map[k])))
                .collect();
            format!("map[{}]", inner.join(" "))
        }
    }
}

fn capitals(name: &str) -> String {
    let mut out = String::new();
    for (i, c) in name.chars().enumerate() {
        if c.is_uppercase() && i > 0 && !out.ends_with(' ') {
            out.push(' ');
        }
        out.extend(c.to_uppercase());
    }
    out.replace('.', " ")
}

/// Rows of tab-separated cells, aligned in columns three spaces apart, as docker's
/// tables are.
pub(crate) fn align(rows: &[String]) -> Vec<String> {
    let cells: Vec<Vec<&str>> = rows.iter().map(|r| r.split('\t').collect()).collect();
    let columns = cells.iter().map(Vec::len).max().unwrap_or(0);
    let mut widths = vec![0usize; columns];
    for row in &cells {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    cells
        .iter()
        .map(|row| {
            let line: Vec<String> = row
                .iter()
                .zip(&widths)
                // Padded by hand: format!'s width stops at 65535 (a cell of a long
                // list of platforms is wider).
                .map(|(c, w)| {
                    let pad = w.saturating_sub(c.chars().count());
                    format!("{c}{}", " ".repeat(pad))
                })
                .collect();
            line.join("   ").trim_end().to_owned()
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_cell_wider_than_format_widths_is_aligned() {
        let wide = "x".repeat(70_000);
        let rows = align(&[format!("a\t{wide}\tb"), "cc\td\te".to_owned()]);
        assert_eq!(rows[0], format!("a    {wide}   b"));
        assert_eq!(rows[1], format!("cc   d{}   e", " ".repeat(69_999)));
    }

    #[test]
    fn fields_json_and_go_values() {
        let v = serde_json::json!({
            "Id": "sha256:ab", "Config": {"Env": ["A=1", "B=2"], "Labels": {"k": "v"}, "User": null}
        });
        let t = |f: &str| Template::parse(f).unwrap().render(&v);
        assert_eq!(t("{{.Id}}"), "sha256:ab");
        assert_eq!(t("{{ .Config.Env }}"), "[A=1 B=2]");
        assert_eq!(t("{{json .Config.Env}}"), r#"["A=1","B=2"]"#);
        assert_eq!(t("{{.Config.Labels}}"), "map[k:v]");
        assert_eq!(t("{{.Config.User}}"), "<nil>");
        assert_eq!(t("{{.Nope}}"), "<no value>");
        assert_eq!(t("id={{.Id}}\\t!"), "id=sha256:ab\t!");
        assert!(Template::parse("{{range .X}}").is_err());
        assert!(Template::parse("{{.Id").is_err());
    }

    #[test]
    fn tables_have_headers_and_aligned_columns() {
        let t = Template::parse("table {{.Repository}}\\t{{.ID}}\\t{{.CreatedSince}}").unwrap();
        assert!(t.table);
        let head = t.header(|f| (f == "ID").then_some("IMAGE ID"));
        assert_eq!(head, "REPOSITORY\tIMAGE ID\tCREATED SINCE");
        let rows = align(&[head, "busybox\tab12\t2 days ago".to_owned()]);
        assert_eq!(rows[0], "REPOSITORY   IMAGE ID   CREATED SINCE");
        assert_eq!(rows[1], "busybox      ab12       2 days ago");
    }
}
