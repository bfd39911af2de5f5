//! The one rule for the names podshim takes from containerd and turns into paths and sockets:
//! containerd's identifier rule (`pkg/identifiers`), which every container, exec, sandbox and
//! namespace name it hands out already obeys. 1 to 76 ASCII letters and digits, in runs joined
//! by a single `.`, `_` or `-`: never empty, never a path separator, never `.` or `..`.

use std::fmt;

/// containerd's `identifiers.maxLength`.
pub const MAX_LEN: usize = 76;

/// A name that breaks the rule; says which kind of name it was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidId {
    pub what: &'static str,
    pub id: String,
}

impl fmt::Display for InvalidId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid {} {:?}: must be 1 to {MAX_LEN} letters and digits, runs joined by one '.', '_' or '-'",
            self.what, self.id
        )
    }
}

impl std::error::Error for InvalidId {}

pub fn is_valid(id: &str) -> bool {
    id.len() <= MAX_LEN
        && id
            .split(['.', '_', '-'])
            .all(|run| !run.is_empty() && run.bytes().all(|b| b.is_ascii_alphanumeric()))
}

/// `id` if it obeys the rule; `what` names it in the error ("container id", "namespace").
pub fn validate(what: &'static str, id: &str) -> Result<(), InvalidId> {
    match is_valid(id) {
        true => Ok(()),
        false => Err(InvalidId {
            what,
            id: id.to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn containerds_identifiers() {
        for ok in [
            "a",
            "k8s.io",
            "a-b.c_d",
            "0123456789abcdef",
            &"x".repeat(76),
        ] {
            assert!(is_valid(ok), "{ok:?}");
        }
        for bad in [
            "",
            ".",
            "..",
            "../x",
            "a/b",
            "-a",
            "a-",
            ".hidden",
            "a..b",
            "a._b",
            "a b",
            "a\0b",
            "é",
            &"x".repeat(77),
        ] {
            assert!(!is_valid(bad), "{bad:?}");
        }
    }

    #[test]
    fn the_error_names_the_kind_of_name() {
        let e = validate("sandbox id", "a..b").unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid sandbox id \"a..b\": must be 1 to 76 letters and digits, runs joined by one '.', '_' or '-'"
        );
    }
}
