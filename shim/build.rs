//! Link the shim binary as a position-dependent executable: a PIE's load-time relocations dirty
//! about half a megabyte of pages in every pod's shim, and nothing in a shim needs ASLR of its
//! own text more than the node needs the memory back. A static build (`make build`) gets the
//! same from `-C relocation-model=static`, and must not be told `-no-pie` on top.

fn main() {
    let features = std::env::var("CARGO_CFG_TARGET_FEATURE").unwrap_or_default();
    if !features.split(',').any(|f| f == "crt-static") {
        println!("cargo:rustc-link-arg-bins=-no-pie");
    }
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        // Each segment starts on a 64 KiB boundary: a section then spans the fewest fault-around
        // windows its size allows, wherever the one before it ends (the padding is never read).
        println!("cargo:rustc-link-arg-bins=-Wl,-z,max-page-size=0x10000");
        cold_text();
    }
}

/// std's backtrace symbolizer, which a shim runs only to print a panic's backtrace (and the
/// `start` and `delete` actions, which other processes run), in one run after .text rather than
/// strewn among hot functions: the kernel maps a file's text 64 KiB
/// around each fault (fault-around), so a window holding one hot function is resident whole, and
/// only a cold run as long as a window stays out of every shim's RSS.
///
/// A linker script fragment (`INSERT` keeps the default script) names the functions whose path is
/// rooted in those crates: with function sections each is `.text.<v0 symbol>`, `_R`, a few path
/// tags, then the root crate `Cs<hash>_<len><name>`. Generics of core and alloc over the
/// symbolizer's types name those crates too, but later (after `Cs<hash>_4core...`), and are left
/// where they are: LLVM merges identical functions, and the copy that stays may be the one hot
/// code calls. ld's globs have no repetition, hence one pattern per tag length.
fn cold_text() {
    const CRATES: [&str; 5] = [
        "5gimli",
        "9addr2line",
        "14rustc_demangle",
        "11miniz_oxide",
        "3std12backtrace_rs",
    ];
    let mut patterns = String::new();
    for tags in 1..=16 {
        for hash in 9..=11 {
            for krate in CRATES {
                patterns.push_str(&format!(
                    "    *(.text._R{}Cs{}_{krate}[0-9s]*)\n",
                    "?".repeat(tags),
                    "?".repeat(hash)
                ));
            }
        }
    }
    // libunwind: only a panic (the backtrace of its message) walks the stack.
    patterns.push_str("    *libunwind.a:*(.text .text.*)\n");
    // Code only a user-namespaced pod's shim runs: its id-mapped rootfs (the rest of the
    // mount path stays hot).
    for userns_only in [
        "_ZN12podshim_shim6rootfs14mount_idmapped",
        "_ZN12podshim_shim6rootfs16idmapped_overlay",
        "_ZN12podshim_shim6rootfs13common_parent",
        "_ZN12podshim_shim6rootfs11parse_range",
        "_ZN12podshim_shim6userns",
        "_ZN12podshim_shim3sys15attach_idmapped",
        "_ZN12podshim_shim3sys19spawn_in_new_userns",
        "_ZN12podshim_shim3sys13owning_userns",
        "_ZN12podshim_shim4spec11io_owner_of",
    ] {
        // `#[cold]` functions are in `.text.unlikely.*`, which the default script puts first.
        patterns.push_str(&format!(
            "    *(.text.{userns_only}* .text.unlikely.{userns_only}*)\n"
        ));
    }
    // Code only a process whose output goes to a log file or a logging binary runs (`ctr run
    // --log-uri`); CRI's processes write into FIFOs.
    for log_uri_only in [
        "_ZN12podshim_shim5stdio6logger",
        "_ZN12podshim_shim5stdio9ProcessIo11open_logger",
        "_ZN12podshim_shim5stdio3uri5parse",
        "_ZN12podshim_shim5stdio3uri8unescape",
        "_ZN12podshim_shim5stdio4copy12copy_to_file",
        "_ZN12podshim_shim5stdio4copy9write_all",
        "_ZN12podshim_shim5stdio4fifo15create_log_file",
        "_ZN12podshim_shim5stdio4fifo13open_log_file",
        "_ZN12podshim_shim3sys14spawn_with_fds",
    ] {
        patterns.push_str(&format!(
            "    *(.text.{log_uri_only}* .text.unlikely.{log_uri_only}*)\n"
        ));
    }
    // Code only the short-lived `start` and `delete` processes run, never a pod's shim.
    for other_process in ["10start_shim", "11delete_shim"] {
        patterns.push_str(&format!(
            "    *(.text._ZN*podshim_shim..service..Service*{other_process}*)\n"
        ));
    }
    for start_only in [
        "_ZN12podshim_shim7service7confine",
        "_ZN12podshim_shim6cgroup4join",
        "_ZN14podshim_common6socket8peer_pid",
        "_ZN12podshim_shim3sys17sched_core_create",
    ] {
        patterns.push_str(&format!(
            "    *(.text.{start_only}* .text.unlikely.{start_only}*)\n"
        ));
    }
    // Code only a rare request runs: CRI's CheckpointContainer (runc's checkpoint, through
    // criu), and the removal of what containerd left of a bundle (bundle_sweep.rs).
    for rare in [
        "_ZN*podshim_shim..runtime..RuncCli*OciRuntime*10checkpoint",
        "_ZN*podshim_shim..task..TaskService*Task*10checkpoint",
        "_ZN*CheckpointMethod*MethodHandler*",
        "_ZN12podshim_shim12bundle_sweep6remove",
    ] {
        patterns.push_str(&format!("    *(.text.{rare}* .text.unlikely.{rare}*)\n"));
    }
    let script =
        format!("SECTIONS\n{{\n  .text.cold :\n  {{\n{patterns}  }}\n}}\nINSERT AFTER .text;\n");
    let path = std::path::Path::new(&std::env::var("OUT_DIR").unwrap()).join("cold-text.ld");
    std::fs::write(&path, script).unwrap();
    println!("cargo:rustc-link-arg-bins=-Wl,-T,{}", path.display());
    cold_rodata();
    println!("cargo:rerun-if-changed=build.rs");
}

/// The read-only data only that cold code reads (the symbolizer's tables, libunwind's CFI
/// parser, the float parsers' and printers' power tables: no shim parses or prints a float),
/// after `.eh_frame`, which nothing reads either under `panic = "abort"`: `.rodata` is resident
/// whole, 64 KiB window by window, and is one window shorter without them. Whatever a pod's
/// shim does read must stay out: nix's errno tables (a shim formats an errno in a pod's
/// ordinary life) made it touch one window of `.rodata.cold` too, 64 KiB more per shim, until
/// they went back (measured with the pages of /proc/<pid>/pagemap).
fn cold_rodata() {
    const SECTIONS: [&str; 7] = [
        ".rodata.*5gimli*",
        ".rodata.*14rustc_demangle*",
        ".rodata.*11miniz_oxide*",
        ".rodata.*dec2flt*",
        ".rodata.*flt2dec*",
        ".rodata._ZN9libunwind*",
        ".rodata._ZN10serde_json2de5POW10*",
    ];
    let mut patterns: String = SECTIONS.iter().map(|s| format!("    *({s})\n")).collect();
    // libunwind's own constants and messages, unnamed by symbol.
    patterns.push_str("    *libunwind.a:*(.rodata .rodata.*)\n");
    let script = format!(
        "SECTIONS\n{{\n  .rodata.cold :\n  {{\n{patterns}  }}\n}}\nINSERT AFTER .eh_frame;\n"
    );
    let path = std::path::Path::new(&std::env::var("OUT_DIR").unwrap()).join("cold-rodata.ld");
    std::fs::write(&path, script).unwrap();
    println!("cargo:rustc-link-arg-bins=-Wl,-T,{}", path.display());
}
