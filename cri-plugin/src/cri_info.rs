//! What only containerd knows of a sandbox's verbose status. containerd 2.3+ re-reads
//! `info["info"]` as its CRI `SandboxInfo` (keys of any other name are dropped, a key of the
//! wrong type fails PodSandboxStatus); its `config`, `cniResult` and `sandboxMetadata` come from
//! CRI's own sandbox Metadata, which containerd hands to Create as the sandbox's `metadata`
//! extension (JSON `{"Version":"v1","Metadata":{…}}`). They are added to the shim's
//! `info["info"]` here, as containerd encoded them, so they always read back as CRI's types.

use std::collections::HashMap;

use serde_json::{Map, Value};

/// The key of CRI's sandbox Metadata among a containerd sandbox's extensions.
pub const EXTENSION: &str = "metadata";

/// The key of the `info` map CRI re-reads as its SandboxInfo.
const INFO: &str = "info";

#[derive(Clone, Debug, PartialEq)]
pub struct CriInfo {
    /// SandboxInfo keys → their values, never null.
    keys: Map<String, Value>,
}

impl CriInfo {
    /// None when `extension` is not CRI's versioned sandbox Metadata.
    pub fn from_extension(extension: &[u8]) -> Option<CriInfo> {
        let versioned: Value = serde_json::from_slice(extension).ok()?;
        versioned.get("Version")?.as_str()?;
        let metadata = versioned.get("Metadata")?.as_object()?;
        let mut keys = Map::new();
        for (ours, theirs) in [("config", "Config"), ("cniResult", "CNIResult")] {
            if let Some(v) = metadata.get(theirs).filter(|v| !v.is_null()) {
                keys.insert(ours.to_string(), v.clone());
            }
        }
        // CRI reads this one back only in its versioned form.
        keys.insert("sandboxMetadata".to_string(), versioned);
        Some(CriInfo { keys })
    }

    /// Adds the keys to the JSON object `info["info"]`, made if missing; an `info["info"]` that
    /// is not a JSON object is the shim's to answer for and stays as it is.
    pub fn add_to(&self, info: &mut HashMap<String, String>) {
        let mut object = match info.get(INFO).map(|s| serde_json::from_str(s)) {
            None => Map::new(),
            Some(Ok(Value::Object(o))) => o,
            Some(_) => return,
        };
        for (k, v) in &self.keys {
            object.insert(k.clone(), v.clone());
        }
        info.insert(INFO.to_string(), Value::Object(object).to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// containerd's sandbox extension and the shim's info, any bytes: read or ignored, and the
    /// verbose status is never a panic.
    #[test]
    fn fuzz_the_extension_and_the_info() {
        let seed = extension().to_string();
        podshim_common::fuzz::run("cri_info", &[seed.as_bytes(), br#"{"info":"{}"}"#], |b| {
            let mut info = HashMap::from([(INFO.to_string(), String::from_utf8_lossy(b).into())]);
            if let Some(cri) = CriInfo::from_extension(b) {
                cri.add_to(&mut info);
                cri.add_to(&mut HashMap::new());
            }
        });
    }

    /// What containerd 2.3's CRI stores for a pod with a network.
    fn extension() -> Value {
        json!({
            "Version": "v1",
            "Metadata": {
                "ID": "pod1",
                "Name": "web_default_uid_0",
                "Config": {"metadata": {"name": "web", "uid": "uid", "namespace": "default"}},
                "NetNSPath": "/var/run/netns/cni-1",
                "IP": "10.88.0.5",
                "AdditionalIPs": null,
                "RuntimeHandler": "podshim",
                "CNIResult": {"Interfaces": {"eth0": {"IPConfigs": [{"IP": "10.88.0.5"}]}}},
                "ProcessLabel": ""
            }
        })
    }

    fn info_of(info: &HashMap<String, String>) -> Value {
        serde_json::from_str(&info[INFO]).unwrap()
    }

    #[test]
    fn cris_keys_join_the_shims() {
        let ext = extension();
        let cri = CriInfo::from_extension(ext.to_string().as_bytes()).unwrap();
        let mut info = HashMap::from([
            (
                INFO.to_string(),
                json!({"pid": 42, "processStatus": "running"}).to_string(),
            ),
            ("podshim".to_string(), r#"{"shimPid":7}"#.to_string()),
        ]);
        cri.add_to(&mut info);
        let v = info_of(&info);
        assert_eq!(v["pid"], 42);
        assert_eq!(v["processStatus"], "running");
        assert_eq!(v["config"], ext["Metadata"]["Config"]);
        assert_eq!(v["cniResult"], ext["Metadata"]["CNIResult"]);
        assert_eq!(v["sandboxMetadata"], ext);
        assert_eq!(info["podshim"], r#"{"shimPid":7}"#);
    }

    #[test]
    fn no_info_from_the_shim_gets_cris_alone() {
        let mut ext = extension();
        // A hostNetwork pod: no CNI result, and CRI's SandboxInfo must not get a null for it.
        ext["Metadata"]["CNIResult"] = Value::Null;
        let cri = CriInfo::from_extension(ext.to_string().as_bytes()).unwrap();
        let mut info = HashMap::new();
        cri.add_to(&mut info);
        let v = info_of(&info);
        assert_eq!(v.as_object().unwrap().len(), 2, "{v}");
        assert!(v.get("cniResult").is_none());
        assert_eq!(v["sandboxMetadata"], ext);
    }

    #[test]
    fn a_shim_info_that_is_not_an_object_is_left_alone() {
        let cri = CriInfo::from_extension(extension().to_string().as_bytes()).unwrap();
        let mut info = HashMap::from([(INFO.to_string(), "not json".to_string())]);
        cri.add_to(&mut info);
        assert_eq!(info[INFO], "not json");
    }

    #[test]
    fn only_cris_versioned_metadata_is_taken() {
        for bad in [
            &b"not json"[..],
            br#"{"ID":"pod1"}"#,
            br#"{"Version":"v1"}"#,
            br#"{"Version":"v1","Metadata":[]}"#,
        ] {
            assert_eq!(CriInfo::from_extension(bad), None, "{bad:?}");
        }
    }
}
