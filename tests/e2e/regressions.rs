//! One test per bug that reached main, named for what broke. Each failed on the code before
//! its fix.

use crate::support::*;

/// A second identity that cannot decrypt the workspace's backups.
fn wrong_identity(ws: &Workspace) -> String {
    let p = ws.path().join("other-identity.txt");
    let out = drctl_cmd(ws.path())
        .args(["keygen", "--output"])
        .arg(&p)
        .output()
        .unwrap();
    assert!(out.status.success());
    p.to_str().unwrap().to_string()
}

/// A workspace whose one source, `name`, backs up a directory holding one small file; `extra`
/// is added to the source's table (e.g. a retention).
fn files_workspace(name: &str, extra: &str) -> (tempfile::TempDir, Workspace) {
    let src = tempfile::tempdir().unwrap();
    std::fs::write(src.path().join("a"), "1").unwrap();
    let ws = Workspace::new();
    ws.write_config(
        &ws.fs_storage_toml("local"),
        &format!(
            "[[source]]\nname = \"{name}\"\ntype = \"files\"\npaths = [\"{}\"]\n{extra}",
            src.path().display()
        ),
    );
    (src, ws)
}

/// A workspace whose one source, `cache`, is the Redis `r` (file mode).
fn redis_workspace(r: &Redis) -> Workspace {
    let ws = Workspace::new();
    ws.write_config(
        &ws.fs_storage_toml("local"),
        &format!(
            "[[source]]\nname = \"cache\"\ntype = \"redis\"\nurl = \"{}\"\n",
            r.url_env("DRCTL_REDIS_PASSWORD")
        ),
    );
    ws
}

#[test]
fn redis_restore_clean_leaves_the_target_untouched_when_the_backup_cannot_be_opened() {
    // Was: --clean flushed the target before the backup was fetched and checked, so a wrong
    // identity took it from 50 keys to 0 and then failed.
    let _g = shared(); // redis-server's command line
    let source = Redis::start();
    redis_cli(&source, &["set", "k", "v"]);
    let ws = redis_workspace(&source);
    let env = [("DRCTL_REDIS_PASSWORD", REDIS_PASSWORD)];
    let (code, out, err) = ws.run_env(&["backup"], &env);
    assert_eq!(code, 0, "{out}\n{err}");

    let target = Redis::start();
    for i in 0..50 {
        redis_cli(&target, &["set", &format!("keep{i}"), "x"]);
    }
    let restore_clean = |identity: &str| {
        ws.run_env(
            &[
                "restore",
                "--at",
                "now",
                "--source",
                "cache",
                "--clean",
                "--identity",
                identity,
            ],
            &[("DRCTL_TARGET_URL", &target.url()), env[0]],
        )
    };
    let (code, _, err) = restore_clean(&wrong_identity(&ws));
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("wrong identity"), "{err}");
    assert_eq!(redis_cli(&target, &["dbsize"]), "50", "the target was touched");

    // With the right identity, --clean replaces the target's keys with the backup's.
    let (code, out, err) = restore_clean(ws.identity.to_str().unwrap());
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(redis_cli(&target, &["dbsize"]), "1");
    assert_eq!(redis_cli(&target, &["get", "k"]), "v");
}

#[test]
fn a_target_url_of_another_kind_is_an_error_not_a_panic() {
    // Was: a postgres backup given `--target-url redis://…` panicked
    // ("parsed above for postgres URLs"), exit 101.
    let pg = Postgres::start();
    pg.createdb("app");
    pg.psql("app", "create table t (x int); insert into t values (1);");
    let ws = Workspace::new();
    ws.write_config(&ws.fs_storage_toml("local"), &pg_source_toml("app-db", &pg, "app"));
    ws.ok(&["backup"]);
    let ident = ws.identity.to_str().unwrap().to_string();
    let (code, _, err) = ws.run_env(
        &["restore", "--at", "now", "--source", "app-db", "--identity", &ident],
        &[("DRCTL_TARGET_URL", "redis://127.0.0.1:1")],
    );
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("'app-db' is a postgres backup, but --target-url points at redis"),
        "{err}"
    );
}

#[test]
fn prune_deletes_only_objects_drctl_wrote_and_check_names_the_rest() {
    // Was: the orphan sweep removed anything under data/ and .tmp/ that no manifest named,
    // whatever its name: data/photos/IMG_0001.jpg in a shared root was deleted.
    let (_src, ws) = files_workspace("config", "");
    ws.ok(&["backup"]);
    let root = ws.fs_root("local");
    let artifact = files_under(&root)
        .into_iter()
        .find(|f| f.starts_with("data/config/"))
        .unwrap();
    // A real orphan: an artifact no manifest names (a backup killed before its manifest).
    let orphan = "data/config/20200101T000000Z-0badc0de.tar.zst.age";
    std::fs::copy(root.join(&artifact), root.join(orphan)).unwrap();
    // Another tool's files in the same root.
    let foreign = ["data/photos/IMG_0001.jpg", "data/notes.txt", ".tmp/thesis.odt"];
    for f in foreign {
        let p = root.join(f);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, b"not drctl's").unwrap();
    }

    let out = ws.ok(&["check"]);
    for f in ["data/photos/IMG_0001.jpg", "data/notes.txt"] {
        assert!(out.contains(&format!("foreign object {f}")), "{f} not named:\n{out}");
    }
    let out = ws.ok(&["prune", "--orphan-age", "0s"]);
    assert!(out.contains("1 orphaned object"), "{out}");
    let files = files_under(&root);
    assert!(!files.iter().any(|f| f == orphan), "the orphan stayed: {files:?}");
    for f in foreign {
        assert!(files.iter().any(|x| x == f), "{f} was deleted: {files:?}");
    }
    assert!(files.contains(&artifact), "{files:?}");
}

#[test]
fn a_prune_host_without_the_source_in_its_config_applies_the_policy_the_backups_record() {
    // Was: a prune host whose config names only the storage (as the README recommends) gave
    // every source the default 7/4/3, so 4 of 5 backups of a `keep_last = 48` source went.
    let src = tempfile::tempdir().unwrap();
    std::fs::write(src.path().join("a"), "1").unwrap();
    let ws = Workspace::new();
    let sources = format!(
        "[[source]]\nname = \"many\"\ntype = \"files\"\npaths = [\"{p}\"]\nretention = {{ keep_last = 48 }}\n\n\
         [[source]]\nname = \"few\"\ntype = \"files\"\npaths = [\"{p}\"]\nretention = {{ keep_last = 2 }}\n",
        p = src.path().display()
    );
    ws.write_config(&ws.fs_storage_toml("local"), &sources);
    for _ in 0..5 {
        ws.ok(&["backup", "--no-prune"]);
    }
    // The prune host: the same storage, no sources.
    let host = ws.path().join("prune-host.toml");
    std::fs::write(&host, ws.config_text().split("[[source]]").next().unwrap()).unwrap();
    private(&host);
    let out = ws.ok(&["--config", host.to_str().unwrap(), "prune"]);
    assert!(out.contains("3 to drop"), "{out}");
    let left: Vec<String> = files_under(&ws.fs_root("local"))
        .into_iter()
        .filter(|f| f.starts_with("manifests/"))
        .collect();
    assert_eq!(
        left.iter().filter(|f| f.starts_with("manifests/many/")).count(),
        5,
        "{left:?}"
    );
    assert_eq!(
        left.iter().filter(|f| f.starts_with("manifests/few/")).count(),
        2,
        "{left:?}"
    );
}

#[test]
fn a_pinned_backup_survives_retention_until_unpinned() {
    // Was: nothing could keep a backup taken before a risky change; the next run's prune
    // decided by policy alone.
    let (_src, ws) = files_workspace("config", "retention = { keep_last = 1 }\n");
    ws.ok(&["backup", "--keep", "--note", "before migration 42"]);
    let pinned = ws.list_json()[0]["id"].as_str().unwrap().to_string();
    assert_eq!(ws.list_json()[0]["pin"]["note"], "before migration 42");
    assert!(ws.ok(&["list"]).contains("pinned"), "list shows the pin");
    ws.ok(&["backup"]);
    ws.ok(&["backup"]);
    let ids: Vec<String> = ws
        .list_json()
        .iter()
        .map(|b| b["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 2, "keep_last = 1 plus the pinned one: {ids:?}");
    assert!(ids.contains(&pinned), "{ids:?}");

    let out = ws.ok(&["unpin", "--source", "config", &pinned]);
    assert!(out.contains("unpinned"), "{out}");
    ws.ok(&["prune"]);
    let ids: Vec<String> = ws
        .list_json()
        .iter()
        .map(|b| b["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 1, "{ids:?}");
    assert!(!ids.contains(&pinned), "{ids:?}");
    let (code, _, err) = ws.run(&["unpin", "--source", "config", &pinned]);
    assert_eq!(code, 1);
    assert!(err.contains("not pinned"), "{err}");
}

#[test]
fn the_default_policy_keeps_a_backup_taken_minutes_ago() {
    // Was: 7 daily kept one backup per day, so each manual `drctl backup` (and a schedule of
    // a few seconds) left exactly one backup, deleting the one from minutes before.
    let (_src, ws) = files_workspace("config", "");
    for _ in 0..3 {
        ws.ok(&["backup"]);
    }
    assert_eq!(ws.list_json().len(), 3);
}

#[test]
fn redis_restore_to_a_directory_does_not_follow_a_planted_symlink() {
    // Was: `restore --output-dir` decrypted into `<dir>/cache/.dump.rdb.partial`, opened with
    // create+truncate, so a symlink planted there sent the plaintext wherever it pointed.
    let _g = shared(); // redis-server's command line
    let r = Redis::start();
    redis_cli(&r, &["set", "k", "v"]);
    let ws = redis_workspace(&r);
    ws.ok(&["backup"]);
    let out = ws.path().join("out");
    std::fs::create_dir_all(out.join("cache")).unwrap();
    let victim = ws.path().join("victim.txt");
    std::fs::write(&victim, "untouched").unwrap();
    std::os::unix::fs::symlink(&victim, out.join("cache/.dump.rdb.partial")).unwrap();
    ws.restore_ok(&out);
    assert!(
        std::fs::read(&victim).unwrap() == b"untouched",
        "the decrypted RDB was written through the planted symlink"
    );
    let rdb = out.join("cache/dump.rdb");
    assert!(!std::fs::symlink_metadata(&rdb).unwrap().file_type().is_symlink());
    assert!(std::fs::read(&rdb).unwrap().starts_with(b"REDIS"));
}

#[test]
fn a_password_file_others_can_read_is_refused_with_a_hint() {
    // Was: accepted without a word, while the config and the identity were already refused.
    use std::os::unix::fs::PermissionsExt;
    let pg = Postgres::start();
    pg.createdb("app");
    let ws = Workspace::new();
    let pw = ws.path().join("pg_password");
    std::fs::write(&pw, format!("{PG_PASSWORD}\n")).unwrap();
    std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o644)).unwrap();
    ws.write_config(
        &ws.fs_storage_toml("local"),
        &format!(
            "[[source]]\nname = \"app-db\"\ntype = \"postgres\"\nurl = \"postgres://postgres@127.0.0.1:{}/app\"\npassword_file = \"pg_password\"\n",
            pg.port
        ),
    );
    let (code, _, err) = ws.run(&["backup"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("password file") && err.contains("chmod 600") && err.contains("pg_password"),
        "{err}"
    );
    private(&pw);
    ws.ok(&["backup"]);
}

/// A files backup in the workspace's storage `local`, ready to have its artifact forged.
fn files_backup() -> Workspace {
    let (_src, ws) = files_workspace("config", "");
    ws.ok(&["backup"]);
    ws
}

#[test]
fn a_tar_escaping_through_its_own_symlinks_is_refused_before_anything_is_written() {
    // Was: each link was checked lexically on its own: `a/l -> ..` (the restore directory
    // itself) and then `b -> a/l/..` ("a") both passed, and b pointed at the directory's parent.
    let ws = files_backup();
    forge_tar_artifact(
        &ws,
        "local",
        "t = tarfile.open('x.tar', 'w')\n\
         d = tarfile.TarInfo('a'); d.type = tarfile.DIRTYPE; d.mode = 0o755; t.addfile(d)\n\
         l = tarfile.TarInfo('a/l'); l.type = tarfile.SYMTYPE; l.linkname = '..'; t.addfile(l)\n\
         b = tarfile.TarInfo('b'); b.type = tarfile.SYMTYPE; b.linkname = 'a/l/..'; t.addfile(b)\n\
         t.close()",
    );
    let out = ws.path().join("restore-here");
    let (code, _, err) = ws.restore_to(&out, &[]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("refusing tar entry 'b': it links to 'a/l/..'"), "{err}");
    assert!(files_under(&out).is_empty(), "{:?}", files_under(&out));
    assert!(!out.join("config/b").exists());
}

#[test]
fn setuid_and_setgid_bits_are_stripped_unless_asked_for() {
    // Was: a 04755 file in a backup came back setuid.
    use std::os::unix::fs::PermissionsExt;
    let ws = files_backup();
    forge_tar_artifact(
        &ws,
        "local",
        "t = tarfile.open('x.tar', 'w')\n\
         for name, mode in (('suid', 0o4755), ('sgid', 0o2755), ('plain', 0o640)):\n    \
             d = b'#!/bin/sh\\n'; i = tarfile.TarInfo(name); i.size = len(d); i.mode = mode; t.addfile(i, io.BytesIO(d))\n\
         t.close()",
    );
    let mode = |dir: &std::path::Path, f: &str| {
        std::fs::metadata(dir.join("config").join(f))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777
    };
    let out = ws.path().join("stripped");
    ws.restore_ok(&out);
    assert_eq!(mode(&out, "suid"), 0o755);
    assert_eq!(mode(&out, "sgid"), 0o755);
    assert_eq!(mode(&out, "plain"), 0o640);
    let kept = ws.path().join("kept");
    let (code, o, err) = ws.restore_to(&kept, &["--keep-special-bits"]);
    assert_eq!(code, 0, "{o}\n{err}");
    assert_eq!(mode(&kept, "suid"), 0o4755);
    assert_eq!(mode(&kept, "sgid"), 0o2755);
}

#[test]
fn child_processes_get_only_their_own_environment() {
    // Was: every child (pg_dump, psql, pg_restore, redis-server, the sandbox postmaster)
    // inherited drctl's whole environment: storage keys, webhook URLs, other sources' passwords.
    use std::os::unix::fs::PermissionsExt;
    let pg = Postgres::start();
    pg.createdb("app");
    pg.psql("app", "create table t (x int); insert into t values (1);");
    let ws = Workspace::new();
    let seen = ws.path().join("pg_dump-env.txt");
    let wrapper = ws.path().join("pg_dump-wrapper");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nif [ \"$1\" = \"--version\" ]; then exec pg_dump --version; fi\nenv > '{}'\nexec pg_dump \"$@\"\n",
            seen.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    ws.write_config(
        &ws.fs_storage_toml("local"),
        &format!(
            "{}pg_dump_path = \"{}\"\n",
            pg_source_toml("app-db", &pg, "app"),
            wrapper.display()
        ),
    );
    let (code, out, err) = ws.run_env(
        &["backup"],
        &[
            ("AWS_SECRET_ACCESS_KEY", "canary-aws-1"),
            ("SLACK_WEBHOOK", "canary-hook-2"),
            ("PGAPPNAME", "drctl-test"),
        ],
    );
    assert_eq!(code, 0, "{out}\n{err}");
    let env = std::fs::read_to_string(&seen).unwrap();
    for secret in [
        "canary-aws-1",
        "canary-hook-2",
        "DRCTL_REDIS_PASSWORD",
        "DRCTL_TEST_S3_SECRET",
    ] {
        assert!(!env.contains(secret), "pg_dump saw {secret}:\n{env}");
    }
    // What it needs is there: the connection for this source, and the operator's libpq settings.
    assert!(env.contains(&format!("PGPASSWORD={PG_PASSWORD}")), "{env}");
    assert!(env.contains("PGAPPNAME=drctl-test"), "{env}");
    assert!(env.lines().any(|l| l.starts_with("PATH=")), "{env}");
}
