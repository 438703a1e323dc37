use super::parse;
use std::path::Path;

const KEY: &str = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p";

fn ok(text: &str) -> super::Config {
    parse(text, Path::new("/etc/drctl")).unwrap_or_else(|e| panic!("{e:#?}"))
}

#[test]
fn minimal_config_gets_defaults_and_resolves_paths() {
    let c = ok(&format!(
        r#"
[encryption]
recipients = ["{KEY}"]
[[storage]]
name = "local"
type = "fs"
root = "./backups"
[[source]]
name = "app-db"
type = "postgres"
url = "postgres://app@127.0.0.1:5432/app"
"#
    ));
    assert_eq!(c.compression.algorithm, super::Algorithm::Zstd);
    assert_eq!(c.compression.effective_level(), 3);
    match &c.storages[0] {
        super::StorageConfig::Fs(fs) => assert_eq!(fs.root, Path::new("/etc/drctl/./backups")),
        other => panic!("{other:?}"),
    }
}

#[test]
fn every_error_is_reported_at_once_with_key_and_value() {
    // SAFETY: tests in this module do not read this variable concurrently.
    let errs = parse(
        r#"
bogus = 1
[encryption]
recipients = ["age1nope"]
[compression]
algorithm = "lz4"
[[storage]]
name = "r2"
type = "s3"
bucket = "b"
secret_access_key = "${DRCTL_TEST_SURELY_UNSET_VAR}"
[[storage]]
name = "r2"
type = "fs"
root = "/x"
colour = "blue"
[[source]]
name = "db"
type = "postgres"
url = "mysql://x@h/db"
"#,
        Path::new("."),
    )
    .unwrap_err();
    let all = errs.join("\n");
    for needle in [
        "bogus: unknown key",
        "DRCTL_TEST_SURELY_UNSET_VAR is not set",
        "compression.algorithm",
        "lz4",
        "colour",
    ] {
        assert!(all.contains(needle), "missing {needle:?} in:\n{all}");
    }
    assert!(errs.len() >= 4, "{all}");
}

#[test]
fn semantic_errors_name_the_value() {
    let errs = parse(
        r#"
[encryption]
recipients = ["AGE-SECRET-KEY-1XYZ", "age1nope"]
[compression]
algorithm = "gzip"
level = 12
[[storage]]
name = "bad name"
type = "fs"
root = "/x"
[[storage]]
name = "s3"
type = "s3"
bucket = "b"
endpoint = "not a url"
access_key_id = "k"
[[source]]
name = "db"
type = "postgres"
url = "mysql://x@h/db"
"#,
        Path::new("."),
    )
    .unwrap_err();
    let all = errs.join("\n");
    for needle in [
        "private identity, not a public recipient",
        "'age1nope' is not an age public key",
        "12 is out of range for gzip",
        "'bad name' must be",
        "'not a url' is not a URL",
        "access_key_id and secret_access_key go together",
        "scheme 'mysql'",
    ] {
        assert!(all.contains(needle), "missing {needle:?} in:\n{all}");
    }
}

#[test]
fn missing_encryption_and_storage_are_explained() {
    let errs = parse("", Path::new(".")).unwrap_err().join("\n");
    assert!(errs.contains("encryption: missing section"), "{errs}");
}

#[test]
fn secrets_do_not_show_in_debug() {
    std::env::set_var("DRCTL_TEST_SECRET_FOR_DEBUG", "hunter2-very-secret");
    let c = ok(&format!(
        r#"
[encryption]
recipients = ["{KEY}"]
[[storage]]
name = "r2"
type = "s3"
bucket = "b"
access_key_id = "AKIAEXAMPLE"
secret_access_key = "${{DRCTL_TEST_SECRET_FOR_DEBUG}}"
[[source]]
name = "db"
type = "postgres"
url = "postgres://app:${{DRCTL_TEST_SECRET_FOR_DEBUG}}@h/db"
"#
    ));
    let dbg = format!("{c:?}");
    assert!(!dbg.contains("hunter2"), "{dbg}");
    assert!(!dbg.contains("AKIAEXAMPLE"), "{dbg}");
    assert!(dbg.contains("REDACTED") || dbg.contains("redacted"), "{dbg}");
}

#[test]
fn docker_image_takes_the_dumped_major_and_rejects_non_references() {
    let img = |s: &str| super::VerifyConfig {
        docker_image: s.into(),
        ..Default::default()
    };
    let default = super::VerifyConfig::default();
    assert_eq!(default.docker_image_for(16), Ok(("postgres".into(), "16".into())));
    assert_eq!(
        img("registry.example.com:5000/team/pg:{major}-alpine").docker_image_for(15),
        Ok(("registry.example.com:5000/team/pg".into(), "15-alpine".into()))
    );
    assert_eq!(
        img("registry.example.com:5000/pg").docker_image_for(15),
        Ok(("registry.example.com:5000/pg".into(), "latest".into()))
    );
    let err = img("postgres 16").docker_image_for(16).unwrap_err();
    assert!(err.contains("'postgres 16' is not an image reference"), "{err}");
    assert!(img("").docker_image_for(16).is_err());

    let errs = parse(
        &format!(
            r#"
[encryption]
recipients = ["{KEY}"]
[[storage]]
name = "local"
type = "fs"
root = "/x"
[verify]
sandbox = "docker"
docker_image = "post gres"
"#
        ),
        Path::new("."),
    )
    .unwrap_err();
    assert!(
        errs.iter().any(|e| e.starts_with("verify.docker_image: 'post gres'")),
        "{errs:?}"
    );
}

#[test]
fn out_of_range_durations_are_errors_not_panics() {
    // Regression: orphan_age = "99999999999999w" panicked inside chrono (validate exited 101,
    // and a SIGHUP with it crashed the daemon); a zero stale_check_interval made the daemon's
    // staleness loop spin.
    let errs = parse(
        &format!(
            "[encryption]\nrecipients = [\"{R}\"]\n[prune]\norphan_age = \"99999999999999w\"\n\
             [daemon]\nstale_check_interval = \"0s\"\n[[storage]]\nname = \"l\"\ntype = \"fs\"\nroot = \"x\"\n",
            R = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p"
        ),
        Path::new("."),
    )
    .unwrap_err();
    let all = errs.join("\n");
    assert!(all.contains("prune.orphan_age: '99999999999999w' is too long"), "{all}");
    assert!(all.contains("daemon.stale_check_interval: '0s' is too short"), "{all}");
}

#[test]
fn each_mode_takes_only_its_own_keys() {
    let head = "[encryption]\nrecipients = [\"age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p\"]\n\
                [[storage]]\nname = \"l\"\ntype = \"fs\"\nroot = \"x\"\n";
    let errs = |src: &str| parse(&format!("{head}{src}"), Path::new(".")).unwrap_err().join("\n");
    let e = errs(
        "[[source]]\nname = \"n\"\ntype = \"nats\"\nmode = \"tarball\"\ndata_dir = \"/d\"\nurl = \"nats://h:4222\"\n",
    );
    assert!(
        e.contains("source[0] ('n')") && e.contains("url and streams belong to mode = \"snapshot\""),
        "{e}"
    );
    let e = errs(
        "[[source]]\nname = \"n\"\ntype = \"nats\"\nmode = \"snapshot\"\nurl = \"nats://h:4222\"\ndata_dir = \"/d\"\n",
    );
    assert!(e.contains("data_dir belongs to mode = \"tarball\""), "{e}");
    let e = errs("[[source]]\nname = \"n\"\ntype = \"nats\"\n");
    assert!(e.contains("data_dir: tarball mode needs the store directory"), "{e}");
    let e = errs(
        "[[source]]\nname = \"c\"\ntype = \"redis\"\nurl = \"redis://h\"\nmode = \"replication\"\nrdb_path = \"/r\"\n",
    );
    assert!(e.contains("rdb_path belongs to mode = \"file\""), "{e}");
    let ok = parse(
        &format!("{head}[[source]]\nname = \"n\"\ntype = \"nats\"\nmode = \"snapshot\"\nurl = \"nats://h:4222\"\n"),
        Path::new("."),
    )
    .unwrap();
    match &ok.sources[0] {
        super::SourceConfig::Nats(n) => assert!(
            matches!(&n.access, super::NatsAccess::Snapshot { url, streams } if url == "nats://h:4222" && streams.is_empty())
        ),
        other => panic!("{other:?}"),
    }
}
