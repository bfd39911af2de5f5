//! The parts of an OCI runtime spec the shim itself reads. The OCI runtime validates the whole
//! document; deserialising only these fields keeps the per-pod binary (and its resident pages)
//! small.

use serde::Deserialize;

use crate::error::{Error, Result};

#[derive(Debug, Default, Deserialize)]
pub struct Spec {
    #[serde(default)]
    pub root: Option<Root>,
    #[serde(default)]
    pub linux: Option<Linux>,
}

#[derive(Debug, Deserialize)]
pub struct Root {
    pub path: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Linux {
    #[serde(default)]
    pub cgroups_path: Option<String>,
    #[serde(default)]
    pub namespaces: Vec<Namespace>,
}

#[derive(Debug, Deserialize)]
pub struct Namespace {
    #[serde(rename = "type")]
    pub typ: String,
    #[serde(default)]
    pub path: Option<String>,
}

impl Spec {
    pub fn parse(bytes: &[u8]) -> std::result::Result<Spec, serde_json::Error> {
        serde_json::from_slice(bytes)
    }

    /// Without its own pid namespace the kernel does not end a container's other processes
    /// when its init exits.
    pub fn has_own_pid_namespace(&self) -> bool {
        self.linux.as_ref().is_some_and(|l| {
            l.namespaces
                .iter()
                .any(|ns| ns.typ == "pid" && ns.path.as_deref().is_none_or(str::is_empty))
        })
    }

    /// systemd's form is `slice:prefix:name`; cgroupfs paths are absolute.
    pub fn is_systemd_cgroup_path(&self) -> bool {
        self.linux
            .as_ref()
            .and_then(|l| l.cgroups_path.as_deref())
            .is_some_and(|p| !p.starts_with('/') && p.split(':').count() == 3)
    }
}

/// Exec process specs and resource updates are passed to the OCI runtime as they came; the shim
/// only refuses what is not even a JSON object, so the error names the request, not runc.
pub fn check_json_object(bytes: &[u8], what: &str) -> Result<()> {
    match serde_json::from_slice::<serde_json::Value>(bytes) {
        Ok(v) if v.is_object() => Ok(()),
        Ok(_) => Err(Error::InvalidArgument(format!(
            "{what} is not a JSON object"
        ))),
        Err(e) => Err(Error::InvalidArgument(format!("invalid {what}: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(linux: serde_json::Value) -> Spec {
        Spec::parse(
            serde_json::json!({"ociVersion": "1.0.2", "linux": linux, "process": {"args": ["x"]}})
                .to_string()
                .as_bytes(),
        )
        .unwrap()
    }

    #[test]
    fn systemd_paths_are_recognised() {
        assert!(
            spec(serde_json::json!({"cgroupsPath": "kubepods.slice:cri-containerd:abc"}))
                .is_systemd_cgroup_path()
        );
        assert!(
            !spec(serde_json::json!({"cgroupsPath": "/kubepods/besteffort/pod1/abc"}))
                .is_systemd_cgroup_path()
        );
    }

    #[test]
    fn pid_namespace_ownership() {
        let own = spec(serde_json::json!({"namespaces": [{"type": "pid"}]}));
        assert!(own.has_own_pid_namespace());
        let shared =
            spec(serde_json::json!({"namespaces": [{"type": "pid", "path": "/proc/1/ns/pid"}]}));
        assert!(!shared.has_own_pid_namespace());
        assert!(
            !spec(serde_json::json!({"namespaces": [{"type": "network"}]})).has_own_pid_namespace()
        );
    }

    #[test]
    fn json_objects_only() {
        assert!(check_json_object(br#"{"args":["sh"]}"#, "exec process spec").is_ok());
        let e = check_json_object(b"[1]", "exec process spec").unwrap_err();
        assert!(matches!(e, Error::InvalidArgument(_)));
        assert!(check_json_object(b"{", "linux resources").is_err());
    }
}
