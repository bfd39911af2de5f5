//! What a pause container's creation refuses, refused by a pause-less pod's CreateSandbox.
//!
//! Under runc's handler CRI builds the pause container's spec from the sandbox's security
//! context (its seccomp profile, its user, its user namespace options), and puts the pod's
//! hostname and sysctls into it;
//! runc's config validator then refuses what no pod namespace can hold. A pause-less pod has no
//! pause container; its namespace holder would write such a sysctl into the *host's* /proc/sys.
//! So the same rules run here, in the same order, before anything of the pod exists, with CRI's
//! and runc's messages. The error carries code UNKNOWN, the code CRI gives those refusals.
//!
//! What CRI gives every pause container that a pod does not ask for, the holder gets too: the
//! default sysctls of a pod with its own network namespace (`holder_sysctls`).
//!
//! The holder's namespaces, as CRI builds the pause container's: a private network and UTS
//! namespace unless the pod uses the node's network, a private IPC namespace unless it uses
//! the node's IPC; for `hostUsers: false` the user namespace CRI made the network namespace in.

use std::collections::BTreeMap;

use crate::{
    config::SandboxConfig,
    error::{Error, Result},
    sandbox::pod_config::{
        IdMapping, NamespaceMode, PodSandboxConfig, SandboxSecurity, SeccompProfile, UsernsOptions,
    },
};

/// CRI's defaults for a pod with its own network namespace (`enable_unprivileged_ports` and
/// `enable_unprivileged_icmp`, both on in containerd 2.x): applied unless the pod sets them,
/// the ICMP one only outside a user namespace (it names groups the pod's maps lack).
const UNPRIVILEGED_PORTS: (&str, &str) = ("net.ipv4.ip_unprivileged_port_start", "0");
const UNPRIVILEGED_ICMP: (&str, &str) = ("net.ipv4.ping_group_range", "0 2147483647");

/// The IPC sysctls runc lets a container with a private IPC namespace set.
const IPC_SYSCTLS: [&str; 8] = [
    "kernel.msgmax",
    "kernel.msgmnb",
    "kernel.msgmni",
    "kernel.sem",
    "kernel.shmall",
    "kernel.shmmax",
    "kernel.shmmni",
    "kernel.shm_rmid_forced",
];

/// Refuses the pod as CRI and runc refuse its pause container: an invalid seccomp profile or
/// user, user namespace options, a hostname without a private UTS namespace, and every sysctl
/// that no private namespace of the pod holds.
pub fn validate(config: &PodSandboxConfig) -> Result<()> {
    seccomp(&config.security)?;
    user(&config.security)?;
    if let Some(u) = &config.userns {
        user_namespace(u).map_err(|e| refused(format!("user namespace configuration: {e}")))?;
    }
    let private_net = config.network != NamespaceMode::Node;
    let private_uts = private_net;
    let private_ipc = config.ipc != NamespaceMode::Node;
    if !config.hostname.is_empty() && !private_uts {
        return Err(refused(
            "unable to set hostname without a private UTS namespace",
        ));
    }
    for name in config.sysctls.keys() {
        let s = dots_separated(name);
        if IPC_SYSCTLS.contains(&s.as_str()) || s.starts_with("fs.mqueue.") {
            if private_ipc {
                continue;
            }
            return Err(refused(format!(
                "sysctl {s:?} is not allowed in the hosts ipc namespace"
            )));
        }
        if s.starts_with("net.") {
            if private_net {
                continue;
            }
            return Err(refused(format!(
                "sysctl {s:?} not allowed in host network namespace"
            )));
        }
        if private_uts {
            match s.as_str() {
                "kernel.domainname" => continue,
                "kernel.hostname" => {
                    return Err(refused(format!(
                    "sysctl {s:?} is not allowed as it conflicts with the OCI \"hostname\" field"
                )))
                }
                _ => {}
            }
        }
        return Err(refused(format!(
            "sysctl {s:?} is not in a separate kernel namespace"
        )));
    }
    Ok(())
}

/// CRI's `GenerateSeccompSecurityProfile` and `GenerateSeccompSpecOpts` for the sandbox (this
/// kernel has seccomp): a privileged sandbox has none; a Localhost profile must load.
fn seccomp(s: &SandboxSecurity) -> Result<()> {
    const PREFIX: &str = "failed to generate seccomp spec opts";
    const LOCALHOST: u64 = 2;
    let profile = match (&s.seccomp, s.seccomp_profile_path.as_str()) {
        (Some(p), _) => p.clone(),
        (None, "" | "runtime/default" | "docker/default" | "unconfined") => return Ok(()),
        (None, path) => match path.strip_prefix("localhost/") {
            Some(file) => SeccompProfile {
                profile_type: LOCALHOST,
                localhost_ref: file.to_string(),
            },
            None => return Err(refused(format!("{PREFIX}: invalid profile {path:?}"))),
        },
    };
    if s.privileged {
        return Ok(());
    }
    if profile.profile_type != LOCALHOST && !profile.localhost_ref.is_empty() {
        return Err(refused(format!(
            "{PREFIX}: seccomp config invalid LocalhostRef must only be set if ProfileType is Localhost"
        )));
    }
    match profile.profile_type {
        0 | 1 => Ok(()),
        LOCALHOST => {
            let file = profile.localhost_ref.trim_start_matches("localhost/");
            let text = std::fs::read(file)
                .map_err(|e| refused(format!("cannot load seccomp profile {file:?}: {e}")))?;
            serde_json::from_slice::<serde_json::Value>(&text)
                .map(|_| ())
                .map_err(|e| refused(format!("decoding seccomp profile failed {file:?}: {e}")))
        }
        _ => Err(refused(format!("{PREFIX}: seccomp unknown ProfileType"))),
    }
}

/// CRI's `GenerateUserString` for the sandbox: a group needs a user.
fn user(s: &SandboxSecurity) -> Result<()> {
    match (s.run_as_user, s.run_as_group) {
        (None, Some(group)) => Err(refused(format!(
            "failed to generate user string: user group \"{group}\" is specified without user"
        ))),
        _ => Ok(()),
    }
}

/// The sysctls the holder sets: the pod's, and CRI's defaults for a pod with its own network
/// namespace where the pod does not set them and the operator did not turn them off.
pub fn holder_sysctls(
    config: &PodSandboxConfig,
    defaults: &SandboxConfig,
) -> BTreeMap<String, String> {
    let mut sysctls = config.sysctls.clone();
    if config.network != NamespaceMode::Node {
        let wanted = [
            (defaults.enable_unprivileged_ports, UNPRIVILEGED_PORTS),
            (
                defaults.enable_unprivileged_icmp && !config.user_namespace(),
                UNPRIVILEGED_ICMP,
            ),
        ];
        for (k, v) in wanted.into_iter().filter(|(on, _)| *on).map(|(_, kv)| kv) {
            let set = sysctls.keys().any(|name| dots_separated(name) == k);
            if !set {
                sysctls.insert(k.to_string(), v.to_string());
            }
        }
    }
    sysctls
}

/// runc's reading of a sysctl name: `/` may separate its parts instead of `.`, and then a `.`
/// inside a part is written `/` in the dotted form (`net/ipv4/conf/eno2.100/rp_filter` is
/// `net.ipv4.conf.eno2/100.rp_filter`).
fn dots_separated(name: &str) -> String {
    match name.find(['.', '/']) {
        Some(i) if name.as_bytes()[i] == b'/' => name
            .chars()
            .map(|c| match c {
                '.' => '/',
                '/' => '.',
                c => c,
            })
            .collect(),
        _ => name.to_string(),
    }
}

/// containerd's `parseUsernsIDs` (podsandbox's `helpers_linux.go`), with its messages; and the
/// pod's root mapped, without which a pause container cannot start.
fn user_namespace(u: &UsernsOptions) -> std::result::Result<(), String> {
    let lines = |what: &str, m: &[IdMapping]| match m {
        [] => Ok(0),
        [one] if one.length < 1 => Err(format!(
            "{what} mapping: invalid mapping length: {}",
            one.length
        )),
        [_] => Ok(1),
        many => Err(format!(
            "{what} mapping: only one mapping line supported, got {} mapping lines",
            many.len()
        )),
    };
    let (uids, gids) = (lines("UID", &u.uids)?, lines("GID", &u.gids)?);
    match u.mode {
        NamespaceMode::Node if uids + gids > 0 => Err(format!(
            "can't use user namespace mode \"NODE\" with mappings. Got {uids} UID mappings and {gids} GID mappings"
        )),
        NamespaceMode::Node => Ok(()),
        NamespaceMode::Pod if uids == 0 || gids == 0 => Err(
            "can't use user namespace mode \"POD\" without UID and GID mappings".into(),
        ),
        NamespaceMode::Pod => {
            for (what, m) in [("UID", &u.uids[0]), ("GID", &u.gids[0])] {
                if m.container != 0 {
                    return Err(format!("{what} mapping: container id 0 is not mapped"));
                }
            }
            Ok(())
        }
        mode => Err(format!("unsupported user namespace mode: \"{}\"", mode.cri_name())),
    }
}

fn refused(msg: impl Into<String>) -> Error {
    Error::Refused(msg.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(
        network: NamespaceMode,
        ipc: NamespaceMode,
        sysctls: &[(&str, &str)],
    ) -> PodSandboxConfig {
        PodSandboxConfig {
            network,
            ipc,
            sysctls: sysctls
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Default::default()
        }
    }

    fn refusal(c: &PodSandboxConfig) -> String {
        match validate(c) {
            Err(e @ Error::Refused(_)) => e.to_string(),
            other => panic!("not refused: {other:?}"),
        }
    }

    /// containerd's podsandbox refuses these user namespace options when it builds the pause
    /// container's spec (`parseUsernsIDs`), and a pause container whose root is not mapped
    /// cannot start; critest's UserNamespaces specs ask RunPodSandbox to fail for each.
    #[test]
    fn user_namespace_options_refused_as_the_pause_container_s_are() {
        let map = |container: u64, host: u64, length: u64| IdMapping {
            container,
            host,
            length,
        };
        let good = map(0, 65536, 65536);
        let userns = |mode: NamespaceMode, uids: Vec<IdMapping>, gids: Vec<IdMapping>| {
            let mut c = pod(NamespaceMode::Pod, NamespaceMode::Pod, &[]);
            c.userns = Some(UsernsOptions { mode, uids, gids });
            c
        };
        let refused = [
            (
                userns(NamespaceMode::Container, vec![], vec![]),
                "unsupported user namespace mode",
            ),
            (
                userns(NamespaceMode::Target, vec![], vec![]),
                "unsupported user namespace mode",
            ),
            (
                userns(NamespaceMode::Pod, vec![], vec![]),
                "without UID and GID mappings",
            ),
            (
                userns(NamespaceMode::Pod, vec![good], vec![]),
                "without UID and GID mappings",
            ),
            (
                userns(NamespaceMode::Pod, vec![good, good], vec![good]),
                "UID mapping: only one mapping line supported, got 2 mapping lines",
            ),
            (
                userns(NamespaceMode::Pod, vec![good], vec![map(0, 1, 0)]),
                "GID mapping: invalid mapping length: 0",
            ),
            (
                userns(
                    NamespaceMode::Pod,
                    vec![map(1, 1000, 100000)],
                    vec![map(1, 1000, 100000)],
                ),
                "UID mapping: container id 0 is not mapped",
            ),
            (
                userns(NamespaceMode::Pod, vec![good], vec![map(1, 1000, 100000)]),
                "GID mapping: container id 0 is not mapped",
            ),
            (
                userns(NamespaceMode::Node, vec![good], vec![good]),
                "with mappings",
            ),
        ];
        for (c, want) in refused {
            let msg = refusal(&c);
            assert!(msg.contains("user namespace configuration: "), "{msg}");
            assert!(msg.contains(want), "{:?}: {msg}", c.userns);
        }
        assert!(validate(&userns(NamespaceMode::Pod, vec![good], vec![good])).is_ok());
        assert!(validate(&userns(NamespaceMode::Node, vec![], vec![])).is_ok());
        assert!(validate(&pod(NamespaceMode::Pod, NamespaceMode::Pod, &[])).is_ok());
    }

    #[test]
    fn host_network_pod_with_a_hostname_is_refused_as_runc_refuses_it() {
        let mut c = pod(NamespaceMode::Node, NamespaceMode::Pod, &[]);
        assert!(validate(&c).is_ok());
        c.hostname = "myhost".into();
        assert_eq!(
            refusal(&c),
            "unable to set hostname without a private UTS namespace"
        );
        c.network = NamespaceMode::Pod;
        assert!(validate(&c).is_ok());
    }

    #[test]
    fn sysctls_only_in_namespaces_the_pod_owns() {
        use NamespaceMode::{Node, Pod};
        let ok = [
            (Pod, Pod, "net.ipv4.ip_forward"),
            (Pod, Pod, "net/ipv4/conf/eth0/rp_filter"),
            (Pod, Pod, "kernel.shmmax"),
            (Pod, Pod, "fs.mqueue.msg_max"),
            (Pod, Pod, "kernel.domainname"),
            (Node, Pod, "kernel.msgmax"),
        ];
        for (net, ipc, name) in ok {
            assert!(
                validate(&pod(net, ipc, &[(name, "1")])).is_ok(),
                "{name} with net {net:?} ipc {ipc:?}"
            );
        }
        let refused = [
            (
                Node,
                Pod,
                "net.ipv4.ip_forward",
                "not allowed in host network namespace",
            ),
            (
                Node,
                Pod,
                "net/ipv4/ip_forward",
                "\"net.ipv4.ip_forward\" not allowed in host",
            ),
            (
                Pod,
                Node,
                "kernel.shmmax",
                "not allowed in the hosts ipc namespace",
            ),
            (
                Pod,
                Node,
                "fs.mqueue.msg_max",
                "not allowed in the hosts ipc namespace",
            ),
            (
                Pod,
                Pod,
                "kernel.hostname",
                "conflicts with the OCI \"hostname\" field",
            ),
            (
                Node,
                Pod,
                "kernel.domainname",
                "is not in a separate kernel namespace",
            ),
            (
                Pod,
                Pod,
                "vm.swappiness",
                "\"vm.swappiness\" is not in a separate kernel namespace",
            ),
            (
                Pod,
                Pod,
                "user.max_user_namespaces",
                "is not in a separate kernel namespace",
            ),
        ];
        for (net, ipc, name, want) in refused {
            let msg = refusal(&pod(net, ipc, &[(name, "1")]));
            assert!(msg.contains(want), "{name}: {msg}");
        }
    }

    #[test]
    fn sandbox_security_refused_as_cri_refuses_the_pause_containers() {
        let mut c = pod(NamespaceMode::Pod, NamespaceMode::Pod, &[]);
        c.security.run_as_group = Some(1000);
        assert!(refusal(&c).contains("user group \"1000\" is specified without user"));
        c.security.run_as_user = Some(0);
        assert!(validate(&c).is_ok());

        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("good.json");
        std::fs::write(&good, r#"{"defaultAction":"SCMP_ACT_ALLOW"}"#).unwrap();
        let bad = dir.path().join("bad.json");
        std::fs::write(&bad, "not json").unwrap();
        let missing = dir.path().join("missing.json");
        let profile = |t: u64, r: &std::path::Path| SeccompProfile {
            profile_type: t,
            localhost_ref: r.display().to_string(),
        };
        let cases: [(Option<SeccompProfile>, &str, Option<&str>); 8] = [
            (Some(profile(2, &good)), "", None),
            (
                Some(profile(2, &missing)),
                "",
                Some("cannot load seccomp profile"),
            ),
            (
                Some(profile(2, &bad)),
                "",
                Some("decoding seccomp profile failed"),
            ),
            (
                Some(profile(0, &good)),
                "",
                Some("LocalhostRef must only be set"),
            ),
            (
                Some(profile(7, std::path::Path::new(""))),
                "",
                Some("seccomp unknown ProfileType"),
            ),
            (None, "unconfined", None),
            (None, "bogus", Some("invalid profile \"bogus\"")),
            (
                None,
                &format!("localhost/{}", missing.display()),
                Some("cannot load"),
            ),
        ];
        for (seccomp, path, want) in cases {
            let mut c = pod(NamespaceMode::Pod, NamespaceMode::Pod, &[]);
            c.security.seccomp = seccomp.clone();
            c.security.seccomp_profile_path = path.to_string();
            match want {
                None => assert!(validate(&c).is_ok(), "{seccomp:?} {path}"),
                Some(w) => assert!(
                    refusal(&c).contains(w),
                    "{seccomp:?} {path}: {}",
                    refusal(&c)
                ),
            }
            // A privileged sandbox gets no seccomp profile: nothing of it is read.
            c.security.privileged = true;
            if path != "bogus" {
                assert!(validate(&c).is_ok(), "privileged {seccomp:?} {path}");
            }
        }
    }

    #[test]
    fn slash_separated_names_read_as_runc_reads_them() {
        assert_eq!(
            dots_separated("net/ipv4/conf/eno2.100/rp_filter"),
            "net.ipv4.conf.eno2/100.rp_filter"
        );
        assert_eq!(dots_separated("net.ipv4.ip_forward"), "net.ipv4.ip_forward");
        assert_eq!(dots_separated("kernel"), "kernel");
    }

    #[test]
    fn cri_default_sysctls_for_pods_with_their_own_network() {
        let on = SandboxConfig::default();
        let c = pod(NamespaceMode::Pod, NamespaceMode::Pod, &[]);
        let s = holder_sysctls(&c, &on);
        assert_eq!(s["net.ipv4.ip_unprivileged_port_start"], "0");
        assert_eq!(s["net.ipv4.ping_group_range"], "0 2147483647");
        let off = SandboxConfig {
            enable_unprivileged_ports: false,
            enable_unprivileged_icmp: false,
            ..on
        };
        assert!(holder_sysctls(&c, &off).is_empty());
        // The pod's own value wins, in either spelling.
        let c = pod(
            NamespaceMode::Pod,
            NamespaceMode::Pod,
            &[("net/ipv4/ip_unprivileged_port_start", "1024")],
        );
        let s = holder_sysctls(&c, &on);
        assert_eq!(s.len(), 2);
        assert_eq!(s["net/ipv4/ip_unprivileged_port_start"], "1024");
        // Never into the node's network namespace.
        let c = pod(NamespaceMode::Node, NamespaceMode::Pod, &[]);
        assert!(holder_sysctls(&c, &on).is_empty());
        // As CRI: no ICMP default in a user-namespaced pod, whose namespace maps no group
        // near 2147483647 (the kernel refuses the range).
        let mut c = pod(NamespaceMode::Pod, NamespaceMode::Pod, &[]);
        c.userns = Some(UsernsOptions {
            mode: NamespaceMode::Pod,
            uids: vec![],
            gids: vec![],
        });
        let s = holder_sysctls(&c, &on);
        assert_eq!(
            s.keys().collect::<Vec<_>>(),
            ["net.ipv4.ip_unprivileged_port_start"]
        );
    }
}
