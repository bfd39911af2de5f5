//! CRI container logs written by containerd from the shim's stdout/stderr.

use std::time::Duration;

use anyhow::{ensure, Result};
use podshim_integration::{logs, sh, Containerd};

/// Tags, streams, a final line without newline, a line longer than max_container_log_line_size.
pub async fn cri_log_format(c: &mut Containerd) -> Result<()> {
    let max = c.opts.max_container_log_line_size as usize;
    ensure!(
        max == 1024,
        "this case expects max_container_log_line_size = 1024, got {max}"
    );
    let pod = c.run_pod("logs").await?;
    let cfg = sh(
        "writer",
        "echo out1; echo err1 >&2; echo out2; echo; head -c 3000 /dev/zero | tr '\\0' x; echo; \
         printf 'tab\\there\\n'; echo err2 >&2; printf abcd",
    );
    let log = pod.log_file(&cfg);
    let id = c.run_container(&pod, cfg).await?;
    let st = c.cri.wait_exited(&id, Duration::from_secs(20)).await?;
    ensure!(st.exit_code == 0, "writer exit code {}", st.exit_code);
    ensure!(
        st.log_path == log.to_string_lossy(),
        "ContainerStatus.log_path {:?}, want {}",
        st.log_path,
        log.display()
    );
    let lines = logs::wait_for(&log, Duration::from_secs(10), |l| {
        l.iter().any(|x| x.stream == "stdout" && x.msg == "abcd")
            && l.iter().any(|x| x.msg == "err2")
    })
    .await?;

    let out = logs::full_lines(&lines, "stdout");
    let long = "x".repeat(3000);
    let want_out = vec!["out1", "out2", "", long.as_str(), "tab\there", "abcd"];
    ensure!(
        out == want_out,
        "stdout lines {:?}",
        out.iter().map(|s| shorten(s)).collect::<Vec<_>>()
    );
    ensure!(
        logs::full_lines(&lines, "stderr") == vec!["err1", "err2"],
        "stderr lines {:?}",
        logs::full_lines(&lines, "stderr")
    );

    let stdout: Vec<_> = lines.iter().filter(|l| l.stream == "stdout").collect();
    // The final chunk without newline is a partial line.
    let last = stdout.last().unwrap();
    ensure!(
        last.tag == 'P' && last.msg == "abcd",
        "last stdout line is {last:?}, want `stdout P abcd`"
    );
    // The 3000-byte line is split into P chunks of max size, then F.
    let chunks: Vec<_> = stdout
        .iter()
        .filter(|l| l.msg.starts_with('x'))
        .map(|l| (l.tag, l.msg.len()))
        .collect();
    ensure!(
        chunks == vec![('P', 1024), ('P', 1024), ('F', 952)],
        "long line chunks {chunks:?}"
    );
    // Every other line is complete.
    for l in &lines {
        if !l.msg.starts_with('x') && l.msg != "abcd" {
            ensure!(l.tag == 'F', "unexpected partial line {l:?}");
        }
    }
    // Timestamps never go backwards within a stream.
    for s in ["stdout", "stderr"] {
        let ts: Vec<&str> = lines
            .iter()
            .filter(|l| l.stream == s)
            .map(|l| l.time.as_str())
            .collect();
        let mut sorted = ts.clone();
        sorted.sort();
        ensure!(ts == sorted, "{s} timestamps go backwards: {ts:?}");
    }
    Ok(())
}

/// Many lines quickly: none lost, none reordered, none duplicated.
pub async fn cri_log_volume(c: &mut Containerd) -> Result<()> {
    let pod = c.run_pod("volume").await?;
    let n = 20000;
    let cfg = sh("seq", &format!("seq 1 {n}; seq 1 {n} >&2"));
    let log = pod.log_file(&cfg);
    let id = c.run_container(&pod, cfg).await?;
    let st = c.cri.wait_exited(&id, Duration::from_secs(60)).await?;
    ensure!(st.exit_code == 0, "exit code {}", st.exit_code);
    let want: Vec<String> = (1..=n).map(|i| i.to_string()).collect();
    let lines = logs::wait_for(&log, Duration::from_secs(20), |l| {
        logs::full_lines(l, "stdout").len() >= n && logs::full_lines(l, "stderr").len() >= n
    })
    .await?;
    for s in ["stdout", "stderr"] {
        let got = logs::full_lines(&lines, s);
        ensure!(
            got == want,
            "{s}: {} lines, first mismatch at {:?}",
            got.len(),
            got.iter().zip(&want).position(|(a, b)| a != b)
        );
    }
    Ok(())
}

fn shorten(s: &str) -> String {
    if s.len() > 40 {
        format!("{}…({} bytes)", &s[..20], s.len())
    } else {
        s.to_string()
    }
}
