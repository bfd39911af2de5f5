//! Reading containerd's log file: its tail, its error lines, and the errors podshim causes.

use std::fs::{self, File};
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

/// containerd error lines that mean podshim answered something containerd could not use; any
/// of them fails the case that caused it.
const PODSHIM_CAUSED: [&str; 2] = [
    // containerd >= 2.3 reads the spec StartSandbox returned (containerd#12840).
    "failed to unmarshal sandbox spec",
    // CRI >= 2.3 parses the sandbox's verbose info as its SandboxInfo.
    "failed to unmarshal sandbox info",
];

/// The lines of a containerd log that name an error in [`PODSHIM_CAUSED`].
pub fn podshim_caused_errors(path: &Path) -> Vec<String> {
    let s = fs::read_to_string(path).unwrap_or_default();
    s.lines()
        .filter(|l| l.contains("level=error") || l.contains("level=warning"))
        .filter(|l| PODSHIM_CAUSED.iter().any(|p| l.contains(p)))
        .map(|l| truncate(l, 400))
        .collect()
}

/// The last `max` lines of a containerd log at level error/fatal or mentioning a panic.
pub fn log_errors(path: &Path, max: usize) -> String {
    let s = fs::read_to_string(path).unwrap_or_default();
    let v: Vec<&str> = s
        .lines()
        .filter(|l| l.contains("level=error") || l.contains("level=fatal") || l.contains("panic"))
        .collect();
    v[v.len().saturating_sub(max)..]
        .iter()
        .map(|l| truncate(l, 600))
        .collect::<Vec<_>>()
        .join("\n")
}

pub fn log_tail(path: &Path, n: usize) -> String {
    let Ok(mut f) = File::open(path) else {
        return format!("(no log at {})", path.display());
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let start = len.saturating_sub(256 * 1024);
    let _ = f.seek(SeekFrom::Start(start));
    let mut s = String::new();
    let mut buf = Vec::new();
    let _ = f.read_to_end(&mut buf);
    s.push_str(&String::from_utf8_lossy(&buf));
    let lines: Vec<String> = s.lines().map(|l| truncate(l, 600)).collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn truncate(l: &str, max: usize) -> String {
    if l.len() <= max {
        return l.to_string();
    }
    let mut end = max;
    while !l.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…[{} bytes]", &l[..end], l.len())
}
