//! `make deploy-image`: writes podshim's node-installer image as an OCI image layout archive,
//! built offline like the test images (see `images::deploy_archive`).
//!
//!   podshim-deploy-image --out DIR [--bin-dir DIR]...
//!
//! Writes DIR/podshim-node-installer.oci.tar, named `images::DEPLOY_IMAGE`, the image
//! config-snippets/deploy/podshim-deploy.yaml runs. Binaries come from the first --bin-dir that has
//! each (the Makefile passes the static shim's directory, then target/release for the daemons).

use std::path::PathBuf;
use std::process::ExitCode;

use podshim_integration::images::{deploy_archive, DEPLOY_IMAGE};

fn main() -> ExitCode {
    let mut out: Option<PathBuf> = None;
    let mut bin_dirs = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = |what: &str| match args.next() {
            Some(v) => Ok(PathBuf::from(v)),
            None => Err(format!("{what} needs a value")),
        };
        let r = match a.as_str() {
            "--out" => value("--out").map(|v| out = Some(v)),
            "--bin-dir" => value("--bin-dir").map(|v| bin_dirs.push(v)),
            "-h" | "--help" => {
                println!("usage: podshim-deploy-image --out DIR [--bin-dir DIR]...");
                return ExitCode::SUCCESS;
            }
            other => Err(format!("unknown argument {other:?}")),
        };
        if let Err(e) = r {
            eprintln!("podshim-deploy-image: {e}");
            return ExitCode::from(2);
        }
    }
    let Some(out) = out else {
        eprintln!("podshim-deploy-image: --out DIR is required");
        return ExitCode::from(2);
    };
    if bin_dirs.is_empty() {
        eprintln!("podshim-deploy-image: give at least one --bin-dir");
        return ExitCode::from(2);
    }
    let path = out.join("podshim-node-installer.oci.tar");
    match deploy_archive(&bin_dirs, &path) {
        Ok(img) => {
            println!("podshim-deploy-image: wrote {}", img.archive.display());
            println!("  image {DEPLOY_IMAGE}");
            for (name, from) in &img.bins {
                println!("  {name} from {}", from.display());
            }
            for name in &img.missing {
                println!(
                    "  {name}: not built, not in the image (make build; needed for --with-{})",
                    name.trim_start_matches("podshim-")
                );
            }
            println!(
                "  on each node: ctr -n k8s.io images import {} (or push it to your registry and \
                 set the DaemonSet's image)",
                img.archive.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("podshim-deploy-image: {e:#}");
            ExitCode::FAILURE
        }
    }
}
