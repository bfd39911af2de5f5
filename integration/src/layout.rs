//! The pod shim's hot sections, counted in the 64 KiB windows the kernel maps a file in.
//!
//! On a fault in a file mapping the kernel maps the page-cache pages around it, 64 KiB aligned
//! (fault-around), so `.text` and `.rodata` are resident whole, window by window, in every pod's
//! shim: one window more is 64 KiB more RSS per pod. `shim/layout.toml` records how many windows
//! each spans; `make layout` fails when the release shim spans more, so that the growth is
//! noticed and either undone (cold code and data moved out, see `shim/build.rs`) or accepted by
//! raising the budget with its `make bench` figure.

use std::path::Path;

use anyhow::{bail, Context, Result};

/// The kernel's fault-around unit (`fault_around_bytes`, 64 KiB by default).
pub const WINDOW: u64 = 64 * 1024;

/// The sections whose pages every shim touches.
pub const HOT: [&str; 2] = [".text", ".rodata"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    pub name: String,
    pub addr: u64,
    pub size: u64,
}

impl Section {
    /// How many `WINDOW`-aligned windows of the address space it touches.
    pub fn windows(&self) -> u64 {
        if self.size == 0 {
            return 0;
        }
        (self.addr + self.size - 1) / WINDOW - self.addr / WINDOW + 1
    }

    /// Bytes left before its last window is full (what it may still grow without a new one).
    pub fn room(&self) -> u64 {
        let end = self.addr + self.size;
        end.div_ceil(WINDOW) * WINDOW - end
    }
}

fn u16_at(b: &[u8], o: usize) -> Result<u16> {
    Ok(u16::from_le_bytes(
        b.get(o..o + 2).context("truncated ELF")?.try_into()?,
    ))
}

fn u32_at(b: &[u8], o: usize) -> Result<u32> {
    Ok(u32::from_le_bytes(
        b.get(o..o + 4).context("truncated ELF")?.try_into()?,
    ))
}

fn u64_at(b: &[u8], o: usize) -> Result<u64> {
    Ok(u64::from_le_bytes(
        b.get(o..o + 8).context("truncated ELF")?.try_into()?,
    ))
}

/// The allocated sections of a little-endian ELF64 file, as its section headers give them.
pub fn sections(elf: &[u8]) -> Result<Vec<Section>> {
    if elf.get(..4) != Some(b"\x7fELF") || elf.get(4) != Some(&2) || elf.get(5) != Some(&1) {
        bail!("not a little-endian ELF64 file");
    }
    let shoff = u64_at(elf, 0x28)? as usize;
    let shentsize = u16_at(elf, 0x3a)? as usize;
    let shnum = u16_at(elf, 0x3c)? as usize;
    let shstrndx = u16_at(elf, 0x3e)? as usize;
    let header = |i: usize| shoff + i * shentsize;
    let strtab = u64_at(elf, header(shstrndx) + 24)? as usize;
    let mut v = Vec::new();
    for i in 0..shnum {
        let h = header(i);
        const SHF_ALLOC: u64 = 2;
        if u64_at(elf, h + 8)? & SHF_ALLOC == 0 {
            continue;
        }
        let name_at = strtab + u32_at(elf, h)? as usize;
        let name = elf
            .get(name_at..)
            .and_then(|s| s.split(|b| *b == 0).next())
            .context("section name out of bounds")?;
        v.push(Section {
            name: String::from_utf8_lossy(name).into_owned(),
            addr: u64_at(elf, h + 16)?,
            size: u64_at(elf, h + 32)?,
        });
    }
    Ok(v)
}

/// `name = windows` lines of `shim/layout.toml` (comments and blank lines skipped).
pub fn parse_budget(text: &str) -> Result<Vec<(String, u64)>> {
    let mut v = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (k, n) = line
            .split_once('=')
            .with_context(|| format!("not `section = windows`: {line:?}"))?;
        let k = k.trim().trim_matches('"').to_string();
        let n = n.trim().parse().with_context(|| format!("{line:?}"))?;
        v.push((k, n));
    }
    Ok(v)
}

/// One line per hot section (windows, budget, room); an error naming every section over its budget.
pub fn check(binary: &Path, budget: &[(String, u64)]) -> Result<Vec<String>> {
    let elf = std::fs::read(binary).with_context(|| format!("reading {}", binary.display()))?;
    let secs = sections(&elf)?;
    let mut report = Vec::new();
    let mut over = Vec::new();
    for (name, allowed) in budget {
        let s = secs
            .iter()
            .find(|s| &s.name == name)
            .with_context(|| format!("{} has no section {name}", binary.display()))?;
        let n = s.windows();
        report.push(format!(
            "{name}: {:#x}..{:#x}, {n} windows of 64 KiB (budget {allowed}), {} bytes before the next",
            s.addr,
            s.addr + s.size,
            s.room()
        ));
        if n > *allowed {
            over.push(format!(
                "{name} spans {n} windows, {} over its budget of {allowed}",
                n - allowed
            ));
        }
    }
    if !over.is_empty() {
        bail!(
            "{}\n{}: every window more is 64 KiB more RSS in every pod's shim. Move what only \
             cold paths use out of the hot sections (shim/build.rs), or raise the budget in \
             shim/layout.toml with the `make bench` figure that shows the cost.",
            report.join("\n"),
            over.join("; ")
        );
    }
    Ok(report)
}

/// The windows of `binary`'s mapping into process `pid` that hold resident pages but overlap
/// no section that is loaded hot, each with the sections it overlaps: what a running shim reads
/// of its cold sections (`.text.cold`, `.rodata.cold`, `.eh_frame`, …), which `check` cannot see.
/// Windows of the ELF header page and of writable sections count as hot.
pub fn cold_windows_touched(pid: i32, binary: &Path) -> Result<Vec<String>> {
    let elf = std::fs::read(binary).with_context(|| format!("reading {}", binary.display()))?;
    let secs = sections(&elf)?;
    let resident = resident_pages(pid, binary)?;
    Ok(cold_windows(&secs, &resident))
}

/// Which of `pages` (addresses) lie in windows that overlap only cold sections.
fn cold_windows(secs: &[Section], pages: &[u64]) -> Vec<String> {
    const COLD: [&str; 5] = [
        ".text.cold",
        ".rodata.cold",
        ".eh_frame",
        ".eh_frame_hdr",
        ".gcc_except_table",
    ];
    let mut windows: Vec<u64> = pages.iter().map(|p| p / WINDOW).collect();
    windows.dedup();
    let mut out = Vec::new();
    for w in windows {
        let (start, end) = (w * WINDOW, (w + 1) * WINDOW);
        let overlapping: Vec<&str> = secs
            .iter()
            .filter(|s| s.size > 0 && s.addr < end && s.addr + s.size > start)
            .map(|s| s.name.as_str())
            .collect();
        if !overlapping.is_empty() && overlapping.iter().all(|n| COLD.contains(n)) {
            out.push(format!("{start:#x}: {}", overlapping.join(", ")));
        }
    }
    out
}

/// Addresses of the pages of `binary`'s mappings in process `pid` that are resident
/// (/proc/<pid>/pagemap bit 63), in order.
fn resident_pages(pid: i32, binary: &Path) -> Result<Vec<u64>> {
    use std::io::{Read, Seek, SeekFrom};
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps"))?;
    let mut pagemap = std::fs::File::open(format!("/proc/{pid}/pagemap"))?;
    let mut pages = Vec::new();
    for line in maps.lines() {
        let mut f = line.split_whitespace();
        let (Some(range), Some(path)) = (f.next(), f.nth(4)) else {
            continue;
        };
        if Path::new(path) != binary {
            continue;
        }
        let (a, b) = range.split_once('-').context("maps range")?;
        let (a, b) = (u64::from_str_radix(a, 16)?, u64::from_str_radix(b, 16)?);
        let mut entries = vec![0u8; ((b - a) / 4096 * 8) as usize];
        pagemap.seek(SeekFrom::Start(a / 4096 * 8))?;
        pagemap.read_exact(&mut entries)?;
        for (i, e) in entries.chunks_exact(8).enumerate() {
            if u64::from_le_bytes(e.try_into()?) >> 63 == 1 {
                pages.push(a + i as u64 * 4096);
            }
        }
    }
    anyhow::ensure!(
        !pages.is_empty(),
        "process {pid} has no resident page of {}",
        binary.display()
    );
    Ok(pages)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sec(addr: u64, size: u64) -> Section {
        Section {
            name: ".text".into(),
            addr,
            size,
        }
    }

    #[test]
    fn windows_count_every_64k_window_a_section_touches() {
        assert_eq!(sec(0x10000, 0x10000).windows(), 1);
        assert_eq!(sec(0x10000, 0x10001).windows(), 2);
        assert_eq!(sec(0x1ffff, 2).windows(), 2);
        assert_eq!(sec(0x10000, 0).windows(), 0);
        assert_eq!(sec(0x10000, 0x100).room(), 0x10000 - 0x100);
        assert_eq!(sec(0x10000, 0x10000).room(), 0);
    }

    #[test]
    fn a_window_holding_only_cold_sections_is_reported() {
        let named = |name: &str, addr, size| Section {
            name: name.into(),
            addr,
            size,
        };
        let secs = [
            named(".text", 0x10010, 0x1fff0),
            named(".text.cold", 0x30000, 0x18000),
            named(".rodata", 0x50000, 0x8000),
            named(".eh_frame", 0x58000, 0x10000),
            named(".rodata.cold", 0x68000, 0x8000),
        ];
        // Hot windows, the last one shared by .text and .text.cold, and .rodata's with .eh_frame.
        assert!(cold_windows(&secs, &[0x10000, 0x2f000, 0x51000, 0x5f000]).is_empty());
        assert_eq!(
            cold_windows(&secs, &[0x40000, 0x41000, 0x60000, 0x68000]),
            ["0x40000: .text.cold", "0x60000: .eh_frame, .rodata.cold"]
        );
    }

    #[test]
    fn the_budget_reads_name_and_windows() {
        let b = parse_budget("# c\n\n\".text\" = 22\n.rodata = 6\n").unwrap();
        assert_eq!(b, [(".text".into(), 22), (".rodata".into(), 6)]);
        assert!(parse_budget(".text 22").is_err());
    }

    #[test]
    fn sections_of_this_test_binary_include_text() {
        let me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        let s = sections(&me).unwrap();
        let text = s.iter().find(|s| s.name == ".text").expect(".text");
        assert!(text.size > 0 && text.windows() >= 1, "{text:?}");
        assert!(sections(b"not an elf").is_err());
    }

    #[test]
    fn a_section_over_its_budget_fails_the_check_and_names_it() {
        let me = std::env::current_exe().unwrap();
        let e = check(&me, &[(".text".into(), 0)]).unwrap_err().to_string();
        assert!(
            e.contains(".text spans") && e.contains("over its budget of 0"),
            "{e}"
        );
        let ok = check(&me, &[(".text".into(), 1 << 40)]).unwrap();
        assert_eq!(ok.len(), 1);
    }
}
