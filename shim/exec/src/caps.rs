//! Capability names to bits, as runc maps them: a name this kernel does not have (above
//! `cap_last_cap`) or does not know is left out, not an error.

use crate::spec::CapNames;

const NAMES: [&str; 41] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// The five sets as bit masks (bit n is capability n).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CapSets {
    pub bounding: u64,
    pub effective: u64,
    pub inheritable: u64,
    pub permitted: u64,
    pub ambient: u64,
    /// The highest capability this kernel has: every bit up to it is set or dropped.
    pub last: u32,
}

impl CapSets {
    pub fn resolve(names: &CapNames, last: u32) -> Self {
        let mask = |set: &[String]| {
            set.iter()
                .filter_map(|n| NAMES.iter().position(|k| k == n))
                .filter(|&bit| bit as u32 <= last)
                .fold(0u64, |m, bit| m | 1 << bit)
        };
        Self {
            bounding: mask(&names.bounding),
            effective: mask(&names.effective),
            inheritable: mask(&names.inheritable),
            permitted: mask(&names.permitted),
            ambient: mask(&names.ambient),
            last,
        }
    }
}

/// `/proc/sys/kernel/cap_last_cap`.
pub fn last_cap() -> std::io::Result<u32> {
    let text = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")?;
    text.trim()
        .parse()
        .map_err(|_| std::io::Error::other(format!("cap_last_cap reads {text:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_to_their_bits_and_unknown_or_newer_ones_are_left_out() {
        let names = CapNames {
            bounding: vec!["CAP_CHOWN".into(), "CAP_KILL".into(), "CAP_NOPE".into()],
            effective: vec!["CAP_CHECKPOINT_RESTORE".into(), "CAP_SYS_ADMIN".into()],
            ..Default::default()
        };
        let sets = CapSets::resolve(&names, 40);
        assert_eq!(sets.bounding, 1 | 1 << 5);
        assert_eq!(sets.effective, 1 << 40 | 1 << 21);
        assert_eq!(CapSets::resolve(&names, 39).effective, 1 << 21);
        assert_eq!(NAMES[29], "CAP_AUDIT_WRITE");
        assert_eq!(NAMES[37], "CAP_AUDIT_READ");
    }

    #[test]
    fn this_kernel_reports_its_last_capability() {
        assert!(last_cap().unwrap() >= 37);
    }
}
