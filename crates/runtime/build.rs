//! Link flags of `libzhuque.so`.

fn main() {
    // libgcc's unwinder linked in (`libgcc_eh.a`), so that the library does not depend on
    // `libgcc_s.so.1`: every program a tree starts loads this library, and loading libgcc_s
    // too (mapping it, and its constructor's CPUID queries, which trap to the hypervisor in a
    // virtual machine) was a good part of what the library costs a short program. std's
    // `-lgcc_s` comes later on the link line and, with nothing left to resolve, is dropped
    // (`--as-needed`).
    println!("cargo:rustc-link-lib=static:-bundle=gcc_eh");
}
