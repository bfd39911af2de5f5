//! The subset of containerd's filter language (`pkg/filters`) that List needs.
//!
//! Each request filter is `selector ("," selector)*` (all must match); several filters in one
//! request match if any matches; no filter matches everything. A selector is
//! `fieldpath [("==" | "!=") value]` (without an operator it tests presence); a fieldpath is
//! `field ("." field)*` where a field is `[A-Za-z0-9_]+` or a Go-quoted string; a value is a
//! Go-quoted string or a run of characters other than `,` and whitespace. Fields: `kind`, `name`,
//! `parent`, `labels.<key>`. The regexp operator `~=` and anything else is rejected with
//! InvalidArgument.
//!
//! containerd's metadata layer sends e.g. `labels."containerd.io/snapshot.reference"==<key>,parent=="<p>"`.

use crate::error::{Error, Result};
use crate::store::Info;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Op {
    Present,
    Eq(String),
    Ne(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Selector {
    path: Vec<String>,
    op: Op,
}

/// A parsed list of filters (OR of ANDs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter(Vec<Vec<Selector>>);

impl Filter {
    pub fn parse_all<S: AsRef<str>>(filters: &[S]) -> Result<Filter> {
        let mut out = Vec::new();
        for f in filters {
            let f = f.as_ref();
            if f.is_empty() {
                // containerd: an empty filter matches everything
                out.push(Vec::new());
                continue;
            }
            out.push(
                Parser { s: f, pos: 0 }
                    .selectors()
                    .map_err(|msg| Error::InvalidArgument(format!("filter {f:?}: {msg}")))?,
            );
        }
        Ok(Filter(out))
    }

    pub fn matches(&self, info: &Info) -> bool {
        self.0.is_empty() || self.0.iter().any(|all| all.iter().all(|s| s.matches(info)))
    }
}

impl Selector {
    fn matches(&self, info: &Info) -> bool {
        let value: Option<&str> = match self.path[0].as_str() {
            "kind" if self.path.len() == 1 => Some(info.kind.as_str()),
            "name" if self.path.len() == 1 => Some(&info.name),
            "parent" if self.path.len() == 1 => Some(&info.parent),
            "labels" if self.path.len() > 1 => info
                .labels
                .get(&self.path[1..].join("."))
                .map(String::as_str),
            _ => None,
        };
        match &self.op {
            Op::Present => value.is_some(),
            Op::Eq(v) => value == Some(v.as_str()),
            Op::Ne(v) => value != Some(v.as_str()),
        }
    }
}

struct Parser<'a> {
    s: &'a str,
    pos: usize,
}

type PResult<T> = std::result::Result<T, String>;

impl Parser<'_> {
    fn rest(&self) -> &str {
        &self.s[self.pos..]
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn skip_ws(&mut self) {
        while let Some(c) = self.peek() {
            if !c.is_whitespace() {
                break;
            }
            self.pos += c.len_utf8();
        }
    }

    fn selectors(&mut self) -> PResult<Vec<Selector>> {
        let mut out = vec![self.selector()?];
        loop {
            self.skip_ws();
            match self.peek() {
                None => return Ok(out),
                Some(',') => {
                    self.pos += 1;
                    out.push(self.selector()?);
                }
                Some(c) => return Err(format!("unexpected {c:?} at offset {}", self.pos)),
            }
        }
    }

    fn selector(&mut self) -> PResult<Selector> {
        let mut path = vec![self.field()?];
        while self.peek() == Some('.') {
            self.pos += 1;
            path.push(self.field()?);
        }
        self.skip_ws();
        let op = if self.rest().starts_with("==") {
            self.pos += 2;
            Op::Eq(self.value()?)
        } else if self.rest().starts_with("!=") {
            self.pos += 2;
            Op::Ne(self.value()?)
        } else if self.rest().starts_with("~=") {
            return Err("the regular expression operator `~=` is not supported".into());
        } else {
            match self.peek() {
                None | Some(',') => Op::Present,
                Some(c) => return Err(format!("expected an operator, found {c:?}")),
            }
        };
        Ok(Selector { path, op })
    }

    fn field(&mut self) -> PResult<String> {
        self.skip_ws();
        if self.peek() == Some('"') {
            return self.quoted();
        }
        let len = self
            .rest()
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(self.rest().len());
        if len == 0 {
            return Err(format!("expected a field name at offset {}", self.pos));
        }
        let f = self.rest()[..len].to_string();
        self.pos += len;
        Ok(f)
    }

    fn value(&mut self) -> PResult<String> {
        self.skip_ws();
        match self.peek() {
            Some('"') => self.quoted(),
            Some('/') | Some('|') => Err("alternative quoting is only valid with `~=`".into()),
            _ => {
                let len = self
                    .rest()
                    .find(|c: char| c == ',' || c.is_whitespace())
                    .unwrap_or(self.rest().len());
                if len == 0 {
                    return Err(format!("expected a value at offset {}", self.pos));
                }
                let v = self.rest()[..len].to_string();
                self.pos += len;
                Ok(v)
            }
        }
    }

    /// A Go double-quoted string literal (the escapes `strconv.Quote`/`%q` produce).
    fn quoted(&mut self) -> PResult<String> {
        let mut out = String::new();
        let mut chars = self.rest().char_indices();
        chars.next(); // opening quote
        while let Some((i, c)) = chars.next() {
            match c {
                '"' => {
                    self.pos += i + 1;
                    return Ok(out);
                }
                '\\' => {
                    let (_, e) = chars.next().ok_or("unterminated escape")?;
                    match e {
                        'n' => out.push('\n'),
                        't' => out.push('\t'),
                        'r' => out.push('\r'),
                        'a' => out.push('\x07'),
                        'b' => out.push('\x08'),
                        'f' => out.push('\x0c'),
                        'v' => out.push('\x0b'),
                        '\\' | '"' | '\'' => out.push(e),
                        'x' | 'u' | 'U' => {
                            let n = match e {
                                'x' => 2,
                                'u' => 4,
                                _ => 8,
                            };
                            let mut hex = String::new();
                            for _ in 0..n {
                                hex.push(chars.next().ok_or("short escape")?.1);
                            }
                            let v = u32::from_str_radix(&hex, 16).map_err(|e| e.to_string())?;
                            out.push(char::from_u32(v).ok_or("invalid code point")?);
                        }
                        other => return Err(format!("unsupported escape \\{other}")),
                    }
                }
                c => out.push(c),
            }
        }
        Err("unterminated quoted string".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Kind, Timestamp};

    fn info(name: &str, parent: &str, kind: Kind, labels: &[(&str, &str)]) -> Info {
        Info {
            name: name.into(),
            parent: parent.into(),
            kind,
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            created: Timestamp::now(),
            updated: Timestamp::now(),
        }
    }

    #[test]
    fn containerd_reference_filter() {
        let f = Filter::parse_all(&[
            r#"labels."containerd.io/snapshot.reference"==sha256:abc,parent=="k8s.io/1/p""#,
        ])
        .unwrap();
        let hit = info(
            "k8s.io/2/sha256:abc",
            "k8s.io/1/p",
            Kind::Committed,
            &[("containerd.io/snapshot.reference", "sha256:abc")],
        );
        assert!(f.matches(&hit));
        let mut miss = hit.clone();
        miss.parent = "other".into();
        assert!(!f.matches(&miss));
        let mut miss = hit.clone();
        miss.labels.clear();
        assert!(!f.matches(&miss));
    }

    #[test]
    fn or_and_presence_and_ne() {
        let a = info("a", "", Kind::Active, &[("x", "1")]);
        let c = info("c", "", Kind::Committed, &[]);
        let f = Filter::parse_all(&["kind==active", "name==c"]).unwrap();
        assert!(f.matches(&a) && f.matches(&c));
        let f = Filter::parse_all(&["labels.x"]).unwrap();
        assert!(f.matches(&a) && !f.matches(&c));
        let f = Filter::parse_all(&["kind!=committed, labels.x==1"]).unwrap();
        assert!(f.matches(&a) && !f.matches(&c));
        let none: [&str; 0] = [];
        assert!(Filter::parse_all(&none).unwrap().matches(&c));
        assert!(Filter::parse_all(&[""]).unwrap().matches(&c));
        let f = Filter::parse_all(&[r#"labels."a.b"=="q\"\x41""#]).unwrap();
        assert!(f.matches(&info("n", "", Kind::View, &[("a.b", "q\"A")])));
        // labels.a.b (unquoted dotted) is the same key
        let f = Filter::parse_all(&["labels.a.b==v"]).unwrap();
        assert!(f.matches(&info("n", "", Kind::View, &[("a.b", "v")])));
    }

    #[test]
    fn rejects_unsupported() {
        for bad in [
            "name~=foo",
            "name==",
            "==x",
            "name==\"open",
            "name==a b",
            "name=x",
            "labels.\"k\\q\"==1",
            "name==/re/",
        ] {
            let err = Filter::parse_all(&[bad]).unwrap_err();
            assert!(matches!(err, Error::InvalidArgument(_)), "{bad}: {err}");
        }
    }
}
