//! Sources in containers (issue #14, first slice): a PostgreSQL server in a container found
//! through its Compose labels, with no published port, dumped by a pg_dump that runs inside it
//! through a real Docker-API engine (podman's service), restored with the host path.

use crate::support::*;

/// The container's rows in the same shape as `Postgres::contents`.
fn contents_in(engine: &DockerEngine, pg: &ComposePostgres) -> String {
    let tables = engine.psql_in(
        pg,
        "select quote_ident(table_schema)||'.'||quote_ident(table_name) from information_schema.tables \
         where table_schema not in ('pg_catalog','information_schema') and table_type='BASE TABLE' order by 1",
    );
    let mut out = String::new();
    for t in tables.lines().filter(|l| !l.is_empty()) {
        out.push_str(&format!("## {t}\n"));
        let rows = engine.psql_in(pg, &format!("select t::text from {t} t order by t::text"));
        for r in rows.lines() {
            out.push_str(r);
            out.push('\n');
        }
    }
    out
}

fn seed(engine: &DockerEngine, pg: &ComposePostgres, users: u32) {
    engine.psql_in(
        pg,
        &format!(
            "create table if not exists users (id int primary key, name text); \
             create table if not exists orders (id serial primary key, user_id int references users, total numeric); \
             insert into users select g, 'user ' || g from generate_series(1, {users}) g; \
             insert into orders (user_id, total) select g, g * 1.5 from generate_series(1, {users}) g;"
        ),
    );
}

/// A workspace whose only source is `source_keys` (after `type = "postgres"`).
fn workspace(source_keys: &str) -> Workspace {
    let ws = Workspace::new();
    ws.write_config(
        &ws.fs_storage_toml("local"),
        &format!("[[source]]\nname = \"app-db\"\ntype = \"postgres\"\n{source_keys}\n"),
    );
    ws
}

/// drctl with DOCKER_HOST set and a PATH with no pg_dump, psql or docker CLI on it.
fn run_in(ws: &Workspace, engine: &DockerEngine, args: &[&str]) -> (i32, String, String) {
    engine.run_drctl(ws, args, &[])
}

/// The rows of `users` each backup counted (decrypted with the workspace's identity), sorted.
fn users_counted(ws: &Workspace) -> Vec<i64> {
    let ident = ws.identity.to_str().unwrap();
    let list: Vec<serde_json::Value> = serde_json::from_str(&ws.ok(&["list", "--json", "--identity", ident])).unwrap();
    let mut n: Vec<i64> = list
        .iter()
        .map(|b| {
            b["facts"]["row_counts"]["public.users"]
                .as_i64()
                .unwrap_or_else(|| panic!("no count: {b}"))
        })
        .collect();
    n.sort();
    n
}

#[test]
fn postgres_in_a_container_with_no_published_port_is_backed_up_by_service_without_a_host_pg_dump_and_restores_on_the_host(
) {
    let _g = exclusive();
    let engine = DockerEngine::start();
    let pg = engine.compose_postgres("shop", "postgres", "shop-postgres-1");
    seed(&engine, &pg, 300);
    let ws = workspace("service = \"postgres\"\n");

    let (code, out, err) = run_in(&ws, &engine, &["backup"]);
    assert_eq!(code, 0, "backup failed:\n{out}\n{err}");
    let list = ws.list_json();
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(manifest_files(&ws.fs_root("local")).len(), 1, "one manifest committed");
    let facts = &list[0]["facts"];
    assert_eq!(
        facts["database"], "appdb",
        "POSTGRES_DB is the default database: {facts}"
    );
    let major = pg_major().to_string();
    assert!(
        facts["server_version"].as_str().unwrap().starts_with(&major)
            && facts["pg_dump_version"].as_str().unwrap().starts_with(&major),
        "{facts}"
    );
    // Row counts taken in the dump's snapshot by the psql session in the container.
    assert_eq!(users_counted(&ws), vec![300]);

    // The password the container's user has never appears on a command line: not drctl's own
    // (it was never given one) and not any exec's the engine recorded.
    let lines = exec_command_lines(&engine, &pg.name);
    assert!(
        lines.iter().any(|l| l.iter().any(|a| a.contains("pg_dump"))),
        "the engine recorded the pg_dump exec: {lines:?}"
    );
    for l in &lines {
        assert!(
            !l.iter().any(|a| a.contains(CONTAINER_PG_PASSWORD)),
            "a secret on an exec's command line: {l:?}"
        );
    }
    assert!(!out.contains(CONTAINER_PG_PASSWORD) && !err.contains(CONTAINER_PG_PASSWORD));

    // Restored with the host path into a host server: the same rows.
    let host = Postgres::start();
    host.createdb("appdb");
    let url = format!("postgres://postgres:{PG_PASSWORD}@127.0.0.1:{}/appdb", host.port);
    let ident = ws.identity.to_str().unwrap().to_string();
    let (code, out, err) = ws.run_env(
        &[
            "restore",
            "--at",
            "now",
            "--source",
            "app-db",
            "--identity",
            &ident,
            "--no-owner",
        ],
        &[("DRCTL_TARGET_URL", &url)],
    );
    assert_eq!(code, 0, "restore failed:\n{out}\n{err}");
    let want = contents_in(&engine, &pg);
    assert!(want.contains("user 300"), "{want}");
    assert_eq!(host.contents("appdb"), want);
}

#[test]
fn a_recreated_service_container_is_found_again_by_its_service_name() {
    let _g = exclusive();
    let engine = DockerEngine::start();
    let pg = engine.compose_postgres("blog", "db", "blog-db-1");
    seed(&engine, &pg, 10);
    let ws = workspace("service = \"db\"\ncompose_project = \"blog\"\n");
    let (code, out, err) = run_in(&ws, &engine, &["backup"]);
    assert_eq!(code, 0, "first backup failed:\n{out}\n{err}");
    assert_eq!(users_counted(&ws), vec![10]);

    // `docker compose up --force-recreate`: a new container (new id, new name), same labels.
    engine.podman(&["rm", "-f", "-t", "0", &pg.name]);
    let pg2 = engine.compose_postgres("blog", "db", "blog-db-2");
    seed(&engine, &pg2, 25);
    let (code, out, err) = run_in(&ws, &engine, &["backup", "--no-prune"]);
    assert_eq!(
        code, 0,
        "backup after the container was recreated failed:\n{out}\n{err}"
    );
    assert_eq!(users_counted(&ws), vec![10, 25], "the new container was dumped");

    // Another project with a service of the same name: compose_project picks ours, and
    // without it the error names both projects instead of guessing.
    let other = engine.compose_postgres("blog2", "db", "blog2-db-1");
    seed(&engine, &other, 3);
    let (code, out, err) = run_in(&ws, &engine, &["backup", "--no-prune"]);
    assert_eq!(code, 0, "compose_project must pick blog:\n{out}\n{err}");
    assert_eq!(users_counted(&ws), vec![10, 25, 25]);
    let ambiguous = workspace("service = \"db\"\n");
    let (code, _, err) = run_in(&ambiguous, &engine, &["backup"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("blog, blog2") && err.contains("compose_project"), "{err}");
}

#[test]
fn a_failing_exec_aborts_the_container_backup_with_its_stderr_and_commits_nothing() {
    let _g = exclusive();
    let engine = DockerEngine::start();
    let pg = engine.compose_postgres("crm", "postgres", "crm-postgres-1");
    seed(&engine, &pg, 50);
    // A role that may connect but not read one table: psql works, pg_dump fails half-way.
    engine.psql_in(
        &pg,
        "create table secrets (k text); insert into secrets values ('x'); \
         create role reader login; grant connect on database appdb to reader; \
         grant usage on schema public to reader; grant select on users, orders to reader;",
    );

    let ws = workspace("service = \"postgres\"\nuser = \"reader\"\n");
    let (code, out, err) = run_in(&ws, &engine, &["backup"]);
    assert_eq!(
        code, 1,
        "a pg_dump that exits non-zero must fail the backup:\n{out}\n{err}"
    );
    assert!(
        err.contains("pg_dump for 'app-db'") && err.contains("permission denied for table secrets"),
        "the error carries pg_dump's stderr: {err}"
    );
    assert!(manifest_files(&ws.fs_root("local")).is_empty(), "nothing committed");

    let ws = workspace("service = \"postgres\"\ndatabase = \"nosuchdb\"\n");
    let (code, out, err) = run_in(&ws, &engine, &["backup"]);
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(
        err.contains("database \"nosuchdb\" does not exist") && err.contains("database = …"),
        "{err}"
    );
    assert!(manifest_files(&ws.fs_root("local")).is_empty(), "nothing committed");

    let ws = workspace("container = \"crm-postgres-9\"\n");
    let (code, _, err) = run_in(&ws, &engine, &["backup"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("no container named 'crm-postgres-9'"), "{err}");

    // The same container by name is a complete source too.
    let ws = workspace("container = \"crm-postgres-1\"\n");
    let (code, out, err) = run_in(&ws, &engine, &["backup"]);
    assert_eq!(code, 0, "backup by container name:\n{out}\n{err}");
    assert_eq!(manifest_files(&ws.fs_root("local")).len(), 1);

    let ws = workspace("service = \"redis-by-mistake\"\n");
    let (code, _, err) = run_in(&ws, &engine, &["backup"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("no running container of service 'redis-by-mistake'") && err.contains("docker compose ps"),
        "{err}"
    );
}

#[test]
fn validate_checks_the_container_keys_without_an_engine() {
    let ws = workspace("service = \"postgres\"\ncontainer = \"app-postgres\"\n");
    let (code, _, err) = ws.run_env(&["validate"], &[("DOCKER_HOST", "unix:///nonexistent/engine.sock")]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("keep one"), "{err}");

    let ws = workspace("service = \"postgres\"\nurl = \"postgres://app@127.0.0.1/app\"\n");
    let (code, _, err) = ws.run_env(&["validate"], &[("DOCKER_HOST", "unix:///nonexistent/engine.sock")]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("url does not apply"), "{err}");

    let ws = workspace("service = \"postgres\"\ncompose_project = \"app\"\nuser = \"app\"\n");
    let (code, out, err) = ws.run_env(&["validate"], &[("DOCKER_HOST", "unix:///nonexistent/engine.sock")]);
    assert_eq!(
        code, 0,
        "a complete container source validates with no engine:\n{out}\n{err}"
    );
}

#[test]
fn the_redis_test_image_keeps_the_official_contract_data_dir_args_and_aof() {
    let _g = exclusive();
    let engine = DockerEngine::start();
    engine.compose_redis("cache", "redis", "cache-redis-1", &["--appendonly", "yes"]);
    let cli = |args: &[&str]| {
        let mut a = vec!["exec", "cache-redis-1", "redis-cli"];
        a.extend_from_slice(args);
        engine.podman(&a).join("\n")
    };
    assert_eq!(cli(&["config", "get", "dir"]), "dir\n/data");
    assert_eq!(cli(&["config", "get", "appendonly"]), "appendonly\nyes");
    assert_eq!(cli(&["set", "k", "v"]), "OK");
    assert_eq!(cli(&["save"]), "OK");
    let files = engine
        .podman(&["exec", "cache-redis-1", "ls", "/data", "/data/appendonlydir"])
        .join("\n");
    assert!(files.contains("dump.rdb") && files.contains(".aof"), "{files}");
    let owner = engine.podman(&["exec", "cache-redis-1", "stat", "-c", "%U", "/data/dump.rdb"]);
    assert_eq!(owner, vec!["redis"], "the server runs as the redis user, not root");
    let ports = engine.podman(&[
        "inspect",
        "--format",
        "{{json .NetworkSettings.Ports}}",
        "cache-redis-1",
    ]);
    assert!(ports.iter().all(|p| !p.contains("HostPort")), "{ports:?}");
}

/// `Container::read_file` against the engine: the bytes `cat` would print, streamed out of the
/// archive endpoint's tar.
fn read_file_through_engine(engine: &DockerEngine, container: &str, path: &str) -> anyhow::Result<(u64, Vec<u8>)> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        use drctl::place::{ContainerRef, Engine};
        use tokio::io::AsyncReadExt;
        let e = Engine::at(Some(engine.host.clone()))?;
        let c = e.resolve(&ContainerRef::Name(container.to_string())).await?;
        let mut f = c.read_file(path).await?;
        let mut out = Vec::new();
        f.reader.read_to_end(&mut out).await?;
        Ok((f.size, out))
    })
}

#[test]
fn a_file_streams_out_of_a_container_through_the_archive_endpoint_byte_for_byte() {
    let _g = exclusive();
    let engine = DockerEngine::start();
    engine.compose_redis("files", "redis", "files-redis-1", &["--appendonly", "yes"]);
    // An RDB of several MiB: many tar blocks and engine chunks.
    let cli = |args: &[&str]| {
        let mut a = vec!["exec", "files-redis-1", "redis-cli"];
        a.extend_from_slice(args);
        engine.podman(&a).join("\n")
    };
    cli(&[
        "eval",
        "for i = 1, 100000 do redis.call('set', 'key:' .. i, string.rep(string.format('%08x', i * 2654435761 % 4294967296), 8)) end",
        "0",
    ]);
    assert_eq!(cli(&["save"]), "OK");
    let (size, bytes) = read_file_through_engine(&engine, "files-redis-1", "/data/dump.rdb").unwrap();
    assert!(size > 2 << 20, "a big enough RDB: {size}");
    assert_eq!(bytes.len() as u64, size);
    let want = engine.podman(&["exec", "files-redis-1", "sha256sum", "/data/dump.rdb"]);
    let got = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(&bytes))
    };
    assert!(want[0].starts_with(&got), "{want:?} vs {got}");

    let e = read_file_through_engine(&engine, "files-redis-1", "/data/nope.rdb").unwrap_err();
    assert!(format!("{e:#}").contains("no such file"), "{e:#}");
    let e = read_file_through_engine(&engine, "files-redis-1", "/data").unwrap_err();
    assert!(format!("{e:#}").contains("directory"), "{e:#}");
}

/// Holds an ACCESS EXCLUSIVE lock on `users` in the container until the returned child is
/// killed: pg_dump and the row count both wait behind it.
fn lock_users(engine: &DockerEngine, pg: &ComposePostgres) -> std::process::Child {
    use std::io::Write;
    let mut child = engine
        .podman_command(&["exec", "-i", &pg.name, "psql", "-X", "-q", "-U", &pg.user, "-d", &pg.db])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    child
        .stdin
        .as_mut()
        .unwrap()
        .write_all(b"begin; lock table users in access exclusive mode; select pg_sleep(300);\n")
        .unwrap();
    let t0 = std::time::Instant::now();
    while engine.psql_in(
        pg,
        "select count(*) from pg_locks where mode = 'AccessExclusiveLock' and relation = 'users'::regclass",
    ) != "1"
    {
        assert!(t0.elapsed().as_secs() < 20, "the lock was not taken");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    child
}

#[test]
fn sigterm_during_a_container_backup_stops_promptly_commits_nothing_and_leaves_no_session_behind() {
    let _g = exclusive();
    let engine = DockerEngine::start();
    let pg = engine.compose_postgres("stuck", "postgres", "stuck-postgres-1");
    seed(&engine, &pg, 20);
    // Blocked in the row count (before pg_dump), then in pg_dump itself (no row counts).
    for keys in [
        "service = \"postgres\"\n",
        "service = \"postgres\"\nrow_counts = false\n",
    ] {
        let mut lock = lock_users(&engine, &pg);
        let ws = workspace(keys);
        let child = engine
            .drctl(&ws, &["backup"])
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // Wait until drctl's session waits behind the lock.
        let t0 = std::time::Instant::now();
        while engine.psql_in(
            &pg,
            "select count(*) from pg_stat_activity where application_name = 'drctl' and wait_event_type = 'Lock'",
        ) != "1"
        {
            assert!(
                t0.elapsed().as_secs() < 30,
                "drctl never waited behind the lock ({keys})"
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        let t0 = std::time::Instant::now();
        std::process::Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{keys}: {err}");
        assert!(t0.elapsed().as_secs() < 10, "SIGTERM took {:?}", t0.elapsed());
        assert!(err.contains("interrupted"), "{err}");
        assert!(manifest_files(&ws.fs_root("local")).is_empty(), "nothing committed");

        // Once the lock is gone, drctl's sessions in the container end: none is left holding a
        // transaction (a snapshot that would stop vacuum) after drctl exited.
        let _ = lock.kill();
        let _ = lock.wait();
        engine.psql_in(&pg, "select pg_terminate_backend(pid) from pg_locks where mode = 'AccessExclusiveLock' and relation = 'users'::regclass");
        let t0 = std::time::Instant::now();
        loop {
            let left = engine.psql_in(
                &pg,
                "select count(*) from pg_stat_activity where application_name = 'drctl'",
            );
            if left == "0" {
                break;
            }
            assert!(
                t0.elapsed().as_secs() < 30,
                "{left} drctl session(s) left in the container ({keys})"
            );
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    }
}

#[test]
fn a_backup_restores_into_a_fresh_container_with_its_roles_and_the_app_logs_in_with_its_old_password() {
    let _g = exclusive();
    let engine = DockerEngine::start();
    let pg = engine.compose_postgres("shop", "postgres", "shop-postgres-1");
    // The application's own role owns its schema and logs in with a password, as apps do.
    engine.psql_in(
        &pg,
        "create role webapp login password 'webapp-Old-pw'; create role readers nologin; \
         grant readers to webapp; create schema app authorization webapp;",
    );
    engine.psql_in(
        &pg,
        "set role webapp; create table app.items (id int primary key, name text); \
         insert into app.items select g, 'item ' || g from generate_series(1, 50) g; \
         grant select on app.items to readers;",
    );
    seed(&engine, &pg, 20);
    let ws = workspace("service = \"postgres\"\n");
    let (code, out, err) = run_in(&ws, &engine, &["backup"]);
    assert_eq!(code, 0, "backup failed:\n{out}\n{err}");
    // The roles (with password hashes) are kept encrypted, not in the plaintext manifest.
    for m in manifest_files(&ws.fs_root("local")) {
        let text = std::fs::read_to_string(&m).unwrap();
        assert!(
            !text.contains("SCRAM-SHA-256") && !text.contains("webapp"),
            "{}: {text}",
            m.display()
        );
    }
    let ident = ws.identity.to_str().unwrap().to_string();
    let list: Vec<serde_json::Value> = serde_json::from_str(&ws.ok(&["list", "--json", "--identity", &ident])).unwrap();
    let globals = list[0]["facts"]["globals"].as_str().unwrap_or_default();
    assert!(
        globals.contains("CREATE ROLE webapp;") && globals.contains("SCRAM-SHA-256"),
        "the roles with their hashes are recorded: {}",
        list[0]["facts"]
    );

    // A new server: another project's container with an empty volume, no such roles.
    let fresh = engine.compose_postgres("shop2", "postgres", "shop2-postgres-1");
    assert_eq!(
        engine.psql_in(
            &fresh,
            "select count(*) from pg_roles where rolname in ('webapp', 'readers')"
        ),
        "0"
    );
    let restore = |extra: &[&str]| {
        let mut args = vec![
            "restore",
            "--at",
            "now",
            "--source",
            "app-db",
            "--identity",
            &ident,
            "--target",
            "service:postgres",
            "--compose-project",
            "shop2",
        ];
        args.extend_from_slice(extra);
        run_in(&ws, &engine, &args)
    };
    let (code, out, err) = restore(&[]);
    assert_eq!(code, 0, "restore failed:\n{out}\n{err}");
    assert!(
        out.contains("into database 'appdb' in container 'shop2-postgres-1'")
            && out.contains("roles the target lacked")
            && out.contains("readers, webapp"),
        "{out}"
    );
    assert_eq!(contents_in(&engine, &fresh), contents_in(&engine, &pg));
    assert_eq!(
        engine.psql_in(
            &fresh,
            "select tableowner from pg_tables where schemaname = 'app' and tablename = 'items'"
        ),
        "webapp",
        "ownership came back with the role"
    );
    assert_eq!(
        engine.psql_in(&fresh, "select pg_has_role('webapp', 'readers', 'member')"),
        "t"
    );
    // The application logs in over the network with its old password, and a wrong one fails.
    let login = |pw: &str| {
        engine
            .podman_command(&[
                "exec",
                "-e",
                &format!("PGPASSWORD={pw}"),
                &fresh.name,
                "psql",
                "-X",
                "-A",
                "-t",
                "-h",
                "127.0.0.1",
                "-U",
                "webapp",
                "-d",
                "appdb",
                "-c",
                "select count(*) from app.items",
            ])
            .output()
            .unwrap()
    };
    let ok = login("webapp-Old-pw");
    assert!(
        ok.status.success() && String::from_utf8_lossy(&ok.stdout).trim() == "50",
        "{ok:?}"
    );
    assert!(!login("wrong-pw").status.success());
    // The dump's copy in the container is gone.
    let tmp = engine.podman(&["exec", &fresh.name, "ls", "-A", "/tmp"]);
    assert!(tmp.iter().all(|l| !l.contains("drctl-restore")), "{tmp:?}");

    // The database now holds the data: a second restore needs --clean, and then replaces it
    // in one transaction, with the app's own change undone.
    let (code, _, err) = restore(&[]);
    assert_eq!(code, 1);
    assert!(err.contains("not empty") && err.contains("--clean"), "{err}");
    engine.psql_in(&fresh, "delete from app.items where id > 10");
    let (code, out, err) = restore(&["--clean"]);
    assert_eq!(code, 0, "restore --clean failed:\n{out}\n{err}");
    assert!(
        out.contains("one transaction") && !out.contains("roles the target lacked"),
        "{out}"
    );
    assert_eq!(contents_in(&engine, &fresh), contents_in(&engine, &pg));
}
