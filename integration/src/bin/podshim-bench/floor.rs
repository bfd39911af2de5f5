//! The floor under RunPodSandbox that no handler removes: a new network namespace and the CNI
//! plugins CRI runs in it (go-cni's loopback on `lo`, then the run's conflist on `eth0`: bridge
//! with host-local, portmap), each run here directly, without containerd or a shim. Sampled
//! beside every handler's serial pod start, so a noisy machine shifts them alike.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use podshim_integration::Containerd;
use serde_json::{json, Value};

const CNI_BIN: &str = "/usr/lib/cni";

/// One sample: the namespace's creation and the plugins' ADD, timed apart.
pub(crate) struct Floor {
    pub(crate) netns: Duration,
    pub(crate) cni_add: Duration,
}

/// The run's one conflist, as CRI reads it.
pub(crate) fn conflist(c: &Containerd) -> Result<Value> {
    let path = c.cni_conflist();
    let text = std::fs::read(&path).with_context(|| format!("read {}", path.display()))?;
    Ok(serde_json::from_slice(&text)?)
}

/// A namespace made, the plugins of `conflist` added and then deleted, the namespace removed.
pub(crate) fn sample(conflist: &Value, n: usize) -> Result<Floor> {
    let name = format!("podshim-bench-floor-{}-{n}", std::process::id());
    let t = Instant::now();
    run(Command::new("ip").args(["netns", "add", &name]), None)?;
    let netns = t.elapsed();
    let path = PathBuf::from("/run/netns").join(&name);
    let id = format!("podshim-bench-floor-{n}");
    let t = Instant::now();
    let added = add(conflist, &path, &id);
    let cni_add = t.elapsed();
    let deleted = del(conflist, &path, &id);
    let removed = run(Command::new("ip").args(["netns", "del", &name]), None);
    added?;
    deleted?;
    removed?;
    Ok(Floor { netns, cni_add })
}

/// The plugins CRI runs for a pod, in order: loopback on `lo`, then each plugin of the list on
/// `eth0`, each handed the one before's result.
fn plugins(conflist: &Value) -> Vec<(Value, &'static str)> {
    let version = conflist["cniVersion"].clone();
    let mut out = vec![(
        json!({"cniVersion": version, "name": "cni-loopback", "type": "loopback"}),
        "lo",
    )];
    for p in conflist["plugins"].as_array().into_iter().flatten() {
        let mut conf = p.clone();
        conf["cniVersion"] = version.clone();
        conf["name"] = conflist["name"].clone();
        out.push((conf, "eth0"));
    }
    out
}

fn add(conflist: &Value, netns: &Path, id: &str) -> Result<()> {
    let mut prev: Option<Value> = None;
    for (mut conf, ifname) in plugins(conflist) {
        if ifname == "lo" {
            invoke("ADD", &conf, netns, id, ifname)?;
            continue;
        }
        if let Some(p) = prev.take() {
            conf["prevResult"] = p;
        }
        let out = invoke("ADD", &conf, netns, id, ifname)?;
        prev = Some(serde_json::from_slice(&out).context("a CNI plugin's result")?);
    }
    Ok(())
}

fn del(conflist: &Value, netns: &Path, id: &str) -> Result<()> {
    let mut first_err = None;
    for (conf, ifname) in plugins(conflist).into_iter().rev() {
        if let Err(e) = invoke("DEL", &conf, netns, id, ifname) {
            first_err.get_or_insert(e);
        }
    }
    first_err.map_or(Ok(()), Err)
}

fn invoke(cmd: &str, conf: &Value, netns: &Path, id: &str, ifname: &str) -> Result<Vec<u8>> {
    let plugin = conf["type"].as_str().context("a plugin without a type")?;
    let mut c = Command::new(Path::new(CNI_BIN).join(plugin));
    c.env("CNI_COMMAND", cmd)
        .env("CNI_CONTAINERID", id)
        .env("CNI_NETNS", netns)
        .env("CNI_IFNAME", ifname)
        .env("CNI_PATH", CNI_BIN);
    run(&mut c, Some(&serde_json::to_vec(conf)?)).with_context(|| format!("CNI {cmd} {plugin}"))
}

fn run(c: &mut Command, stdin: Option<&[u8]>) -> Result<Vec<u8>> {
    let mut child = c
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("{c:?}"))?;
    if let (Some(mut w), Some(data)) = (child.stdin.take(), stdin) {
        w.write_all(data)?;
    }
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "{:?}: {} {}{}",
            c.get_program(),
            out.status,
            String::from_utf8_lossy(&out.stdout).trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(out.stdout)
}
