//! `[runtime] exec_helper` (podshim-exec): an exec started by the helper is the process runc's
//! exec would have started, case by case, against runc 1.4.3 (the helper follows current runc
//! where releases differ: runc 1.1 orders a repeated environment variable otherwise). Each probe runs twice in the same container of the same
//! shim: once through the helper, once through the shim's fallback to `runc exec` (a wrapper
//! around the helper declines, exit status 125, as the helper does for what it does not
//! implement); what the process sees of itself must be equal. A wrapper around runc counts its
//! execs: zero for the helper's, one for each declined. The pod's shim runs pinned to one CPU,
//! as containerd's on a node that reserves CPUs for it.

use std::path::Path;

use anyhow::{ensure, Context, Result};
use k8s_cri::v1::{
    security_profile::ProfileType, Capability, ContainerConfig, Int64Value, KeyValue,
    LinuxContainerSecurityContext, PodSandboxConfig, SecurityProfile,
};
use podshim_integration::{sh, shim_bin_dir, sys, Containerd, Options};

pub fn helper_opts(o: Options) -> Options {
    Options {
        shim_config: "[runtime]\nbinary = \"{dir}/oci-runtime\"\nroot = \"{dir}/podshim-oci\"\nexec_helper = \"{dir}/exec-helper\"\n".into(),
        ..o
    }
}

/// What a process sees of itself, by probe: (arguments, what to keep of its output).
const PROBES: &[(&[&str], Keep)] = &[
    (&["cat", "/proc/self/status"], Keep::StatusLines),
    (&["cat", "/proc/self/stat"], Keep::Session),
    (
        &["cat", "/proc/self/loginuid", "/proc/self/personality"],
        Keep::All,
    ),
    (&["cat", "/proc/self/environ"], Keep::All),
    (&["cat", "/proc/self/limits"], Keep::All),
    (&["cat", "/proc/self/oom_score_adj"], Keep::All),
    (&["cat", "/proc/self/cgroup"], Keep::All),
    (&["cat", "/proc/self/attr/current"], Keep::All),
    (&["ls", "/proc/self/fd"], Keep::All),
    (
        &["readlink", "/proc/self/cwd", "/proc/self/root"],
        Keep::All,
    ),
    (&["id"], Keep::All),
    (
        &[
            "sh",
            "-c",
            "for n in /proc/self/ns/*; do echo $n $(readlink $n); done",
        ],
        Keep::All,
    ),
    (&["sh", "-c", "echo out; echo err >&2; exit 3"], Keep::All),
    (
        &["sh", "-c", "mkdir /tmp/probe && rmdir /tmp/probe"],
        Keep::All,
    ),
    (&["nope-not-in-path"], Keep::All),
    (&["/etc/passwd"], Keep::All),
];

/// A Localhost seccomp profile: everything allowed but mkdir, which fails with EACCES.
const NO_MKDIR_PROFILE: &str = r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
    {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}]}"#;

#[derive(Clone, Copy)]
enum Keep {
    All,
    /// Of `/proc/<pid>/status`, what runc sets or the process inherits (not its pid or memory).
    StatusLines,
    /// Of `/proc/<pid>/stat`: whether it leads its process group and session, its parent,
    /// terminal and terminal's process group (pids differ from run to run).
    Session,
}

fn session(stat: &str) -> String {
    let pid = stat.split(' ').next().unwrap_or_default();
    let f: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    if f.len() < 6 {
        return format!("unreadable stat: {stat}");
    }
    let (ppid, pgrp, sid, tty, tpgid) = (f[1], f[2], f[3], f[4], f[5]);
    format!(
        "ppid {ppid}, leads its group {}, leads its session {}, tty {tty}, tty's group {tpgid}\n",
        pgrp == pid,
        sid == pid
    )
}

const STATUS_FIELDS: &[&str] = &[
    "Umask",
    "Uid",
    "Gid",
    "Groups",
    "SigBlk",
    "SigIgn",
    "SigCgt",
    "CapInh",
    "CapPrm",
    "CapEff",
    "CapBnd",
    "CapAmb",
    "NoNewPrivs",
    "Seccomp",
    "Seccomp_filters",
    "Cpus_allowed_list",
    "Mems_allowed_list",
];

pub async fn exec_helper_matches_runc_shared_runc(c: &mut Containerd) -> Result<()> {
    let mut pod = c.pod_config("fastexec");
    // A privileged container needs a privileged pod.
    pod.linux
        .get_or_insert_with(Default::default)
        .security_context
        .get_or_insert_with(Default::default)
        .privileged = true;
    matches_runc(c, pod).await
}

/// The same in a `hostUsers: false` pod: the helper joins the pod's user namespace first.
pub async fn exec_helper_in_userns_shared_runc(c: &mut Containerd) -> Result<()> {
    let pod = crate::userns::userns_pod_config(c, "fastexecuserns");
    matches_runc(c, pod).await
}

pub fn missing_helper_opts(o: Options) -> Options {
    Options {
        shim_config:
            "[runtime]\nroot = \"{dir}/podshim-oci\"\nexec_helper = \"{dir}/no-such-helper\"\n"
                .into(),
        ..o
    }
}

/// A helper set in the shim's config that is not there: the pod does not start, with the reason,
/// and leaves nothing (rather than every exec probe of the node failing later).
pub async fn exec_helper_missing(c: &mut Containerd) -> Result<()> {
    let err = match c.run_pod("nohelper").await {
        Ok(pod) => anyhow::bail!("RunPodSandbox succeeded: {}", pod.id),
        Err(e) => format!("{e:#}"),
    };
    ensure!(
        err.contains("runtime.exec_helper")
            && err.contains("no-such-helper is not an executable file"),
        "RunPodSandbox's error does not name the helper: {err}"
    );
    crate::util::assert_failed_pod_left_nothing(c).await
}

pub fn helper_with_shared_runc(o: Options) -> Options {
    crate::userns::shared_runc(helper_opts(o))
}

async fn matches_runc(c: &mut Containerd, pod: PodSandboxConfig) -> Result<()> {
    let declines = c.dir.join("exec-helper.declines");
    install_wrappers(c, &declines)?;
    // A seccomp profile of the node's: mkdir fails with EACCES.
    let no_mkdir = c.dir.join("no-mkdir.json");
    std::fs::write(&no_mkdir, NO_MKDIR_PROFILE)?;
    // A container names the pod's namespaces (and user namespace) as kubelet copies them.
    let pod_security = pod.linux.as_ref().and_then(|l| l.security_context.clone());
    let namespaces = pod_security
        .as_ref()
        .and_then(|s| s.namespace_options.clone());
    let privileged = pod_security.is_some_and(|s| s.privileged);
    let pod = c.run_pod_with(pod).await?;
    // The pod's shim pinned to one CPU, as on a node whose containerd runs on reserved CPUs:
    // runc's exec does not pass that affinity on, and neither may the helper.
    if let [first, _, ..] = sys::online_cpus()[..] {
        for shim in c.settled_shims().await {
            sys::pin_to_cpu(shim.pid, first)?;
        }
    }
    let containers = [
        ("root", sh("root", "exec sleep 1000")),
        ("user", {
            let mut cfg = sh("user", "exec sleep 1000");
            cfg.working_dir = "/tmp".into();
            cfg.envs = vec![kv("A", "1"), kv("B", "two words"), kv("A", "3")];
            let s = security(&mut cfg);
            s.run_as_user = Some(Int64Value { value: 65534 });
            s.run_as_group = Some(Int64Value { value: 3000 });
            s.supplemental_groups = vec![4000, 4001, 4000];
            s.no_new_privs = true;
            cfg
        }),
        ("unnamed", {
            let mut cfg = sh("unnamed", "exec sleep 1000");
            security(&mut cfg).run_as_user = Some(Int64Value { value: 1234 });
            cfg
        }),
        ("caps", {
            let mut cfg = sh("caps", "exec sleep 1000");
            security(&mut cfg).capabilities = Some(Capability {
                add_capabilities: vec!["NET_ADMIN".into(), "SYS_TIME".into()],
                drop_capabilities: vec!["CHOWN".into(), "KILL".into()],
                ..Default::default()
            });
            cfg
        }),
        ("runtimedefault", {
            let mut cfg = sh("runtimedefault", "exec sleep 1000");
            security(&mut cfg).seccomp = Some(SecurityProfile {
                profile_type: ProfileType::RuntimeDefault as i32,
                ..Default::default()
            });
            cfg
        }),
        ("nomkdir", {
            let mut cfg = sh("nomkdir", "exec sleep 1000");
            let s = security(&mut cfg);
            s.no_new_privs = true;
            s.seccomp = Some(SecurityProfile {
                profile_type: ProfileType::Localhost as i32,
                localhost_ref: no_mkdir.display().to_string(),
            });
            cfg
        }),
    ];
    let privileged = privileged.then(|| {
        let mut cfg = sh("privileged", "exec sleep 1000");
        security(&mut cfg).privileged = true;
        ("privileged", cfg)
    });
    for (name, mut cfg) in containers.into_iter().chain(privileged) {
        security(&mut cfg).namespace_options = namespaces.clone();
        let id = c.run_container(&pod, cfg).await?;
        for (args, keep) in PROBES {
            let helper = probe(c, &id, args, *keep, &declines, false).await?;
            let runc = probe(c, &id, args, *keep, &declines, true).await?;
            ensure!(
                helper == runc,
                "{name}: {args:?} through the helper:\n{helper}\nthrough runc:\n{runc}"
            );
        }
        let helper = tty_probe(c, &id, &declines, false).await?;
        let runc = tty_probe(c, &id, &declines, true).await?;
        ensure!(
            helper == runc,
            "{name}: terminal exec through the helper:\n{helper}\nthrough runc:\n{runc}"
        );
        eprintln!("{name}: {} probes and the terminal's equal", PROBES.len());
    }
    Ok(())
}

async fn probe(
    c: &Containerd,
    id: &str,
    args: &[&str],
    keep: Keep,
    declines: &Path,
    through_runc: bool,
) -> Result<String> {
    let exec = async { Ok(c.cri.exec_sync(id, args, 10).await) };
    let answer = match on_path(c, declines, through_runc, &format!("{args:?}"), exec).await? {
        Ok(r) => {
            let stdout = String::from_utf8_lossy(&r.stdout).replace('\0', "\\0");
            let stdout = match keep {
                Keep::All => stdout,
                Keep::Session => session(&stdout),
                Keep::StatusLines => stdout
                    .lines()
                    .filter(|l| {
                        l.split_once(':')
                            .is_some_and(|(k, _)| STATUS_FIELDS.contains(&k))
                    })
                    .map(|l| format!("{l}\n"))
                    .collect(),
            };
            format!(
                "exit {}\nstdout:\n{stdout}stderr:\n{}",
                r.exit_code,
                String::from_utf8_lossy(&r.stderr)
            )
        }
        // The two paths word a failed start alike only in its cause (runc's and the helper's
        // error text around it differ): keep the cause.
        Err(e) => {
            let e = format!("{e:#}");
            let cause = ["executable file not found in $PATH", "permission denied"]
                .into_iter()
                .find(|k| e.contains(k))
                .with_context(|| format!("{args:?}: unexpected error: {e}"))?;
            format!("failed: {cause}")
        }
    };
    Ok(answer)
}

/// Runs `exec` through runc (the helper wrapper declines) or through the helper, and checks
/// which of the two ran it: runc's wrapper counts its execs.
async fn on_path<T>(
    c: &Containerd,
    declines: &Path,
    through_runc: bool,
    what: &str,
    exec: impl std::future::Future<Output = Result<T>>,
) -> Result<T> {
    if through_runc {
        std::fs::write(declines, b"")?;
    } else {
        let _ = std::fs::remove_file(declines);
    }
    let before = runc_execs(c);
    let out = exec.await?;
    let runc = runc_execs(c) - before;
    ensure!(
        runc == usize::from(through_runc),
        "{what}: runc ran {runc} execs, want {}",
        usize::from(through_runc)
    );
    Ok(out)
}

/// A terminal exec (`kubectl exec -it`): the pty (its number aside), its owner and mode, the
/// session it controls, the terminal's settings (not its size: a resize reaches a process only
/// once it runs, so the first one is a race with any runtime), driven as kubectl drives it:
/// stdin open, a line on stdin to end it once everything is printed (containerd stops copying a
/// terminal exec's output when its stdin ends, whatever the shim). What the terminal echoes of
/// that line is left out.
const TTY_PROBE: &str = "t=$(tty); echo ${t%%[0-9]*}; stat -c '%u %g %a' $t; \
    read -r pid comm st ppid pgrp sid tty tpgid rest < /proc/self/stat; \
    echo leader $([ $pid = $sid ] && echo yes) fg $([ $tpgid = $pgrp ] && echo yes) tty $([ $tty != 0 ] && echo yes); \
    stty -a | tail -n +2; ls /proc/self/fd; echo END-OF-PROBE; read x";

async fn tty_probe(
    c: &Containerd,
    id: &str,
    declines: &Path,
    through_runc: bool,
) -> Result<String> {
    use podshim_integration::streaming::{self, exit_code_from_status, ChannelConn, PROTOCOL_V4};
    let exec = async {
        let url = c
            .cri
            .exec_url(k8s_cri::v1::ExecRequest {
                container_id: id.into(),
                cmd: vec!["sh".into(), "-c".into(), TTY_PROBE.into()],
                tty: true,
                stdin: true,
                stdout: true,
                stderr: false,
            })
            .await?;
        let mut conn = ChannelConn::connect(&url, PROTOCOL_V4).await?;
        let t = std::time::Duration::from_secs(20);
        let mut got = conn
            .read_until(streaming::STDOUT, "END-OF-PROBE", t)
            .await?;
        conn.send(streaming::STDIN, b"\n").await?;
        for (ch, data) in conn.collect(t).await? {
            got.entry(ch).or_default().extend(data);
        }
        Ok(got)
    };
    let got = on_path(c, declines, through_runc, "terminal exec", exec).await?;
    let status = got.get(&streaming::ERROR).context("no exit status")?;
    let out = got.get(&streaming::STDOUT).map(|o| {
        let o = String::from_utf8_lossy(o);
        o.split_once("END-OF-PROBE")
            .map_or(o.to_string(), |(probe, _)| probe.to_string())
    });
    Ok(format!(
        "exit {}\n{}",
        exit_code_from_status(status)?,
        out.unwrap_or_default()
    ))
}

fn install_wrappers(c: &Containerd, declines: &Path) -> Result<()> {
    let helper = shim_bin_dir(c.opts.shim_bin_dir.as_deref()).join("podshim-exec");
    ensure!(
        helper.exists(),
        "{} not built (make shim-release)",
        helper.display()
    );
    let dir = c.dir.display();
    crate::util::install_runtime_wrapper(
        c,
        &format!("for a in \"$@\"; do [ \"$a\" = exec ] && echo exec >> {dir}/runc-execs; done\n"),
    )?;
    crate::util::write_script(
        c,
        "exec-helper",
        &format!(
            "[ -e {} ] && exit 125\nexec {} \"$@\"\n",
            declines.display(),
            helper.display()
        ),
    )
}

fn count_lines(path: &Path) -> usize {
    std::fs::read_to_string(path).map_or(0, |s| s.lines().count())
}

fn runc_execs(c: &Containerd) -> usize {
    count_lines(&c.dir.join("runc-execs"))
}

fn kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: value.into(),
    }
}

fn security(cfg: &mut ContainerConfig) -> &mut LinuxContainerSecurityContext {
    cfg.linux
        .get_or_insert_with(Default::default)
        .security_context
        .get_or_insert_with(Default::default)
}
