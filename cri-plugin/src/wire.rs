//! Messages of `containerd.services.sandbox.v1` that are newer than containerd-client 0.9's.
//! Each keeps every field of containerd-client's message at the same tag, so older containerds
//! read it as before (protobuf skips the tags it does not know).

use std::collections::HashMap;

/// `ControllerStartResponse` as containerd 2.3 defines it: `spec` (tag 7) is the sandbox's OCI
/// runtime spec, which CRI stores in the sandbox record and hands to NRI plugins.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ControllerStartResponse {
    #[prost(string, tag = "1")]
    pub sandbox_id: String,
    #[prost(uint32, tag = "2")]
    pub pid: u32,
    #[prost(message, optional, tag = "3")]
    pub created_at: Option<prost_types::Timestamp>,
    #[prost(map = "string, string", tag = "4")]
    pub labels: HashMap<String, String>,
    /// `ttrpc+unix:///…`: where containerd reaches the sandbox's task API.
    #[prost(string, tag = "5")]
    pub address: String,
    #[prost(uint32, tag = "6")]
    pub version: u32,
    #[prost(message, optional, tag = "7")]
    pub spec: Option<prost_types::Any>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use containerd_client::services::v1::sandbox as api;
    use prost::Message;

    fn full() -> ControllerStartResponse {
        ControllerStartResponse {
            sandbox_id: "pod1".into(),
            pid: 42,
            created_at: Some(prost_types::Timestamp {
                seconds: 7,
                nanos: 9,
            }),
            labels: HashMap::from([("selinux_label".into(), "x".into())]),
            address: "ttrpc+unix:///run/containerd/s/abc".into(),
            version: 3,
            spec: Some(prost_types::Any {
                type_url: "types.containerd.io/opencontainers/runtime-spec/1/Spec".into(),
                value: br#"{"ociVersion":"1.2.0"}"#.to_vec(),
            }),
        }
    }

    /// containerd-client's message with every field of `m` it has.
    fn as_older(m: &ControllerStartResponse) -> api::ControllerStartResponse {
        api::ControllerStartResponse {
            sandbox_id: m.sandbox_id.clone(),
            pid: m.pid,
            created_at: m.created_at,
            labels: m.labels.clone(),
            address: m.address.clone(),
            version: m.version,
        }
    }

    #[test]
    fn the_spec_travels_at_tag_7() {
        let ours = full();
        let bytes = ours.encode_to_vec();
        assert_eq!(
            ControllerStartResponse::decode(bytes.as_slice()).unwrap(),
            ours
        );

        // containerd-client's message with field 7 (length-delimited: key 7<<3|2) appended by
        // hand, as a containerd 2.3 API would put it on the wire.
        let mut wire = as_older(&ours).encode_to_vec();
        let spec = ours.spec.as_ref().unwrap().encode_to_vec();
        wire.push((7 << 3) | 2);
        prost::encoding::encode_varint(spec.len() as u64, &mut wire);
        wire.extend_from_slice(&spec);
        assert_eq!(
            ControllerStartResponse::decode(wire.as_slice()).unwrap(),
            ours
        );
    }

    #[test]
    fn older_clients_read_every_other_field() {
        let ours = full();
        let old = api::ControllerStartResponse::decode(ours.encode_to_vec().as_slice()).unwrap();
        assert_eq!(
            (
                old.sandbox_id,
                old.pid,
                old.created_at,
                old.labels,
                old.address,
                old.version
            ),
            (
                ours.sandbox_id,
                ours.pid,
                ours.created_at,
                ours.labels,
                ours.address,
                ours.version
            )
        );
    }

    #[test]
    fn no_spec_puts_nothing_at_tag_7() {
        let none = ControllerStartResponse {
            spec: None,
            ..full()
        };
        assert_eq!(none.encode_to_vec(), as_older(&none).encode_to_vec());
    }
}
