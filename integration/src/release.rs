//! Which containerd release a run drives: the `containerd` first on `PATH`, asked once for its
//! `--version`. `make e2e CONTAINERD=X` puts a release's `bin/` first and sets
//! `PODSHIM_E2E_CONTAINERD=X`; a run whose binary reports another release fails instead of
//! silently testing the wrong one.

use std::fmt;
use std::process::Command;
use std::sync::OnceLock;

use anyhow::{bail, Context, Result};

/// A containerd release, `major.minor.patch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Release {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl Release {
    /// Whether this release is `major.minor` or later.
    pub fn at_least(&self, major: u32, minor: u32) -> bool {
        (self.major, self.minor) >= (major, minor)
    }

    /// Whether CRI asks every runtime for its features (`-info`), not only runc's shim, to
    /// advertise a handler's recursive read-only mounts and user namespaces (containerd#13504:
    /// 2.2.7, 2.3.4 and 2.4 on).
    pub fn introspects_every_runtime(&self) -> bool {
        self.at_least(2, 4)
            || (self.major, self.minor) == (2, 3) && self.patch >= 4
            || (self.major, self.minor) == (2, 2) && self.patch >= 7
    }

    /// From `containerd --version`: Debian prints `containerd github.com/containerd/containerd/v2
    /// 2.1.9+unknown`, release builds `containerd github.com/containerd/containerd/v2 v2.3.4 <commit>`.
    pub fn parse_version_output(out: &str) -> Result<Release> {
        out.split_whitespace()
            .skip(2)
            .find_map(|w| Release::parse(w).ok())
            .with_context(|| format!("no release number in `containerd --version`: {out:?}"))
    }

    /// `2.3.4`, `v2.3.4`, `2.1.9+unknown`, `2.4.0-beta.0`.
    pub fn parse(s: &str) -> Result<Release> {
        let s = s.strip_prefix('v').unwrap_or(s);
        let core = s.split(['+', '-']).next().unwrap_or_default();
        let mut parts = core.split('.').map(str::parse::<u32>);
        match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some(Ok(major)), Some(Ok(minor)), Some(Ok(patch)), None) => Ok(Release {
                major,
                minor,
                patch,
            }),
            _ => bail!("not a release number: {s:?}"),
        }
    }
}

impl fmt::Display for Release {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// The release of the `containerd` on `PATH`, checked against `PODSHIM_E2E_CONTAINERD` when set.
pub fn containerd_release() -> Result<Release> {
    static RELEASE: OnceLock<Result<Release, String>> = OnceLock::new();
    RELEASE
        .get_or_init(|| detect().map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(anyhow::Error::msg)
}

fn detect() -> Result<Release> {
    let out = Command::new("containerd")
        .arg("--version")
        .output()
        .context("running `containerd --version` (is containerd on PATH?)")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let found = Release::parse_version_output(&text)?;
    if let Ok(want) = std::env::var("PODSHIM_E2E_CONTAINERD") {
        if !want.is_empty() && Release::parse(&want)? != found {
            bail!(
                "PODSHIM_E2E_CONTAINERD={want}, but the containerd on PATH is {found} ({})",
                text.trim()
            );
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// containerd < 2.3 panics on a hostNetwork pod of a `sandboxer = "shim"` handler
    /// (containerd#12983): no drop-in but one headed "containerd >= 2.3 ONLY" may register one,
    /// and the default drop-in none at all.
    #[test]
    fn only_a_drop_in_headed_for_2_3_registers_the_shim_sandboxer() {
        let dir = crate::images::repo_root().join("config-snippets/conf.d");
        let mut shim_sandboxer_files = Vec::new();
        for e in std::fs::read_dir(&dir).unwrap() {
            let path = e.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            let registers = text
                .lines()
                .map(|l| l.split('#').next().unwrap_or_default().replace(' ', ""))
                .any(|l| l == "sandboxer=\"shim\"");
            if registers {
                let first = text.lines().next().unwrap_or_default();
                assert!(
                    first.starts_with("# containerd >= 2.3 ONLY"),
                    "{} registers a `shim` sandboxer handler without the >= 2.3 header",
                    path.display()
                );
                shim_sandboxer_files.push(path.file_name().unwrap().to_owned());
            }
        }
        assert_eq!(shim_sandboxer_files, ["52-podshim-pauseless.toml"]);
    }

    #[test]
    fn version_lines_of_debian_and_release_builds() {
        let debian = "containerd github.com/containerd/containerd/v2 2.1.9+unknown \n";
        let tagged = "containerd github.com/containerd/containerd/v2 v2.3.4 db8809540e1a7a9da5d518876894933ff55692ab\n";
        let r = Release::parse_version_output(debian).unwrap();
        assert_eq!((r.major, r.minor, r.patch), (2, 1, 9));
        let r = Release::parse_version_output(tagged).unwrap();
        assert_eq!(r.to_string(), "2.3.4");
        assert!(r.at_least(2, 3) && r.at_least(2, 2) && !r.at_least(2, 4));
        assert_eq!(Release::parse("2.4.0-beta.0").unwrap().to_string(), "2.4.0");
        assert!(Release::parse_version_output("containerd version unknown").is_err());
        assert!(Release::parse("2.3").is_err());
    }
}
