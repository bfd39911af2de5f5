//! The parts of CRI's `runtime.v1.PodSandboxConfig` a pod shim acts on.
//!
//! containerd forwards the config as an `Any` it does not interpret. The shim reads the few
//! fields it needs straight off the protobuf wire (field numbers of the CRI API), so it carries
//! neither the CRI types nor a gRPC stack for one message.

use std::collections::BTreeMap;

use crate::{
    error::{Error, Result},
    userns::{IdMap, IdRange},
};

/// CRI's `NamespaceMode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NamespaceMode {
    #[default]
    Pod,
    Container,
    Node,
    Target,
}

impl NamespaceMode {
    fn from_wire(v: u64) -> Result<Self> {
        Ok(match v {
            0 => NamespaceMode::Pod,
            1 => NamespaceMode::Container,
            2 => NamespaceMode::Node,
            3 => NamespaceMode::Target,
            other => return Err(invalid(format!("unknown namespace mode {other}"))),
        })
    }

    /// The enum value's name in CRI's proto, as containerd prints it.
    pub fn cri_name(self) -> &'static str {
        match self {
            NamespaceMode::Pod => "POD",
            NamespaceMode::Container => "CONTAINER",
            NamespaceMode::Node => "NODE",
            NamespaceMode::Target => "TARGET",
        }
    }
}

/// The sandbox's seccomp profile (CRI's `SecurityProfile`, or the deprecated path form).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SeccompProfile {
    /// `profile_type`: 0 RuntimeDefault, 1 Unconfined, 2 Localhost; others are invalid.
    pub profile_type: u64,
    pub localhost_ref: String,
}

/// The sandbox's security context, as far as CRI's pause container checks it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SandboxSecurity {
    pub run_as_user: Option<i64>,
    pub run_as_group: Option<i64>,
    pub privileged: bool,
    pub seccomp: Option<SeccompProfile>,
    /// `seccomp_profile_path`, read only where `seccomp` is absent.
    pub seccomp_profile_path: String,
}

/// CPU and memory of `LinuxContainerResources` (the pod's overhead or its resources).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resources {
    pub cpu_period: i64,
    pub cpu_quota: i64,
    pub cpu_shares: i64,
    pub memory_limit_in_bytes: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodSandboxConfig {
    pub name: String,
    pub uid: String,
    pub namespace: String,
    pub attempt: u32,
    pub hostname: String,
    pub log_directory: String,
    pub dns_servers: Vec<String>,
    pub dns_searches: Vec<String>,
    pub dns_options: Vec<String>,
    /// False when the pod has no DNS config: the host's resolv.conf is used.
    pub has_dns_config: bool,
    pub cgroup_parent: String,
    pub network: NamespaceMode,
    pub pid: NamespaceMode,
    pub ipc: NamespaceMode,
    /// `userns_options` as sent (None: absent); `validate.rs` refuses what CRI refuses of it.
    pub userns: Option<UsernsOptions>,
    pub security: SandboxSecurity,
    pub sysctls: BTreeMap<String, String>,
    pub overhead: Option<Resources>,
    pub resources: Option<Resources>,
}

/// CRI's `UserNamespace`: the mode and the mapping lines as sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsernsOptions {
    pub mode: NamespaceMode,
    pub uids: Vec<IdMapping>,
    pub gids: Vec<IdMapping>,
}

/// CRI's `IDMapping`, as sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdMapping {
    pub container: u64,
    pub host: u64,
    pub length: u64,
}

impl IdMapping {
    /// The range, where it is one (non-empty, within 32-bit ids).
    pub fn range(&self) -> Option<IdRange> {
        let id = |n: u64| u32::try_from(n).ok();
        IdRange::new(id(self.container)?, id(self.host)?, id(self.length)?)
    }
}

/// The type URL containerd gives the `options` of CreateSandbox (typeurl uses the bare full name).
pub const TYPE_URL: &str = "runtime.v1.PodSandboxConfig";

impl PodSandboxConfig {
    /// Decodes `options` of CreateSandbox; an empty `type_url` and value mean "no config".
    pub fn from_any(type_url: &str, value: &[u8]) -> Result<Self> {
        let name = type_url.rsplit('/').next().unwrap_or(type_url);
        if type_url.is_empty() && value.is_empty() {
            return Ok(Self::default());
        }
        if name != TYPE_URL && name != "runtime.v1alpha2.PodSandboxConfig" {
            return Err(invalid(format!(
                "sandbox options of type {type_url:?}, want {TYPE_URL}"
            )));
        }
        Self::decode(value)
    }

    pub fn decode(buf: &[u8]) -> Result<Self> {
        let mut c = PodSandboxConfig::default();
        for field in Fields::new(buf) {
            let (num, v) = field?;
            match num {
                1 => {
                    for f in Fields::new(v.bytes()?) {
                        let (num, v) = f?;
                        match num {
                            1 => c.name = v.string()?,
                            2 => c.uid = v.string()?,
                            3 => c.namespace = v.string()?,
                            4 => c.attempt = v.varint()? as u32,
                            _ => {}
                        }
                    }
                }
                2 => c.hostname = v.string()?,
                3 => c.log_directory = v.string()?,
                4 => {
                    c.has_dns_config = true;
                    for f in Fields::new(v.bytes()?) {
                        let (num, v) = f?;
                        match num {
                            1 => c.dns_servers.push(v.string()?),
                            2 => c.dns_searches.push(v.string()?),
                            3 => c.dns_options.push(v.string()?),
                            _ => {}
                        }
                    }
                }
                8 => c.decode_linux(v.bytes()?)?,
                _ => {}
            }
        }
        Ok(c)
    }

    fn decode_linux(&mut self, buf: &[u8]) -> Result<()> {
        for field in Fields::new(buf) {
            let (num, v) = field?;
            match num {
                1 => self.cgroup_parent = v.string()?,
                2 => {
                    for f in Fields::new(v.bytes()?) {
                        let (num, v) = f?;
                        let s = &mut self.security;
                        match num {
                            1 => self.decode_namespaces(v.bytes()?)?,
                            3 => s.run_as_user = Some(int64_value(v.bytes()?)?),
                            6 => s.privileged = v.varint()? != 0,
                            7 => s.seccomp_profile_path = v.string()?,
                            8 => s.run_as_group = Some(int64_value(v.bytes()?)?),
                            9 => s.seccomp = Some(security_profile(v.bytes()?)?),
                            _ => {}
                        }
                    }
                }
                3 => {
                    let (k, val) = map_entry(v.bytes()?)?;
                    self.sysctls.insert(k, val);
                }
                4 => self.overhead = Some(resources(v.bytes()?)?),
                5 => self.resources = Some(resources(v.bytes()?)?),
                _ => {}
            }
        }
        Ok(())
    }

    fn decode_namespaces(&mut self, buf: &[u8]) -> Result<()> {
        for field in Fields::new(buf) {
            let (num, v) = field?;
            match num {
                1 => self.network = NamespaceMode::from_wire(v.varint()?)?,
                2 => self.pid = NamespaceMode::from_wire(v.varint()?)?,
                3 => self.ipc = NamespaceMode::from_wire(v.varint()?)?,
                5 => {
                    // userns_options: its mode POD, the zero value, is absent on the wire.
                    let mut mode = NamespaceMode::Pod;
                    let (mut uids, mut gids) = (Vec::new(), Vec::new());
                    for f in Fields::new(v.bytes()?) {
                        let (num, v) = f?;
                        match num {
                            1 => mode = NamespaceMode::from_wire(v.varint()?)?,
                            2 => uids.push(id_range(v.bytes()?)?),
                            3 => gids.push(id_range(v.bytes()?)?),
                            _ => {}
                        }
                    }
                    self.userns = Some(UsernsOptions { mode, uids, gids });
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// A user-namespaced pod (`hostUsers: false`): `userns_options` with mode POD.
    pub fn user_namespace(&self) -> bool {
        self.userns
            .as_ref()
            .is_some_and(|u| u.mode == NamespaceMode::Pod)
    }

    /// Its id mappings, when it gives one range each for uids and gids (as CRI requires).
    pub fn id_map(&self) -> Option<IdMap> {
        match self.userns.as_ref()? {
            UsernsOptions {
                mode: NamespaceMode::Pod,
                uids,
                gids,
            } => match (&uids[..], &gids[..]) {
                ([u], [g]) => Some(IdMap {
                    uids: u.range()?,
                    gids: g.range()?,
                }),
                _ => None,
            },
            _ => None,
        }
    }

    /// resolv.conf as CRI writes it for a pod with a DNS config (empty: use the host's).
    pub fn resolv_conf(&self) -> String {
        let mut s = String::new();
        if !self.dns_searches.is_empty() {
            s.push_str(&format!("search {}\n", self.dns_searches.join(" ")));
        }
        for server in &self.dns_servers {
            s.push_str(&format!("nameserver {server}\n"));
        }
        if !self.dns_options.is_empty() {
            s.push_str(&format!("options {}\n", self.dns_options.join(" ")));
        }
        s
    }
}

fn resources(buf: &[u8]) -> Result<Resources> {
    let mut r = Resources::default();
    for field in Fields::new(buf) {
        let (num, v) = field?;
        match num {
            1 => r.cpu_period = v.varint()? as i64,
            2 => r.cpu_quota = v.varint()? as i64,
            3 => r.cpu_shares = v.varint()? as i64,
            4 => r.memory_limit_in_bytes = v.varint()? as i64,
            _ => {}
        }
    }
    Ok(r)
}

/// `runtime.v1.Int64Value`.
fn int64_value(buf: &[u8]) -> Result<i64> {
    let mut value = 0;
    for field in Fields::new(buf) {
        let (num, v) = field?;
        if num == 1 {
            value = v.varint()? as i64;
        }
    }
    Ok(value)
}

/// `runtime.v1.SecurityProfile`.
fn security_profile(buf: &[u8]) -> Result<SeccompProfile> {
    let mut p = SeccompProfile::default();
    for field in Fields::new(buf) {
        let (num, v) = field?;
        match num {
            1 => p.profile_type = v.varint()?,
            2 => p.localhost_ref = v.string()?,
            _ => {}
        }
    }
    Ok(p)
}

fn map_entry(buf: &[u8]) -> Result<(String, String)> {
    let (mut k, mut v) = (String::new(), String::new());
    for field in Fields::new(buf) {
        let (num, val) = field?;
        match num {
            1 => k = val.string()?,
            2 => v = val.string()?,
            _ => {}
        }
    }
    Ok((k, v))
}

fn invalid(msg: impl Into<String>) -> Error {
    Error::InvalidArgument(format!("PodSandboxConfig: {}", msg.into()))
}

/// One field's value as it sits on the wire.
enum Value<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Fixed,
}

/// An `IDMapping` (host_id 1, container_id 2, length 3); `None` for a range no kernel takes.
fn id_range(buf: &[u8]) -> Result<IdMapping> {
    let mut m = IdMapping {
        container: 0,
        host: 0,
        length: 0,
    };
    for f in Fields::new(buf) {
        let (num, v) = f?;
        match num {
            1 => m.host = v.varint()?,
            2 => m.container = v.varint()?,
            3 => m.length = v.varint()?,
            _ => {}
        }
    }
    Ok(m)
}

impl<'a> Value<'a> {
    fn varint(&self) -> Result<u64> {
        match self {
            Value::Varint(v) => Ok(*v),
            _ => Err(invalid("expected a varint field")),
        }
    }
    fn bytes(&self) -> Result<&'a [u8]> {
        match self {
            Value::Bytes(b) => Ok(b),
            _ => Err(invalid("expected a length-delimited field")),
        }
    }
    fn string(&self) -> Result<String> {
        String::from_utf8(self.bytes()?.to_vec()).map_err(|_| invalid("string is not UTF-8"))
    }
}

/// Iterates the (field number, value) pairs of one message.
struct Fields<'a> {
    buf: &'a [u8],
    failed: bool,
}

impl<'a> Fields<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Fields { buf, failed: false }
    }

    fn varint(&mut self) -> Result<u64> {
        let mut v = 0u64;
        for i in 0..10 {
            let (&b, rest) = self
                .buf
                .split_first()
                .ok_or_else(|| invalid("truncated varint"))?;
            self.buf = rest;
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(invalid("varint longer than 10 bytes"))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if n > self.buf.len() {
            return Err(invalid("field runs past the end of the message"));
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    fn field(&mut self) -> Result<(u32, Value<'a>)> {
        let key = self.varint()?;
        let num = u32::try_from(key >> 3).map_err(|_| invalid("field number out of range"))?;
        let value = match key & 7 {
            0 => Value::Varint(self.varint()?),
            1 => {
                self.take(8)?;
                Value::Fixed
            }
            2 => {
                let n = usize::try_from(self.varint()?).map_err(|_| invalid("length overflow"))?;
                Value::Bytes(self.take(n)?)
            }
            5 => {
                self.take(4)?;
                Value::Fixed
            }
            wt => return Err(invalid(format!("unsupported wire type {wt}"))),
        };
        Ok((num, value))
    }
}

impl<'a> Iterator for Fields<'a> {
    type Item = Result<(u32, Value<'a>)>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.buf.is_empty() || self.failed {
            return None;
        }
        let r = self.field();
        self.failed = r.is_err();
        Some(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_cri::v1 as cri;
    use prost::Message;

    fn encode(c: &cri::PodSandboxConfig) -> Vec<u8> {
        c.encode_to_vec()
    }

    /// What the kubelet sends for a pod that uses most of the config.
    fn kubelet_config() -> cri::PodSandboxConfig {
        cri::PodSandboxConfig {
            metadata: Some(cri::PodSandboxMetadata {
                name: "web".into(),
                uid: "u-1".into(),
                namespace: "default".into(),
                attempt: 2,
            }),
            hostname: "web-0".into(),
            log_directory: "/var/log/pods/x".into(),
            dns_config: Some(cri::DnsConfig {
                servers: vec!["10.96.0.10".into(), "1.1.1.1".into()],
                searches: vec![
                    "default.svc.cluster.local".into(),
                    "svc.cluster.local".into(),
                ],
                options: vec!["ndots:5".into()],
            }),
            labels: [("app".to_string(), "web".to_string())].into(),
            linux: Some(cri::LinuxPodSandboxConfig {
                cgroup_parent: "/kubepods/podu-1".into(),
                security_context: Some(cri::LinuxSandboxSecurityContext {
                    namespace_options: Some(cri::NamespaceOption {
                        network: cri::NamespaceMode::Node as i32,
                        pid: cri::NamespaceMode::Pod as i32,
                        ipc: cri::NamespaceMode::Pod as i32,
                        ..Default::default()
                    }),
                    run_as_group: Some(cri::Int64Value { value: 1000 }),
                    privileged: true,
                    seccomp: Some(cri::SecurityProfile {
                        profile_type: cri::security_profile::ProfileType::Localhost as i32,
                        localhost_ref: "/var/lib/kubelet/seccomp/p.json".into(),
                    }),
                    ..Default::default()
                }),
                sysctls: [
                    (
                        "net.ipv4.ip_unprivileged_port_start".to_string(),
                        "0".to_string(),
                    ),
                    ("kernel.shm_rmid_forced".to_string(), "1".to_string()),
                ]
                .into(),
                overhead: Some(cri::LinuxContainerResources {
                    cpu_shares: 10,
                    memory_limit_in_bytes: 1 << 20,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn decodes_what_kubelet_sends() {
        let c = kubelet_config();
        let d = PodSandboxConfig::from_any(TYPE_URL, &encode(&c)).unwrap();
        assert_eq!(
            (d.name.as_str(), d.uid.as_str(), d.namespace.as_str()),
            ("web", "u-1", "default")
        );
        assert_eq!(d.attempt, 2);
        assert_eq!(d.hostname, "web-0");
        assert_eq!(d.cgroup_parent, "/kubepods/podu-1");
        assert_eq!(d.network, NamespaceMode::Node);
        assert_eq!(d.pid, NamespaceMode::Pod);
        assert_eq!(d.ipc, NamespaceMode::Pod);
        assert!(!d.user_namespace());
        assert_eq!(
            d.security,
            SandboxSecurity {
                run_as_user: None,
                run_as_group: Some(1000),
                privileged: true,
                seccomp: Some(SeccompProfile {
                    profile_type: 2,
                    localhost_ref: "/var/lib/kubelet/seccomp/p.json".into(),
                }),
                seccomp_profile_path: String::new(),
            }
        );
        assert_eq!(d.sysctls.len(), 2);
        assert_eq!(d.sysctls["kernel.shm_rmid_forced"], "1");
        assert_eq!(d.overhead.as_ref().unwrap().cpu_shares, 10);
        assert_eq!(d.overhead.as_ref().unwrap().memory_limit_in_bytes, 1 << 20);
        assert_eq!(
            d.resolv_conf(),
            "search default.svc.cluster.local svc.cluster.local\nnameserver 10.96.0.10\nnameserver 1.1.1.1\noptions ndots:5\n"
        );
    }

    /// `hostUsers: false` is `userns_options` with mode POD, the zero value, which the wire
    /// does not carry: the message's presence is what says so. With mode NODE, or without the
    /// message, the pod shares the host's user namespace.
    #[test]
    fn a_user_namespaced_pod_is_told_by_its_userns_options() {
        let with = |userns: Option<cri::UserNamespace>| {
            let mut c = kubelet_config();
            let sc = c.linux.as_mut().unwrap().security_context.as_mut().unwrap();
            sc.namespace_options.as_mut().unwrap().userns_options = userns;
            PodSandboxConfig::from_any(TYPE_URL, &encode(&c)).unwrap()
        };
        let map = cri::IdMapping {
            host_id: 65536,
            container_id: 0,
            length: 65536,
        };
        let pod = cri::UserNamespace {
            mode: cri::NamespaceMode::Pod as i32,
            uids: vec![map],
            gids: vec![map],
        };
        let d = with(Some(pod.clone()));
        assert!(d.user_namespace());
        let r = IdRange::new(0, 65536, 65536).unwrap();
        assert_eq!(d.id_map(), Some(IdMap { uids: r, gids: r }));
        let d = with(Some(cri::UserNamespace::default()));
        assert!(d.user_namespace() && d.id_map().is_none());
        let two_ranges = cri::UserNamespace {
            uids: vec![pod.uids[0], pod.uids[0]],
            ..pod
        };
        assert!(with(Some(two_ranges)).id_map().is_none());
        let node = cri::UserNamespace {
            mode: cri::NamespaceMode::Node as i32,
            ..Default::default()
        };
        assert!(!with(Some(node)).user_namespace());
        assert!(!with(None).user_namespace());
    }

    #[test]
    fn defaults_when_fields_are_absent() {
        let d = PodSandboxConfig::from_any(TYPE_URL, &encode(&cri::PodSandboxConfig::default()))
            .unwrap();
        assert_eq!(d, PodSandboxConfig::default());
        assert!(!d.has_dns_config);
        // Namespace mode POD is the zero value: a pod gets its own network, IPC and UTS.
        assert_eq!(d.network, NamespaceMode::Pod);
        assert_eq!(PodSandboxConfig::from_any("", &[]).unwrap(), d);
    }

    #[test]
    fn rejects_garbage_and_other_types() {
        let err = PodSandboxConfig::from_any("containerd.runc.v1.Options", &[]).unwrap_err();
        assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
        // field 2 (hostname) claims 100 bytes but carries 1.
        let err = PodSandboxConfig::decode(&[0x12, 100, b'x']).unwrap_err();
        assert!(err.to_string().contains("past the end"), "{err}");
        let err = PodSandboxConfig::decode(&[0x12]).unwrap_err();
        assert!(err.to_string().contains("truncated"), "{err}");
        // namespace mode 9 does not exist.
        let ns = [0x08, 9];
        let sc = [&[0x0a, ns.len() as u8][..], &ns].concat();
        let linux = [&[0x12, sc.len() as u8][..], &sc].concat();
        let cfg = [&[0x42, linux.len() as u8][..], &linux].concat();
        let err = PodSandboxConfig::decode(&cfg).unwrap_err();
        assert!(err.to_string().contains("namespace mode 9"), "{err}");
    }

    /// Outside input (containerd relays the kubelet's bytes): any bytes decode or are refused
    /// with InvalidArgument, and never panic.
    #[test]
    fn fuzz_the_wire_decoder() {
        let full = encode(&kubelet_config());
        let minimal = encode(&cri::PodSandboxConfig::default());
        podshim_common::fuzz::run("pod_config", &[&full, &minimal], |b| {
            match PodSandboxConfig::decode(b) {
                Ok(_) | Err(Error::InvalidArgument(_)) => {}
                Err(e) => panic!("refused with {e:?}, not InvalidArgument"),
            }
        });
    }
}
