//! TCP ports for the harness's own listeners (containerd's CRI streaming server, the registry).
//!
//! A port is chosen below the kernel's ephemeral range, so no connect() or bind(0) anywhere can
//! take it between the config naming it and the server binding it, and leased through a lock
//! file held for the listener's life, so that parallel runs never pick the same one.

use std::fs::File;

use anyhow::{anyhow, bail, Context, Result};

use crate::sys;

/// How many ports below the ephemeral range the harness may use.
const SPAN: u16 = 2000;

pub struct PortLease {
    pub port: u16,
    /// Held while the listener lives.
    _lock: File,
}

pub fn lease() -> Result<PortLease> {
    let (lo, _) = ephemeral_range()?;
    if lo < 1024 + SPAN {
        bail!("the ephemeral port range starts at {lo}: no room below it for the harness's ports");
    }
    let first = lo - SPAN;
    let port = |n: usize| first + n as u16;
    // Something outside the harness may listen there.
    let free = |n: usize| std::net::TcpListener::bind(("127.0.0.1", port(n))).is_ok();
    match sys::lease_number(SPAN as usize, |n| format!("port-{}.lock", port(n)), free)? {
        Some((n, lock)) => Ok(PortLease {
            port: port(n),
            _lock: lock,
        }),
        None => Err(anyhow!("no free port in {first}-{}", lo - 1)),
    }
}

/// `/proc/sys/net/ipv4/ip_local_port_range`.
fn ephemeral_range() -> Result<(u16, u16)> {
    const P: &str = "/proc/sys/net/ipv4/ip_local_port_range";
    let s = std::fs::read_to_string(P).with_context(|| format!("reading {P}"))?;
    let v: Vec<u16> = s
        .split_whitespace()
        .map(|v| v.parse())
        .collect::<Result<_, _>>()
        .with_context(|| format!("parsing {P}: {s:?}"))?;
    match v[..] {
        [lo, hi] => Ok((lo, hi)),
        _ => bail!("parsing {P}: {s:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A port that the kernel may hand to any connect() or bind(0) can be taken between the
    /// config naming it and the server binding it ("bind: address already in use").
    #[test]
    fn leases_are_distinct_and_outside_the_ephemeral_range() {
        let (lo, hi) = ephemeral_range().unwrap();
        let a = lease().unwrap();
        let b = lease().unwrap();
        assert_ne!(a.port, b.port);
        for p in [a.port, b.port] {
            assert!(
                !(lo..=hi).contains(&p),
                "port {p} is in the ephemeral range {lo}-{hi}"
            );
            std::net::TcpListener::bind(("127.0.0.1", p)).expect("a leased port is free");
        }
    }
}
