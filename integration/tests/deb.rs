//! The Debian package (`scripts/make-deb`, which `make deb` runs) installed, upgraded in place,
//! removed and purged with the real dpkg in a temp root: `dpkg --root R --force-script-chrootless`
//! runs the maintainer scripts on this machine with `DPKG_ROOT=R`, and they reach the node only
//! through it. The node is Debian's: the machine's own `version = 2` /etc/containerd/config.toml
//! and dpkg status entries for containerd and runc (the package's dependencies).
//!
//! What is checked: the package's files and conffiles; the main config converted by postinst
//! exactly as `podshim-install install` converts it, and loaded by containerd with podshim's
//! handlers (`containerd config dump`); an opted-in daemon drop-in kept across an upgrade; remove
//! restoring the config byte for byte and keeping the conffiles; purge leaving the root exactly as
//! before (dpkg's own database apart, whose status file is byte-identical too); prerm refusing
//! while a podshim shim runs. The binaries packaged are stand-in scripts: nothing here runs a pod.
//!
//! `containerd_2_3_4_from_shared_or_skipped` runs against containerd 2.3.4 from
//! `$SHARED_DIR/containerd`; without that archive it prints a SKIPPED line.
#![deny(unsafe_code)]

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use podshim_integration::fstree::{assert_same_tree, changed, tree};
use podshim_integration::images::repo_root;
use podshim_integration::shared::shared_release;
use podshim_integration::Release;

const CONFD_GLOB: &str = "/etc/containerd/conf.d/*.toml";
const BINARIES: [&str; 5] = [
    "containerd-shim-podshim-v1",
    "podshim-holder",
    "podshim-exec",
    "podshim-sandboxer",
    "podshim-snapshotter",
];
/// What the package ships under /etc; every one a conffile.
const CONFFILES: [&str; 3] = [
    "/etc/containerd/conf.d/50-podshim.toml",
    "/etc/podshim/sandboxer.toml",
    "/etc/podshim/shim.toml",
];

fn output_text(o: &Output) -> String {
    format!(
        "--- stdout\n{}--- stderr\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Stand-in binaries in `dir`, for make-deb and the installer to copy.
fn stand_in_bins(dir: &Path) {
    fs::create_dir_all(dir).unwrap();
    for name in BINARIES {
        let p = dir.join(name);
        fs::write(&p, format!("#!/bin/sh\necho 'stand-in {name}'\n")).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
    }
}

/// `scripts/make-deb` into `dir/out`; the path of the .deb, named as Debian names it.
fn build_deb(dir: &Path) -> PathBuf {
    let bins = dir.join("bins");
    stand_in_bins(&bins);
    let o = Command::new("bash")
        .arg(repo_root().join("scripts/make-deb"))
        .arg("--out")
        .arg(dir.join("out"))
        .arg("--bin-dir")
        .arg(&bins)
        .stdin(Stdio::null())
        .output()
        .expect("running scripts/make-deb");
    assert!(o.status.success(), "make-deb: {}", output_text(&o));
    let deb = PathBuf::from(String::from_utf8_lossy(&o.stdout).lines().last().unwrap());
    let arch = Command::new("dpkg")
        .arg("--print-architecture")
        .output()
        .unwrap();
    let want = format!(
        "podshim_{}_{}.deb",
        env!("CARGO_PKG_VERSION"),
        String::from_utf8_lossy(&arch.stdout).trim()
    );
    assert_eq!(deb.file_name().unwrap().to_string_lossy(), want);
    deb
}

/// A field of the package's control file.
fn control_field(deb: &Path, field: &str) -> String {
    let o = Command::new("dpkg-deb")
        .arg("--field")
        .arg(deb)
        .arg(field)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", output_text(&o));
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// A Debian node in a temp dir: `root/` with dpkg's database (containerd and runc installed, the
/// way the containerd package owns /etc/containerd) and Debian's containerd config.
struct Node {
    dir: tempfile::TempDir,
    containerd: PathBuf,
    release: Release,
    original_config: Vec<u8>,
}

impl Node {
    fn new(containerd: &Path) -> Node {
        let dir = tempfile::Builder::new()
            .prefix("psdeb-")
            .tempdir_in("/tmp")
            .unwrap();
        let out = Command::new(containerd).arg("--version").output().unwrap();
        let release = Release::parse_version_output(&String::from_utf8_lossy(&out.stdout)).unwrap();
        let node = Node {
            dir,
            containerd: containerd.to_path_buf(),
            release,
            original_config: fs::read("/etc/containerd/config.toml").expect(
                "reading /etc/containerd/config.toml (Debian's containerd package, which \
                 scripts/install-deps.sh installs, ships it)",
            ),
        };
        let admin = node.at("/var/lib/dpkg");
        for d in ["info", "updates", "triggers"] {
            fs::create_dir_all(admin.join(d)).unwrap();
        }
        let mut status = String::new();
        for (pkg, version) in [
            ("containerd", release.to_string()),
            ("runc", "1.1.5".into()),
        ] {
            status.push_str(&format!(
                "Package: {pkg}\nStatus: install ok installed\nPriority: optional\nSection: admin\n\
                 Maintainer: stand-in <root@localhost>\nArchitecture: all\nVersion: {version}\n\
                 Description: stand-in for the node's {pkg}\n\n"
            ));
        }
        fs::write(admin.join("status"), status).unwrap();
        fs::write(
            admin.join("info/containerd.list"),
            "/.\n/etc\n/etc/containerd\n/etc/containerd/config.toml\n",
        )
        .unwrap();
        fs::write(admin.join("info/runc.list"), "").unwrap();
        fs::create_dir_all(node.at("/etc/containerd")).unwrap();
        fs::write(
            node.at("/etc/containerd/config.toml"),
            &node.original_config,
        )
        .unwrap();
        node
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    /// A node path inside the root.
    fn at(&self, p: &str) -> PathBuf {
        self.root().join(p.trim_start_matches('/'))
    }

    /// The root's listing without dpkg's database (which records the package by design).
    fn node_tree(&self) -> BTreeMap<String, String> {
        let mut t = tree(&self.root());
        t.retain(|k, _| !k.starts_with("/var/lib/dpkg/"));
        t
    }

    /// `dpkg --root R --force-script-chrootless <args>`, this node's containerd first on PATH.
    fn dpkg(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let bin_dir = self.containerd.parent().unwrap();
        let path = format!(
            "{}:{}:/usr/sbin:/usr/bin:/sbin:/bin",
            bin_dir.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        Command::new("dpkg")
            .arg("--root")
            .arg(self.root())
            .arg("--force-script-chrootless")
            .arg("--log")
            .arg(self.dir.path().join("dpkg.log"))
            .args(args)
            .env("PATH", path)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .output()
            .expect("running dpkg")
    }

    fn dpkg_ok(&self, args: &[&str], env: &[(&str, &str)]) -> String {
        let o = self.dpkg(args, env);
        let text = output_text(&o);
        assert!(o.status.success(), "dpkg {args:?} failed:\n{text}");
        text
    }

    fn query(&self, format: &str) -> String {
        let o = Command::new("dpkg-query")
            .arg("--admindir")
            .arg(self.at("/var/lib/dpkg"))
            .args(["-W", "-f", format, "podshim"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    }

    fn config(&self) -> String {
        fs::read_to_string(self.at("/etc/containerd/config.toml")).unwrap()
    }

    /// The config `podshim-install install` writes from the same original with this containerd,
    /// in a DESTDIR of its own: postinst must write exactly that.
    fn installer_config(&self) -> String {
        let dest = self.dir.path().join("installer-dest");
        fs::create_dir_all(dest.join("etc/containerd")).unwrap();
        fs::write(
            dest.join("etc/containerd/config.toml"),
            &self.original_config,
        )
        .unwrap();
        let bins = self.dir.path().join("installer-bins");
        stand_in_bins(&bins);
        let o = Command::new("bash")
            .arg(repo_root().join("scripts/podshim-install"))
            .arg("install")
            .arg("--destdir")
            .arg(&dest)
            .arg("--containerd")
            .arg(&self.containerd)
            .arg("--bin-dir")
            .arg(&bins)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", output_text(&o));
        fs::read_to_string(dest.join("etc/containerd/config.toml")).unwrap()
    }

    /// `containerd config dump` of the installed config, its conf.d import read inside the root.
    fn config_dump(&self) -> String {
        let cfg = self.config();
        assert_eq!(cfg.matches(CONFD_GLOB).count(), 1, "{cfg}");
        let glob = self.at(CONFD_GLOB).display().to_string();
        let path = self.dir.path().join("dump.toml");
        fs::write(&path, cfg.replace(CONFD_GLOB, &glob)).unwrap();
        let o = Command::new(&self.containerd)
            .arg("--config")
            .arg(&path)
            .args(["config", "dump"])
            .output()
            .unwrap();
        assert!(o.status.success(), "config dump: {}", output_text(&o));
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// The packaged installer, as an operator runs it to opt into a daemon.
    fn packaged_installer(&self, args: &[&str]) -> String {
        let o = Command::new(self.at("/usr/sbin/podshim-install"))
            .arg("install")
            .arg("--packaged")
            .arg("--destdir")
            .arg(self.root())
            .arg("--containerd")
            .arg(&self.containerd)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let text = output_text(&o);
        assert!(o.status.success(), "podshim-install {args:?}:\n{text}");
        text
    }
}

/// The runtime handlers of type io.containerd.podshim.v1 in a `config dump`.
fn podshim_handlers(dump: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = None;
    for line in dump.lines().map(str::trim) {
        if line.starts_with('[') {
            current = line
                .strip_suffix(']')
                .and_then(|l| l.split_once(".runtimes."))
                .map(|(_, name)| name.trim_matches(['\'', '"']).to_string());
        } else if let Some(name) = &current {
            if line.starts_with("runtime_type") && line.contains("io.containerd.podshim.v1") {
                out.push(name.clone());
            }
        }
    }
    out.sort();
    out
}

/// Install, opt into podshim-sandboxer, upgrade in place, remove, purge: on `node`'s containerd.
fn install_upgrade_remove_purge(node: &Node) {
    let deb = build_deb(node.dir.path());
    assert_eq!(control_field(&deb, "Package"), "podshim");
    assert_eq!(
        control_field(&deb, "Depends"),
        "containerd (>= 2.1) | containerd.io (>= 2.1), runc | containerd.io"
    );
    let before = node.node_tree();
    let status_before = fs::read(node.at("/var/lib/dpkg/status")).unwrap();

    // Install.
    let out = node.dpkg_ok(&["-i", &deb.to_string_lossy()], &[]);
    assert_eq!(node.query("${Status}"), "install ok installed", "{out}");
    for b in BINARIES {
        let p = node.at(&format!("/usr/bin/{b}"));
        let mode = fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o755, "{}", p.display());
    }
    for u in ["podshim-sandboxer.service", "podshim-snapshotter.service"] {
        let text = fs::read_to_string(node.at(&format!("/lib/systemd/system/{u}"))).unwrap();
        assert!(text.contains("ExecStart=/usr/bin/podshim-"), "{u}:\n{text}");
        assert!(!text.contains("/usr/local"), "{u}:\n{text}");
    }
    let conffiles: Vec<String> = node
        .query("${Conffiles}")
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect();
    assert_eq!(conffiles, CONFFILES, "dpkg's conffiles of podshim");
    assert_eq!(
        fs::read(node.at("/etc/containerd/config.toml.podshim-backup")).unwrap(),
        node.original_config,
        "the backup differs from the original config"
    );
    let cfg = node.config();
    assert_eq!(
        cfg,
        node.installer_config(),
        "postinst wrote another config than podshim-install install"
    );
    let version = if node.release.at_least(2, 3) { 4 } else { 3 };
    // The imports line as the installer writes it (2.1) or appends to the one 2.3's migrate writes.
    assert!(
        cfg.lines().any(|l| l == format!("version = {version}"))
            && cfg
                .lines()
                .any(|l| l.starts_with("imports = [") && l.contains(CONFD_GLOB)),
        "the converted config lacks `version = {version}` or the imports line:\n{cfg}"
    );
    let pauseless = node.at("/etc/containerd/conf.d/52-podshim-pauseless.toml");
    assert_eq!(
        pauseless.exists(),
        node.release.at_least(2, 3),
        "52-podshim-pauseless.toml on containerd {}:\n{out}",
        node.release
    );
    let mut want = vec!["podshim".to_string()];
    if node.release.at_least(2, 3) {
        want.push("podshim-pauseless".into());
    }
    let dump = node.config_dump();
    assert_eq!(podshim_handlers(&dump), want, "config dump:\n{dump}");
    let manifest = fs::read_to_string(node.at("/var/lib/podshim/install-manifest")).unwrap();
    assert!(manifest.contains("\nmode packaged\n"), "{manifest}");
    println!(
        "deb: containerd {}: dpkg -i converted Debian's config to version {version}, config dump lists {want:?}",
        node.release
    );

    // The operator opts into podshim-sandboxer and edits a conffile; an upgrade keeps both.
    node.packaged_installer(&["--with-sandboxer"]);
    let mut want_sandboxer = want.clone();
    want_sandboxer.push("podshim-sandboxer".into());
    want_sandboxer.sort();
    let dump = node.config_dump();
    assert_eq!(podshim_handlers(&dump), want_sandboxer, "{dump}");
    assert!(dump.contains("proxy_plugins.podshim-sandboxer]"), "{dump}");
    let edited = "# the operator's\n[runtime]\nbinary = \"crun\"\n";
    fs::write(node.at("/etc/podshim/shim.toml"), edited).unwrap();
    let installed = node.node_tree();
    let out = node.dpkg_ok(&["-i", &deb.to_string_lossy()], &[]);
    assert_same_tree(&installed, &node.node_tree(), "upgrade in place");
    assert!(out.contains("manifest unchanged"), "{out}");

    // Remove: config restored byte for byte, drop-ins postinst placed gone, conffiles kept.
    let out = node.dpkg_ok(&["-r", "podshim"], &[]);
    assert_eq!(node.query("${Status}"), "deinstall ok config-files");
    assert_eq!(
        fs::read(node.at("/etc/containerd/config.toml")).unwrap(),
        node.original_config,
        "remove did not restore the config:\n{out}"
    );
    for p in [
        "/etc/containerd/config.toml.podshim-backup",
        "/etc/containerd/conf.d/52-podshim-pauseless.toml",
        "/etc/containerd/conf.d/55-podshim-sandboxer.toml",
        "/var/lib/podshim",
        "/usr/bin/containerd-shim-podshim-v1",
        "/usr/sbin/podshim-install",
    ] {
        assert!(!node.at(p).exists(), "{p} left after remove:\n{out}");
    }
    for p in CONFFILES {
        assert!(node.at(p).exists(), "conffile {p} not kept by remove");
    }
    assert_eq!(
        fs::read_to_string(node.at("/etc/podshim/shim.toml")).unwrap(),
        edited
    );

    // Purge: the root as it was.
    node.dpkg_ok(&["-P", "podshim"], &[]);
    assert_eq!(node.query("${Status}"), "");
    assert_same_tree(&before, &node.node_tree(), "purge after install");
    assert_eq!(
        fs::read(node.at("/var/lib/dpkg/status")).unwrap(),
        status_before,
        "dpkg's status file after purge"
    );
    println!(
        "deb: containerd {}: upgrade in place changed nothing, remove restored the config and kept {} conffiles, purge left the root byte-identical",
        node.release,
        CONFFILES.len()
    );
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

#[test]
fn system_containerd_install_upgrade_remove_purge() {
    install_upgrade_remove_purge(&Node::new(&system_containerd()));
}

#[test]
fn containerd_2_3_4_from_shared_or_skipped() {
    let bin = match shared_release("2.3.4") {
        Ok(b) => b,
        Err(why) => {
            println!(
                "SKIPPED: deb::containerd_2_3_4_from_shared_or_skipped: {why} (the project's \
                 shared containerd releases are not on this machine); the package is not \
                 tested against containerd 2.3 here"
            );
            return;
        }
    };
    let node = Node::new(&bin);
    assert_eq!(node.release.to_string(), "2.3.4", "{}", bin.display());
    install_upgrade_remove_purge(&node);
}

/// A child process killed and reaped when the test ends, a failing one too.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Spawns a binary this process has just written. Another test's fork may still hold the
/// written file's descriptor until its exec, and exec then fails with ETXTBSY for a moment.
fn spawn_fresh_executable(cmd: &mut Command) -> Child {
    for _ in 0..100 {
        match cmd.spawn() {
            Err(e) if e.kind() == std::io::ErrorKind::ExecutableFileBusy => {
                std::thread::sleep(std::time::Duration::from_millis(20))
            }
            r => return r.unwrap(),
        }
    }
    panic!("{cmd:?}: text file busy for 2 s")
}

/// prerm refuses while a podshim shim runs and containerd cannot be asked (dpkg then keeps the
/// package installed, configured as before); PODSHIM_FORCE=1 removes it all the same.
#[test]
fn prerm_refuses_while_a_shim_runs() {
    let node = Node::new(&system_containerd());
    let deb = build_deb(node.dir.path());
    node.dpkg_ok(&["-i", &deb.to_string_lossy()], &[]);
    let installed = node.node_tree();

    // A process whose executable is named as the shim: what uninstall looks for when no
    // containerd listens.
    let fake = node.dir.path().join("fake/containerd-shim-podshim-v1");
    fs::create_dir_all(fake.parent().unwrap()).unwrap();
    fs::copy("/bin/sleep", &fake).unwrap();
    let shim = KillOnDrop(spawn_fresh_executable(Command::new(&fake).arg("600")));
    let no_containerd = node.dir.path().join("no-containerd.sock");
    let address = no_containerd.to_string_lossy().into_owned();
    let env = [("PODSHIM_CONTAINERD_ADDRESS", address.as_str())];

    let o = node.dpkg(&["-r", "podshim"], &env);
    let text = output_text(&o);
    assert!(!o.status.success(), "dpkg -r succeeded:\n{text}");
    assert!(
        text.contains(&format!("pid {} {}", shim.0.id(), fake.display()))
            && text.contains("would be stranded"),
        "{text}"
    );
    // Selected for removal, still installed.
    assert_eq!(node.query("${Status}"), "deinstall ok installed", "{text}");
    let diff = changed(&installed, &node.node_tree());
    assert!(diff.is_empty(), "refused remove changed {diff:?}:\n{text}");

    let mut forced = env.to_vec();
    forced.push(("PODSHIM_FORCE", "1"));
    let text = node.dpkg_ok(&["-r", "podshim"], &forced);
    assert!(text.contains("--force: no containerd listening"), "{text}");
    drop(shim);
    assert_eq!(
        fs::read(node.at("/etc/containerd/config.toml")).unwrap(),
        node.original_config
    );
    node.dpkg_ok(&["-P", "podshim"], &[]);
    println!("deb: prerm refused with a podshim shim running (package kept, configured), removed with PODSHIM_FORCE=1");
}
