//! The cluster install (config-snippets/deploy/, README "Cluster install (DaemonSet)"):
//!
//! * `manifests_*`: every object of the manifests parsed into Kubernetes' own API types
//!   (k8s-openapi, the oldest release it has, 1.33) and serialized back: a field the types do not
//!   know (a misspelt one) is dropped on the way and the comparison with the YAML fails, naming
//!   it. Then what ties the manifests to each other, to the image and its entrypoint, and to the
//!   README's measured per-pod memory.
//! * `image_installs_into_a_scratch_node_root_and_uninstalls_on_sigterm`: the node-installer image
//!   built offline (`images::deploy_archive`), imported into a private containerd and run as the
//!   DaemonSet runs it (`podshim-node-install install`, then `wait` until SIGTERM), with a scratch
//!   directory as the node's root at /host: this machine's /usr (read-only) as the node's
//!   userland, its own /etc with a copy of this machine's version 2 containerd config, /usr/local
//!   of its own. No API server here: the label patches the kubectl containers apply are checked
//!   as files. Needs root, containerd and ctr on PATH, busybox-static and the static shim and
//!   holder (`make shim-release`) and podshim-sandboxer (`make sandboxer-bin`).
#![deny(unsafe_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{Container, Namespace, ServiceAccount};
use k8s_openapi::api::node::v1::RuntimeClass;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use podshim_integration::fstree::{assert_same_tree, changed, tree};
use podshim_integration::images::{deploy_archive, repo_root, DEPLOY_IMAGE};
use podshim_integration::Release;

const DEPLOY: &str = "config-snippets/deploy/podshim-deploy.yaml";
const RUNTIMECLASSES: &str = "config-snippets/deploy/runtimeclasses.yaml";
/// The RuntimeClasses of a single node's install (no scheduling constraints).
const NODE_RUNTIMECLASS: &str = "config-snippets/runtimeclass.yaml";
const HANDLERS: [&str; 3] = ["podshim", "podshim-pauseless", "podshim-sandboxer"];
/// Where the DaemonSet mounts the node's root, and its shared emptyDir (the entrypoint's defaults).
const HOST_ROOT: &str = "/host";
const SHARED_DIR: &str = "/run/podshim-deploy";

// ---------------------------------------------------------------------------------------------
// The manifests against Kubernetes' API types

/// Each YAML document of `rel` (repository path) as untyped JSON.
fn documents(rel: &str) -> Vec<Value> {
    let text = fs::read_to_string(repo_root().join(rel)).unwrap();
    documents_of(&text, rel)
}

fn documents_of(text: &str, what: &str) -> Vec<Value> {
    let docs: Vec<Value> = serde_norway::Deserializer::from_str(text)
        .map(|d| Value::deserialize(d).unwrap_or_else(|e| panic!("{what}: not YAML: {e}")))
        .filter(|v| !v.is_null())
        .collect();
    assert!(!docs.is_empty(), "{what}: no YAML document");
    docs
}

/// `doc` through type `T` and back.
fn through<T: DeserializeOwned + Serialize>(doc: &Value) -> Result<Value, String> {
    let typed: T = serde_json::from_value(doc.clone()).map_err(|e| e.to_string())?;
    serde_json::to_value(&typed).map_err(|e| e.to_string())
}

/// `doc` through the API type of its apiVersion and kind and back; Err names the kind it does
/// not know, or the type's parse error.
fn typed(doc: &Value) -> Result<Value, String> {
    let api = doc["apiVersion"].as_str().unwrap_or_default();
    let kind = doc["kind"].as_str().unwrap_or_default();
    match (api, kind) {
        ("v1", "Namespace") => through::<Namespace>(doc),
        ("v1", "ServiceAccount") => through::<ServiceAccount>(doc),
        ("rbac.authorization.k8s.io/v1", "ClusterRole") => through::<ClusterRole>(doc),
        ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding") => {
            through::<ClusterRoleBinding>(doc)
        }
        ("apps/v1", "DaemonSet") => through::<DaemonSet>(doc),
        ("node.k8s.io/v1", "RuntimeClass") => through::<RuntimeClass>(doc),
        _ => Err(format!(
            "no API type here for apiVersion {api:?} kind {kind:?}"
        )),
    }
}

/// The JSON paths at which `a` and `b` differ.
fn differences(a: &Value, b: &Value, at: &str, out: &mut Vec<String>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for k in keys {
                let p = format!("{at}.{k}");
                match (x.get(k), y.get(k)) {
                    (Some(v), Some(w)) => differences(v, w, &p, out),
                    (Some(_), None) => {
                        out.push(format!("{p}: in the YAML, unknown to the API type"))
                    }
                    (None, Some(_)) => out.push(format!("{p}: added by the API type")),
                    (None, None) => {}
                }
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (v, w)) in x.iter().zip(y).enumerate() {
                differences(v, w, &format!("{at}[{i}]"), out);
            }
        }
        _ if a == b => {}
        _ => out.push(format!("{at}: {a} in the YAML, {b} through the API type")),
    }
}

/// Empty if `doc` survives its API type unchanged, else what did not.
fn check_doc(doc: &Value) -> Vec<String> {
    match typed(doc) {
        Err(e) => vec![e],
        Ok(back) => {
            let mut out = Vec::new();
            differences(doc, &back, "", &mut out);
            out
        }
    }
}

fn check_file(rel: &str) -> Vec<Value> {
    let docs = documents(rel);
    let mut bad = Vec::new();
    for d in &docs {
        for problem in check_doc(d) {
            bad.push(format!(
                "{rel}: {} {}: {problem}",
                d["kind"], d["metadata"]["name"]
            ));
        }
    }
    assert!(
        bad.is_empty(),
        "not what Kubernetes' API types read:\n{}",
        bad.join("\n")
    );
    docs
}

fn one<T: DeserializeOwned>(docs: &[Value], kind: &str) -> T {
    let found: Vec<&Value> = docs.iter().filter(|d| d["kind"] == kind).collect();
    assert_eq!(found.len(), 1, "expected exactly one {kind}");
    serde_json::from_value(found[0].clone()).unwrap()
}

#[test]
fn manifests_parse_into_the_kubernetes_api_types_unchanged() {
    let deploy = check_file(DEPLOY);
    let kinds: Vec<&str> = deploy.iter().filter_map(|d| d["kind"].as_str()).collect();
    assert_eq!(
        kinds,
        [
            "Namespace",
            "ServiceAccount",
            "ClusterRole",
            "ClusterRoleBinding",
            "DaemonSet"
        ],
        "{DEPLOY}: the objects"
    );
    let rcs = check_file(RUNTIMECLASSES);
    assert_eq!(
        rcs.len(),
        HANDLERS.len(),
        "{RUNTIMECLASSES}: one per handler"
    );
    let node = check_file(NODE_RUNTIMECLASS);
    assert_eq!(
        node.len(),
        HANDLERS.len(),
        "{NODE_RUNTIMECLASS}: one per handler"
    );
    println!(
        "{} objects of {DEPLOY}, {RUNTIMECLASSES} and {NODE_RUNTIMECLASS}: unchanged through k8s-openapi's types",
        deploy.len() + rcs.len() + node.len()
    );
}

/// The check itself: misspelt fields, at the top and deep in the pod template, must each fail it,
/// naming the field; a value of the wrong type too (the parse error).
#[test]
fn manifests_check_catches_a_misspelt_field() {
    let deploy = fs::read_to_string(repo_root().join(DEPLOY)).unwrap();
    let rcs = fs::read_to_string(repo_root().join(RUNTIMECLASSES)).unwrap();
    let cases: [(&str, &str, &str, &str); 5] = [
        (
            &deploy,
            "terminationGracePeriodSeconds:",
            "terminationGracePeriodSecond:",
            "terminationGracePeriodSecond",
        ),
        (&deploy, "mountPath: /host", "mountpath: /host", "mountpath"),
        (
            &deploy,
            "      restartPolicy: Always",
            "      restartPolicy: [Always]",
            "invalid type: sequence",
        ),
        (&rcs, "  podFixed:", "  podfixed:", "podfixed"),
        (&rcs, "scheduling:", "schedulling:", "schedulling"),
    ];
    for (text, from, to, expect) in cases {
        assert!(
            text.contains(from),
            "the manifests no longer contain {from:?}"
        );
        let mutated = text.replacen(from, to, 1);
        let problems: Vec<String> = documents_of(&mutated, "mutated")
            .iter()
            .flat_map(check_doc)
            .collect();
        assert!(
            problems.iter().any(|p| p.contains(expect)),
            "{from:?} -> {to:?} passed the check: {problems:?}"
        );
    }
    println!("5 mutations of the manifests: each caught");
}

/// A quantity of bytes as Kubernetes writes memory: a number with an optional binary suffix.
fn bytes(q: &str) -> u64 {
    let (n, mul) = [("Ki", 1u64 << 10), ("Mi", 1 << 20), ("Gi", 1 << 30)]
        .iter()
        .find_map(|(s, m)| q.strip_suffix(s).map(|n| (n, *m)))
        .unwrap_or((q, 1));
    n.parse::<u64>()
        .unwrap_or_else(|_| panic!("quantity {q:?}"))
        * mul
}

/// The largest sample of README's benchmark row `figure` (kB) in each handler's column.
fn readme_figure(figure: &str) -> BTreeMap<String, u64> {
    let readme = fs::read_to_string(repo_root().join("README.md")).unwrap();
    let header = readme
        .lines()
        .find(|l| l.starts_with("| figure | unit | n |"))
        .expect("README: no benchmark table");
    let cols: Vec<&str> = header.split('|').map(str::trim).collect();
    let row = readme
        .lines()
        .find(|l| l.starts_with(&format!("| {figure} |")))
        .unwrap_or_else(|| panic!("README: no benchmark row {figure:?}"));
    let cells: Vec<&str> = row.split('|').map(str::trim).collect();
    HANDLERS
        .iter()
        .map(|h| {
            let i = cols.iter().position(|c| c == h).unwrap();
            let max = cells[i]
                .split('/')
                .map(|s| s.trim().parse::<f64>().unwrap())
                .fold(0f64, f64::max);
            (h.to_string(), max as u64)
        })
        .collect()
}

/// The entrypoint's `NAME=value` line.
fn script_setting(name: &str) -> String {
    let s = fs::read_to_string(repo_root().join("scripts/podshim-node-install")).unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}=")))
        .unwrap_or_else(|| panic!("scripts/podshim-node-install sets no {name}"))
        .trim_matches('"')
        .to_string()
}

#[test]
fn manifests_runtimeclasses_schedule_on_labelled_nodes_with_the_measured_overhead() {
    let docs = documents(RUNTIMECLASSES);
    let measured = readme_figure("pod overhead RSS, 10 containers (shim+pause)");
    let prefix = script_setting("LABEL_PREFIX");
    let script_handlers: Vec<String> = script_setting("HANDLERS")
        .split_whitespace()
        .map(|h| h.split(':').next().unwrap().to_string())
        .collect();
    assert_eq!(
        script_handlers, HANDLERS,
        "the entrypoint labels these handlers"
    );
    let mut seen = Vec::new();
    for d in &docs {
        let rc: RuntimeClass = serde_json::from_value(d.clone()).unwrap();
        let name = rc.metadata.name.clone().unwrap();
        assert_eq!(
            rc.handler, name,
            "RuntimeClass {name}: named after its handler"
        );
        let selector = rc
            .scheduling
            .as_ref()
            .and_then(|s| s.node_selector.clone())
            .unwrap_or_else(|| panic!("RuntimeClass {name}: no scheduling.nodeSelector"));
        let want: BTreeMap<String, String> =
            [(format!("{prefix}/{name}"), "true".to_string())].into();
        assert_eq!(selector, want, "RuntimeClass {name}: nodeSelector");
        let mem = rc
            .overhead
            .as_ref()
            .and_then(|o| o.pod_fixed.as_ref())
            .and_then(|p| p.get("memory"))
            .unwrap_or_else(|| panic!("RuntimeClass {name}: no overhead.podFixed.memory"));
        let declared = bytes(&mem.0);
        let kb = measured[&name] * 1024;
        assert!(
            declared >= kb && declared < kb + 1024 * 1024,
            "RuntimeClass {name}: overhead {} is not the measured {} kB rounded up",
            mem.0,
            measured[&name]
        );
        println!(
            "RuntimeClass {name}: nodeSelector {selector:?}, overhead {} (measured {} kB)",
            mem.0, measured[&name]
        );
        seen.push(name);
    }
    assert_eq!(seen, HANDLERS);
}

fn env_of(c: &Container, name: &str) -> Option<String> {
    c.env
        .as_ref()?
        .iter()
        .find(|e| e.name == name)
        .and_then(|e| e.value.clone())
}

fn mount_of(c: &Container, volume: &str) -> Option<String> {
    c.volume_mounts
        .as_ref()?
        .iter()
        .find(|m| m.name == volume)
        .map(|m| m.mount_path.clone())
}

#[test]
fn manifests_daemonset_runs_the_image_as_the_entrypoint_expects() {
    let docs = documents(DEPLOY);
    let ds: DaemonSet = one(&docs, "DaemonSet");
    let sa: ServiceAccount = one(&docs, "ServiceAccount");
    let role: ClusterRole = one(&docs, "ClusterRole");
    let binding: ClusterRoleBinding = one(&docs, "ClusterRoleBinding");
    let ns: Namespace = one(&docs, "Namespace");
    let ns_name = ns.metadata.name.clone().unwrap();
    assert_eq!(ds.metadata.namespace.as_deref(), Some(ns_name.as_str()));
    assert_eq!(sa.metadata.namespace.as_deref(), Some(ns_name.as_str()));
    assert_eq!(
        ns.metadata.labels.as_ref().unwrap()["pod-security.kubernetes.io/enforce"],
        "privileged"
    );

    let spec = ds.spec.as_ref().unwrap();
    let pod = spec.template.spec.as_ref().unwrap();
    assert_eq!(pod.service_account_name, sa.metadata.name);
    assert!(pod.termination_grace_period_seconds.unwrap_or(30) >= 60);
    // RBAC: the service account may get, watch and patch nodes.
    let subject = &binding.subjects.as_ref().unwrap()[0];
    assert_eq!(Some(&subject.name), sa.metadata.name.as_ref());
    assert_eq!(subject.namespace.as_deref(), Some(ns_name.as_str()));
    assert_eq!(Some(&binding.role_ref.name), role.metadata.name.as_ref());
    let rule = &role.rules.as_ref().unwrap()[0];
    assert_eq!(rule.resources.as_deref(), Some(&["nodes".to_string()][..]));
    for verb in ["get", "list", "watch", "patch"] {
        assert!(
            rule.verbs.iter().any(|v| v == verb),
            "ClusterRole lacks {verb}"
        );
    }

    // The volumes: the node's root, and the emptyDir the label patches go through.
    let volumes = pod.volumes.as_ref().unwrap();
    let host = volumes.iter().find(|v| v.host_path.is_some()).unwrap();
    assert_eq!(host.host_path.as_ref().unwrap().path, "/");
    let shared = volumes.iter().find(|v| v.empty_dir.is_some()).unwrap();

    let init = pod.init_containers.as_ref().unwrap();
    let names: Vec<&str> = init.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["install", "label", "uninstall-on-stop"]);
    let (install, label, sidecar) = (&init[0], &init[1], &init[2]);
    let containers = &pod.containers;
    assert_eq!(containers.len(), 1);
    let unlabel = &containers[0];

    for (c, sub) in [(install, "install"), (sidecar, "wait")] {
        assert_eq!(c.image.as_deref(), Some(DEPLOY_IMAGE), "{}: image", c.name);
        assert_eq!(
            c.command.as_deref(),
            Some(&["/usr/bin/podshim-node-install".to_string(), sub.to_string()][..]),
            "{}: command",
            c.name
        );
        assert_eq!(
            c.security_context.as_ref().and_then(|s| s.privileged),
            Some(true),
            "{}: privileged",
            c.name
        );
        assert_eq!(mount_of(c, &host.name).as_deref(), Some(HOST_ROOT));
        assert_eq!(env_of(c, "HOST_ROOT").as_deref(), Some(HOST_ROOT));
        assert_eq!(env_of(c, "PODSHIM_RESTART").as_deref(), Some("true"));
    }
    assert_eq!(mount_of(install, &shared.name).as_deref(), Some(SHARED_DIR));
    assert_eq!(
        install.restart_policy, None,
        "install runs once, before the others"
    );
    assert_eq!(
        sidecar.restart_policy.as_deref(),
        Some("Always"),
        "uninstall-on-stop must be a sidecar: stopped after unlabel-on-stop"
    );
    // The kubectl containers: shell-free commands on the files install writes.
    for c in [label, unlabel] {
        assert_eq!(mount_of(c, &shared.name).as_deref(), Some(SHARED_DIR));
        assert!(c
            .image
            .as_deref()
            .unwrap()
            .starts_with("registry.k8s.io/kubectl:"));
    }
    let label_cmd = label.command.as_ref().unwrap().join(" ");
    assert_eq!(
        label_cmd,
        format!("/bin/kubectl patch node $(NODE_NAME) --type=merge --patch-file={SHARED_DIR}/labels.json")
    );
    let pre_stop = unlabel
        .lifecycle
        .as_ref()
        .and_then(|l| l.pre_stop.as_ref())
        .and_then(|h| h.exec.as_ref())
        .and_then(|e| e.command.as_ref())
        .expect("unlabel-on-stop: no preStop exec hook")
        .join(" ");
    assert_eq!(
        pre_stop,
        format!(
            "/bin/kubectl patch --filename={SHARED_DIR}/node.json --type=merge --patch-file={SHARED_DIR}/unlabels.json"
        )
    );
    for c in [install, label, unlabel] {
        let field = c
            .env
            .as_ref()
            .and_then(|e| e.iter().find(|e| e.name == "NODE_NAME"))
            .and_then(|e| e.value_from.as_ref())
            .and_then(|v| v.field_ref.as_ref())
            .map(|f| f.field_path.clone());
        assert_eq!(
            field.as_deref(),
            Some("spec.nodeName"),
            "{}: NODE_NAME",
            c.name
        );
    }
    assert_eq!(
        script_setting("SHARED_DIR"),
        format!("${{PODSHIM_SHARED_DIR:-{SHARED_DIR}}}")
    );
    assert_eq!(
        script_setting("HOST_ROOT"),
        format!("${{HOST_ROOT:-{HOST_ROOT}}}")
    );
    println!("DaemonSet: image {DEPLOY_IMAGE}, install -> label -> (uninstall-on-stop sidecar, unlabel-on-stop)");
}

// ---------------------------------------------------------------------------------------------
// The image, run under containerd on a scratch node root

fn output_text(o: &Output) -> String {
    format!(
        "--- stdout\n{}--- stderr\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The directories the image takes its binaries from, as `make deploy-image` gives them: the
/// static shim's, then the daemons' release and debug builds.
fn bin_dirs() -> Vec<PathBuf> {
    let target = std::env::var_os("TARGET_DIR")
        .or_else(|| std::env::var_os("CARGO_TARGET_DIR"))
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target"));
    let arch = std::env::consts::ARCH;
    vec![
        target.join(format!("{arch}-unknown-linux-musl/release")),
        target.join(format!("{arch}-unknown-linux-gnu/release")),
        target.join("release"),
        target.join("debug"),
    ]
}

/// A private containerd without CRI: its root, state and socket under `dir`.
struct Ctrd {
    child: Child,
    sock: PathBuf,
    log: PathBuf,
    ns: String,
}

impl Ctrd {
    fn start(dir: &Path) -> Ctrd {
        let d = dir.join("containerd");
        fs::create_dir_all(&d).unwrap();
        let sock = d.join("c.sock");
        let cfg = format!(
            "version = 3\nroot = '{0}/root'\nstate = '{0}/state'\n\
             disabled_plugins = ['io.containerd.grpc.v1.cri', 'io.containerd.cri.v1.runtime', \
             'io.containerd.cri.v1.images', 'io.containerd.nri.v1.nri']\n\
             [grpc]\n  address = '{1}'\n\
             [plugins.'io.containerd.internal.v1.opt']\n  path = '{0}/opt'\n",
            d.display(),
            sock.display()
        );
        fs::write(d.join("config.toml"), cfg).unwrap();
        let log = d.join("containerd.log");
        let logf = fs::File::create(&log).unwrap();
        let child = Command::new("containerd")
            .arg("--config")
            .arg(d.join("config.toml"))
            .stdin(Stdio::null())
            .stdout(logf.try_clone().unwrap())
            .stderr(logf)
            .spawn()
            .expect("starting containerd (scripts/install-deps.sh installs it)");
        let mut c = Ctrd {
            child,
            sock,
            log,
            ns: format!("podshim-deploy-{}", std::process::id()),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(st) = c.child.try_wait().unwrap() {
                panic!("containerd exited ({st}):\n{}", c.log_tail());
            }
            if c.sock.exists() && c.ctr(&["version"]).status.success() {
                return c;
            }
            assert!(
                Instant::now() < deadline,
                "containerd not up after 30 s:\n{}",
                c.log_tail()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn cmd(&self) -> Command {
        let mut c = Command::new("ctr");
        c.arg("--address").arg(&self.sock).arg("-n").arg(&self.ns);
        c
    }

    fn ctr(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().expect("running ctr")
    }

    fn ctr_ok(&self, args: &[&str]) -> String {
        let o = self.ctr(args);
        assert!(
            o.status.success(),
            "ctr {args:?} failed:\n{}",
            output_text(&o)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    fn log_tail(&self) -> String {
        let s = fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = s.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// The cgroup ctr puts each container in (`/<namespace>/<id>`): the parent stays.
    fn cgroup_parent(&self) -> String {
        format!("/{}", self.ns)
    }
}

impl Drop for Ctrd {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while self.child.try_wait().ok().flatten().is_none() {
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        podshim_integration::sys::kill_and_remove_cgroup(&self.cgroup_parent());
    }
}

/// The scratch node: `root` (the node's /), `usrlocal` (its /usr/local: the node's /usr is this
/// machine's, read-only), `shared` (the DaemonSet's emptyDir).
struct Node {
    dir: tempfile::TempDir,
}

impl Node {
    fn new() -> Node {
        // Short: containerd's socket lives under it.
        let dir = tempfile::Builder::new()
            .prefix("psdp-")
            .tempdir_in("/tmp")
            .unwrap();
        let n = Node { dir };
        let root = n.root();
        for d in [
            "usr",
            "dev",
            "proc",
            "tmp",
            "var/lib",
            "run",
            "etc/containerd",
            "etc/alternatives",
        ] {
            fs::create_dir_all(root.join(d)).unwrap();
        }
        fs::set_permissions(root.join("tmp"), fs::Permissions::from_mode(0o1777)).unwrap();
        // Debian's merged /usr: what the node's own tools are found through.
        for l in ["bin", "sbin", "lib", "lib64"] {
            std::os::unix::fs::symlink(format!("usr/{l}"), root.join(l)).unwrap();
        }
        // Mount points: /dev/null (bound), /dev/fd as a node has it (bash's process substitution).
        fs::write(root.join("dev/null"), "").unwrap();
        std::os::unix::fs::symlink("/proc/self/fd", root.join("dev/fd")).unwrap();
        fs::create_dir_all(n.usrlocal()).unwrap();
        fs::create_dir_all(n.shared()).unwrap();
        n
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }
    fn usrlocal(&self) -> PathBuf {
        self.dir.path().join("usrlocal")
    }
    fn shared(&self) -> PathBuf {
        self.dir.path().join("shared")
    }

    /// A node path's file in the scratch tree.
    fn at(&self, p: &str) -> PathBuf {
        match p.strip_prefix("/usr/local/") {
            Some(rest) => self.usrlocal().join(rest),
            None => self.root().join(p.trim_start_matches('/')),
        }
    }

    /// Both trees the installer writes to, as one listing.
    fn tree(&self) -> BTreeMap<String, String> {
        let mut t = tree(&self.root());
        t.extend(
            tree(&self.usrlocal())
                .into_iter()
                .map(|(k, v)| (format!("/usr/local{k}"), v)),
        );
        t
    }

    /// `ctr run` of the image as the DaemonSet runs it: privileged, the scratch root at /host.
    fn run_cmd(&self, c: &Ctrd, id: &str, env: &[(&str, &str)], args: &[&str]) -> Command {
        let mut cmd = c.cmd();
        cmd.args(["run", "--rm", "--privileged", "--cgroup"])
            .arg(format!("{}/{id}", c.cgroup_parent()));
        for (k, v) in env {
            cmd.arg("--env").arg(format!("{k}={v}"));
        }
        let mounts = [
            format!(
                "type=bind,src={},dst={HOST_ROOT},options=rbind:rw",
                self.root().display()
            ),
            format!("type=bind,src=/usr,dst={HOST_ROOT}/usr,options=rbind:ro"),
            format!(
                "type=bind,src={},dst={HOST_ROOT}/usr/local,options=rbind:rw",
                self.usrlocal().display()
            ),
            // Debian's awk and friends are /etc/alternatives links.
            format!(
                "type=bind,src=/etc/alternatives,dst={HOST_ROOT}/etc/alternatives,options=rbind:ro"
            ),
            format!("type=bind,src=/dev/null,dst={HOST_ROOT}/dev/null,options=bind:rw"),
            format!("type=proc,src=proc,dst={HOST_ROOT}/proc,options=nosuid:noexec:nodev"),
            format!(
                "type=bind,src={},dst={SHARED_DIR},options=rbind:rw",
                self.shared().display()
            ),
        ];
        for m in mounts {
            cmd.arg("--mount").arg(m);
        }
        cmd.arg(DEPLOY_IMAGE).arg(id).args(args);
        cmd.stdin(Stdio::null());
        cmd
    }

    fn run_ok(&self, c: &Ctrd, id: &str, env: &[(&str, &str)], args: &[&str]) -> String {
        let o = self
            .run_cmd(c, id, env, args)
            .output()
            .expect("running ctr run");
        let text = output_text(&o);
        assert!(
            o.status.success(),
            "ctr run {args:?} failed ({}):\n{text}",
            o.status
        );
        text
    }
}

fn containerd_release() -> Release {
    let o = Command::new("containerd")
        .arg("--version")
        .output()
        .expect("containerd --version");
    Release::parse_version_output(&String::from_utf8_lossy(&o.stdout)).unwrap()
}

/// The top-level `version` and `imports` lines of a TOML text.
fn top_lines(text: &str) -> (Option<String>, Option<String>) {
    let top: Vec<&str> = text
        .lines()
        .take_while(|l| !l.trim_start().starts_with('['))
        .collect();
    let find = |k: &str| {
        top.iter()
            .find(|l| l.split('=').next().map(str::trim) == Some(k))
            .map(|l| l.to_string())
    };
    (find("version"), find("imports"))
}

fn mounts_under(dir: &Path) -> Vec<String> {
    let d = dir.to_string_lossy();
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter(|l| l.contains(d.as_ref()))
        .map(str::to_string)
        .collect()
}

#[test]
fn image_installs_into_a_scratch_node_root_and_uninstalls_on_sigterm() {
    assert_eq!(
        nix::unistd::geteuid().as_raw(),
        0,
        "runs containers: run as root (make deploy-test)"
    );
    let node = Node::new();
    let img = deploy_archive(&bin_dirs(), &node.dir.path().join("image.oci.tar"))
        .expect("building the node-installer image");
    assert!(
        img.missing.iter().all(|m| m != "podshim-sandboxer"),
        "podshim-sandboxer not built in {:?} (make sandboxer-bin): the install here uses --with-sandboxer",
        bin_dirs()
    );
    println!("image {} with {:?}", img.name, img.bins);

    let original = fs::read("/etc/containerd/config.toml").expect(
        "reading /etc/containerd/config.toml (Debian's containerd package writes a version 2 one)",
    );
    fs::write(node.at("/etc/containerd/config.toml"), &original).unwrap();
    let release = containerd_release();
    let before = node.tree();

    let ctrd = Ctrd::start(node.dir.path());
    ctrd.ctr_ok(&["images", "import", img.archive.to_str().unwrap()]);
    let images = ctrd.ctr_ok(&["images", "ls", "-q"]);
    assert!(
        images.lines().any(|l| l == DEPLOY_IMAGE),
        "imported: {images}"
    );

    // 1. The init container `install`.
    let env = [
        ("NODE_NAME", "node-a"),
        ("PODSHIM_INSTALL_ARGS", "--with-sandboxer"),
    ];
    let out = node.run_ok(&ctrd, "install", &env, &["podshim-node-install", "install"]);
    println!("install:\n{out}");
    assert!(out.contains("podshim-install: install done"), "{out}");
    let installed = node.tree();
    let diff = changed(&before, &installed);
    let expect_files = [
        "/usr/local/bin/containerd-shim-podshim-v1",
        "/usr/local/bin/podshim-holder",
        "/usr/local/bin/podshim-exec",
        "/usr/local/bin/podshim-sandboxer",
        "/etc/containerd/config.toml",
        "/etc/containerd/config.toml.podshim-backup",
        "/etc/containerd/conf.d/50-podshim.toml",
        "/etc/containerd/conf.d/55-podshim-sandboxer.toml",
        "/etc/podshim/shim.toml",
        "/etc/podshim/sandboxer.toml",
        "/etc/systemd/system/podshim-sandboxer.service",
        "/var/lib/podshim/install-manifest",
    ];
    for f in expect_files {
        assert!(
            diff.contains(f),
            "install did not write {f}: changed {diff:#?}"
        );
    }
    let pauseless = "/etc/containerd/conf.d/52-podshim-pauseless.toml";
    assert_eq!(
        diff.contains(pauseless),
        release.at_least(2, 3),
        "{pauseless} on containerd {release}"
    );
    // Nothing else, and nothing left in the node's /tmp (the staged payload, the installer's
    // temp dir).
    let dirs_ok = |p: &String| {
        installed.get(p).is_some_and(|v| v.starts_with("dir "))
            || p == "/etc/containerd/conf.d/52-podshim-pauseless.toml"
    };
    let unexpected: Vec<&String> = diff
        .iter()
        .filter(|p| !expect_files.contains(&p.as_str()) && !dirs_ok(p))
        .collect();
    assert!(
        unexpected.is_empty(),
        "install changed more: {unexpected:#?}"
    );
    assert!(
        fs::read_dir(node.at("/tmp")).unwrap().next().is_none(),
        "left in the node's /tmp: {:?}",
        fs::read_dir(node.at("/tmp")).unwrap().collect::<Vec<_>>()
    );
    // The binaries are the image's, which are the build's; the config converted, backed up.
    for (name, from) in &img.bins {
        let p = node.at(&format!("/usr/local/bin/{name}"));
        if name == "podshim-snapshotter" {
            assert!(!p.exists(), "{name} installed without --with-snapshotter");
            continue;
        }
        assert_eq!(fs::read(&p).unwrap(), fs::read(from).unwrap(), "{name}");
    }
    assert_eq!(
        fs::read(node.at("/etc/containerd/config.toml.podshim-backup")).unwrap(),
        original
    );
    let converted = fs::read_to_string(node.at("/etc/containerd/config.toml")).unwrap();
    let (version, imports) = top_lines(&converted);
    assert!(
        matches!(version.as_deref(), Some("version = 3" | "version = 4")),
        "converted config: {version:?}"
    );
    assert_eq!(
        imports.as_deref(),
        Some("imports = [\"/etc/containerd/conf.d/*.toml\"]")
    );
    assert_eq!(
        fs::read(node.at("/etc/containerd/conf.d/50-podshim.toml")).unwrap(),
        fs::read(repo_root().join("config-snippets/conf.d/50-podshim.toml")).unwrap()
    );
    let manifest = fs::read_to_string(node.at("/var/lib/podshim/install-manifest")).unwrap();
    assert!(
        manifest.contains(&format!("containerd {release} /usr/bin/containerd")),
        "{manifest}"
    );

    // The label patches the kubectl containers apply, and the nodeSelectors they must satisfy.
    let labels: Value =
        serde_json::from_str(&fs::read_to_string(node.shared().join("labels.json")).unwrap())
            .unwrap();
    let mut want = serde_json::Map::new();
    for h in HANDLERS {
        let on = h == "podshim" || h == "podshim-sandboxer" || release.at_least(2, 3);
        want.insert(
            format!("handler.podshim.io/{h}"),
            if on { Value::from("true") } else { Value::Null },
        );
    }
    assert_eq!(
        labels,
        serde_json::json!({ "metadata": { "labels": want } })
    );
    let unlabels: Value =
        serde_json::from_str(&fs::read_to_string(node.shared().join("unlabels.json")).unwrap())
            .unwrap();
    for (k, v) in unlabels["metadata"]["labels"].as_object().unwrap() {
        assert!(
            v.is_null() && want.contains_key(k),
            "unlabels.json: {k}: {v}"
        );
    }
    assert_eq!(
        unlabels["metadata"]["labels"].as_object().unwrap().len(),
        HANDLERS.len()
    );
    let node_json: Value =
        serde_json::from_str(&fs::read_to_string(node.shared().join("node.json")).unwrap())
            .unwrap();
    assert_eq!(
        node_json,
        serde_json::json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-a"}})
    );
    for d in documents(RUNTIMECLASSES) {
        let rc: RuntimeClass = serde_json::from_value(d).unwrap();
        for (k, v) in rc.scheduling.unwrap().node_selector.unwrap() {
            assert!(
                want.contains_key(&k),
                "nodeSelector {k} is no label the installer sets"
            );
            if labels["metadata"]["labels"][&k] == "true" {
                assert_eq!(v, "true");
            }
        }
    }

    // 2. The pod started again (a node reboot, a DaemonSet update): install changes nothing.
    let out = node.run_ok(
        &ctrd,
        "install-again",
        &env,
        &["podshim-node-install", "install"],
    );
    assert!(out.contains("manifest unchanged"), "{out}");
    assert_same_tree(&installed, &node.tree(), "a second install");

    // 3. The sidecar `uninstall-on-stop`: waits, uninstalls on SIGTERM.
    let log = node.dir.path().join("wait.log");
    let logf = fs::File::create(&log).unwrap();
    let mut waiter = node
        .run_cmd(&ctrd, "wait", &[], &["podshim-node-install", "wait"])
        .stdout(logf.try_clone().unwrap())
        .stderr(logf)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !fs::read_to_string(&log)
        .unwrap()
        .contains("waiting for SIGTERM")
    {
        assert!(
            waiter.try_wait().unwrap().is_none(),
            "wait exited early:\n{}",
            fs::read_to_string(&log).unwrap()
        );
        assert!(
            Instant::now() < deadline,
            "wait did not start:\n{}",
            fs::read_to_string(&log).unwrap()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        waiter.try_wait().unwrap().is_none(),
        "wait exited without a signal"
    );
    assert_same_tree(&installed, &node.tree(), "while waiting");
    ctrd.ctr_ok(&["tasks", "kill", "-s", "SIGTERM", "wait"]);
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(st) = waiter.try_wait().unwrap() {
            break st;
        }
        if Instant::now() > deadline {
            let _ = ctrd.ctr(&["tasks", "kill", "-s", "SIGKILL", "wait"]);
            let _ = waiter.wait();
            panic!(
                "wait did not end within 60 s of SIGTERM:\n{}",
                fs::read_to_string(&log).unwrap()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let out = fs::read_to_string(&log).unwrap();
    println!("wait, SIGTERM:\n{out}");
    assert!(status.success(), "wait exited {status}:\n{out}");
    assert!(out.contains("podshim-node-install: uninstalled"), "{out}");
    assert_eq!(
        fs::read(node.at("/etc/containerd/config.toml")).unwrap(),
        original
    );
    assert_same_tree(&before, &node.tree(), "uninstall on SIGTERM");

    // 4. Stopped again with nothing installed: nothing to do, nothing changed.
    let out = node.run_ok(
        &ctrd,
        "uninstall-again",
        &[],
        &["podshim-node-install", "uninstall"],
    );
    assert!(out.contains("nothing to uninstall"), "{out}");
    assert_same_tree(&before, &node.tree(), "a second uninstall");

    // Nothing left: no container, task or image in the namespace, then no containerd, no mount,
    // no cgroup.
    assert_eq!(ctrd.ctr_ok(&["containers", "ls", "-q"]).trim(), "");
    assert_eq!(ctrd.ctr_ok(&["tasks", "ls", "-q"]).trim(), "");
    ctrd.ctr_ok(&["images", "rm", DEPLOY_IMAGE]);
    let parent = ctrd.cgroup_parent();
    drop(ctrd);
    assert!(
        podshim_integration::sys::cgroup_pids(&parent).is_empty(),
        "processes left in cgroup {parent}"
    );
    assert_eq!(
        mounts_under(node.dir.path()),
        Vec::<String>::new(),
        "mounts left"
    );
    println!("installed into and removed from a scratch node root: byte-identical after");
}
