//! What podshim-sandboxer asks of a pod shim beyond containerd's Sandbox API, on the same ttrpc
//! socket. containerd's `sandbox.proto` defines `UpdateSandboxRequest` and its response but no
//! RPC carries them (up to 2.3.4), so the pod shim serves one under a service of podshim's own
//! name: a shim that predates it answers INVALID_ARGUMENT "<service> service does not exist"
//! (ttrpc's words), never a wrong call.

/// The ttrpc service name.
pub const SERVICE: &str = "podshim.sandbox.v1.Pod";

/// In-place pod resize. Request: containerd's `containerd.runtime.sandbox.v1.UpdateSandboxRequest`
/// whose `resources` is CRI's `updated-resources` extension as containerd stored it
/// (`io.containerd.cri.v1/UpdatedResources`, JSON). Response: `UpdateSandboxResponse` (empty).
pub const UPDATE_SANDBOX: &str = "UpdateSandbox";
