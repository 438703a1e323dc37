//! Progress bars (bytes, rate, ETA) for long operations, shown only on a terminal with text
//! logs: a log shipper or a `--json` consumer never sees them.

use std::sync::atomic::{AtomicBool, Ordering};

static ENABLED: AtomicBool = AtomicBool::new(false);

/// Called once by `main`.
pub fn enable(on: bool) {
    ENABLED.store(on, Ordering::Relaxed);
}

/// A byte progress bar, or a hidden one when progress is off.
pub fn bytes(total: u64, what: &str) -> indicatif::ProgressBar {
    if !ENABLED.load(Ordering::Relaxed) {
        return indicatif::ProgressBar::hidden();
    }
    let pb = indicatif::ProgressBar::new(total);
    pb.set_style(
        indicatif::ProgressStyle::with_template("{msg:20} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}")
            .expect("static template")
            .progress_chars("=> "),
    );
    pb.set_message(what.to_string());
    pb
}
