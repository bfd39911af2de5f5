//! In-place pod resize: the pod's new resources as containerd's CRI records them for a sandbox
//! controller (the sandbox's `updated-resources` extension, type
//! `io.containerd.cri.v1/UpdatedResources`, JSON of the containers' sum and the pod overhead),
//! turned into the pod cgroup's limits as the kubelet computes them: each limit the containers'
//! sum plus the overhead's. A limit the containers leave at 0 (none) is left as it is.

use serde::Deserialize;

use crate::{
    cgroup::PodLimits,
    error::{Error, Result},
};

/// The type containerd 2.3 registers `podsandbox.UpdatedResources` under (JSON, not protobuf).
pub const UPDATED_RESOURCES_TYPE_URL: &str = "io.containerd.cri.v1/UpdatedResources";

/// containerd's `UpdatedResources`: Go field names, no JSON tags.
#[derive(Debug, Default, Deserialize)]
struct UpdatedResources {
    #[serde(rename = "Overhead", default)]
    overhead: Option<LinuxResources>,
    #[serde(rename = "Resources", default)]
    resources: Option<LinuxResources>,
}

/// The fields of CRI's `LinuxContainerResources` a pod cgroup takes, by their JSON names
/// (snake case in the generated Go types; camel case in protojson, accepted as well).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct LinuxResources {
    #[serde(alias = "cpuPeriod")]
    cpu_period: i64,
    #[serde(alias = "cpuQuota")]
    cpu_quota: i64,
    #[serde(alias = "cpuShares")]
    cpu_shares: i64,
    #[serde(alias = "memoryLimitInBytes")]
    memory_limit_in_bytes: i64,
}

/// The pod cgroup's new limits from an UpdateSandbox request's resources.
pub fn pod_limits(type_url: &str, value: &[u8]) -> Result<PodLimits> {
    if type_url != UPDATED_RESOURCES_TYPE_URL {
        return Err(Error::InvalidArgument(format!(
            "sandbox resources of type {type_url:?}: want {UPDATED_RESOURCES_TYPE_URL}"
        )));
    }
    let u: UpdatedResources = serde_json::from_slice(value)
        .map_err(|e| Error::InvalidArgument(format!("sandbox resources: {e}")))?;
    let (r, o) = (
        u.resources.unwrap_or_default(),
        u.overhead.unwrap_or_default(),
    );
    let sum = |containers: i64, overhead: i64| -> Result<Option<i64>> {
        if containers < 0 || overhead < 0 {
            return Err(Error::InvalidArgument(format!(
                "sandbox resources: negative limit ({containers} + overhead {overhead})"
            )));
        }
        Ok((containers > 0).then(|| containers.saturating_add(overhead)))
    };
    let cpu_quota = match r.cpu_quota {
        // -1 is CFS's "no quota", which is what a pod whose containers have no CPU limit gets.
        -1 => Some(-1),
        q => sum(q, o.cpu_quota)?,
    };
    Ok(PodLimits {
        memory_bytes: sum(r.memory_limit_in_bytes, o.memory_limit_in_bytes)?,
        cpu_shares: sum(r.cpu_shares, o.cpu_shares)?.map(|s| s as u64),
        cpu_period: (cpu_quota.is_some() && r.cpu_period > 0).then_some(r.cpu_period as u64),
        cpu_quota,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(json: &str) -> Result<PodLimits> {
        pod_limits(UPDATED_RESOURCES_TYPE_URL, json.as_bytes())
    }

    #[test]
    fn containers_plus_overhead() {
        let l = limits(
            r#"{"Overhead":{"cpu_shares":16,"memory_limit_in_bytes":33554432,"cpu_quota":5000},
                "Resources":{"cpu_period":100000,"cpu_quota":50000,"cpu_shares":512,
                             "memory_limit_in_bytes":268435456,"oom_score_adj":-997}}"#,
        )
        .unwrap();
        assert_eq!(
            l,
            PodLimits {
                memory_bytes: Some(301989888),
                cpu_shares: Some(528),
                cpu_quota: Some(55000),
                cpu_period: Some(100000),
            }
        );
    }

    #[test]
    fn unset_limits_stay_unset_whatever_the_overhead() {
        let l =
            limits(r#"{"Overhead":{"memory_limit_in_bytes":1024},"Resources":{"cpu_shares":2}}"#)
                .unwrap();
        assert_eq!(
            l,
            PodLimits {
                cpu_shares: Some(2),
                ..Default::default()
            }
        );
        assert!(limits(r#"{"Overhead":null,"Resources":null}"#)
            .unwrap()
            .is_empty());
        assert!(limits("{}").unwrap().is_empty());
    }

    #[test]
    fn protojson_names_are_read_too() {
        let l = limits(r#"{"Resources":{"memoryLimitInBytes":4096,"cpuShares":3}}"#).unwrap();
        assert_eq!((l.memory_bytes, l.cpu_shares), (Some(4096), Some(3)));
    }

    #[test]
    fn no_quota_is_kept_as_no_quota() {
        let l = limits(r#"{"Overhead":{"cpu_quota":5000},"Resources":{"cpu_quota":-1}}"#).unwrap();
        assert_eq!(l.cpu_quota, Some(-1));
    }

    #[test]
    fn other_types_and_bad_values_are_invalid() {
        for (url, v) in [
            ("runtime.v1.LinuxContainerResources", "{}"),
            (UPDATED_RESOURCES_TYPE_URL, "not json"),
            (
                UPDATED_RESOURCES_TYPE_URL,
                r#"{"Resources":{"memory_limit_in_bytes":-5}}"#,
            ),
            (
                UPDATED_RESOURCES_TYPE_URL,
                r#"{"Resources":{"cpu_shares":"many"}}"#,
            ),
        ] {
            assert!(
                matches!(
                    pod_limits(url, v.as_bytes()),
                    Err(Error::InvalidArgument(_))
                ),
                "{url} {v}"
            );
        }
    }
}
