//! drctl: backup and disaster recovery for a one-VPS stack.
//!
//! A backup is one streaming pass: source → hash → compress → encrypt → hash → storages,
//! then a manifest. A restore is the same pass backwards into a target.

pub mod archive;
pub mod backup;
pub mod catalog;
pub mod check;
pub mod cli;
pub mod commands;
pub mod compose;
pub mod config;
pub mod copy;
pub mod daemon;
pub mod durable;
pub mod events;
pub mod fetch;
pub mod jobs;
pub mod keys;
pub mod layout;
pub mod lock;
pub mod metrics;
pub mod pin;
pub mod pipeline;
pub mod place;
pub mod process;
pub mod progress;
pub mod prune;
pub mod restore;
pub mod retention;
pub mod schedule;
pub mod secret;
pub mod sources;
pub mod state;
pub mod storage;
pub mod tarball;
pub mod units;
pub mod verification;
pub mod verify;

/// `$XDG_STATE_HOME` as this process found it at the first call. `storage::ssh::ControlDir`
/// calls this before it points the variable at the process's own ssh control directory, so code
/// that means the operator's state directory reads it here.
pub fn xdg_state_home() -> Option<std::ffi::OsString> {
    static FOUND: std::sync::OnceLock<Option<std::ffi::OsString>> = std::sync::OnceLock::new();
    FOUND.get_or_init(|| std::env::var_os("XDG_STATE_HOME")).clone()
}

/// Whether this process runs as root (uid 0): decides the default state dir, whether the
/// verify sandbox runs as `postgres`, and whether extracted files keep their owners.
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}
