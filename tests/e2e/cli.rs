//! The commands a newcomer meets first: keygen and validate, and the messages they print.

use crate::support::*;
use std::os::unix::fs::PermissionsExt;

#[test]
fn keygen_writes_0600_refuses_overwrite_and_matches_age_keygen_format() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("key.txt");
    let out = drctl_cmd(dir.path())
        .args(["keygen", "--output"])
        .arg(&key)
        .output()
        .unwrap();
    assert!(out.status.success());
    let recipient = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);
    let text = std::fs::read_to_string(&key).unwrap();
    assert!(text.contains(&format!("# public key: {recipient}")), "{text}");
    assert!(text.lines().any(|l| l.starts_with("AGE-SECRET-KEY-1")), "{text}");
    // Stock age derives the same public key from it.
    let y = std::process::Command::new("age-keygen")
        .arg("-y")
        .arg(&key)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8(y.stdout).unwrap().trim(), recipient);

    let before = std::fs::read(&key).unwrap();
    let out = drctl_cmd(dir.path())
        .args(["keygen", "--output"])
        .arg(&key)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("already exists") && err.contains("refusing to overwrite"),
        "{err}"
    );
    assert_eq!(std::fs::read(&key).unwrap(), before, "identity was changed");
}

#[test]
fn validate_prints_every_error_with_key_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("drctl.toml"),
        r#"
[encryption]
recipients = ["age1notakey"]
[compression]
algorithm = "zstd"
level = 40
[[storage]]
name = "r2"
type = "s3"
bucket = "b"
access_key_id = "${DRCTL_SURELY_UNSET_KEY}"
secret_access_key = "x"
[[source]]
name = "app-db"
type = "postgres"
url = "postgres://app@127.0.0.1:5432/app"
pasword_file = "typo"
"#,
    )
    .unwrap();
    private(&dir.path().join("drctl.toml"));
    let out = drctl_cmd(dir.path()).arg("validate").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    for needle in [
        "storage[0].access_key_id",
        "DRCTL_SURELY_UNSET_KEY is not set",
        "source[0] ('app-db')",
        "pasword_file",
        "level: 40 is out of range",
        "'age1notakey' is not an age public key",
    ] {
        assert!(err.contains(needle), "missing {needle:?} in:\n{err}");
    }
}

#[test]
fn missing_config_says_how_to_get_one() {
    let dir = tempfile::tempdir().unwrap();
    let out = drctl_cmd(dir.path()).arg("list").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("drctl.toml") && err.contains("--config"), "{err}");
}

#[test]
fn restore_refuses_a_password_on_the_command_line() {
    let ws = Workspace::new();
    ws.write_config(&ws.fs_storage_toml("local"), "");
    let (code, _, err) = ws.run(&[
        "restore",
        "--at",
        "now",
        "--source",
        "x",
        "--target-url",
        "postgres://u:topsecret@127.0.0.1:1/db",
    ]);
    assert_eq!(code, 1);
    assert!(
        err.contains("password on the command line") && err.contains("PGPASSWORD"),
        "{err}"
    );
}

#[test]
fn validate_names_bad_cron_and_time_zone() {
    let ws = Workspace::new();
    ws.write_config(
        &ws.fs_storage_toml("local"),
        "[[source]]\nname = \"app-db\"\ntype = \"postgres\"\nurl = \"postgres://a@h/db\"\n\n\
         [[job]]\nname = \"nightly\"\nschedule = \"61 3 * * *\"\nsources = [\"nope\"]\nmax_age = \"soon\"\n",
    );
    ws.daemon_settings("timezone = \"Mars/Olympus\"");
    let (code, _, err) = ws.run(&["validate"]);
    assert_eq!(code, 2);
    for needle in [
        "job[0] ('nightly'): schedule '61 3 * * *': minute 61 out of range (0-59)",
        "job[0] ('nightly').sources: no source named 'nope'",
        "job[0] ('nightly').max_age: 'soon' is not a duration",
        "daemon.timezone: 'Mars/Olympus' is not an IANA time zone",
    ] {
        assert!(err.contains(needle), "missing {needle:?} in:\n{err}");
    }
}

#[test]
fn configs_and_identities_others_can_read_are_refused_with_a_hint() {
    use std::os::unix::fs::PermissionsExt;
    let ws = Workspace::new();
    let cfg = ws.write_config(&ws.fs_storage_toml("local"), "");
    std::fs::set_permissions(&cfg, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (code, _, err) = ws.run(&["validate"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("can be read by group or others (mode 644)")
            && err.contains(&format!("chmod 600 {}", cfg.display())),
        "{err}"
    );
    let (code, _, _) = ws.run_env(&["validate"], &[("DRCTL_ALLOW_INSECURE_PERMISSIONS", "1")]);
    assert_eq!(code, 0, "the override is honoured");
    private(&cfg);
    std::fs::set_permissions(&ws.identity, std::fs::Permissions::from_mode(0o640)).unwrap();
    let (code, _, err) = ws.run(&["verify", "--identity", ws.identity.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains("identity file") && err.contains("chmod 600"), "{err}");
}

#[test]
fn init_writes_a_valid_private_config_and_identity_and_refuses_to_overwrite() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let out = drctl_cmd(dir.path())
        .args(["init", "--dir", "site"])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("OFF this machine") && stdout.contains("password manager"),
        "{stdout}"
    );
    let site = dir.path().join("site");
    for f in ["drctl.toml", "identity.txt"] {
        assert_eq!(
            std::fs::metadata(site.join(f)).unwrap().permissions().mode() & 0o777,
            0o600,
            "{f}"
        );
    }
    let recipient = String::from_utf8(
        std::process::Command::new("age-keygen")
            .arg("-y")
            .arg(site.join("identity.txt"))
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    assert!(std::fs::read_to_string(site.join("drctl.toml"))
        .unwrap()
        .contains(recipient.trim()));
    let v = drctl_cmd(dir.path())
        .args(["validate", "--config", "site/drctl.toml"])
        .output()
        .unwrap();
    assert!(v.status.success(), "{}", String::from_utf8_lossy(&v.stderr));
    let again = drctl_cmd(dir.path()).args(["init", "--dir", "site"]).output().unwrap();
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("refusing to overwrite"));
}

#[test]
fn a_config_without_recipients_says_how_to_get_one() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("drctl.toml"),
        "[encryption]\nrecipients = []\n[[storage]]\nname = \"l\"\ntype = \"fs\"\nroot = \"b\"\n",
    )
    .unwrap();
    private(&dir.path().join("drctl.toml"));
    let out = drctl_cmd(dir.path()).arg("validate").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("encryption.recipients: empty") && err.contains("drctl keygen"),
        "{err}"
    );
}

#[test]
fn an_unreachable_storage_is_named_with_a_hint() {
    let ws = Workspace::new();
    let port = free_port();
    ws.write_config(
        &format!(
            "[[storage]]\nname = \"r2\"\ntype = \"s3\"\nbucket = \"b\"\nendpoint = \"http://127.0.0.1:{port}\"\nregion = \"auto\"\naccess_key_id = \"k\"\nsecret_access_key = \"s\"\n"
        ),
        "",
    );
    let (code, _, err) = ws.run(&["list"]);
    assert_eq!(code, 1);
    assert!(err.contains("storage 'r2'") && err.contains("reachable"), "{err}");
}
