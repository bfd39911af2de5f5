//! Which pod shim a task belongs to: containers that name the same group (their pod) share one
//! shim process.

use std::{collections::HashMap, path::Path};

/// Annotations that put containers into one shim: containerd's explicit group, then the pod.
const GROUP_LABELS: [&str; 2] = [
    "io.containerd.runc.v2.group",
    "io.kubernetes.cri.sandbox-id",
];

/// The shim a task joins: its pod's, when the spec names one, else its own.
pub fn grouping(id: &str, spec: &Path) -> String {
    let annotations: HashMap<String, String> = std::fs::read(spec)
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|mut v| serde_json::from_value(v.get_mut("annotations")?.take()).ok())
        .unwrap_or_default();
    group_of(id, &annotations)
}

/// The group a container with these annotations belongs to (see `GROUP_LABELS`).
pub fn group_of(id: &str, annotations: &HashMap<String, String>) -> String {
    GROUP_LABELS
        .iter()
        .find_map(|label| annotations.get(*label).filter(|v| !v.is_empty()))
        .cloned()
        .unwrap_or_else(|| id.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn containers_group_by_pod() {
        let dir = tempfile::tempdir().unwrap();
        let spec = dir.path().join("config.json");
        std::fs::write(
            &spec,
            r#"{"annotations":{"io.kubernetes.cri.sandbox-id":"pod1","io.kubernetes.cri.container-type":"container"}}"#,
        )
        .unwrap();
        assert_eq!(grouping("ctr1", &spec), "pod1");
        std::fs::write(
            &spec,
            r#"{"annotations":{"io.containerd.runc.v2.group":"g","io.kubernetes.cri.sandbox-id":"pod1"}}"#,
        )
        .unwrap();
        assert_eq!(grouping("ctr1", &spec), "g");
        std::fs::write(&spec, r#"{"annotations":{}}"#).unwrap();
        assert_eq!(grouping("ctr1", &spec), "ctr1");
        assert_eq!(grouping("ctr2", &dir.path().join("missing.json")), "ctr2");
    }
}
