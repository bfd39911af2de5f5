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
    /// Whether the spec maps ids (a user-namespaced container); only then does `io_owner` read
    /// the mappings, so that every other container's create skips them.
    #[serde(default, rename = "uidMappings", deserialize_with = "present")]
    pub maps_ids: bool,
}

fn present<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<bool, D::Error> {
    serde::de::IgnoredAny::deserialize(d).map(|_| true)
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

/// Who must own the pipes of a container's stdio when its spec (`bytes`, of which `spec` is
/// the parse) maps ids: the host ids its process runs as (`process.user` through
/// `linux.uidMappings`/`gidMappings`), as CRI asks runc's shim with `IoUid`/`IoGid`. Otherwise,
/// and for an id outside the mappings (runc then refuses the spec itself), the pipes stay root's.
pub fn io_owner(spec: &Spec, bytes: &[u8]) -> Option<(u32, u32)> {
    if !spec.linux.as_ref().is_some_and(|l| l.maps_ids) {
        return None;
    }
    io_owner_of(bytes)
}

#[cold]
fn io_owner_of(bytes: &[u8]) -> Option<(u32, u32)> {
    let doc: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    let id = |v: &serde_json::Value| v.as_u64().and_then(|n| u32::try_from(n).ok());
    let to_host = |maps: &str, user: &str| {
        let id_inside = doc["process"]["user"].get(user).map_or(Some(0), id)?;
        doc["linux"][maps].as_array()?.iter().find_map(|m| {
            let (inside, host, size) = (id(&m["containerID"])?, id(&m["hostID"])?, id(&m["size"])?);
            let offset = id_inside.checked_sub(inside)?;
            (offset < size).then(|| host.checked_add(offset))?
        })
    };
    Some((
        to_host("uidMappings", "uid")?,
        to_host("gidMappings", "gid")?,
    ))
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
    fn stdio_of_a_user_namespaced_container_belongs_to_its_user_on_the_host() {
        let owner = |v: serde_json::Value| {
            let bytes = v.to_string().into_bytes();
            io_owner(&Spec::parse(&bytes).unwrap(), &bytes)
        };
        let maps = serde_json::json!([
            {"containerID": 0, "hostID": 200000, "size": 1000},
            {"containerID": 1000, "hostID": 500000, "size": 64536},
        ]);
        let with_user = |uid: u32, gid: u32| {
            owner(serde_json::json!({
                "process": {"user": {"uid": uid, "gid": gid}},
                "linux": {"uidMappings": maps, "gidMappings": maps},
            }))
        };
        assert_eq!(with_user(0, 0), Some((200000, 200000)));
        assert_eq!(with_user(999, 1000), Some((200999, 500000)));
        assert_eq!(with_user(70000, 0), None, "outside the mappings");
        assert_eq!(owner(serde_json::json!({"linux": {}})), None);
    }

    #[test]
    fn json_objects_only() {
        assert!(check_json_object(br#"{"args":["sh"]}"#, "exec process spec").is_ok());
        let e = check_json_object(b"[1]", "exec process spec").unwrap_err();
        assert!(matches!(e, Error::InvalidArgument(_)));
        assert!(check_json_object(b"{", "linux resources").is_err());
    }
}
