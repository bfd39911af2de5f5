//! `podshim-holder`: a pause-less pod's namespace holder as its own small binary.
//!
//! The shim would otherwise re-execute itself for each pod's holder, and a process's resident
//! set counts every page of its binary it touches (with the page cache's large folios, about
//! half of the shim's text). This binary links only the holder's code: ~130 kB resident
//! instead of ~740 kB, for a process that lives as long as the pod.

use podshim_shim::sandbox::holder;

fn main() {
    let args: Vec<_> = std::env::args_os().collect();
    holder::holder_main(args.get(1..).unwrap_or_default());
}
