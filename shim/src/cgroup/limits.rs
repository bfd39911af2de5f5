//! A pod cgroup's resource limits, written the way the kubelet writes a pod cgroup (its
//! `ResourceConfig`: memory, CPU shares, CFS quota and period). A limit left `None` is not
//! touched. cgroup v1 writes each value into its controller's hierarchy; cgroup v2 writes
//! `memory.max`, `cpu.weight` (from shares, as runc converts them) and `cpu.max`.

use std::{io::ErrorKind, path::Path};

use crate::error::{Error, Result};

/// What a pod cgroup is limited to. Values are the kernel's units: bytes, shares, microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PodLimits {
    pub memory_bytes: Option<i64>,
    pub cpu_shares: Option<u64>,
    /// CFS quota per period, in microseconds (`cpu_period` defaults to 100 ms).
    pub cpu_quota: Option<i64>,
    pub cpu_period: Option<u64>,
}

/// The kubelet's default CFS period, which a quota without a period is measured against.
const DEFAULT_CPU_PERIOD: u64 = 100_000;

impl PodLimits {
    pub fn is_empty(&self) -> bool {
        *self == PodLimits::default()
    }
}

/// cgroup v1: `memory` and `cpu` are the directories of the pod cgroup in those hierarchies.
pub(super) fn write_v1(memory: Option<&Path>, cpu: Option<&Path>, l: &PodLimits) -> Result<()> {
    if let Some(bytes) = l.memory_bytes {
        write(
            need(memory, "memory")?,
            "memory.limit_in_bytes",
            &bytes.to_string(),
        )?;
    }
    if let Some(shares) = l.cpu_shares {
        write(need(cpu, "cpu")?, "cpu.shares", &shares.to_string())?;
    }
    if let Some(quota) = l.cpu_quota {
        let dir = need(cpu, "cpu")?;
        let period = l.cpu_period.unwrap_or(DEFAULT_CPU_PERIOD);
        write(dir, "cpu.cfs_period_us", &period.to_string())?;
        write(dir, "cpu.cfs_quota_us", &quota.to_string())?;
    }
    Ok(())
}

/// cgroup v2: `dir` is the pod cgroup.
pub(super) fn write_v2(dir: &Path, l: &PodLimits) -> Result<()> {
    if let Some(bytes) = l.memory_bytes {
        write(dir, "memory.max", &bytes.to_string())?;
    }
    if let Some(shares) = l.cpu_shares {
        write(dir, "cpu.weight", &shares_to_weight(shares).to_string())?;
    }
    if let Some(quota) = l.cpu_quota {
        let period = l.cpu_period.unwrap_or(DEFAULT_CPU_PERIOD);
        let quota = if quota < 0 {
            "max".to_string()
        } else {
            quota.to_string()
        };
        write(dir, "cpu.max", &format!("{quota} {period}"))?;
    }
    Ok(())
}

/// runc's conversion (libcontainer/cgroups `ConvertCPUSharesToCgroupV2Value`): shares 2..262144
/// onto weight 1..10000.
fn shares_to_weight(shares: u64) -> u64 {
    if shares == 0 {
        return 0;
    }
    1 + (shares.clamp(2, 262_144) - 2) * 9999 / 262_142
}

fn need<'a>(dir: Option<&'a Path>, controller: &str) -> Result<&'a Path> {
    dir.ok_or_else(|| {
        Error::FailedPrecondition(format!("no cgroup v1 {controller} hierarchy for the pod"))
    })
}

/// Writes one limit. A pod cgroup that is not there, or a memory limit below what the pod
/// uses now (the kernel answers EBUSY once reclaim fails), is the caller's precondition.
fn write(dir: &Path, file: &str, value: &str) -> Result<()> {
    let path = dir.join(file);
    std::fs::write(&path, value).map_err(|e| {
        let what = format!("write {value} to {}", path.display());
        match e.kind() {
            ErrorKind::NotFound => {
                Error::FailedPrecondition(format!("{what}: the pod cgroup does not exist"))
            }
            _ if e.raw_os_error() == Some(libc::EBUSY) => {
                Error::FailedPrecondition(format!("{what}: the pod uses more than that"))
            }
            _ => Error::io(what)(e),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(dir: &Path, file: &str) -> String {
        std::fs::read_to_string(dir.join(file)).unwrap()
    }

    #[test]
    fn v1_writes_each_limit_in_its_hierarchy() {
        let t = tempfile::tempdir().unwrap();
        let (mem, cpu) = (t.path().join("memory/pod"), t.path().join("cpu/pod"));
        std::fs::create_dir_all(&mem).unwrap();
        std::fs::create_dir_all(&cpu).unwrap();
        let l = PodLimits {
            memory_bytes: Some(1 << 28),
            cpu_shares: Some(528),
            cpu_quota: Some(50_000),
            cpu_period: None,
        };
        write_v1(Some(&mem), Some(&cpu), &l).unwrap();
        assert_eq!(read(&mem, "memory.limit_in_bytes"), "268435456");
        assert_eq!(read(&cpu, "cpu.shares"), "528");
        assert_eq!(read(&cpu, "cpu.cfs_period_us"), "100000");
        assert_eq!(read(&cpu, "cpu.cfs_quota_us"), "50000");
    }

    #[test]
    fn v1_leaves_unset_limits_alone() {
        let t = tempfile::tempdir().unwrap();
        let l = PodLimits {
            cpu_shares: Some(2),
            ..Default::default()
        };
        write_v1(None, Some(t.path()), &l).unwrap();
        assert_eq!(read(t.path(), "cpu.shares"), "2");
        assert!(!t.path().join("memory.limit_in_bytes").exists());
        assert!(!t.path().join("cpu.cfs_quota_us").exists());
    }

    #[test]
    fn v1_without_the_hierarchy_or_cgroup_is_a_precondition() {
        let l = PodLimits {
            memory_bytes: Some(1),
            ..Default::default()
        };
        assert!(matches!(
            write_v1(None, None, &l),
            Err(Error::FailedPrecondition(_))
        ));
        let gone = Path::new("/nonexistent/podshim/pod");
        assert!(matches!(
            write_v1(Some(gone), None, &l),
            Err(Error::FailedPrecondition(_))
        ));
    }

    #[test]
    fn v2_writes_weight_and_max() {
        let t = tempfile::tempdir().unwrap();
        let l = PodLimits {
            memory_bytes: Some(1 << 28),
            cpu_shares: Some(1024),
            cpu_quota: Some(25_000),
            cpu_period: Some(50_000),
        };
        write_v2(t.path(), &l).unwrap();
        assert_eq!(read(t.path(), "memory.max"), "268435456");
        assert_eq!(read(t.path(), "cpu.weight"), "39");
        assert_eq!(read(t.path(), "cpu.max"), "25000 50000");
    }

    #[test]
    fn weight_spans_runcs_range() {
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(262_144), 10_000);
        assert_eq!(shares_to_weight(1 << 20), 10_000);
    }
}
