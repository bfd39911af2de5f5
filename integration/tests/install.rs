//! `scripts/podshim-install` on real containerd releases, in a temp DESTDIR: what it installs,
//! that it installs it once (a second run changes nothing), that the containerd it installed into
//! loads podshim's handlers (CRI `Status` of a containerd started on the installed config), that
//! uninstall refuses while a container runs on podshim, and that uninstall leaves the tree
//! byte-identical to what it was before install.
//!
//! The shim, holder and daemon binaries installed are small stand-in scripts: the installer only
//! copies them, and nothing here runs a pod.
//!
//! `containerd_2_3_4_from_shared_or_skipped` runs against containerd 2.3.4 from
//! `$SHARED_DIR/containerd` (unpacked as `scripts/e2e-release.sh` does); a machine without that
//! archive prints a SKIPPED line for it (`make install-test` runs with --nocapture).
#![deny(unsafe_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use podshim_integration::fstree::{assert_same_tree, changed, tree};
use podshim_integration::images::repo_root;
use podshim_integration::shared::shared_release;
use podshim_integration::{Cri, Release};

/// The drop-ins' conf.d glob as the installer writes it into the main config.
const CONFD_GLOB: &str = "/etc/containerd/conf.d/*.toml";
/// The version 2 config a node might have, committed with this test.
const MINIMAL_V2: &str = include_str!("fixtures/containerd-v2-minimal.toml");

/// One node: a temp dir with the DESTDIR and a bin dir of stand-in binaries.
struct Node {
    dir: tempfile::TempDir,
    containerd: PathBuf,
    release: Release,
}

impl Node {
    fn new(containerd: &Path) -> Node {
        // Short: containerd's socket lives under it.
        let dir = tempfile::Builder::new()
            .prefix("psin-")
            .tempdir_in("/tmp")
            .unwrap();
        let bin = dir.path().join("bin");
        fs::create_dir_all(&bin).unwrap();
        for name in [
            "containerd-shim-podshim-v1",
            "podshim-holder",
            "podshim-exec",
            "podshim-sandboxer",
            "podshim-snapshotter",
        ] {
            let p = bin.join(name);
            fs::write(&p, format!("#!/bin/sh\necho 'stand-in {name}'\n")).unwrap();
            fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
        }
        fs::create_dir_all(dir.path().join("dest/etc/containerd")).unwrap();
        let out = Command::new(containerd).arg("--version").output().unwrap();
        let release = Release::parse_version_output(&String::from_utf8_lossy(&out.stdout)).unwrap();
        Node {
            dir,
            containerd: containerd.to_path_buf(),
            release,
        }
    }

    fn dest(&self) -> PathBuf {
        self.dir.path().join("dest")
    }

    /// A target-root path inside DESTDIR.
    fn at(&self, p: &str) -> PathBuf {
        self.dest().join(p.trim_start_matches('/'))
    }

    /// `podshim-install <cmd> --destdir D --containerd C --bin-dir B <args>`.
    fn run(&self, cmd: &str, args: &[&str]) -> Output {
        let mut c = Command::new("bash");
        c.arg(repo_root().join("scripts/podshim-install"))
            .arg(cmd)
            .arg("--destdir")
            .arg(self.dest())
            .arg("--containerd")
            .arg(&self.containerd);
        if cmd == "install" {
            c.arg("--bin-dir").arg(self.dir.path().join("bin"));
        }
        c.args(args).stdin(Stdio::null());
        c.output().expect("running scripts/podshim-install")
    }

    /// Runs it and returns its output; fails the test with that output if it failed.
    fn ok(&self, cmd: &str, args: &[&str]) -> String {
        let o = self.run(cmd, args);
        let text = output_text(&o);
        assert!(
            o.status.success(),
            "podshim-install {cmd} {args:?} failed ({}):\n{text}",
            o.status
        );
        text
    }

    /// Runs it, expects a refusal, returns the output.
    fn refused(&self, cmd: &str, args: &[&str]) -> String {
        let o = self.run(cmd, args);
        let text = output_text(&o);
        assert!(
            !o.status.success(),
            "podshim-install {cmd} {args:?} succeeded, a refusal was expected:\n{text}"
        );
        text
    }

    fn tree(&self) -> BTreeMap<String, String> {
        tree(&self.dest())
    }

    /// The paths the manifest names (every kind of line), and its lines.
    fn manifest(&self) -> (BTreeSet<String>, String) {
        let text = fs::read_to_string(self.at("/var/lib/podshim/install-manifest"))
            .expect("no install manifest");
        let paths = text
            .lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                match f.first().copied() {
                    Some("dir" | "backup") => Some(f[1].to_string()),
                    Some("file" | "conf" | "replaced") => Some(f[2].to_string()),
                    _ => None,
                }
            })
            .collect();
        (paths, text)
    }
}

fn output_text(o: &Output) -> String {
    format!(
        "--- stdout\n{}--- stderr\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The top-level `version` of a TOML text.
fn top_version(text: &str) -> Option<u32> {
    text.lines()
        .take_while(|l| !l.trim_start().starts_with('['))
        .find_map(|l| {
            let (k, v) = l.split_once('=')?;
            (k.trim() == "version").then(|| v.trim().parse().ok())?
        })
}

/// The top-level `imports` line.
fn imports_line(text: &str) -> Option<String> {
    text.lines()
        .take_while(|l| !l.trim_start().starts_with('['))
        .find(|l| l.trim_start().starts_with("imports"))
        .map(str::to_string)
}

fn snippet(name: &str) -> Vec<u8> {
    fs::read(repo_root().join("config-snippets").join(name)).unwrap()
}

fn system_containerd() -> PathBuf {
    let out = Command::new("sh")
        .args(["-c", "command -v containerd"])
        .output()
        .unwrap();
    let p = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        !p.is_empty(),
        "no containerd on PATH (scripts/install-deps.sh installs it)"
    );
    PathBuf::from(p)
}

/// The machine's own containerd config, as Debian's package wrote it: read at test time, never
/// committed.
fn packaged_config() -> Vec<u8> {
    fs::read("/etc/containerd/config.toml").expect(
        "reading /etc/containerd/config.toml (Debian's containerd package, which \
         scripts/install-deps.sh installs, ships it)",
    )
}

/// Paths of the machine a containerd started on a converted config would create if the test did
/// not move them (its opt plugin, NRI socket, CNI config dir): none may appear.
const MACHINE_PATHS: [&str; 3] = ["/var/lib/containerd", "/var/run/nri", "/etc/cni"];

/// A containerd started on the installed config, the e2e harness's way: its own root, state and
/// socket under the node's temp dir, `restrict_oom_score_adj = true`. Only what would touch the
/// machine is moved (`--root`, `--state`, `--address`; the opt plugin's path, the NRI socket, the
/// CNI config dir) and the imports glob points into DESTDIR; every other line is the installer's.
struct Daemon {
    child: Child,
    sock: PathBuf,
    log: PathBuf,
}

impl Daemon {
    async fn start(node: &Node) -> Daemon {
        let d = node.dir.path();
        let installed = fs::read_to_string(node.at("/etc/containerd/config.toml")).unwrap();
        let glob_dest = format!("{}/etc/containerd/conf.d/*.toml", node.dest().display());
        let mut cfg = installed.clone();
        for (from, to) in [
            (CONFD_GLOB.to_string(), glob_dest),
            (
                "'/var/lib/containerd/opt'".to_string(),
                format!("'{}/opt'", d.display()),
            ),
            (
                "'/var/run/nri/nri.sock'".to_string(),
                format!("'{}/nri.sock'", d.display()),
            ),
            (
                "conf_dir = '/etc/cni/net.d'".to_string(),
                format!("conf_dir = '{}/cni'", d.display()),
            ),
            (
                "restrict_oom_score_adj = false".to_string(),
                "restrict_oom_score_adj = true".to_string(),
            ),
        ] {
            assert_eq!(
                cfg.matches(&from).count(),
                1,
                "the installed config names {from:?} not exactly once"
            );
            cfg = cfg.replace(&from, &to);
        }
        let cfg_path = d.join("containerd-run.toml");
        fs::write(&cfg_path, cfg).unwrap();
        let sock = d.join("c.sock");
        let log = d.join("containerd.log");
        let logf = fs::File::create(&log).unwrap();
        let child = Command::new(&node.containerd)
            .arg("--config")
            .arg(&cfg_path)
            .arg("--root")
            .arg(d.join("root"))
            .arg("--state")
            .arg(d.join("state"))
            .arg("--address")
            .arg(&sock)
            .stdin(Stdio::null())
            .stdout(logf.try_clone().unwrap())
            .stderr(logf)
            .spawn()
            .expect("starting containerd");
        let mut daemon = Daemon { child, sock, log };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(st) = daemon.child.try_wait().unwrap() {
                panic!("containerd exited ({st}):\n{}", daemon.log_tail());
            }
            if daemon.sock.exists() {
                if let Ok(cri) = Cri::connect(&daemon.sock).await {
                    if cri.version().await.is_ok() {
                        return daemon;
                    }
                }
            }
            assert!(
                Instant::now() < deadline,
                "containerd's CRI not up after 30 s:\n{}",
                daemon.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The handler names CRI `Status` reports.
    async fn handlers(&self) -> BTreeSet<String> {
        let cri = Cri::connect(&self.sock).await.unwrap();
        let st = cri.status().await.expect("CRI Status");
        st.runtime_handlers.into_iter().map(|h| h.name).collect()
    }

    fn ctr(&self, args: &[&str]) -> Output {
        Command::new("ctr")
            .arg("--address")
            .arg(&self.sock)
            .args(args)
            .output()
            .expect("running ctr")
    }

    fn log_tail(&self) -> String {
        let s = fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = s.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    fn stop(mut self) {
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while self.child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("containerd did not stop within 15 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Steps (1)-(3) with Debian's packaged config: install, check, install again. Returns the trees
/// before and after.
fn install_packaged(node: &Node) -> (BTreeMap<String, String>, BTreeMap<String, String>) {
    let original = packaged_config();
    fs::write(node.at("/etc/containerd/config.toml"), &original).unwrap();
    let before = node.tree();

    let out = node.ok("install", &["--verify"]);
    let after = node.tree();
    let cfg = fs::read_to_string(node.at("/etc/containerd/config.toml")).unwrap();
    // The backup is the original, byte for byte.
    assert_eq!(
        fs::read(node.at("/etc/containerd/config.toml.podshim-backup")).unwrap(),
        original,
        "the backup differs from the original config"
    );
    // Converted by this containerd's own `config migrate`: 2.1 and 2.2 write version 3, 2.3
    // writes version 4 (each release's current config version).
    let want_version = if node.release.at_least(2, 3) { 4 } else { 3 };
    assert_eq!(
        top_version(&cfg),
        Some(want_version),
        "containerd {} migrated config:\n{cfg}",
        node.release
    );
    let imports = imports_line(&cfg).expect("no imports line in the installed config");
    assert!(
        imports.contains(&format!("\"{CONFD_GLOB}\""))
            || imports.contains(&format!("'{CONFD_GLOB}'")),
        "imports line without the conf.d glob: {imports}"
    );
    // The drop-ins as shipped; the pause-less one only from 2.3 on.
    assert_eq!(
        fs::read(node.at("/etc/containerd/conf.d/50-podshim.toml")).unwrap(),
        snippet("conf.d/50-podshim.toml")
    );
    let pauseless = node.at("/etc/containerd/conf.d/52-podshim-pauseless.toml");
    if node.release.at_least(2, 3) {
        assert_eq!(
            fs::read(&pauseless).unwrap(),
            snippet("conf.d/52-podshim-pauseless.toml")
        );
    } else {
        assert!(
            !pauseless.exists(),
            "52-podshim-pauseless.toml installed on {}",
            node.release
        );
        assert!(
            out.contains("skipped 52-podshim-pauseless.toml") && out.contains("containerd#12983"),
            "install did not say why it skipped the pause-less drop-in:\n{out}"
        );
    }
    for (p, src) in [
        (
            "/usr/local/bin/containerd-shim-podshim-v1",
            "containerd-shim-podshim-v1",
        ),
        ("/usr/local/bin/podshim-holder", "podshim-holder"),
        ("/usr/local/bin/podshim-exec", "podshim-exec"),
    ] {
        assert_eq!(
            fs::read(node.at(p)).unwrap(),
            fs::read(node.dir.path().join("bin").join(src)).unwrap()
        );
        assert_eq!(
            fs::metadata(node.at(p)).unwrap().permissions().mode() & 0o777,
            0o755
        );
    }
    assert_eq!(
        fs::read(node.at("/etc/podshim/shim.toml")).unwrap(),
        snippet("podshim/shim.toml")
    );
    assert!(out.contains("verify: runtime podshim: loaded"), "{out}");
    // The manifest names exactly what install created or changed (the backup included).
    let (paths, _) = node.manifest();
    let mut diff = changed(&before, &after);
    diff.remove("/var/lib/podshim/install-manifest");
    // The directory install added to holds new entries; it is not changed itself.
    diff.remove("/etc/containerd");
    diff.remove("/");
    diff.remove("/etc");
    assert_eq!(paths, diff, "manifest vs what install changed:\n{out}");

    // (3) Again: nothing changes, the manifest included.
    let out2 = node.ok("install", &[]);
    assert_same_tree(&after, &node.tree(), "second install");
    assert!(out2.contains("manifest unchanged"), "{out2}");
    (before, after)
}

/// Debian's packaged config on the containerd on PATH (2.1.9 here): steps (1) to (5).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packaged_config_on_system_containerd() {
    let t0 = Instant::now();
    let machine_before: Vec<bool> = MACHINE_PATHS
        .iter()
        .map(|p| Path::new(p).exists())
        .collect();
    let node = Node::new(&system_containerd());
    let (before, after) = install_packaged(&node);
    println!(
        "install: containerd {} converted Debian's config, installed once ({:.1} s)",
        node.release,
        t0.elapsed().as_secs_f64()
    );

    let status = node.ok("status", &[]);
    assert!(
        status.contains(
            "handler podshim (runtime_type io.containerd.podshim.v1, sandboxer podsandbox)"
        ),
        "{status}"
    );

    // (4) containerd started on the installed config lists the handler.
    let daemon = Daemon::start(&node).await;
    let handlers = daemon.handlers().await;
    assert!(
        handlers.contains("podshim"),
        "CRI Status handlers: {handlers:?}"
    );
    assert!(
        handlers.contains("runc"),
        "CRI Status handlers: {handlers:?}"
    );
    assert_eq!(
        handlers.contains("podshim-pauseless"),
        node.release.at_least(2, 3),
        "CRI Status handlers: {handlers:?}"
    );
    println!(
        "install: CRI Status of containerd {} on the installed config lists {handlers:?}",
        node.release
    );

    // (5) uninstall refuses while a container is on podshim's runtime, and changes nothing.
    let rootfs = node.dir.path().join("rootfs");
    fs::create_dir_all(&rootfs).unwrap();
    let rootfs_arg = rootfs.to_string_lossy().into_owned();
    let o = daemon.ctr(&[
        "-n",
        "default",
        "containers",
        "create",
        "--runtime",
        "io.containerd.podshim.v1",
        "--rootfs",
        &rootfs_arg,
        "podshim-install-probe",
        "sh",
    ]);
    assert!(
        o.status.success(),
        "ctr containers create: {}",
        output_text(&o)
    );
    let sock = daemon.sock.to_string_lossy().into_owned();
    let refusal = node.refused("uninstall", &["--address", &sock]);
    assert!(
        refusal.contains("default container podshim-install-probe") && refusal.contains("--force"),
        "{refusal}"
    );
    assert_same_tree(&after, &node.tree(), "refused uninstall");
    // --force removes it, then everything.
    let out = node.ok("uninstall", &["--address", &sock, "--force"]);
    assert!(
        out.contains("--force: removing container podshim-install-probe"),
        "{out}"
    );
    let o = daemon.ctr(&["-n", "default", "containers", "ls", "-q"]);
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        "",
        "containers left"
    );
    daemon.stop();
    assert_same_tree(&before, &node.tree(), "uninstall after install");
    let machine_after: Vec<bool> = MACHINE_PATHS
        .iter()
        .map(|p| Path::new(p).exists())
        .collect();
    assert_eq!(
        machine_before, machine_after,
        "the test's containerd created {MACHINE_PATHS:?}"
    );
    println!(
        "install: uninstall refused with a container on podshim, removed it with --force, left DESTDIR byte-identical ({:.1} s in all)",
        t0.elapsed().as_secs_f64()
    );
}

/// The committed minimal version 2 config, with both daemons, an operator's shim.toml and a
/// vendor drop-in it imports; then install converges when an option is dropped.
#[test]
fn minimal_v2_config_with_daemons() {
    let node = Node::new(&system_containerd());
    fs::write(node.at("/etc/containerd/config.toml"), MINIMAL_V2).unwrap();
    fs::create_dir_all(node.at("/etc/containerd/vendor.d")).unwrap();
    fs::write(
        node.at("/etc/containerd/vendor.d/10-vendor.toml"),
        "version = 3\n[plugins.\"io.containerd.cri.v1.runtime\".containerd.runtimes.vendor]\n  runtime_type = \"io.containerd.runc.v2\"\n",
    )
    .unwrap();
    fs::create_dir_all(node.at("/etc/podshim")).unwrap();
    let operators = "# the operator's own\n[runtime]\nbinary = \"crun\"\n";
    fs::write(node.at("/etc/podshim/shim.toml"), operators).unwrap();
    let before = node.tree();

    let out = node.ok(
        "install",
        &["--with-sandboxer", "--with-snapshotter", "--verify"],
    );
    let after = node.tree();
    let cfg = fs::read_to_string(node.at("/etc/containerd/config.toml")).unwrap();
    assert_eq!(
        fs::read_to_string(node.at("/etc/containerd/config.toml.podshim-backup")).unwrap(),
        MINIMAL_V2
    );
    assert!(top_version(&cfg).unwrap() >= 3, "{cfg}");
    // The vendor import kept (not inlined), the conf.d glob appended after it.
    assert_eq!(
        imports_line(&cfg).unwrap(),
        format!("imports = [\"/etc/containerd/vendor.d/*.toml\", \"{CONFD_GLOB}\"]"),
        "{cfg}"
    );
    assert!(
        !cfg.contains("runtimes.vendor"),
        "the vendor drop-in was inlined:\n{cfg}"
    );
    assert!(
        cfg.contains("sandbox = 'podshim.test/pause:3.9'"),
        "sandbox_image not carried over:\n{cfg}"
    );
    // The operator's shim config is kept and not recorded.
    assert_eq!(
        fs::read_to_string(node.at("/etc/podshim/shim.toml")).unwrap(),
        operators
    );
    assert!(
        out.contains("kept /etc/podshim/shim.toml: it exists and is the operator's"),
        "{out}"
    );
    for (p, s) in [
        (
            "/etc/containerd/conf.d/55-podshim-sandboxer.toml",
            "conf.d/55-podshim-sandboxer.toml",
        ),
        (
            "/etc/containerd/conf.d/60-podshim-snapshotter.toml",
            "conf.d/60-podshim-snapshotter.toml",
        ),
        (
            "/etc/systemd/system/podshim-sandboxer.service",
            "podshim-sandboxer.service",
        ),
        (
            "/etc/systemd/system/podshim-snapshotter.service",
            "podshim-snapshotter.service",
        ),
    ] {
        assert_eq!(fs::read(node.at(p)).unwrap(), snippet(s), "{p}");
    }
    let sandboxer = fs::read_to_string(node.at("/etc/podshim/sandboxer.toml")).unwrap();
    assert!(
        sandboxer.contains(&format!("binary = \"{}\"", node.containerd.display())),
        "sandboxer.toml does not name this containerd:\n{sandboxer}"
    );
    for w in [
        "runtime podshim: loaded",
        "runtime podshim-sandboxer: loaded",
        "proxy podshim-sandboxer: loaded",
        "proxy podsnap: loaded",
    ] {
        assert!(out.contains(&format!("verify: {w}")), "{w}:\n{out}");
    }
    // containerd loads the vendor drop-in as before, beside podshim's.
    let dump_cfg = node.dir.path().join("dump.toml");
    let dest = node.dest().display().to_string();
    fs::write(
        &dump_cfg,
        cfg.replace("\"/etc/containerd/", &format!("\"{dest}/etc/containerd/")),
    )
    .unwrap();
    let o = Command::new(&node.containerd)
        .arg("--config")
        .arg(&dump_cfg)
        .args(["config", "dump"])
        .output()
        .unwrap();
    let dump = String::from_utf8_lossy(&o.stdout);
    for rt in [
        "runtimes.vendor]",
        "runtimes.podshim]",
        "runtimes.podshim-sandboxer]",
    ] {
        assert!(
            dump.contains(rt),
            "containerd config dump lacks {rt}:\n{}",
            output_text(&o)
        );
    }
    let (paths, _) = node.manifest();
    let mut diff = changed(&before, &after);
    for p in [
        "/",
        "/etc",
        "/etc/containerd",
        "/etc/podshim",
        "/var/lib/podshim/install-manifest",
    ] {
        diff.remove(p);
    }
    assert_eq!(paths, diff, "manifest vs what install changed:\n{out}");

    node.ok("install", &["--with-sandboxer", "--with-snapshotter"]);
    assert_same_tree(&after, &node.tree(), "second install");

    // Without --with-snapshotter: its files go, the rest stays.
    let out = node.ok("install", &["--with-sandboxer"]);
    assert!(
        !node
            .at("/etc/containerd/conf.d/60-podshim-snapshotter.toml")
            .exists(),
        "{out}"
    );
    assert!(
        !node.at("/usr/local/bin/podshim-snapshotter").exists(),
        "{out}"
    );
    assert!(
        node.at("/etc/containerd/conf.d/55-podshim-sandboxer.toml")
            .exists(),
        "{out}"
    );
    let (paths, _) = node.manifest();
    assert!(
        !paths.iter().any(|p| p.contains("snapshotter")),
        "{paths:?}"
    );

    node.ok("uninstall", &[]);
    assert_same_tree(&before, &node.tree(), "uninstall after install");
}

/// What install refuses leaves the tree as it was.
#[test]
fn refusals_change_nothing() {
    let node = Node::new(&system_containerd());
    // No version line: containerd reads it as version 1.
    fs::write(
        node.at("/etc/containerd/config.toml"),
        "[plugins.cri]\n  x = 1\n",
    )
    .unwrap();
    let before = node.tree();
    let out = node.refused("install", &[]);
    assert!(
        out.contains("version 1") && out.contains("Nothing was changed"),
        "{out}"
    );
    assert_same_tree(&before, &node.tree(), "install refusing a version 1 config");

    // A version 2 file it imports: lost on containerd < 2.3 once the main config is version 3.
    fs::write(node.at("/etc/containerd/config.toml"), MINIMAL_V2).unwrap();
    fs::create_dir_all(node.at("/etc/containerd/vendor.d")).unwrap();
    fs::write(
        node.at("/etc/containerd/vendor.d/10-vendor.toml"),
        "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.vendor]\n  runtime_type = \"io.containerd.runc.v2\"\n",
    )
    .unwrap();
    let before = node.tree();
    if node.release.at_least(2, 3) {
        node.ok("install", &[]);
        node.ok("uninstall", &[]);
    } else {
        let out = node.refused("install", &[]);
        assert!(
            out.contains("/etc/containerd/vendor.d/10-vendor.toml"),
            "{out}"
        );
    }
    assert_same_tree(
        &before,
        &node.tree(),
        "refused install (or install and uninstall)",
    );

    // Nothing installed: nothing to uninstall.
    let out = node.refused("uninstall", &[]);
    assert!(out.contains("no manifest"), "{out}");
    // An empty config (comments only) gets the two lines on top, the comments kept.
    fs::write(node.at("/etc/containerd/config.toml"), "# empty\n").unwrap();
    fs::remove_dir_all(node.at("/etc/containerd/vendor.d")).unwrap();
    let before = node.tree();
    node.ok("install", &[]);
    assert_eq!(
        fs::read_to_string(node.at("/etc/containerd/config.toml")).unwrap(),
        format!("version = 3\nimports = [\"{CONFD_GLOB}\"]\n# empty\n")
    );
    node.ok("uninstall", &[]);
    assert_same_tree(
        &before,
        &node.tree(),
        "uninstall of an empty config's install",
    );
}

/// Steps (2)-(5) against containerd 2.3.4 from ../shared: its `config migrate` writes version
/// 4, and the pause-less drop-in IS installed. SKIPPED (printed, not passed silently) without
/// the archive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containerd_2_3_4_from_shared_or_skipped() {
    let bin = match shared_release("2.3.4") {
        Ok(b) => b,
        Err(why) => {
            println!(
                "SKIPPED: install::containerd_2_3_4_from_shared_or_skipped: {why} (the project's \
                 shared containerd releases are not on this machine); podshim-install is not \
                 tested against containerd 2.3 here"
            );
            return;
        }
    };
    let machine_before: Vec<bool> = MACHINE_PATHS
        .iter()
        .map(|p| Path::new(p).exists())
        .collect();
    let node = Node::new(&bin);
    assert_eq!(node.release.to_string(), "2.3.4", "{}", bin.display());
    let (before, _after) = install_packaged(&node);
    let daemon = Daemon::start(&node).await;
    let handlers = daemon.handlers().await;
    assert!(
        handlers.contains("podshim") && handlers.contains("podshim-pauseless"),
        "CRI Status handlers of containerd 2.3.4: {handlers:?}"
    );
    let sock = daemon.sock.to_string_lossy().into_owned();
    node.ok("uninstall", &["--address", &sock]);
    daemon.stop();
    assert_same_tree(&before, &node.tree(), "uninstall after install on 2.3.4");
    let machine_after: Vec<bool> = MACHINE_PATHS
        .iter()
        .map(|p| Path::new(p).exists())
        .collect();
    assert_eq!(
        machine_before, machine_after,
        "the test's containerd created {MACHINE_PATHS:?}"
    );
    println!("install: containerd 2.3.4: version 4 config, 52-podshim-pauseless.toml installed, CRI lists {handlers:?}, uninstall byte-identical");
}
