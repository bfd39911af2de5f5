//! Snapshotter figures for `make bench`: containerd's built-in `overlayfs` against
//! podshim-snapshotter (`podsnap`), both driven through containerd's snapshots gRPC API on one
//! private containerd (so both pay containerd's metadata layer; podshim-snapshotter also pays the proxy
//! gRPC hop), samples interleaved (A B, then B A) so machine noise shifts both alike. Nothing
//! here asserts a figure.
//!
//! Prepare+Mounts and Commit are also timed on podshim-snapshotter's own socket, without
//! containerd (the `direct` series, interleaved with the other two): a second daemon of the same
//! binary, root beside the first, that containerd does not know (containerd's garbage collector
//! removes from a proxy snapshotter every snapshot its metadata does not name). What containerd's
//! metadata layer and the proxy hop add is the difference, median for median and p99 for p99.
//!
//! * One call: `Usage` of the committed parent. Both answer from their store (overlayfs inside
//!   containerd, podshim-snapshotter across the proxy hop), so the difference is what one
//!   proxied call costs: the floor under the ratios below (Prepare+Mounts makes two calls,
//!   Commit one).
//! * Prepare+Mounts: `Prepare(key, parent)` on a committed one-layer parent, then `Mounts(key)`.
//! * Commit: of an active snapshot holding 10 files of 4 KiB (both walk the upper dir once).
//! * Unpack: `ctr images import --local --snapshotter S` of a multi-layer image whose content is
//!   already in the store (so the figure is unpack: walking differ + Prepare/Commit per layer,
//!   plus ctr's start and a scan of the archive, the same for both).
//! * Pull ([`pull`], its own run per containerd release): `ctr images pull` of an image of
//!   `pull_layers` layers from the loopback registry through containerd's transfer service, whose
//!   `max_concurrent_unpacks` the run sets: above 1, containerd ≥ 2.2 unpacks that many layers
//!   at once into a snapshotter that can rebase (both can), 2.1 one at a time.
//! * Usage: of an active snapshot holding `usage_files` files. overlayfs walks the upper dir on
//!   every call; podshim-snapshotter answers from its cache (refreshed in the background every
//!   `--usage-refresh` s; the daemon runs with the refresh the harness gives it), after its cache
//!   has caught up with the files.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use containerd_client::services::v1::snapshots::{
    CommitSnapshotRequest, MountsRequest, PrepareSnapshotRequest, RemoveSnapshotRequest,
    UsageRequest,
};
use containerd_client::types::Mount;

use crate::snapshotter::{labels, Daemon, Snapshots, SNAPSHOTTER};
use crate::stats::{fmt_num, median, quantile, sorted};
use crate::{images, Containerd};

pub const BUILTIN: &str = "overlayfs";
/// podshim-snapshotter called on its own socket, not through containerd.
pub const DIRECT: &str = "direct";
/// The daemon's `--usage-refresh` for the benchmark: short, so its cache catches up with the
/// files within the run (the shipped default is 60 s, which only makes its answers staler, not
/// slower).
pub const USAGE_REFRESH_SECS: u64 = 2;
const NS: &str = "podshim-bench-snap";

#[derive(Debug, Clone)]
pub struct Settings {
    pub call_iterations: usize,
    pub prepare_iterations: usize,
    pub commit_iterations: usize,
    pub unpack_reps: usize,
    pub unpack_layers: usize,
    pub unpack_files_per_layer: usize,
    pub usage_files: usize,
    pub usage_calls: usize,
    pub pull_reps: usize,
    pub pull_layers: usize,
    pub pull_files_per_layer: usize,
}

impl Settings {
    pub fn full() -> Settings {
        Settings {
            call_iterations: 300,
            prepare_iterations: 200,
            commit_iterations: 100,
            unpack_reps: 5,
            unpack_layers: 5,
            unpack_files_per_layer: 2000,
            usage_files: 100_000,
            usage_calls: 20,
            pull_reps: 5,
            pull_layers: 8,
            pull_files_per_layer: 1000,
        }
    }

    /// For CI's smoke run: checks that every phase works, its figures mean little.
    pub fn quick() -> Settings {
        Settings {
            call_iterations: 10,
            prepare_iterations: 10,
            commit_iterations: 5,
            unpack_reps: 1,
            unpack_layers: 3,
            unpack_files_per_layer: 100,
            usage_files: 1000,
            usage_calls: 5,
            pull_reps: 1,
            pull_layers: 3,
            pull_files_per_layer: 50,
        }
    }
}

/// Raw samples of one figure, per snapshotter.
#[derive(Debug, Clone)]
pub struct Figure {
    pub name: String,
    pub unit: &'static str,
    pub samples: BTreeMap<String, Vec<f64>>,
}

#[derive(Debug, Clone, Default)]
pub struct Report {
    pub figures: Vec<Figure>,
    pub notes: Vec<String>,
}

impl Report {
    fn rec(&mut self, name: &str, unit: &'static str, snapshotter: &str, v: f64) {
        let i = match self.figures.iter().position(|f| f.name == name) {
            Some(i) => i,
            None => {
                self.figures.push(Figure {
                    name: name.into(),
                    unit,
                    samples: BTreeMap::new(),
                });
                self.figures.len() - 1
            }
        };
        self.figures[i]
            .samples
            .entry(snapshotter.into())
            .or_default()
            .push(v);
    }

    /// Median of a figure's samples for one snapshotter.
    pub fn median(&self, figure: &str, snapshotter: &str) -> f64 {
        self.figures
            .iter()
            .find(|f| f.name == figure)
            .and_then(|f| f.samples.get(snapshotter))
            .map(|v| median(&sorted(v)))
            .unwrap_or(f64::NAN)
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Both snapshotters in the order of iteration `i` (alternating which goes first).
fn order(i: usize) -> [&'static str; 2] {
    if i.is_multiple_of(2) {
        [BUILTIN, SNAPSHOTTER]
    } else {
        [SNAPSHOTTER, BUILTIN]
    }
}

/// Both snapshotters and the direct series, each first in turn.
fn order3(i: usize) -> [&'static str; 3] {
    let all = [BUILTIN, SNAPSHOTTER, DIRECT];
    [all[i % 3], all[(i + 1) % 3], all[(i + 2) % 3]]
}

fn gc_root() -> std::collections::HashMap<String, String> {
    // Snapshots made through the API without a lease are garbage to containerd's GC.
    labels(&[("containerd.io/gc.root", "podshim-bench")])
}

struct Api {
    s: Snapshots,
}

impl Api {
    async fn prepare(&self, key: &str, parent: &str) -> Result<Vec<Mount>> {
        Ok(self
            .s
            .client
            .clone()
            .prepare(self.s.req(PrepareSnapshotRequest {
                snapshotter: self.s.snapshotter.clone(),
                key: key.into(),
                parent: parent.into(),
                labels: gc_root(),
            }))
            .await
            .with_context(|| format!("{} Prepare {key}", self.s.snapshotter))?
            .into_inner()
            .mounts)
    }

    async fn mounts(&self, key: &str) -> Result<Vec<Mount>> {
        Ok(self
            .s
            .client
            .clone()
            .mounts(self.s.req(MountsRequest {
                snapshotter: self.s.snapshotter.clone(),
                key: key.into(),
            }))
            .await
            .with_context(|| format!("{} Mounts {key}", self.s.snapshotter))?
            .into_inner()
            .mounts)
    }

    async fn commit(&self, name: &str, key: &str) -> Result<()> {
        self.s
            .client
            .clone()
            .commit(self.s.req(CommitSnapshotRequest {
                snapshotter: self.s.snapshotter.clone(),
                name: name.into(),
                key: key.into(),
                labels: gc_root(),
            }))
            .await
            .with_context(|| format!("{} Commit {key}", self.s.snapshotter))?;
        Ok(())
    }

    async fn remove(&self, key: &str) -> Result<()> {
        self.s
            .client
            .clone()
            .remove(self.s.req(RemoveSnapshotRequest {
                snapshotter: self.s.snapshotter.clone(),
                key: key.into(),
            }))
            .await
            .with_context(|| format!("{} Remove {key}", self.s.snapshotter))?;
        Ok(())
    }

    async fn usage(&self, key: &str) -> Result<(i64, i64)> {
        let u = self
            .s
            .client
            .clone()
            .usage(self.s.req(UsageRequest {
                snapshotter: self.s.snapshotter.clone(),
                key: key.into(),
            }))
            .await
            .with_context(|| format!("{} Usage {key}", self.s.snapshotter))?
            .into_inner();
        Ok((u.size, u.inodes))
    }
}

/// The host directory an active snapshot's writes go to: the `upperdir=` of an overlay mount,
/// or the source of a bind mount (a snapshot without parent).
fn upper_dir(mounts: &[Mount]) -> Result<PathBuf> {
    for m in mounts {
        if m.r#type == "overlay" {
            if let Some(u) = m.options.iter().find_map(|o| o.strip_prefix("upperdir=")) {
                return Ok(PathBuf::from(u));
            }
        }
        if m.r#type == "bind" && m.options.iter().any(|o| o == "rw") {
            return Ok(PathBuf::from(&m.source));
        }
    }
    bail!("no writable directory in mounts {mounts:?}")
}

fn write_files(dir: &Path, n: usize, size: usize) -> Result<()> {
    let data = vec![b'x'; size];
    // At most 1000 entries per directory, as real trees are.
    for i in 0..n {
        let d = dir.join(format!("d{}", i / 1000));
        if i % 1000 == 0 {
            std::fs::create_dir_all(&d)?;
        }
        std::fs::write(d.join(format!("f{i}")), &data)?;
    }
    Ok(())
}

/// Runs every figure on `c`, whose config must register podshim-snapshotter (any `SnapshotterUse` but `Off`).
pub async fn run(c: &Containerd, s: &Settings, progress: &dyn Fn(&str)) -> Result<Report> {
    let daemon = c.snapshotter_daemon()?;
    let direct = Daemon::start_bin(
        daemon.bin.clone(),
        &c.dir.join("podsnap-direct"),
        &c.dir.join("podsnap-direct.sock"),
        daemon.usage_refresh_secs,
        false,
    )
    .await?;
    let mut api: BTreeMap<&str, Api> = [BUILTIN, SNAPSHOTTER]
        .into_iter()
        .map(|n| {
            Ok((
                n,
                Api {
                    s: c.snapshots(n, NS)?,
                },
            ))
        })
        .collect::<Result<_>>()?;
    api.insert(
        DIRECT,
        Api {
            s: Snapshots::connect(&direct.sock, SNAPSHOTTER, NS)?,
        },
    );
    let mut r = Report::default();
    let run_id = crate::pod::rand_u64() % 1_000_000;

    // A committed one-layer parent for each.
    let base = format!("base-{run_id}");
    for (name, a) in &api {
        let m = a.prepare(&format!("{base}-a"), "").await?;
        write_files(&upper_dir(&m)?, 20, 4096)
            .with_context(|| format!("{name}: writing the base layer"))?;
        a.commit(&base, &format!("{base}-a")).await?;
    }

    progress(&format!(
        "snapshotter: one call (Usage of a committed snapshot) x{}",
        s.call_iterations
    ));
    for i in 0..s.call_iterations {
        for name in order3(i) {
            let t = Instant::now();
            api[name].usage(&base).await?;
            r.rec(
                "One call (Usage of a committed snapshot)",
                "ms",
                name,
                ms(t.elapsed()),
            );
        }
    }

    progress(&format!(
        "snapshotter: Prepare+Mounts x{}",
        s.prepare_iterations
    ));
    for i in 0..s.prepare_iterations {
        for name in order3(i) {
            let a = &api[name];
            let key = format!("pm-{run_id}-{i}");
            let t = Instant::now();
            a.prepare(&key, &base).await?;
            a.mounts(&key).await?;
            r.rec("Prepare+Mounts", "ms", name, ms(t.elapsed()));
            a.remove(&key).await?;
        }
    }

    progress(&format!("snapshotter: Commit x{}", s.commit_iterations));
    for i in 0..s.commit_iterations {
        for name in order3(i) {
            let a = &api[name];
            let key = format!("ca-{run_id}-{i}");
            let committed = format!("cc-{run_id}-{i}");
            let m = a.prepare(&key, &base).await?;
            write_files(&upper_dir(&m)?, 10, 4096)?;
            let t = Instant::now();
            a.commit(&committed, &key).await?;
            r.rec("Commit (10 files of 4 KiB)", "ms", name, ms(t.elapsed()));
            a.remove(&committed).await?;
        }
    }

    let (layers, files) = (s.unpack_layers, s.unpack_files_per_layer);
    progress(&format!(
        "snapshotter: unpack of a {layers}-layer image ({files} files of 1 KiB per layer) x{}",
        s.unpack_reps
    ));
    let image = format!("podshim.test/bench-{layers}x{files}:1");
    let archive = {
        let image = image.clone();
        tokio::task::spawn_blocking(move || images::bench_archive(&image, layers, files)).await??
    };
    let unpack_name = format!("Unpack ({layers} layers × {files} files)");
    for rep in 0..s.unpack_reps {
        for name in order(rep) {
            // A namespace per sample: the layers are not yet unpacked there for anyone.
            let ns = format!("{NS}-unpack-{run_id}-{rep}-{name}");
            ctr(
                c,
                &ns,
                &["images", "import", "--local", "--no-unpack"],
                Some(&archive),
            )?;
            let t = Instant::now();
            ctr(
                c,
                &ns,
                &["images", "import", "--local", "--snapshotter", name],
                Some(&archive),
            )?;
            r.rec(&unpack_name, "ms", name, ms(t.elapsed()));
            let check = Snapshots::connect(&c.sock, name, &ns)?.list().await?;
            if check.len() < layers {
                bail!(
                    "{name}: after import {} snapshots in {ns}, want {layers}",
                    check.len()
                );
            }
        }
    }

    let n = s.usage_files;
    progress(&format!(
        "snapshotter: Usage of an active snapshot with {n} files x{}",
        s.usage_calls
    ));
    let key = format!("usage-{run_id}");
    for name in [BUILTIN, SNAPSHOTTER] {
        let m = api[name].prepare(&key, &base).await?;
        let dir = upper_dir(&m)?;
        tokio::task::spawn_blocking(move || write_files(&dir, n, 0))
            .await?
            .with_context(|| format!("{name}: writing {n} files"))?;
    }
    // podshim-snapshotter's cache catches up within its refresh interval (plus one walk).
    let deadline = Instant::now() + Duration::from_secs(120);
    let refresh = c.snapshotter_daemon()?.usage_refresh_secs;
    loop {
        let (_, inodes) = api[SNAPSHOTTER].usage(&key).await?;
        if inodes as usize >= n {
            break;
        }
        if Instant::now() > deadline {
            bail!(
                "podshim-snapshotter Usage still reports {inodes} inodes for {n} files after 120 s"
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let usage_name = format!("Usage (active, {n} files)");
    for i in 0..s.usage_calls {
        for name in order(i) {
            let t = Instant::now();
            let (_, inodes) = api[name].usage(&key).await?;
            r.rec(&usage_name, "ms", name, ms(t.elapsed()));
            if (inodes as usize) < n {
                bail!("{name} Usage reports {inodes} inodes for {n} files");
            }
        }
    }
    for (name, a) in &api {
        if *name != DIRECT {
            a.remove(&key).await?;
        }
        a.remove(&base).await?;
    }
    r.notes.push(format!(
        "podshim-snapshotter ran with --usage-refresh {refresh} s: its Usage of an active snapshot is a cached value at most that old (plus one walk), refreshed by a background walk; overlayfs walks the upper dir on every call"
    ));
    r.notes.push("Unpack = wall time of `ctr images import --local --snapshotter S` with the content already in the store (includes ctr start-up and an archive scan, the same for both).".into());
    Ok(r)
}

/// The pull figure alone (on a containerd started with `registry`, its `max_concurrent_unpacks`
/// as the options say): each sample pulls into a namespace of its own, so no layer is unpacked
/// there yet; the blobs come from the registry over loopback, the same for both.
pub async fn pull(c: &Containerd, s: &Settings, progress: &dyn Fn(&str)) -> Result<Report> {
    c.snapshotter_daemon()?;
    let reg = c
        .registry
        .as_ref()
        .context("the pull figure needs the harness's registry")?;
    let (layers, files) = (s.pull_layers, s.pull_files_per_layer);
    let image = format!("podshim.test/bench-{layers}x{files}:1");
    let (host, dir) = (reg.host.clone(), reg.dir.clone());
    let reference = tokio::task::spawn_blocking(move || -> Result<String> {
        let archive = images::bench_archive(&image, layers, files)?;
        crate::registry::Registry::push_to(
            &host,
            &dir,
            &archive,
            &format!("bench/{layers}x{files}:1"),
        )
    })
    .await??;
    progress(&format!(
        "snapshotter: pull of a {layers}-layer image ({files} files of 1 KiB per layer) x{}, containerd {}",
        s.pull_reps, c.release
    ));
    let mut r = Report::default();
    let run_id = crate::pod::rand_u64() % 1_000_000;
    let unpacks = c.opts.max_concurrent_unpacks.unwrap_or(1);
    let name = format!(
        "Pull ({layers} layers × {files} files), containerd {}, max_concurrent_unpacks {unpacks}",
        c.release
    );
    let hosts = c.registry_hosts_dir.to_string_lossy().into_owned();
    for rep in 0..s.pull_reps {
        for snapshotter in order(rep) {
            let ns = format!("{NS}-pull-{run_id}-{rep}-{snapshotter}");
            let t = Instant::now();
            ctr(
                c,
                &ns,
                &[
                    "images",
                    "pull",
                    "--hosts-dir",
                    &hosts,
                    "--snapshotter",
                    snapshotter,
                    &reference,
                ],
                None,
            )?;
            r.rec(&name, "ms", snapshotter, ms(t.elapsed()));
            let committed = Snapshots::connect(&c.sock, snapshotter, &ns)?
                .list()
                .await?;
            if committed.len() < layers {
                bail!(
                    "{snapshotter}: after pull {} snapshots in {ns}, want {layers}",
                    committed.len()
                );
            }
        }
    }
    r.notes.push("Pull = wall time of `ctr images pull` (transfer service) from a registry on loopback, into a fresh namespace.".into());
    Ok(r)
}

fn ctr(c: &Containerd, ns: &str, args: &[&str], archive: Option<&Path>) -> Result<()> {
    let o = Command::new("ctr")
        .arg("--address")
        .arg(&c.sock)
        .args(["-n", ns])
        .args(args)
        .args(archive)
        .output()
        .context("running ctr")?;
    if !o.status.success() {
        bail!(
            "ctr -n {ns} {} failed: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
    }
    Ok(())
}

/// Samples at or above this count also get a p99.
const P99_FROM: usize = 100;

/// The figures as a Markdown table: medians (and p99 where there are enough samples), sample
/// counts, podshim-snapshotter/overlayfs ratios, and the direct series where there is one.
pub fn markdown(r: &Report) -> String {
    let mut s = String::new();
    s.push_str("| figure | unit | n | overlayfs (built-in) | podshim-snapshotter | podshim-snapshotter/overlayfs | podshim-snapshotter without containerd |\n");
    s.push_str("|---|---|---:|---:|---:|---:|---:|\n");
    let direct = |v: f64| match v.is_nan() {
        true => "–".to_string(),
        false => fmt_num(v),
    };
    let ratio = |a: f64, b: f64| match a > 0.0 && !b.is_nan() {
        true => format!("{:.3}", b / a),
        false => "–".into(),
    };
    for f in &r.figures {
        let n = f.samples.values().map(Vec::len).max().unwrap_or(0);
        let (a, b) = (r.median(&f.name, BUILTIN), r.median(&f.name, SNAPSHOTTER));
        s.push_str(&format!(
            "| {} | {} (median) | {n} | {} | {} | {} | {} |\n",
            f.name,
            f.unit,
            fmt_num(a),
            fmt_num(b),
            ratio(a, b),
            direct(r.median(&f.name, DIRECT))
        ));
        if n >= P99_FROM {
            let p99 = |k: &str| {
                f.samples
                    .get(k)
                    .map_or(f64::NAN, |v| quantile(&sorted(v), 0.99))
            };
            let (a, b) = (p99(BUILTIN), p99(SNAPSHOTTER));
            s.push_str(&format!(
                "| {} | {} (p99) | {n} | {} | {} | {} | {} |\n",
                f.name,
                f.unit,
                fmt_num(a),
                fmt_num(b),
                ratio(a, b),
                direct(p99(DIRECT))
            ));
        }
    }
    for n in &r.notes {
        s.push_str(&format!("\n{n}"));
    }
    s.push('\n');
    s
}

pub fn json(r: &Report) -> serde_json::Value {
    let figs: Vec<serde_json::Value> = r
        .figures
        .iter()
        .map(|f| {
            serde_json::json!({
                "figure": f.name,
                "unit": f.unit,
                "median": {
                    BUILTIN: r.median(&f.name, BUILTIN),
                    SNAPSHOTTER: r.median(&f.name, SNAPSHOTTER),
                    DIRECT: r.median(&f.name, DIRECT),
                },
                "samples": f.samples,
            })
        })
        .collect();
    serde_json::json!({ "figures": figs, "notes": r.notes })
}
