//! `podshim-sandboxer --version` and `-v`: name, workspace version and build commit, exit 0.
#![deny(unsafe_code)]

use std::process::Command;

#[test]
fn version_names_the_build() {
    let want = format!(
        "podshim-sandboxer {} ({})\n",
        env!("CARGO_PKG_VERSION"),
        option_env!("PODSHIM_GIT_COMMIT")
            .filter(|c| !c.is_empty())
            .unwrap_or("unknown")
    );
    for flag in ["--version", "-v"] {
        let out = Command::new(env!("CARGO_BIN_EXE_podshim-sandboxer"))
            .arg(flag)
            // Never read: the version is answered before any configuration.
            .env("PODSHIM_SANDBOXER_CONFIG", "/nonexistent/sandboxer.toml")
            .output()
            .unwrap();
        assert!(out.status.success(), "{flag}: {out:?}");
        assert_eq!(String::from_utf8_lossy(&out.stdout), want, "{flag}");
    }
    let out = Command::new(env!("CARGO_BIN_EXE_podshim-sandboxer"))
        .args(["--version", "extra"])
        .output()
        .unwrap();
    assert!(!out.status.success(), "a stray argument is an error");
}
