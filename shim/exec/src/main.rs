//! podshim-exec: starts one process in a running container as `runc exec --detach` does (the
//! same namespaces, cgroups, user, capabilities, rlimits, keyring and checks) without starting a
//! Go runtime or re-executing itself. The shim runs it for an exec when `[runtime] exec_helper`
//! names it (`shim/src/exec_helper.rs`).
//!
//! One direction: read the spec (an exec it cannot do exactly as runc does exits 125 before
//! anything changes, and the shim runs `runc exec`) → connect a terminal process's console
//! socket → find the container's init through the
//! pidfd the shim passed → take runc's seccomp filter from it (`seccomp.rs`) → join its cgroups, take every CPU their cpuset allows, set the container's oom_score_adj and the rlimits
//! on ourselves → join its namespaces → fork → the child becomes the process (`child.rs`) → the
//! parent writes the child's pid, or reaps it and reports why it did not exec.
//!
//! Invariant: no process is left behind by a failure (a child that did not exec is reaped
//! before the helper exits), and what changes before the fork belongs to this short-lived
//! process alone.
#![deny(unsafe_code)]

mod args;
mod caps;
mod cgroup;
mod child;
mod console;
mod error;
mod seccomp;
mod spec;
mod sys;
mod user;

use std::{
    fs::{File, OpenOptions},
    io::{Read, Write},
    os::{fd::OwnedFd, unix::fs::MetadataExt, unix::net::UnixStream},
    process::ExitCode,
};

use args::Args;
use error::{os, Error, Result};

/// The exit status that sends the exec to the OCI runtime: nothing was done.
const UNSUPPORTED: u8 = 125;

/// Namespaces an exec joins where the init's differs from the helper's, by `/proc/<pid>/ns`
/// name; the user namespace first (setns applies it first whatever the order).
const NAMESPACES: [(&str, libc::c_int); 8] = [
    ("user", libc::CLONE_NEWUSER),
    ("mnt", libc::CLONE_NEWNS),
    ("uts", libc::CLONE_NEWUTS),
    ("ipc", libc::CLONE_NEWIPC),
    ("net", libc::CLONE_NEWNET),
    ("pid", libc::CLONE_NEWPID),
    ("cgroup", libc::CLONE_NEWCGROUP),
    ("time", 0x80), // CLONE_NEWTIME
];

fn main() -> ExitCode {
    let args = match Args::parse(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("podshim-exec: {e}");
            return ExitCode::from(2);
        }
    };
    // Both files are opened now: after setns(CLONE_NEWNS) their paths would be the container's.
    let opened = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&args.log)
        .and_then(|log| Ok((log, File::create(&args.pid_file)?)));
    let (mut log, mut pid_file) = match opened {
        Ok(files) => files,
        Err(e) => {
            eprintln!(
                "podshim-exec: open {} or {}: {e}",
                args.log.display(),
                args.pid_file.display()
            );
            return ExitCode::FAILURE;
        }
    };
    let Err(e) = run(&args, &mut pid_file) else {
        return ExitCode::SUCCESS;
    };
    let (level, code) = match e {
        Error::Unsupported(_) => ("info", ExitCode::from(UNSUPPORTED)),
        Error::Failed(_) => ("error", ExitCode::FAILURE),
    };
    let line = serde_json::json!({ "level": level, "msg": e.to_string() });
    let _ = writeln!(log, "{line}");
    code
}

fn run(args: &Args, pid_file: &mut File) -> Result<()> {
    let plan = spec::read(&args.process, &args.bundle)?;
    // runc's checks of the pair; the socket is a host path, so it is connected now.
    let console = match (plan.terminal, &args.console_socket) {
        (true, Some(path)) => Some(OwnedFd::from(
            UnixStream::connect(path).map_err(os(format!("connect {}", path.display())))?,
        )),
        (false, None) => None,
        (true, None) => {
            return Err(Error::Failed(
                "cannot allocate tty if runc will detach without setting console socket".into(),
            ))
        }
        (false, Some(_)) => {
            return Err(Error::Failed(
                "cannot use console socket if runc will not detach or allocate tty".into(),
            ))
        }
    };
    let init = sys::take_init_pidfd().map_err(os("the container's init pidfd"))?;
    let pid = pidfd_pid()?;
    let namespaces = namespaces_to_join(pid)?;
    let proc_cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .map_err(os("read the init's cgroups"))?;
    let mountinfo =
        std::fs::read_to_string("/proc/self/mountinfo").map_err(os("read mountinfo"))?;
    let cgroups = cgroup::procs_files(&proc_cgroup, &mountinfo).map_err(Error::Failed)?;
    // What was read under /proc/<pid> was the init's only if it still runs now.
    sys::pidfd_alive(&init)
        .map_err(|_| Error::Failed("cannot exec in a stopped container".into()))?;
    let caps = caps::CapSets::resolve(&plan.caps, caps::last_cap().map_err(os("cap_last_cap"))?);
    let filter = plan
        .seccomp_flags
        .map(|flags| seccomp::of_init(pid, &args.bundle, flags))
        .transpose()?;

    let me = std::process::id();
    for file in &cgroups {
        std::fs::write(file, me.to_string()).map_err(os(format!(
            "error adding pid {me} to cgroups ({})",
            file.display()
        )))?;
    }
    // As runc's exec: every CPU (the container's cpuset bounds them), not the shim's affinity,
    // which is containerd's (reserved CPUs, on a node that pins its daemons).
    let _ = sys::reset_cpu_affinity();
    if let Some(adj) = plan.oom_score_adj {
        std::fs::write("/proc/self/oom_score_adj", adj.to_string())
            .map_err(os("failed to update /proc/self/oom_score_adj"))?;
    }
    for r in &plan.rlimits {
        sys::setrlimit(r.resource, r.soft, r.hard)
            .map_err(os(format!("error setting rlimit type {}", r.resource)))?;
    }
    sys::set_undumpable().map_err(os("prctl(PR_SET_DUMPABLE)"))?;
    sys::setns(&init, namespaces).map_err(os("setns to the container's namespaces"))?;
    drop(init);

    let (report_rx, report_tx) = sys::pipe().map_err(os("pipe"))?;
    match sys::fork().map_err(os("fork"))? {
        sys::Forked::Child => {
            drop(report_rx);
            let why = child::Child {
                plan: &plan,
                caps,
                container_id: &args.id,
                no_new_keyring: args.no_new_keyring,
                console,
                filter,
            }
            .exec();
            let _ = File::from(report_tx).write_all(why.to_string().as_bytes());
            sys::exit_child(1)
        }
        sys::Forked::Parent(child) => {
            drop(report_tx);
            // EOF without a word: the child's execve closed its end.
            let mut why = String::new();
            let read = File::from(report_rx).read_to_string(&mut why);
            if read.is_err() || !why.is_empty() {
                sys::wait(child).map_err(os("wait for the failed exec"))?;
                return Err(Error::Failed(if why.is_empty() {
                    "the exec's child vanished".into()
                } else {
                    why
                }));
            }
            pid_file
                .write_all(child.to_string().as_bytes())
                .map_err(os("write the pid file"))
        }
    }
}

/// The init's pid, from the pidfd's fdinfo (`Pid: -1` once it has been reaped).
fn pidfd_pid() -> Result<u32> {
    let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", sys::INIT_PIDFD))
        .map_err(os("read the pidfd's fdinfo"))?;
    let pid = info
        .lines()
        .find_map(|l| l.strip_prefix("Pid:"))
        .ok_or_else(|| Error::Failed("descriptor 3 is not a pidfd".into()))?
        .trim();
    pid.parse()
        .map_err(|_| Error::Failed("cannot exec in a stopped container".into()))
}

fn namespaces_to_join(pid: u32) -> Result<libc::c_int> {
    let mut flags = 0;
    for (name, flag) in NAMESPACES {
        let theirs = match std::fs::metadata(format!("/proc/{pid}/ns/{name}")) {
            Ok(m) => m,
            // A namespace type this kernel lacks.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(os(format!("read the init's {name} namespace"))(e)),
        };
        let ours = std::fs::metadata(format!("/proc/self/ns/{name}"))
            .map_err(os(format!("read our {name} namespace")))?;
        if (theirs.dev(), theirs.ino()) != (ours.dev(), ours.ino()) {
            flags |= flag;
        }
    }
    Ok(flags)
}
