//! Issue #15, items 19 and 20: locks judged by clocks drctl can trust, cron as cron means it,
//! and commands that expand only the `${VAR}`s they use.

use crate::support::*;
use std::path::Path;

/// A workspace with one files source (`docs`) on the fs storage `store`.
fn files_workspace() -> (tempfile::TempDir, Workspace) {
    let src = tempfile::tempdir().unwrap();
    std::fs::write(src.path().join("a.txt"), "alpha").unwrap();
    let ws = Workspace::new();
    ws.write_config(
        &ws.fs_storage_toml("store"),
        &format!(
            "[[source]]\nname = \"docs\"\ntype = \"files\"\npaths = [\"{}\"]\n",
            src.path().display()
        ),
    );
    (src, ws)
}

/// Writes a backup's shared lock as another host would: `refreshed` by that host's clock,
/// `offset_minutes` away from ours.
fn foreign_backup_lock(locks: &Path, name: &str, offset_minutes: i64) -> std::path::PathBuf {
    std::fs::create_dir_all(locks).unwrap();
    let t = (chrono::Utc::now() + chrono::Duration::minutes(offset_minutes)).to_rfc3339();
    let p = locks.join(name);
    std::fs::write(
        &p,
        format!(r#"{{"kind":"shared","operation":"backup (nightly)","host":"other-host","pid":4242,"created":"{t}","refreshed":"{t}"}}"#),
    )
    .unwrap();
    p
}

/// Sets a file's mtime `minutes` into the past: what the storage's clock says when nobody
/// has rewritten (refreshed) the lock object for that long.
fn age_file(p: &Path, minutes: u64) {
    let t = std::time::SystemTime::now() - std::time::Duration::from_secs(minutes * 60);
    std::fs::File::options()
        .write(true)
        .open(p)
        .unwrap()
        .set_modified(t)
        .unwrap();
}

#[test]
fn prune_does_not_take_the_exclusive_lock_over_a_backup_whose_host_clock_differs() {
    let (_src, ws) = files_workspace();
    let locks = ws.fs_root("store").join("locks");
    // The backup host's clock is 16 minutes behind ours (we are 16 minutes ahead): its lock,
    // refreshed just now, says "16 minutes ago". It is live.
    let behind = foreign_backup_lock(&locks, "20260101T000000Z-behind.json", -16);
    let (code, _, err) = ws.run(&["prune", "--lock-wait", "2s"]);
    assert_eq!(
        code, 1,
        "prune must wait for the backup, not call its lock stale: {err}"
    );
    assert!(
        err.contains("is locked by backup (nightly) (shared lock) on host other-host"),
        "{err}"
    );
    // `unlock` keeps it and says why.
    let out = ws.ok(&["unlock"]);
    assert!(
        out.contains("kept live lock: backup (nightly)") && out.contains("by the storage's clock"),
        "{out}"
    );
    assert!(behind.exists());
    std::fs::remove_file(&behind).unwrap();

    // A host 16 minutes ahead: live too.
    let ahead = foreign_backup_lock(&locks, "20260101T000000Z-ahead.json", 16);
    let (code, _, err) = ws.run(&["prune", "--lock-wait", "2s"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("on host other-host"), "{err}");

    // Not rewritten for 16 minutes by the storage's own clock: stale, whatever it says
    // inside ("refreshed" 16 minutes in the future here). Prune goes ahead.
    age_file(&ahead, 16);
    let out = ws.ok(&["prune", "--lock-wait", "2s"]);
    assert!(!out.contains("locked"), "{out}");
    let out = ws.ok(&["unlock"]);
    assert!(
        out.contains("removed stale lock: backup (nightly)") && out.contains("not refreshed for 16m"),
        "{out}"
    );
    assert!(!ahead.exists());
}

#[test]
fn validate_rejects_a_schedule_that_never_runs() {
    let (_src, ws) = files_workspace();
    let cfg = ws.config_text();
    ws.set_config(&format!(
        "{cfg}\n[[job]]\nname = \"leap\"\nschedule = \"0 3 30 2 *\"\nsources = [\"docs\"]\n"
    ));
    let (code, out, err) = ws.run(&["validate"]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(
        err.contains("job[0] ('leap'): schedule '0 3 30 2 *': never runs: February has no day 30"),
        "{err}"
    );
}

#[test]
fn status_shows_the_or_of_day_of_month_and_day_of_week_as_next_run() {
    // "0 3 1 * 1": the 1st of the month AND every Monday (cron ORs the two). The next run
    // shown is never more than a week away; with AND it would be months away.
    let (_src, ws) = files_workspace();
    let cfg = ws.config_text();
    ws.set_config(&format!(
        "{cfg}\n[[job]]\nname = \"weekly\"\nschedule = \"0 3 1 * 1\"\nsources = [\"docs\"]\n"
    ));
    let st: serde_json::Value = serde_json::from_str(&ws.ok(&["status", "--json"])).unwrap();
    let text = st.to_string();
    let next = st["sources"]
        .as_array()
        .and_then(|a| a.iter().find_map(|s| s["next_run"].as_str()))
        .unwrap_or_else(|| panic!("a next_run in {text}"));
    let next: chrono::DateTime<chrono::Utc> = next.parse().unwrap();
    assert!(next - chrono::Utc::now() <= chrono::Duration::days(7), "{next}");
}

#[test]
fn restore_and_verify_run_without_the_production_database_password() {
    let _g = exclusive();
    let (_pg, ws) = verify_setup("");
    ws.ok(&["backup"]);
    // The CI copy of the config: the production password comes from a variable CI lacks.
    let cfg = ws.config_text().replace("${DRCTL_PG_PASSWORD}", "${PROD_DB_PASSWORD}");
    assert!(cfg.contains("${PROD_DB_PASSWORD}"), "{cfg}");
    ws.set_config(&cfg);

    let out_dir = ws.path().join("restored");
    let out = ws.restore_ok(&out_dir);
    assert!(out.contains("wrote"), "{out}");
    let (code, out, err) = ws.run(&["verify", "--identity", ws.identity.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.starts_with("PASS app-db"), "{out}");

    // What does need it still refuses, naming the variable and the key.
    let (code, _, err) = ws.run(&["backup"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("source[0].url: environment variable PROD_DB_PASSWORD is not set"),
        "{err}"
    );
    let (code, _, err) = ws.run(&["validate"]);
    assert_eq!(code, 2);
    assert!(err.contains("PROD_DB_PASSWORD is not set"), "{err}");
}
