//! What an exec asks for: the exec's OCI `Process` and what it inherits from the container's
//! `config.json`, resolved the way `runc exec` resolves them (runc's `newProcess` and
//! `newInitConfig`). A field this helper does not implement is [`Error::Unsupported`], found
//! before anything is changed.

use std::{collections::BTreeMap, ffi::CString, path::Path};

use serde::Deserialize;
use serde_json::Value;

use crate::error::{Error, Result};

/// Capability names per set, as the spec gives them.
#[derive(Debug, Default, Clone, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct CapNames {
    pub bounding: Vec<String>,
    pub effective: Vec<String>,
    pub inheritable: Vec<String>,
    pub permitted: Vec<String>,
    pub ambient: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rlimit {
    pub resource: libc::c_int,
    pub soft: u64,
    pub hard: u64,
}

/// Everything the helper applies, in runc's terms.
#[derive(Debug)]
pub struct Plan {
    pub terminal: bool,
    /// `consoleSize` (rows, columns) of a terminal process.
    pub console_size: Option<(u16, u16)>,
    pub args: Vec<CString>,
    /// The process's environment, checked and deduplicated as runc's init does (a later value
    /// replaces an earlier one in its place); HOME is added in the container.
    pub env: Vec<(String, String)>,
    pub cwd: String,
    pub uid: u32,
    pub gid: u32,
    /// Deduplicated; runc sets exactly these (an explicit gid means no groups from /etc/group).
    pub additional_gids: Vec<u32>,
    /// The process's sets, else the container's, else none at all.
    pub caps: CapNames,
    /// The process's limits if it has any, else the container's.
    pub rlimits: Vec<Rlimit>,
    /// The process's own flag: runc always passes it, so the container's never applies.
    pub no_new_privileges: bool,
    /// The container's: runc's exec inherits it from the container config, not the process.
    pub oom_score_adj: Option<i32>,
    /// The container's seccomp profile's `seccomp(2)` flags, when it has a profile: the filter
    /// itself is the init's (`crate::seccomp`).
    pub seccomp_flags: Option<u32>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ProcessJson {
    #[serde(default)]
    terminal: bool,
    console_size: Option<ConsoleSize>,
    #[serde(default)]
    user: UserJson,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    env: Vec<String>,
    #[serde(default)]
    cwd: String,
    capabilities: Option<CapNames>,
    #[serde(default)]
    rlimits: Vec<RlimitJson>,
    #[serde(default)]
    no_new_privileges: bool,
    #[serde(default)]
    apparmor_profile: String,
    #[serde(default)]
    selinux_label: String,
    #[serde(flatten)]
    rest: BTreeMap<String, Value>,
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct UserJson {
    #[serde(default)]
    uid: u32,
    #[serde(default)]
    gid: u32,
    umask: Option<u32>,
    #[serde(default)]
    additional_gids: Vec<u32>,
    #[serde(flatten)]
    rest: BTreeMap<String, Value>,
}

#[derive(Deserialize)]
struct ConsoleSize {
    #[serde(default)]
    height: u16,
    #[serde(default)]
    width: u16,
}

#[derive(Deserialize)]
struct RlimitJson {
    #[serde(rename = "type")]
    kind: String,
    soft: u64,
    hard: u64,
}

/// The part of the container's `config.json` an exec inherits or that changes what it needs.
#[derive(Default, Deserialize)]
#[serde(default)]
struct ConfigJson {
    process: ConfigProcess,
    linux: ConfigLinux,
}

#[derive(Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct ConfigProcess {
    capabilities: Option<CapNames>,
    rlimits: Vec<RlimitJson>,
    oom_score_adj: Option<i32>,
    apparmor_profile: String,
    selinux_label: String,
    user: ConfigUser,
}

#[derive(Default, Deserialize)]
#[serde(default)]
struct ConfigUser {
    umask: Option<u32>,
}

#[derive(Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct ConfigLinux {
    seccomp: Option<SeccompJson>,
    personality: Option<Value>,
    intel_rdt: Option<Value>,
    memory_policy: Option<Value>,
}

#[derive(Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct SeccompJson {
    flags: Vec<String>,
    listener_path: String,
}

/// Process fields runc reads for an exec that change nothing the helper must do: the process's
/// oom_score_adj (runc applies the container's).
const IGNORED_PROCESS_FIELDS: &[&str] = &["oomScoreAdj"];

pub fn read(process: &Path, bundle: &Path) -> Result<Plan> {
    let process = std::fs::read(process).map_err(crate::error::os("read the process spec"))?;
    let config = std::fs::read(bundle.join("config.json"))
        .map_err(crate::error::os("read the container's config.json"))?;
    plan(&process, &config)
}

pub fn plan(process: &[u8], config: &[u8]) -> Result<Plan> {
    let p: ProcessJson = serde_json::from_slice(process)
        .map_err(|e| Error::Failed(format!("unreadable process spec: {e}")))?;
    let c: ConfigJson = serde_json::from_slice(config)
        .map_err(|e| Error::Failed(format!("unreadable config.json: {e}")))?;
    supported(&p, &c)?;
    // runc's validateProcessSpec.
    if p.cwd.is_empty() {
        return Err(Error::Failed("Cwd property must not be empty".into()));
    }
    if !p.cwd.starts_with('/') {
        return Err(Error::Failed("Cwd must be an absolute path".into()));
    }
    if p.args.is_empty() {
        return Err(Error::Failed("args must not be empty".into()));
    }
    let args = p
        .args
        .iter()
        .map(|a| CString::new(a.as_str()))
        .collect::<std::result::Result<_, _>>()
        .map_err(|_| Error::Failed("an argument contains a NUL byte".into()))?;
    let rlimits = if p.rlimits.is_empty() {
        &c.process.rlimits
    } else {
        &p.rlimits
    };
    let mut additional_gids = p.user.additional_gids.clone();
    additional_gids.sort_unstable();
    additional_gids.dedup();
    Ok(Plan {
        terminal: p.terminal,
        console_size: p.console_size.map(|c| (c.height, c.width)),
        args,
        env: environment(&p.env)?,
        cwd: p.cwd,
        uid: p.user.uid,
        gid: p.user.gid,
        additional_gids,
        caps: p
            .capabilities
            .or(c.process.capabilities)
            .unwrap_or_default(),
        rlimits: rlimits.iter().map(rlimit).collect::<Result<_>>()?,
        no_new_privileges: p.no_new_privileges,
        oom_score_adj: c.process.oom_score_adj,
        seccomp_flags: c.linux.seccomp.as_ref().map(seccomp_flags).transpose()?,
    })
}

/// Everything runc would do for this exec that the helper does not: such an exec goes to runc.
fn supported(p: &ProcessJson, c: &ConfigJson) -> Result<()> {
    let unsupported = |what: &str| Err(Error::Unsupported(what.to_string()));
    if let Some(key) = p
        .rest
        .iter()
        .find(|(k, v)| !v.is_null() && !IGNORED_PROCESS_FIELDS.contains(&k.as_str()))
        .map(|(k, _)| k)
    {
        return unsupported(&format!("process field {key:?}"));
    }
    if let Some(key) = p
        .user
        .rest
        .iter()
        .find(|(_, v)| !v.is_null())
        .map(|(k, _)| k)
    {
        return unsupported(&format!("user field {key:?}"));
    }
    if p.user.umask.is_some() || c.process.user.umask.is_some() {
        return unsupported("a umask");
    }
    if !p.apparmor_profile.is_empty() || !c.process.apparmor_profile.is_empty() {
        return unsupported("an AppArmor profile");
    }
    if !p.selinux_label.is_empty() || !c.process.selinux_label.is_empty() {
        return unsupported("an SELinux label");
    }
    if c.linux
        .seccomp
        .as_ref()
        .is_some_and(|s| !s.listener_path.is_empty())
    {
        return unsupported("a seccomp notify listener");
    }
    for (field, value) in [
        ("personality", &c.linux.personality),
        ("intelRdt", &c.linux.intel_rdt),
        ("memoryPolicy", &c.linux.memory_policy),
    ] {
        if value.as_ref().is_some_and(|v| !v.is_null()) {
            return unsupported(&format!("linux.{field}"));
        }
    }
    Ok(())
}

/// The profile's flags as `seccomp(2)` takes them (runc's `filterFlags`); one this helper does
/// not know goes to runc.
fn seccomp_flags(profile: &SeccompJson) -> Result<u32> {
    profile.flags.iter().try_fold(0, |bits, flag| {
        let bit = match flag.as_str() {
            "SECCOMP_FILTER_FLAG_LOG" => 1 << 1,
            "SECCOMP_FILTER_FLAG_SPEC_ALLOW" => 1 << 2,
            "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV" => 1 << 5,
            other => return Err(Error::Unsupported(format!("seccomp flag {other}"))),
        };
        Ok(bits | bit)
    })
}

/// runc's `prepareEnv` (runc 1.4; 1.1 and 1.2 keep a repeated name in its first place): every
/// entry needs `=` after a name, a repeated name keeps its last entry in that entry's place, an
/// empty HOME is dropped (it is set in the container).
fn environment(env: &[String]) -> Result<Vec<(String, String)>> {
    let mut out: Vec<(String, String)> = Vec::with_capacity(env.len());
    for pair in env.iter().rev() {
        let (name, value) = pair
            .split_once('=')
            .ok_or_else(|| Error::Failed("invalid environment variable: missing '='".into()))?;
        if name.is_empty() {
            return Err(Error::Failed(
                "invalid environment variable: name cannot be empty".into(),
            ));
        }
        if out.iter().any(|(n, _)| n == name) {
            continue;
        }
        if pair.contains('\0') {
            return Err(Error::Failed(format!(
                "invalid environment variable {name:?}: contains nul byte (\\x00)"
            )));
        }
        if name == "HOME" && value.is_empty() {
            continue;
        }
        out.push((name.to_string(), value.to_string()));
    }
    out.reverse();
    Ok(out)
}

fn rlimit(r: &RlimitJson) -> Result<Rlimit> {
    let resource = match r.kind.as_str() {
        "RLIMIT_CPU" => libc::RLIMIT_CPU,
        "RLIMIT_FSIZE" => libc::RLIMIT_FSIZE,
        "RLIMIT_DATA" => libc::RLIMIT_DATA,
        "RLIMIT_STACK" => libc::RLIMIT_STACK,
        "RLIMIT_CORE" => libc::RLIMIT_CORE,
        "RLIMIT_RSS" => libc::RLIMIT_RSS,
        "RLIMIT_NPROC" => libc::RLIMIT_NPROC,
        "RLIMIT_NOFILE" => libc::RLIMIT_NOFILE,
        "RLIMIT_MEMLOCK" => libc::RLIMIT_MEMLOCK,
        "RLIMIT_AS" => libc::RLIMIT_AS,
        "RLIMIT_LOCKS" => libc::RLIMIT_LOCKS,
        "RLIMIT_SIGPENDING" => libc::RLIMIT_SIGPENDING,
        "RLIMIT_MSGQUEUE" => libc::RLIMIT_MSGQUEUE,
        "RLIMIT_NICE" => libc::RLIMIT_NICE,
        "RLIMIT_RTPRIO" => libc::RLIMIT_RTPRIO,
        "RLIMIT_RTTIME" => libc::RLIMIT_RTTIME,
        other => return Err(Error::Failed(format!("wrong rlimit value: {other}"))),
    };
    Ok(Rlimit {
        resource: resource as libc::c_int,
        soft: r.soft,
        hard: r.hard,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = r#"{"process":{"capabilities":{"bounding":["CAP_KILL"]},
        "rlimits":[{"type":"RLIMIT_NOFILE","soft":1024,"hard":1024}],"oomScoreAdj":-997},
        "linux":{"namespaces":[{"type":"pid"}]}}"#;

    fn plan_of(process: &str) -> Result<Plan> {
        plan(process.as_bytes(), CONFIG.as_bytes())
    }

    #[test]
    fn a_cri_exec_takes_its_own_fields_and_the_containers_oom_score() {
        let p = plan_of(
            r#"{"user":{"uid":1000,"gid":3000,"additionalGids":[4,2,4]},"args":["sh","-c","id"],
            "env":["A=1","B=2","A=3"],"cwd":"/w","capabilities":{"effective":["CAP_CHOWN"]},
            "rlimits":[{"type":"RLIMIT_CORE","soft":0,"hard":0}],"noNewPrivileges":true,
            "oomScoreAdj":5,"consoleSize":{"height":0,"width":0}}"#,
        )
        .unwrap();
        assert_eq!((p.uid, p.gid), (1000, 3000));
        assert_eq!(p.additional_gids, [2, 4]);
        assert_eq!(p.env, [("B".into(), "2".into()), ("A".into(), "3".into())]);
        assert_eq!(p.caps.effective, ["CAP_CHOWN"]);
        assert!(p.caps.bounding.is_empty());
        assert_eq!(p.rlimits[0].resource, libc::RLIMIT_CORE as i32);
        assert!(p.no_new_privileges);
        assert_eq!(p.oom_score_adj, Some(-997));
    }

    #[test]
    fn what_the_process_leaves_out_comes_from_the_container() {
        let p = plan_of(r#"{"args":["true"],"cwd":"/"}"#).unwrap();
        assert_eq!(p.caps.bounding, ["CAP_KILL"]);
        assert_eq!(p.rlimits[0].soft, 1024);
        let bare = plan(br#"{"args":["true"],"cwd":"/"}"#, b"{}").unwrap();
        assert_eq!(bare.caps, CapNames::default());
        assert!(bare.rlimits.is_empty());
    }

    #[test]
    fn a_seccomp_profile_gives_its_flags() {
        let flags = |config: &str| {
            plan(br#"{"args":["x"],"cwd":"/"}"#, config.as_bytes())
                .unwrap()
                .seccomp_flags
        };
        assert_eq!(flags("{}"), None);
        assert_eq!(
            flags(r#"{"linux":{"seccomp":{"defaultAction":"SCMP_ACT_ERRNO"}}}"#),
            Some(0)
        );
        assert_eq!(
            flags(
                r#"{"linux":{"seccomp":{"flags":["SECCOMP_FILTER_FLAG_LOG","SECCOMP_FILTER_FLAG_SPEC_ALLOW"]}}}"#
            ),
            Some(6)
        );
    }

    #[test]
    fn runcs_process_checks_fail_the_exec() {
        let msg = |s: &str| match plan_of(s) {
            Err(Error::Failed(m)) => m,
            other => panic!("{other:?}"),
        };
        assert_eq!(msg(r#"{"args":["x"]}"#), "Cwd property must not be empty");
        assert_eq!(
            msg(r#"{"args":["x"],"cwd":"w"}"#),
            "Cwd must be an absolute path"
        );
        assert_eq!(msg(r#"{"args":[],"cwd":"/"}"#), "args must not be empty");
        assert!(msg(r#"{"args":["x"],"cwd":"/","env":["NOEQ"]}"#).contains("missing '='"));
        assert!(msg(r#"{"args":["x"],"cwd":"/","env":["=v"]}"#).contains("name cannot be empty"));
        let empty_home = plan_of(r#"{"args":["x"],"cwd":"/","env":["HOME=","A=1"]}"#).unwrap();
        assert_eq!(empty_home.env, [("A".into(), "1".into())]);
        assert_eq!(
            msg(r#"{"args":["x"],"cwd":"/","rlimits":[{"type":"RLIMIT_X","soft":1,"hard":1}]}"#),
            "wrong rlimit value: RLIMIT_X"
        );
    }

    #[test]
    fn what_the_helper_does_not_implement_goes_to_runc() {
        let needs_runc = |process: &str, config: &str| {
            matches!(
                plan(process.as_bytes(), config.as_bytes()),
                Err(Error::Unsupported(_))
            )
        };
        let ok = r#"{"args":["x"],"cwd":"/"}"#;
        assert!(!needs_runc(ok, "{}"));
        assert!(!needs_runc(
            r#"{"args":["x"],"cwd":"/","terminal":true}"#,
            "{}"
        ));
        assert!(needs_runc(
            r#"{"args":["x"],"cwd":"/","scheduler":{"policy":"SCHED_FIFO"}}"#,
            "{}"
        ));
        assert!(needs_runc(
            r#"{"args":["x"],"cwd":"/","ioPriority":{"class":"IOPRIO_CLASS_RT"}}"#,
            "{}"
        ));
        assert!(needs_runc(
            r#"{"args":["x"],"cwd":"/","apparmorProfile":"p"}"#,
            "{}"
        ));
        assert!(needs_runc(
            r#"{"args":["x"],"cwd":"/","selinuxLabel":"l"}"#,
            "{}"
        ));
        assert!(needs_runc(
            r#"{"args":["x"],"cwd":"/","user":{"umask":18}}"#,
            "{}"
        ));
        assert!(!needs_runc(
            ok,
            r#"{"linux":{"seccomp":{"defaultAction":"SCMP_ACT_ERRNO"}}}"#
        ));
        assert!(needs_runc(
            ok,
            r#"{"linux":{"seccomp":{"listenerPath":"/run/agent.sock"}}}"#
        ));
        assert!(needs_runc(
            ok,
            r#"{"linux":{"seccomp":{"flags":["SECCOMP_FILTER_FLAG_TSYNC_ESRCH"]}}}"#
        ));
        assert!(needs_runc(
            ok,
            r#"{"linux":{"personality":{"domain":"LINUX32"}}}"#
        ));
        assert!(needs_runc(
            ok,
            r#"{"process":{"apparmorProfile":"cri-containerd.apparmor.d"}}"#
        ));
        assert!(needs_runc(ok, r#"{"process":{"user":{"umask":18}}}"#));
        // Null is absent, as in Go's decoder.
        assert!(!needs_runc(
            r#"{"args":["x"],"cwd":"/","scheduler":null}"#,
            r#"{"linux":{"seccomp":null}}"#
        ));
    }
}
