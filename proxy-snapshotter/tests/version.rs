//! `podshim-snapshotter --version` and `-v`: name, workspace version and build commit, exit 0.
#![deny(unsafe_code)]

use std::process::Command;

#[test]
fn version_names_the_build() {
    let want = format!(
        "podshim-snapshotter {} ({})\n",
        env!("CARGO_PKG_VERSION"),
        option_env!("PODSHIM_GIT_COMMIT")
            .filter(|c| !c.is_empty())
            .unwrap_or("unknown")
    );
    for flag in ["--version", "-v"] {
        // The root is never opened: the version is answered first.
        let out = Command::new(env!("CARGO_BIN_EXE_podshim-snapshotter"))
            .args(["--root", "/nonexistent/podshim-snapshotter", flag])
            .output()
            .unwrap();
        assert!(out.status.success(), "{flag}: {out:?}");
        assert_eq!(String::from_utf8_lossy(&out.stdout), want, "{flag}");
    }
}
