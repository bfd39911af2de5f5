//! What a daemon's `--version` prints: `<name> <workspace version> (<commit>)`. The commit is what
//! `PODSHIM_GIT_COMMIT` held when this crate was built (the Makefile sets it), else `unknown`.

pub fn version(name: &str) -> String {
    let commit = option_env!("PODSHIM_GIT_COMMIT")
        .filter(|c| !c.is_empty())
        .unwrap_or("unknown");
    format!("{name} {} ({commit})", env!("CARGO_PKG_VERSION"))
}
