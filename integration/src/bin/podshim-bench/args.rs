//! The command line: which figures, how many samples, which handlers.

use std::path::PathBuf;

use podshim_integration::{
    images, HANDLER_PAUSELESS, HANDLER_PODSHIM, HANDLER_RUNC, HANDLER_SANDBOXER,
};

#[derive(Debug, Clone)]
pub(crate) struct Args {
    pub(crate) quick: bool,
    pub(crate) pods: usize,
    pub(crate) parallel: usize,
    /// podshim-sandboxer's warm pool size.
    pub(crate) pool: usize,
    pub(crate) handlers: Vec<String>,
    pub(crate) out: PathBuf,
    pub(crate) execs: usize,
    pub(crate) log_secs: f64,
    pub(crate) lifecycle: usize,
    pub(crate) mem_samples: usize,
    pub(crate) node_counts: Vec<usize>,
    pub(crate) log_reps: usize,
}

pub(crate) fn usage() -> ! {
    eprintln!(
        "usage: podshim-bench [--quick] [--pods N] [--parallel N] [--handlers runc,podshim,podshim-pauseless,podshim-sandboxer] [--pool N] \
         [--execs N] [--log-secs S] [--out path.json]"
    );
    std::process::exit(2)
}

pub(crate) fn parse_args() -> Args {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let quick = argv.iter().any(|a| a == "--quick");
    let mut a = Args {
        quick,
        pods: if quick { 4 } else { 50 },
        parallel: if quick { 2 } else { 10 },
        handlers: vec![
            HANDLER_RUNC.into(),
            HANDLER_PODSHIM.into(),
            HANDLER_PAUSELESS.into(),
            HANDLER_SANDBOXER.into(),
        ],
        pool: if quick { 2 } else { 10 },
        out: images::repo_root().join("target/bench/bench.json"),
        execs: if quick { 50 } else { 1000 },
        log_secs: if quick { 1.0 } else { 5.0 },
        lifecycle: if quick { 4 } else { 50 },
        mem_samples: if quick { 1 } else { 3 },
        node_counts: if quick { vec![1, 3] } else { vec![1, 10, 100] },
        log_reps: if quick { 1 } else { 4 },
    };
    let mut it = argv.into_iter();
    while let Some(k) = it.next() {
        let mut val = || it.next().unwrap_or_else(|| usage());
        match k.as_str() {
            "--quick" => {}
            "--pods" => a.pods = val().parse().unwrap_or_else(|_| usage()),
            "--parallel" => a.parallel = val().parse().unwrap_or_else(|_| usage()),
            "--pool" => a.pool = val().parse().unwrap_or_else(|_| usage()),
            "--handlers" => {
                a.handlers = val()
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect()
            }
            "--out" => a.out = PathBuf::from(val()),
            "--execs" => a.execs = val().parse().unwrap_or_else(|_| usage()),
            "--log-secs" => a.log_secs = val().parse().unwrap_or_else(|_| usage()),
            "-h" | "--help" => usage(),
            _ => usage(),
        }
    }
    a.parallel = a.parallel.max(1);
    if a.handlers.is_empty() {
        usage();
    }
    a
}
