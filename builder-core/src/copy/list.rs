//! The list of what a large copy read, for `--explain-cache`: `path NUL value NUL`
//! records sorted in listing order (paths compared component by component), kept in a
//! file so that neither writing nor comparing it holds it in memory.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Write};
use std::path::Path;

/// The longest record field read back: longer means a damaged list.
const MAX_FIELD: usize = 64 * 1024;

/// Writes one record.
pub(crate) fn write_record(out: &mut impl Write, path: &[u8], value: &[u8]) -> io::Result<()> {
    out.write_all(path)?;
    out.write_all(&[0])?;
    out.write_all(value)?;
    out.write_all(&[0])
}

/// The records of a list file, in order; a damaged tail ends it.
fn read(file: &Path) -> impl Iterator<Item = (String, String)> {
    let mut reader = File::open(file).ok().map(BufReader::new);
    std::iter::from_fn(move || {
        let r = reader.as_mut()?;
        let mut field = || {
            let mut buf = Vec::new();
            let n = io::Read::take(&mut *r, MAX_FIELD as u64 + 1)
                .read_until(0, &mut buf)
                .ok()?;
            (n > 0 && buf.pop() == Some(0)).then_some(())?;
            String::from_utf8(buf).ok()
        };
        let path = field()?;
        let value = field()?;
        Some((path, value))
    })
}

/// One side of a comparison: a list in memory (few entries) or in a file.
pub enum Listed<'a> {
    /// An entry's `sources` map.
    Map(&'a BTreeMap<String, String>),
    /// A list file; a missing one reads as empty.
    File(&'a Path),
}

impl Listed<'_> {
    fn records(&self) -> Box<dyn Iterator<Item = (String, String)> + '_> {
        match self {
            Listed::Map(map) => {
                let mut v: Vec<(&String, &String)> = map.iter().collect();
                v.sort_by(|a, b| by_path(a.0, b.0));
                Box::new(v.into_iter().map(|(k, v)| (k.clone(), v.clone())))
            }
            Listed::File(file) => Box::new(read(file)),
        }
    }
}

fn by_path(a: &str, b: &str) -> Ordering {
    Path::new(a).cmp(Path::new(b))
}

/// The paths whose value differs between `before` and `after`, or that only one has,
/// sorted; at most `limit` of them, with how many there are in all.
pub fn changed(before: &Listed, after: &Listed, limit: usize) -> (Vec<String>, usize) {
    let mut a = before.records().peekable();
    let mut b = after.records().peekable();
    let mut names = Vec::new();
    let mut total = 0;
    let mut note = |name: &String| {
        total += 1;
        if names.len() < limit {
            names.push(name.clone());
        }
    };
    loop {
        let order = match (a.peek(), b.peek()) {
            (None, None) => break,
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (Some(x), Some(y)) => by_path(&x.0, &y.0),
        };
        match order {
            Ordering::Less => note(&a.next().expect("peeked").0),
            Ordering::Greater => note(&b.next().expect("peeked").0),
            Ordering::Equal => {
                let (x, y) = (a.next().expect("peeked"), b.next().expect("peeked"));
                if x.1 != y.1 {
                    note(&x.0);
                }
            }
        }
    }
    names.sort();
    (names, total)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file_of(dir: &Path, name: &str, records: &[(&str, &str)]) -> std::path::PathBuf {
        let path = dir.join(name);
        let mut out = Vec::new();
        for (p, v) in records {
            write_record(&mut out, p.as_bytes(), v.as_bytes()).expect("write");
        }
        std::fs::write(&path, out).expect("write list");
        path
    }

    #[test]
    fn changes_between_lists_in_files_and_maps_are_named_in_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        // Listing order: "a" < "a/b" < "a.b" (component order, not string order).
        let before = file_of(dir.path(), "1", &[("a", "d"), ("a/b", "1"), ("a.b", "2")]);
        let after = file_of(dir.path(), "2", &[("a", "d"), ("a/b", "9"), ("a.c", "2")]);
        let (names, total) = changed(&Listed::File(&before), &Listed::File(&after), 10);
        assert_eq!(names, ["a.b", "a.c", "a/b"]);
        assert_eq!(total, 3);
        let map: BTreeMap<String, String> = [("a", "d"), ("a/b", "1"), ("a.b", "2")]
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let (names, _) = changed(&Listed::Map(&map), &Listed::File(&before), 10);
        assert!(names.is_empty());
        let (names, total) = changed(&Listed::Map(&map), &Listed::File(&after), 1);
        assert_eq!((names.len(), total), (1, 3));
        // A missing or damaged list reads as empty (or as far as it is sound).
        let (_, total) = changed(
            &Listed::File(&dir.path().join("none")),
            &Listed::Map(&map),
            10,
        );
        assert_eq!(total, 3);
        std::fs::write(&before, b"a\0d\0a/b").expect("damage");
        let (names, _) = changed(&Listed::File(&before), &Listed::Map(&map), 10);
        assert_eq!(names, ["a.b", "a/b"]);
    }
}
