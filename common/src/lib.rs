//! What podshim's host daemons (podshim-snapshotter, podshim-sandboxer) share: containerd reaches
//! each of them as a proxy plugin over a unix socket that only root may open.

pub mod socket;
mod sys;
