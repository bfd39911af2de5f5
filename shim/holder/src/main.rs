//! `podshim-holder`: see the crate's documentation (lib.rs). With panic = "abort" (the release
//! profile, as shipped) it is a `no_std` program; debug builds link std, which they need for
//! unwinding panics.
#![cfg_attr(panic = "abort", no_std)]
#![cfg_attr(not(test), no_main)]
#![deny(unsafe_code)]

// The C entry point: the one place of this binary that takes raw pointers.
#[cfg(not(test))]
#[allow(unsafe_code)]
mod entry {
    use core::ffi::{c_char, c_int, CStr};

    /// Arguments past this many are refused (a pod's sysctls are a handful).
    const MAX_ARGS: usize = 256;

    // Without std nothing else links the C library, which holds `_start`, `main`'s caller.
    // Static glibc also needs libgcc's unwinder, which its own cleanup code calls.
    #[cfg(panic = "abort")]
    #[link(name = "c")]
    #[cfg_attr(target_env = "gnu", link(name = "gcc_eh"), link(name = "gcc"))]
    extern "C" {}

    #[cfg(panic = "abort")]
    #[panic_handler]
    fn panic(_: &core::panic::PanicInfo) -> ! {
        // Nothing in the holder panics on input (it parses with Results); a bug still must not
        // leave a half-made pod sleeping.
        // SAFETY: abort only ends the process.
        unsafe { libc::abort() }
    }

    #[no_mangle]
    extern "C" fn main(argc: c_int, argv: *const *const c_char) -> c_int {
        let argc = usize::try_from(argc).unwrap_or(0);
        if argc > MAX_ARGS {
            return 2;
        }
        let mut args: [&CStr; MAX_ARGS] = [c""; MAX_ARGS];
        for (i, slot) in args.iter_mut().enumerate().take(argc).skip(1) {
            // SAFETY: the C runtime passes argc valid, NUL-terminated strings that live as long as
            // the process.
            *slot = unsafe { CStr::from_ptr(*argv.add(i)) };
        }
        podshim_holder::hold(&args[1..argc.max(1)])
    }
}
