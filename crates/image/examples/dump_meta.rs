//! Prints every field of an image's `meta` (a debugging aid): `cargo run --example dump_meta DIR`.
fn main() {
    let dir = std::env::args().nth(1).expect("usage: dump_meta DIR");
    let bytes = std::fs::read(format!("{dir}/meta")).expect("read meta");
    let m = zhuque_image::decode(&bytes).expect("decode meta");
    println!(
        "state {:?} generation {} failures {} pid {} pool_end {:#x}",
        m.state, m.generation, m.failures, m.pid, m.pool_end
    );
    for r in &m.regions {
        println!(
            "{:#014x}-{:#014x} prot {} {:?}",
            r.start,
            r.end,
            r.prot,
            match &r.backing {
                zhuque_image::Backing::File {
                    file,
                    offset,
                    shared,
                    may_write,
                    ..
                } => format!(
                    "file {} off {offset:#x} shared {shared} may_write {may_write}",
                    String::from_utf8_lossy(&file.path)
                ),
                other => format!("{other:?}"),
            }
        );
    }
    for t in &m.threads {
        println!("{t:x?}");
    }
    println!(
        "stack copy {:#x} + {}",
        m.stack_copy.start,
        m.stack_copy.bytes.len()
    );
}
