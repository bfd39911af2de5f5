//! The samples of every figure, per handler, and the statistics the report takes of them.

use std::collections::BTreeMap;
use std::time::Duration;

use podshim_integration::bench_snapshots;

/// Raw samples of one figure, per handler.
pub(crate) struct Figure {
    pub(crate) section: &'static str,
    pub(crate) name: String,
    pub(crate) unit: &'static str,
    pub(crate) samples: BTreeMap<String, Vec<f64>>,
}

#[derive(Default)]
pub(crate) struct Results {
    pub(crate) figs: Vec<Figure>,
    pub(crate) errors: Vec<String>,
    pub(crate) snapshots: Option<bench_snapshots::Report>,
}

impl Results {
    pub(crate) fn rec(
        &mut self,
        section: &'static str,
        name: &str,
        unit: &'static str,
        handler: &str,
        v: f64,
    ) {
        let i = match self.figs.iter().position(|f| f.name == name) {
            Some(i) => i,
            None => {
                self.figs.push(Figure {
                    section,
                    name: name.into(),
                    unit,
                    samples: BTreeMap::new(),
                });
                self.figs.len() - 1
            }
        };
        self.figs[i]
            .samples
            .entry(handler.into())
            .or_default()
            .push(v);
    }
}

pub(crate) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

pub(crate) fn progress(msg: &str) {
    eprintln!("[bench {}] {msg}", chrono_now());
}

pub(crate) fn chrono_now() -> String {
    let out = std::process::Command::new("date")
        .arg("-u")
        .arg("+%H:%M:%S")
        .output();
    out.map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}
