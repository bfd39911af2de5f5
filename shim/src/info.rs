//! `-info`: what the shim tells containerd about itself before any shim instance exists.
//!
//! containerd 2.1 asks when a spec carries id-mapped mounts (user-namespaced pods) and refuses
//! the container unless the runtime's features list them, so the features come from the OCI
//! runtime binary itself (`runc features`), exactly as containerd's runc shim reports them.

use std::process::{Command, Stdio};

use containerd_shim_protos::{
    protobuf::well_known_types::any::Any,
    types::introspection::{RuntimeInfo, RuntimeVersion},
};

use crate::{
    config::Config,
    error::{Error, Result},
};

/// containerd's typeurl for the OCI runtime-spec `features.Features` document (JSON-encoded).
pub const FEATURES_TYPE_URL: &str =
    "types.containerd.io/opencontainers/runtime-spec/1/features/Features";

pub fn runtime_info(runtime_id: &str, config: &Config) -> Result<RuntimeInfo> {
    let binary = &config.runtime.binary;
    let out = Command::new(binary)
        .arg("features")
        .stdin(Stdio::null())
        .output()
        .map_err(Error::io(format!("run {binary} features")))?;
    if !out.status.success() {
        return Err(Error::Runtime {
            binary: binary.clone(),
            command: "features",
            message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    features_info(runtime_id, out.stdout)
}

fn features_info(runtime_id: &str, features_json: Vec<u8>) -> Result<RuntimeInfo> {
    serde_json::from_slice::<serde_json::Value>(&features_json)
        .map_err(|e| Error::Other(format!("OCI runtime features are not JSON: {e}")))?;
    Ok(RuntimeInfo {
        name: runtime_id.to_string(),
        version: Some(RuntimeVersion {
            version: env!("CARGO_PKG_VERSION").to_string(),
            ..Default::default()
        })
        .into(),
        features: Some(Any {
            type_url: FEATURES_TYPE_URL.to_string(),
            value: features_json,
            ..Default::default()
        })
        .into(),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn features_are_passed_through_as_containerd_typeurl() {
        let json = br#"{"ociVersionMin":"1.0.0","mountOptions":["idmap","ridmap"]}"#.to_vec();
        let info = features_info("io.containerd.podshim.v1", json.clone()).unwrap();
        assert_eq!(info.name, "io.containerd.podshim.v1");
        let features = info.features.as_ref().unwrap();
        assert_eq!(features.type_url, FEATURES_TYPE_URL);
        assert_eq!(features.value, json);
        assert!(features_info("x", b"not json".to_vec()).is_err());
    }
}
