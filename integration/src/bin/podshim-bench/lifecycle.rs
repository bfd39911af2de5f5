//! A container's create, start, stop and remove in a running pod.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::Result;
use podshim_integration::{sh, Containerd};

use crate::args::Args;
use crate::pods::*;
use crate::results::*;

pub(crate) async fn lifecycle(c: &Containerd, a: &Args, r: &mut Results) -> Result<()> {
    let mut pods = BTreeMap::new();
    for h in &a.handlers {
        pods.insert(
            h.clone(),
            start_pod(c, h, format!("life-{h}"), 0).await?.pod,
        );
    }
    for i in 0..a.lifecycle {
        for h in &a.handlers {
            let pod = &pods[h];
            let t = Instant::now();
            let id = c.create_container(pod, sleeper(&format!("c{i}"))).await?;
            r.rec(
                "container lifecycle",
                "CreateContainer",
                "ms",
                h,
                ms(t.elapsed()),
            );
            let t = Instant::now();
            c.cri.start_container(&id).await?;
            r.rec(
                "container lifecycle",
                "StartContainer",
                "ms",
                h,
                ms(t.elapsed()),
            );
            // Let the shell install its trap (a TERM before that is ignored by a pid 1).
            tokio::time::sleep(Duration::from_millis(100)).await;
            let t = Instant::now();
            c.cri.stop_container(&id, 10).await?;
            r.rec(
                "container lifecycle",
                "StopContainer (TERM trapped, a child `sleep` running)",
                "ms",
                h,
                ms(t.elapsed()),
            );
            let t = Instant::now();
            c.cri.remove_container(&id).await?;
            r.rec(
                "container lifecycle",
                "RemoveContainer",
                "ms",
                h,
                ms(t.elapsed()),
            );
        }
        if (i + 1) % 10 == 0 || i + 1 == a.lifecycle {
            progress(&format!("container lifecycle: {}/{}", i + 1, a.lifecycle));
        }
    }
    // The same stop when the child does not hold the container's stdout/stderr.
    let lone = "trap 'exit 0' TERM; sleep 1000000 </dev/null >/dev/null 2>&1 & wait";
    for i in 0..a.lifecycle.min(20) {
        for h in &a.handlers {
            let pod = &pods[h];
            let id = c.run_container(pod, sh(&format!("lone{i}"), lone)).await?;
            tokio::time::sleep(Duration::from_millis(100)).await;
            let t = Instant::now();
            c.cri.stop_container(&id, 10).await?;
            r.rec(
                "container lifecycle",
                "StopContainer (TERM trapped, child `sleep` on /dev/null)",
                "ms",
                h,
                ms(t.elapsed()),
            );
            c.cri.remove_container(&id).await?;
        }
    }
    for pod in pods.values() {
        c.remove_pod(pod).await?;
    }
    Ok(())
}
