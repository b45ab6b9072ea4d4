//! Lays out together the functions `steward serve` runs from exec until idle
//! (listed in `start-up.order` by `scripts/order-start-up`). The kernel maps
//! the executable 64 KB around each page it first runs, so start-up code
//! spread over the whole binary kept most of it resident: 33 MB idle against
//! 20 MB laid out (docs/PERFORMANCE.md, "Start-up code laid out together").
//!
//! Only release builds for x86-64 Linux with Rust's own linker (rust-lld, the
//! default there) take the order: mold and GNU ld do not read one. A name the
//! build no longer has is skipped, so a stale list costs memory, not a build.

use std::env;

fn main() {
    println!("cargo:rerun-if-changed=start-up.order");
    let var = |name: &str| env::var(name).unwrap_or_default();
    let release = var("PROFILE") == "release";
    let x86_64_linux = var("CARGO_CFG_TARGET_ARCH") == "x86_64"
        && var("CARGO_CFG_TARGET_OS") == "linux"
        && var("CARGO_CFG_TARGET_ENV") == "gnu";
    if !release || !x86_64_linux {
        return;
    }
    // A linker chosen in RUSTFLAGS or the cargo configuration (mold here, to
    // build faster) instead of the default.
    let rustflags = var("CARGO_ENCODED_RUSTFLAGS");
    let other_linker = !var("RUSTC_LINKER").is_empty()
        || (rustflags.contains("-fuse-ld=") && !rustflags.contains("-fuse-ld=lld"))
        || rustflags.contains("linker=");
    if other_linker {
        println!(
            "cargo:warning=start-up.order not applied: a linker other than rust-lld is chosen \
             (RUSTFLAGS or cargo's configuration), so an idle server keeps about 14 MB more of \
             its executable resident"
        );
        return;
    }
    let order = format!("{}/start-up.order", var("CARGO_MANIFEST_DIR"));
    println!("cargo:rustc-link-arg-bin=steward=-Wl,--symbol-ordering-file={order}");
    println!("cargo:rustc-link-arg-bin=steward=-Wl,--no-warn-symbol-ordering");
}
