//! Where an operation's CPU goes, by process: containerd itself, what containerd runs and reaps
//! (CNI plugins, the shim's `start`), the pod's shim itself, what the shim runs and reaps (the
//! OCI runtime, and an exec's process), and podshim-sandboxer; see [`cpu`] for the sources.

use std::ops::Sub;

use podshim_integration::Containerd;

use crate::procs::sandboxer_overhead;
use crate::results::Results;

/// CPU milliseconds a set of processes used themselves, and their reaped children used.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Cpu {
    pub(crate) own: f64,
    pub(crate) children: f64,
}

impl Sub for Cpu {
    type Output = Cpu;
    fn sub(self, o: Cpu) -> Cpu {
        Cpu {
            own: self.own - o.own,
            children: self.children - o.children,
        }
    }
}

impl std::ops::AddAssign for Cpu {
    fn add_assign(&mut self, o: Cpu) {
        self.own += o.own;
        self.children += o.children;
    }
}

/// A one-threaded process's own CPU from the scheduler (`/proc/<pid>/schedstat`, nanoseconds:
/// a shim uses less than one 10 ms tick per pod start); a many-threaded one's from
/// `/proc/<pid>/stat` (utime+stime, 10 ms ticks, which keep the time of threads that exited);
/// reaped children's from `/proc/<pid>/stat` (cutime+cstime). Tick figures are means over
/// many operations.
pub(crate) fn cpu(pids: &[i32]) -> Cpu {
    read_cpu(pids, true)
}

/// As [`cpu`], in ticks always: for a daemon whose threads come and go (a blocking pool), so
/// that the two readings of a difference come from the same counter.
pub(crate) fn cpu_ticks(pids: &[i32]) -> Cpu {
    read_cpu(pids, false)
}

fn read_cpu(pids: &[i32], schedstat_if_one_thread: bool) -> Cpu {
    // USER_HZ, which /proc/<pid>/stat counts in, is 100 on Linux.
    const MS_PER_TICK: f64 = 10.0;
    let mut c = Cpu::default();
    for &pid in pids {
        let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // Fields from 3 on: utime is the 14th, cutime the 16th, num_threads the 20th.
        let f: Vec<f64> = s
            .rsplit(')')
            .next()
            .unwrap_or("")
            .split_whitespace()
            .skip(11)
            .take(7)
            .filter_map(|v| v.parse().ok())
            .collect();
        if f.len() != 7 {
            continue;
        }
        let schedstat = (schedstat_if_one_thread && f[6] == 1.0)
            .then(|| std::fs::read_to_string(format!("/proc/{pid}/schedstat")).ok())
            .flatten()
            .and_then(|s| s.split_whitespace().next()?.parse::<f64>().ok());
        c.own += match schedstat {
            Some(ns) => ns / 1e6,
            None => (f[0] + f[1]) * MS_PER_TICK,
        };
        c.children += (f[2] + f[3]) * MS_PER_TICK;
    }
    c
}

/// containerd's and podshim-sandboxer's CPU now (the daemons every operation goes through).
pub(crate) fn daemons(c: &Containerd) -> (Cpu, f64) {
    let containerd = cpu_ticks(&[c.pid().unwrap_or(0) as i32]);
    let sandboxer: Vec<i32> = sandboxer_overhead(c)
        .into_iter()
        .filter(|&p| c.sandboxer_pid() == Some(p as u32))
        .collect();
    (containerd, cpu_ticks(&sandboxer).own)
}

/// The CPU of `n` operations of one handler, by process.
#[derive(Debug, Default)]
pub(crate) struct Breakdown {
    n: usize,
    containerd: Cpu,
    shim: Cpu,
    sandboxer: f64,
}

impl Breakdown {
    pub(crate) fn add(&mut self, containerd: Cpu, shim: Cpu, sandboxer: f64) {
        self.n += 1;
        self.containerd += containerd;
        self.shim += shim;
        self.sandboxer += sandboxer;
    }

    /// One figure per process, and the node's total, the mean per operation.
    pub(crate) fn record(&self, r: &mut Results, what: &str, handler: &str) {
        if self.n == 0 {
            return;
        }
        let n = self.n as f64;
        let total = self.containerd.own
            + self.containerd.children
            + self.shim.own
            + self.shim.children
            + self.sandboxer;
        for (part, v) in [
            ("node total", total),
            ("containerd", self.containerd.own),
            (
                "containerd's children (CNI, shim start)",
                self.containerd.children,
            ),
            ("shim", self.shim.own),
            (
                "shim's children (OCI runtime, exec'd process)",
                self.shim.children,
            ),
            ("podshim-sandboxer", self.sandboxer),
        ] {
            r.rec(
                "CPU by process (mean per operation)",
                &format!("{what}: {part}"),
                "ms",
                handler,
                v / n,
            );
        }
    }
}
