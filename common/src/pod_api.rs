//! The contract between podshim-sandboxer and a pod shim: what the sandboxer sends in
//! containerd's Sandbox API that containerd's own `shim` sandboxer does not (annotations), the
//! values both read alike, and what it asks beyond that API on the same ttrpc socket.
//!
//! Beyond the API: containerd's `sandbox.proto` defines `UpdateSandboxRequest` and its response but no
//! RPC carries them (up to 2.3.4), so the pod shim serves one under a service of podshim's own
//! name: a shim that predates it answers INVALID_ARGUMENT "<service> service does not exist"
//! (ttrpc's words), never a wrong call.

/// The ttrpc service name.
pub const SERVICE: &str = "podshim.sandbox.v1.Pod";

/// In-place pod resize. Request: containerd's `containerd.runtime.sandbox.v1.UpdateSandboxRequest`
/// whose `resources` is CRI's `updated-resources` extension as containerd stored it
/// (`io.containerd.cri.v1/UpdatedResources`, JSON). Response: `UpdateSandboxResponse` (empty).
pub const UPDATE_SANDBOX: &str = "UpdateSandbox";

/// CreateSandbox annotations naming containerd's root and state directories, under which the
/// shim writes the pod's files where CRI expects them (containerd's own `shim` controller sends
/// none; the shim then takes containerd's defaults).
pub const ANNOTATION_CONTAINERD_ROOT: &str = "podshim.io/containerd-root";
pub const ANNOTATION_CONTAINERD_STATE: &str = "podshim.io/containerd-state";

/// SandboxStatus states CRI compares with (anything else counts as not ready).
pub const STATE_READY: &str = "SANDBOX_READY";
pub const STATE_NOTREADY: &str = "SANDBOX_NOTREADY";

/// GOARCH of this build, as containerd's platforms name it (the Platform answer of both).
pub fn architecture() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "powerpc64" => "ppc64le",
        other => other,
    }
}
