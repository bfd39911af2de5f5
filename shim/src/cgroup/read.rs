//! Reading cgroup interface files, shared by the v1 and v2 collectors.

use std::{
    collections::HashMap,
    io::ErrorKind,
    path::{Path, PathBuf},
    str::{FromStr, SplitWhitespace},
};

use crate::error::{Error, Result};

/// A file every cgroup of its kind has: its absence is an error.
pub(super) fn required(dir: &Path, name: &str) -> Result<String> {
    let path = dir.join(name);
    match std::fs::read_to_string(&path) {
        Ok(content) => Ok(content),
        Err(e) => Err(read_error(dir, &path, e)),
    }
}

/// A file that depends on kernel configuration (swap accounting, kmem, enabled v2
/// controllers, PSI): its absence only leaves the matching fields at zero or unset. A file
/// the kernel lists but cannot serve counts as absent: the PSI files read EOPNOTSUPP under
/// `psi=0` on kernels that still create them.
pub(super) fn optional(dir: &Path, name: &str) -> Result<Option<String>> {
    let path = dir.join(name);
    match std::fs::read_to_string(&path) {
        Ok(content) => Ok(Some(content)),
        Err(e) if e.kind() == ErrorKind::NotFound && dir.is_dir() => Ok(None),
        Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => Ok(None),
        Err(e) => Err(read_error(dir, &path, e)),
    }
}

/// The huge page sizes a hugetlb controller directory has `hugetlb.<size>.<suffix>` files
/// for, smallest first. The kernel gives a cgroup with the controller one set of files per
/// size the host supports (the sizes under /sys/kernel/mm/hugepages), named `<n>KB`, `<n>MB`
/// or `<n>GB`, which is also how containerd spells a HugetlbStat's pagesize; a directory
/// without the controller, or none at all, has no sizes.
pub(super) fn hugetlb_page_sizes(dir: &Path, suffix: &str) -> Result<Vec<String>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(read_error(dir, dir, e)),
    };
    let mut sizes: Vec<String> = Vec::new();
    for entry in entries {
        let name = entry.map_err(|e| read_error(dir, dir, e))?.file_name();
        // `hugetlb.2MB.rsvd.current` and the like have a dot in the middle and no size.
        let size = name
            .to_str()
            .and_then(|name| name.strip_prefix("hugetlb."))
            .and_then(|name| name.strip_suffix(suffix))
            .and_then(|name| name.strip_suffix('.'));
        if let Some(size) = size {
            let bytes = page_size_bytes(size);
            if bytes.is_some() {
                // Kept sorted as they come: a host has two or three sizes.
                let at = sizes.partition_point(|s| page_size_bytes(s) < bytes);
                sizes.insert(at, size.to_string());
            }
        }
    }
    Ok(sizes)
}

/// `2MB` as 2 << 20; `None` for anything not a kernel page size name.
fn page_size_bytes(size: &str) -> Option<u64> {
    let (number, unit) = size.split_at(size.find(|c: char| !c.is_ascii_digit())?);
    let shift = match unit {
        "KB" => 10,
        "MB" => 20,
        "GB" => 30,
        _ => return None,
    };
    number.parse::<u64>().ok()?.checked_mul(1 << shift)
}

/// A cgroup removed under us shows up as ENOENT, or ENODEV on v2 when the file was
/// already open; either way the caller should hear "gone", not an I/O failure.
fn read_error(dir: &Path, path: &Path, e: std::io::Error) -> Error {
    let vanished = e.kind() == ErrorKind::NotFound || e.raw_os_error() == Some(libc::ENODEV);
    if vanished && !dir.is_dir() {
        return gone(dir);
    }
    Error::Io {
        context: format!("read {}", path.display()),
        source: e,
    }
}

pub(super) fn gone(dir: &Path) -> Error {
    Error::NotFound(format!("cgroup {} no longer exists", dir.display()))
}

fn malformed(path: &Path, what: &str) -> Error {
    Error::Other(format!("{}: malformed content {what:?}", path.display()))
}

/// A file's content together with where it came from, so parse errors can name it.
pub(super) struct Content {
    pub path: PathBuf,
    pub text: String,
}

impl Content {
    pub(super) fn required(dir: &Path, name: &str) -> Result<Content> {
        Ok(Content {
            path: dir.join(name),
            text: required(dir, name)?,
        })
    }

    pub(super) fn optional(dir: &Path, name: &str) -> Result<Option<Content>> {
        Ok(optional(dir, name)?.map(|text| Content {
            path: dir.join(name),
            text,
        }))
    }

    /// `key value` lines (memory.stat, cpu.stat, memory.events, ...).
    pub(super) fn flat_keyed(&self) -> Result<HashMap<&str, u64>> {
        self.text
            .lines()
            .filter(|line| !line.trim().is_empty())
            .map(|line| {
                let mut fields = line.split_whitespace();
                match (fields.next(), fields.next(), fields.next()) {
                    (Some(key), Some(value), None) => value
                        .parse()
                        .map(|value| (key, value))
                        .map_err(|_| malformed(&self.path, line)),
                    _ => Err(malformed(&self.path, line)),
                }
            })
            .collect()
    }

    /// `key sub_key=value ...` lines (io.stat, the PSI files, rdma.current and rdma.max): each
    /// line's key and its pairs, whose values are left to the caller: what a value is depends
    /// on its file and key.
    pub(super) fn nested_keyed(&self) -> impl Iterator<Item = (&str, Pairs<'_>)> {
        self.text.lines().filter_map(move |line| {
            let mut fields = line.split_whitespace();
            let key = fields.next()?;
            Some((
                key,
                Pairs {
                    fields,
                    path: &self.path,
                    line,
                },
            ))
        })
    }

    /// One value of this file, naming the file if it is malformed.
    pub(super) fn parse<T: FromStr>(&self, value: &str) -> Result<T> {
        value.parse().map_err(|_| malformed(&self.path, value))
    }

    /// A decimal fraction such as a PSI average (`12.34`), as the f64 nearest to it, which
    /// is what a float parser returns. Read as an integer count of 10^-k and divided by 10^k:
    /// both are exact in an f64 (up to 2^53 and 10^22), so the one rounding of the division
    /// is the correct one. This keeps core's float parser, and its tables, out of the stats
    /// path; a value past those bounds is malformed, the kernel's are `<n>.<2 digits>`.
    pub(super) fn decimal(&self, value: &str) -> Result<f64> {
        const EXACT: u64 = 1 << f64::MANTISSA_DIGITS;
        let (whole, fraction) = value.split_once('.').unwrap_or((value, ""));
        let digits = || whole.bytes().chain(fraction.bytes());
        if whole.is_empty() || fraction.len() > 22 || !digits().all(|b| b.is_ascii_digit()) {
            return Err(malformed(&self.path, value));
        }
        let scaled = digits()
            .try_fold(0u64, |n, b| {
                n.checked_mul(10)?.checked_add(u64::from(b - b'0'))
            })
            .filter(|&n| n <= EXACT)
            .ok_or_else(|| malformed(&self.path, value))?;
        let scale = (0..fraction.len()).fold(1.0, |scale, _| scale * 10.0);
        Ok(scaled as f64 / scale)
    }

    /// One value of this file that may be `max`, which becomes `unlimited`: containerd's own
    /// readers disagree on what "no limit" is (v1 pids 0, v2 u64::MAX, rdma u32::MAX), so
    /// callers choose.
    pub(super) fn parse_limit<T: FromStr>(&self, value: &str, unlimited: T) -> Result<T> {
        match value {
            "max" => Ok(unlimited),
            _ => self.parse(value),
        }
    }

    /// A single number.
    pub(super) fn number(&self) -> Result<u64> {
        self.parse(self.text.trim())
    }

    /// A single number or `max` (see `parse_limit`).
    pub(super) fn limit(&self, unlimited: u64) -> Result<u64> {
        self.parse_limit(self.text.trim(), unlimited)
    }

    /// rdma.current or rdma.max, one `device hca_handle=n hca_object=n` line per device, as
    /// `entry(device, hca_handles, hca_objects)`; a `max` limit is u32::MAX, as containerd
    /// reads it on v1 and v2 alike.
    pub(super) fn rdma<T>(&self, entry: fn(String, u32, u32) -> T) -> Result<Vec<T>> {
        let mut entries = Vec::new();
        for (device, pairs) in self.nested_keyed() {
            let (mut handles, mut objects) = (0, 0);
            for pair in pairs {
                let (key, value) = pair?;
                let field = match key {
                    "hca_handle" => &mut handles,
                    "hca_object" => &mut objects,
                    _ => continue,
                };
                *field = self.parse_limit(value, u32::MAX)?;
            }
            entries.push(entry(device.to_string(), handles, objects));
        }
        Ok(entries)
    }

    /// Whitespace-separated numbers (cpuacct.usage_percpu).
    pub(super) fn numbers(&self) -> Result<Vec<u64>> {
        self.text
            .split_whitespace()
            .map(|n| n.parse().map_err(|_| malformed(&self.path, n)))
            .collect()
    }
}

/// The `sub_key=value` pairs of one nested-keyed line; a field without `=` is malformed.
pub(super) struct Pairs<'a> {
    fields: SplitWhitespace<'a>,
    path: &'a Path,
    line: &'a str,
}

impl<'a> Iterator for Pairs<'a> {
    type Item = Result<(&'a str, &'a str)>;

    fn next(&mut self) -> Option<Self::Item> {
        let field = self.fields.next()?;
        Some(
            field
                .split_once('=')
                .ok_or_else(|| malformed(self.path, self.line)),
        )
    }
}

/// A flat-keyed file's key and the message field it fills.
pub(super) type Field<T> = (&'static str, fn(&mut T) -> &mut u64);

/// Copies the named keys of a flat-keyed file into a message's fields; keys the kernel
/// doesn't report (older kernels, disabled features) stay zero.
pub(super) fn fill<T>(target: &mut T, values: &HashMap<&str, u64>, fields: &[Field<T>]) {
    for (key, field) in fields {
        if let Some(value) = values.get(key) {
            *field(target) = *value;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Content;

    fn content() -> Content {
        Content {
            path: "cpu.pressure".into(),
            text: String::new(),
        }
    }

    /// The same f64 as the float parser for every value the kernel prints (0.00..=100.00)
    /// and for longer fractions.
    #[test]
    fn decimals_equal_the_float_parsers() {
        let c = content();
        for hundredths in 0..=10_000 {
            let text = format!("{}.{:02}", hundredths / 100, hundredths % 100);
            let ours = c.decimal(&text).unwrap();
            assert_eq!(
                ours.to_bits(),
                text.parse::<f64>().unwrap().to_bits(),
                "{text}"
            );
        }
        for text in [
            "0",
            "7",
            "99.99",
            "0.1",
            "0.3",
            "123456.789",
            "0.0000000000000000000001",
            "9007199254740992",
            "9007199.254740992",
        ] {
            assert_eq!(
                c.decimal(text).unwrap().to_bits(),
                text.parse::<f64>().unwrap().to_bits(),
                "{text}"
            );
        }
        assert_eq!(c.decimal("12.34").unwrap(), 12.34);
    }

    #[test]
    fn malformed_decimals() {
        let c = content();
        for text in [
            "",
            ".5",
            "1.2.3",
            "-1.00",
            "+1.00",
            "1e5",
            "nan",
            "inf",
            "1.0x",
            "9007199254740993",
            "0.00000000000000000000001",
        ] {
            let err = c.decimal(text).unwrap_err();
            assert!(err.to_string().contains("cpu.pressure"), "{text}: {err}");
        }
    }
}
