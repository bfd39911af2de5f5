//! `make layout`: the release shim's hot sections against `shim/layout.toml` (see
//! `podshim_integration::layout`).
//!
//! Usage: podshim-layout SHIM_BINARY [BUDGET_FILE]
#![deny(unsafe_code)]

use std::path::PathBuf;

use podshim_integration::{images, layout};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (bin, budget) = match args.as_slice() {
        [b] => (
            PathBuf::from(b),
            images::repo_root().join("shim/layout.toml"),
        ),
        [b, f] => (PathBuf::from(b), PathBuf::from(f)),
        _ => {
            eprintln!("usage: podshim-layout SHIM_BINARY [BUDGET_FILE]");
            std::process::exit(2)
        }
    };
    let r = std::fs::read_to_string(&budget)
        .map_err(anyhow::Error::from)
        .and_then(|t| layout::parse_budget(&t))
        .and_then(|b| layout::check(&bin, &b));
    match r {
        Ok(lines) => {
            for l in lines {
                println!("{l}");
            }
        }
        Err(e) => {
            eprintln!("podshim-layout {}: {e:#}", bin.display());
            std::process::exit(1)
        }
    }
}
