//! CRI container log format: `<RFC3339Nano> <stdout|stderr> <P|F> <msg>\n`.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    pub time: String,
    pub stream: String,
    /// 'P' (partial) or 'F' (full)
    pub tag: char,
    pub msg: String,
}

/// Checks `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)` as Go's RFC3339Nano prints it.
pub fn is_rfc3339nano(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() < 20 {
        return false;
    }
    let digits = |r: std::ops::Range<usize>| {
        r.clone()
            .all(|i| b.get(i).is_some_and(|c| c.is_ascii_digit()))
    };
    if !(digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && b[10] == b'T'
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19))
    {
        return false;
    }
    let mut i = 19;
    if b[i] == b'.' {
        let start = i + 1;
        i += 1;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        // Go trims trailing zeros; 1..=9 digits.
        if i == start || i - start > 9 {
            return false;
        }
    }
    match &b[i..] {
        [b'Z'] => true,
        [s, h1, h2, b':', m1, m2] if (*s == b'+' || *s == b'-') => {
            [h1, h2, m1, m2].iter().all(|c| c.is_ascii_digit())
        }
        _ => false,
    }
}

/// Strictly parse a CRI log file's content; every line must be well-formed.
pub fn parse(content: &str) -> Result<Vec<LogLine>> {
    anyhow::ensure!(
        content.is_empty() || content.ends_with('\n'),
        "CRI log does not end with a newline"
    );
    let mut out = Vec::new();
    for (n, line) in content.lines().enumerate() {
        let mut it = line.splitn(4, ' ');
        let (Some(time), Some(stream), Some(tag)) = (it.next(), it.next(), it.next()) else {
            bail!("line {}: malformed CRI log line {line:?}", n + 1);
        };
        let msg = it.next().unwrap_or("");
        anyhow::ensure!(
            is_rfc3339nano(time),
            "line {}: bad timestamp {time:?} in {line:?}",
            n + 1
        );
        anyhow::ensure!(
            stream == "stdout" || stream == "stderr",
            "line {}: bad stream {stream:?}",
            n + 1
        );
        anyhow::ensure!(tag == "P" || tag == "F", "line {}: bad tag {tag:?}", n + 1);
        out.push(LogLine {
            time: time.into(),
            stream: stream.into(),
            tag: tag.chars().next().unwrap(),
            msg: msg.into(),
        });
    }
    Ok(out)
}

pub fn read(path: &Path) -> Result<Vec<LogLine>> {
    let s = std::fs::read_to_string(path)
        .with_context(|| format!("reading CRI log {}", path.display()))?;
    parse(&s).with_context(|| format!("parsing CRI log {}", path.display()))
}

/// Lines of one stream reassembled from P chunks (a trailing run of P without F is returned too).
pub fn full_lines(lines: &[LogLine], stream: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut open = false;
    for l in lines.iter().filter(|l| l.stream == stream) {
        cur.push_str(&l.msg);
        open = true;
        if l.tag == 'F' {
            out.push(std::mem::take(&mut cur));
            open = false;
        }
    }
    if open {
        out.push(cur);
    }
    out
}

/// Wait until the CRI log at `path` satisfies `pred` (polling), returning its parsed lines.
pub async fn wait_for<F: Fn(&[LogLine]) -> bool>(
    path: &Path,
    timeout: Duration,
    pred: F,
) -> Result<Vec<LogLine>> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(s) = std::fs::read_to_string(path) {
            if let Ok(l) = parse(&s) {
                if pred(&l) {
                    return Ok(l);
                }
            }
        }
        if Instant::now() > deadline {
            let s = std::fs::read_to_string(path).unwrap_or_else(|e| format!("<{e}>"));
            let tail: String = s
                .chars()
                .rev()
                .take(2000)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            bail!(
                "CRI log {} did not reach the expected content within {timeout:?}; tail:\n{tail}",
                path.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps() {
        assert!(is_rfc3339nano("2026-11-22T10:15:30.123456789Z"));
        assert!(is_rfc3339nano("2026-11-22T10:15:30.1+01:00"));
        assert!(is_rfc3339nano("2026-11-22T10:15:30Z"));
        assert!(!is_rfc3339nano("2026-11-22 10:15:30Z"));
        assert!(!is_rfc3339nano("2026-11-22T10:15:30.Z"));
        assert!(!is_rfc3339nano("2026-11-22T10:15:30.1234567891Z"));
    }

    #[test]
    fn parse_and_join() {
        let s = "2026-11-22T10:15:30.1Z stdout P ab\n2026-11-22T10:15:30.2Z stderr F e\n2026-11-22T10:15:30.3Z stdout F cd\n2026-11-22T10:15:30.3Z stdout F \n";
        let l = parse(s).unwrap();
        assert_eq!(
            full_lines(&l, "stdout"),
            vec!["abcd".to_string(), String::new()]
        );
        assert_eq!(full_lines(&l, "stderr"), vec!["e".to_string()]);
        assert!(parse("2026-11-22T10:15:30.1Z stdout X ab\n").is_err());
        assert!(parse("2026-11-22T10:15:30.1Z stdout F ab").is_err());
    }
}
