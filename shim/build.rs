//! Link the shim binary as a position-dependent executable: a PIE's load-time relocations dirty
//! about half a megabyte of pages in every pod's shim, and nothing in a shim needs ASLR of its
//! own text more than the node needs the memory back. A static build (`make build`) gets the
//! same from `-C relocation-model=static`, and must not be told `-no-pie` on top.

fn main() {
    let features = std::env::var("CARGO_CFG_TARGET_FEATURE").unwrap_or_default();
    if !features.split(',').any(|f| f == "crt-static") {
        println!("cargo:rustc-link-arg-bins=-no-pie");
    }
}
