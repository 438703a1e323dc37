//! All tests run in one process, two or more at a time. Most keep to their own temp dirs and
//! ports, but a few look at the whole machine: every `drctl-verify-*` temp dir and process
//! (`verify_leftovers`, a docker engine's containers), or every process's command line (the
//! secrets test). Such a test holds `exclusive()`; a test that leaves those traces while it runs
//! (a verification sandbox, a password on a command line: `redis-server --requirepass` before
//! it renames itself, `redis-cli -u` in a runbook) holds `shared()`, so it never runs alongside.

use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

static MACHINE: RwLock<()> = RwLock::new(());

/// No test that holds `shared()` runs until this guard drops.
pub fn exclusive() -> RwLockWriteGuard<'static, ()> {
    MACHINE.write().unwrap_or_else(PoisonError::into_inner)
}

/// No test that holds `exclusive()` runs until this guard drops.
pub fn shared() -> RwLockReadGuard<'static, ()> {
    MACHINE.read().unwrap_or_else(PoisonError::into_inner)
}
