//! The `start` action as each containerd release runs it: containerd 2.3 writes a protobuf
//! BootstrapParams on stdin and reads a protobuf BootstrapResult from the combined stdout and
//! stderr (containerd#12786); 2.1 and 2.2 pass flags and TTRPC_ADDRESS, leave stdin empty and
//! read `{"version":3,"address":…,"protocol":"ttrpc"}`. Both start the same pod shim, which is
//! killed again here. `start` runs under umask 000: the shim's socket must still be its owner's
//! alone. Root (the socket lives under /run/containerd/s, as containerd's).
#![deny(unsafe_code)]

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};

use containerd_shim_protos::bootstrap_api::{BootstrapParams, BootstrapResult};
use containerd_shim_protos::protobuf::Message;

const SHIM: &str = env!("CARGO_BIN_EXE_containerd-shim-podshim-v1");

struct Started {
    address: String,
    version: i32,
    protocol: String,
}

/// Runs `start` in a fresh bundle with `stdin`; returns its combined output and the read end
/// of the bundle's `log` FIFO, which containerd makes and reads (the pod shim writes its log
/// there and does not serve without it).
fn start(dir: &Path, id: &str, stdin: &[u8]) -> (Vec<u8>, std::fs::File) {
    use std::os::unix::fs::OpenOptionsExt;
    let bundle = dir.join(id);
    std::fs::create_dir_all(&bundle).unwrap();
    std::fs::write(bundle.join("config.json"), r#"{"annotations":{}}"#).unwrap();
    nix::unistd::mkfifo(
        &bundle.join("log"),
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    )
    .unwrap();
    let log = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(bundle.join("log"))
        .unwrap();
    let config = dir.join("shim.toml");
    std::fs::write(
        &config,
        format!("[runtime]\nroot = \"{}/oci\"\n", dir.display()),
    )
    .unwrap();
    let mut child = Command::new("sh")
        .args(["-c", "umask 000; exec \"$0\" \"$@\"", SHIM])
        .args(["-namespace", "podshim-test", "-id", id, "-address"])
        .arg(dir.join("containerd.sock"))
        .args(["-publish-binary", "/bin/true", "start"])
        .current_dir(&bundle)
        .env("TTRPC_ADDRESS", dir.join("containerd.sock.ttrpc"))
        .env("PODSHIM_CONFIG", &config)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "start failed: {out:?}");
    // containerd reads both streams as one reply.
    ([out.stdout, out.stderr].concat(), log)
}

/// The pod shim serving `address`: SIGKILLed, its socket removed.
fn kill_shim(address: &str) {
    let socket = address.trim_start_matches("unix://");
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline);
        if cmdline.contains(SHIM) && cmdline.contains(socket) {
            let pid: i32 = e.file_name().to_string_lossy().parse().unwrap();
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
    let _ = std::fs::remove_file(socket);
}

fn check(started: &Started) {
    assert_eq!(started.version, 3, "task API v3");
    assert_eq!(started.protocol, "ttrpc");
    assert!(
        started.address.starts_with("unix:///run/containerd/s/"),
        "address {}",
        started.address
    );
    let socket = started.address.trim_start_matches("unix://");
    let connected = std::os::unix::net::UnixStream::connect(socket);
    let mode = std::fs::metadata(socket).map(|m| m.permissions().mode() & 0o777);
    kill_shim(&started.address);
    connected.expect("the started shim accepts on its address");
    assert_eq!(
        mode.unwrap(),
        0o600,
        "the shim's socket is its owner's alone"
    );
}

#[test]
fn containerd_2_3_bootstrap_params_get_a_bootstrap_result() {
    let dir = tempfile::tempdir().unwrap();
    let params = BootstrapParams {
        instance_id: "boot23".into(),
        namespace: "podshim-test".into(),
        containerd_version: "2.3.4".into(),
        containerd_ttrpc_address: dir
            .path()
            .join("containerd.sock.ttrpc")
            .display()
            .to_string(),
        containerd_grpc_address: dir.path().join("containerd.sock").display().to_string(),
        containerd_binary: "/bin/true".into(),
        ..Default::default()
    };
    let (out, _log) = start(dir.path(), "boot23", &params.write_to_bytes().unwrap());
    let result = BootstrapResult::parse_from_bytes(&out).unwrap_or_else(|e| {
        panic!(
            "not a BootstrapResult ({e}): {:?}",
            String::from_utf8_lossy(&out)
        )
    });
    check(&Started {
        address: result.address.clone(),
        version: result.version,
        protocol: result.protocol.clone(),
    });
}

#[test]
fn containerd_2_1_flags_get_the_json_reply() {
    let dir = tempfile::tempdir().unwrap();
    let (out, _log) = start(dir.path(), "boot21", b"");
    let reply: serde_json::Value = serde_json::from_slice(out.trim_ascii())
        .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&out)));
    check(&Started {
        address: reply["address"].as_str().unwrap_or_default().into(),
        version: reply["version"].as_i64().unwrap_or_default() as i32,
        protocol: reply["protocol"].as_str().unwrap_or_default().into(),
    });
}
