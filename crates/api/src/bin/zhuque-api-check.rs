//! A test program for `zhuque-api` (`crates/cli/tests/recovery.rs`): it registers a recovery
//! handler counting resumes, computes for a while printing progress, and ends with what the
//! API says: `active`, `failures` and how often the handler ran. Natively: false, 0, 0; under
//! zhuque with N failures: true, N, N.

use std::sync::atomic::{AtomicU64, Ordering};

static HANDLED: AtomicU64 = AtomicU64::new(0);

fn main() {
    let rounds: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(2_000);
    let registered = zhuque::on_recovery(|| {
        HANDLED.fetch_add(1, Ordering::Relaxed);
    });
    println!("registered: {}", registered.is_ok());
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for r in 1..=rounds {
        for i in 0..20_000u64 {
            h = (h ^ i).wrapping_mul(0x100_0000_01b3);
        }
        if r % (rounds / 10).max(1) == 0 {
            println!("round {r}: {h:016x}");
        }
    }
    println!(
        "active {} failures {} handled {}",
        zhuque::active(),
        zhuque::failures(),
        HANDLED.load(Ordering::Relaxed)
    );
}
