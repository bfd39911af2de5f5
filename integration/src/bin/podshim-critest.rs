//! `make critest CRITEST=<path>`: the CRI validation suite (cri-tools' `critest`, which this
//! repository neither ships nor builds) against each handler, each on a private containerd of
//! its own, and a table of what passed, failed and was skipped per handler.
//!
//!   podshim-critest --critest PATH [--handlers h,...] [--focus RE] [--skip RE] [--exec-helper]
//!                   [--tag NAME]
//!
//! critest's output for each handler: `target/critest/[NAME-]<handler>.log`.
//!
//! critest's images are stand-ins built here (`critest_images.rs`), pushed to the run's loopback
//! registry: the default test image (busybox) named through `--test-images-file`, the others
//! under the names critest pulls, through containerd's registry mirrors (`hosts.toml`). Specs
//! that cannot run offline or on this node are skipped by default (`DEFAULT_SKIP`); what
//! critest skipped is counted as skipped, never as passed. `--exec-helper` runs podshim's
//! handlers with `[runtime] exec_helper` (podshim-exec) instead of `runc exec`.
#![deny(unsafe_code)]

use std::path::PathBuf;
use std::process::Command;

use anyhow::{bail, Context, Result};
use podshim_integration::critest_images::{critest_images, write_mirror_hosts_toml, CritestImage};
use podshim_integration::{images, is_podshim, shim_bin_dir, Containerd, Options};

/// Exec, streaming exec and the security context specs.
const DEFAULT_FOCUS: &str = "[Ee]xec|Security Context";

/// Specs that cannot run here: AppArmor and SELinux (not on this node); the image, registry and
/// multi-container specs (upstream's images, pulled by digest or with upstream's contents);
/// port forwarding and host network (not exec or security context: their own CNI setup);
/// MaskedPaths (it masks `/bin/ls` and expects `sh -c ls` to fail, but Debian's busybox sh runs
/// its `ls` applet without exec: runc's handler fails it too).
const DEFAULT_SKIP: &str = "[Aa]pp[Aa]rmor|SELinux|k8s.io\\] Image|[Pp]ortforward|HostNetwork|\
     Multiple Containers|MaskedPaths";

struct Args {
    critest: PathBuf,
    handlers: Vec<String>,
    focus: String,
    skip: String,
    exec_helper: bool,
    tag: String,
}

fn usage() -> ! {
    eprintln!(
        "usage: podshim-critest --critest PATH [--handlers h,...] [--focus RE] [--skip RE] [--exec-helper] [--tag NAME]"
    );
    std::process::exit(2)
}

fn args() -> Args {
    let mut a = Args {
        critest: PathBuf::new(),
        handlers: vec![
            "runc".into(),
            "podshim".into(),
            "podshim-pauseless".into(),
            "podshim-sandboxer".into(),
        ],
        focus: DEFAULT_FOCUS.into(),
        skip: DEFAULT_SKIP.into(),
        exec_helper: false,
        tag: String::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let mut val = || it.next().unwrap_or_else(|| usage());
        match k.as_str() {
            "--critest" => a.critest = PathBuf::from(val()),
            "--handlers" => a.handlers = val().split(',').map(str::to_string).collect(),
            "--focus" => a.focus = val(),
            "--skip" => a.skip = val(),
            "--exec-helper" => a.exec_helper = true,
            "--tag" => a.tag = val(),
            _ => usage(),
        }
    }
    if a.critest.as_os_str().is_empty() {
        usage();
    }
    a
}

/// What critest's summary line says: `Ran R of T Specs` and `P Passed | F Failed | ... | S Skipped`.
#[derive(Debug, Default)]
struct Outcome {
    passed: u32,
    failed: u32,
    skipped: u32,
    failures: Vec<String>,
}

fn count_before(line: &str, word: &str) -> u32 {
    line.split('|')
        .find(|p| p.contains(word))
        .and_then(|p| p.split_whitespace().find_map(|w| w.parse().ok()))
        .unwrap_or(0)
}

fn outcome(out: &str) -> Option<Outcome> {
    let summary = out
        .lines()
        .rev()
        .find(|l| l.contains("Passed") && l.contains("Failed"))?;
    let failures = out
        .lines()
        .filter(|l| l.trim_start().starts_with("[FAIL]"))
        .map(|l| l.trim().to_string())
        .collect();
    Some(Outcome {
        passed: count_before(summary, "Passed"),
        failed: count_before(summary, "Failed"),
        skipped: count_before(summary, "Skipped"),
        failures,
    })
}

async fn run_one(
    a: &Args,
    handler: &str,
    images: &[CritestImage],
    runc: Option<&PathBuf>,
) -> Result<Outcome> {
    let mut o = Options::new(handler);
    o.registry = true;
    o.oci_runtime = runc.cloned();
    if a.exec_helper && is_podshim(handler) {
        let helper = shim_bin_dir(None).join("podshim-exec");
        if !helper.is_file() {
            bail!("{} missing: build the shim first", helper.display());
        }
        // A shim config of its own replaces the harness's, which names the OCI runtime.
        let binary = runc.map_or(String::new(), |r| format!("binary = \"{}\"\n", r.display()));
        o.shim_config = format!(
            "[runtime]\n{binary}root = \"{{dir}}/podshim-oci\"\nexec_helper = \"{}\"\n",
            helper.display()
        );
    }
    let c = Containerd::start(o).await.context("starting containerd")?;
    let res = critest(a, handler, images, &c).await;
    c.finish(
        res.as_ref()
            .map(|_| ())
            .map_err(|e| anyhow::anyhow!("{e:#}")),
    )
    .await;
    res
}

async fn critest(
    a: &Args,
    handler: &str,
    images: &[CritestImage],
    c: &Containerd,
) -> Result<Outcome> {
    let reg = c.registry.as_ref().context("no registry")?;
    let mut image = String::new();
    for i in images {
        let pushed = reg.push(&i.archive, i.repo_tag)?;
        match i.upstream {
            Some(host) => write_mirror_hosts_toml(&c.registry_hosts_dir, host, &reg.host)?,
            None => image = pushed,
        }
    }
    let images_file = c.dir.join("critest-images.yaml");
    std::fs::write(
        &images_file,
        format!("defaultTestContainerImage: {image}\nwebServerTestImage: {image}\n"),
    )?;
    let endpoint = format!("unix://{}", c.sock.display());
    let (critest, focus) = (a.critest.clone(), a.focus.clone());
    let skip = match &c.opts.oci_runtime {
        Some(_) => a.skip.clone(),
        None => format!("{}|UserNamespaces", a.skip),
    };
    let h = handler.to_string();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(&critest)
            .arg(format!("--runtime-endpoint={endpoint}"))
            .arg(format!("--image-endpoint={endpoint}"))
            .arg(format!("--runtime-handler={h}"))
            .arg(format!("--test-images-file={}", images_file.display()))
            .arg(format!("--ginkgo.focus={focus}"))
            .arg(format!("--ginkgo.skip={skip}"))
            .arg("--ginkgo.no-color")
            .arg("--ginkgo.v")
            .output()
    })
    .await?
    .with_context(|| format!("running {}", a.critest.display()))?;
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    let dir = images::repo_root().join("target/critest");
    std::fs::create_dir_all(&dir)?;
    let kept = match a.tag.as_str() {
        "" => dir.join(format!("{handler}.log")),
        tag => dir.join(format!("{tag}-{handler}.log")),
    };
    std::fs::write(&kept, &text)?;
    eprintln!("critest output: {}", kept.display());
    outcome(&text).with_context(|| format!("no summary in critest's output ({})", kept.display()))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let a = args();
    let images = match critest_images() {
        Ok(x) => x,
        Err(e) => {
            eprintln!("podshim-critest: {e:#}");
            std::process::exit(1);
        }
    };
    // User-namespaced pods need id-mapped mounts (runc 1.4.3 of the project's shared releases):
    // every handler runs on it when it is there, and the user namespace specs are skipped when not.
    let runc = match podshim_integration::shared::shared_runc() {
        Ok(r) => Some(r),
        Err(e) => {
            eprintln!("SKIPPED: the UserNamespaces specs ({e}); the runc on PATH runs the rest");
            None
        }
    };
    let mut rows = Vec::new();
    let mut failed = false;
    for h in &a.handlers {
        eprintln!("critest: {h}");
        match run_one(&a, h, &images, runc.as_ref()).await {
            Ok(o) => {
                failed |= o.failed > 0;
                rows.push(format!(
                    "| {h} | {} | {} | {} |",
                    o.passed, o.failed, o.skipped
                ));
                for f in &o.failures {
                    rows.push(format!("|   {f} | | | |"));
                }
            }
            Err(e) => {
                failed = true;
                rows.push(format!("| {h} | run failed: {e:#} | | |"));
            }
        }
    }
    println!(
        "{}critest {} (focus {:?}, skip {:?}{}; OCI runtime {})\n",
        if a.tag.is_empty() {
            String::new()
        } else {
            format!("[{}] ", a.tag)
        },
        a.critest.display(),
        a.focus,
        a.skip,
        if a.exec_helper { ", podshim-exec" } else { "" },
        runc.as_ref()
            .map_or("runc on PATH".into(), |r| r.display().to_string()),
    );
    println!("| handler | passed | failed | skipped |\n|---|---:|---:|---:|");
    for r in rows {
        println!("{r}");
    }
    std::process::exit(i32::from(failed));
}
