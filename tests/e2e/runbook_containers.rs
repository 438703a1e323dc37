//! Runbook 1 (total VPS loss) drilled as users live it: PostgreSQL, Redis (AOF) and NATS
//! (scratch image, tarball mode) in Compose-labelled containers with no published port, the
//! app's files on the host. The VPS is lost (containers, volumes and files gone), a new one
//! gets empty services, and the runbook's own commands bring everything back with
//! `--target service:…`, needing no database tool on the host.

use crate::runbooks::run_runbook;
use crate::support::*;

#[test]
fn drill_runbook_1_total_vps_loss_with_the_stack_in_containers() {
    let _g = exclusive();
    let engine = DockerEngine::start();

    // The old VPS, project "app".
    let pg = engine.compose_postgres("app", "postgres", "app-postgres-1");
    engine.psql_in(
        &pg,
        "create role webapp login password 'webapp-pw'; \
         create table public.users (id int primary key, name text not null); \
         alter table public.users owner to webapp; \
         insert into public.users select g, 'user ' || g from generate_series(1, 300) g;",
    );
    let users = |p: &ComposePostgres| {
        engine.psql_in(
            p,
            "select count(*) || ' ' || sum(id) || ' ' || max(name) || ' ' || pg_get_userbyid(relowner) \
             from public.users, pg_class where relname = 'users' group by relowner",
        )
    };
    let want_users = users(&pg);
    assert_eq!(want_users, "300 45150 user 99 webapp");
    engine.compose_redis("app", "redis", "app-redis-1", &["--appendonly", "yes"]);
    engine.redis_cli_in(
        "app-redis-1",
        None,
        &[
            "EVAL",
            "for i = 1, 200 do redis.call('SET', 'session:' .. i, i, 'EX', 86400) end return 1",
            "0",
        ],
    );
    let nats = engine.compose_nats("app", "nats", "app-nats-1", true);
    let mut nc = engine.nats_client(&nats);
    seed_jetstream(&mut nc, 50);
    let want_js = jetstream_contents(&mut nc);
    drop(nc);

    let site = tempfile::tempdir().unwrap();
    let app = site.path().join("app");
    std::fs::create_dir_all(&app).unwrap();
    std::fs::write(app.join(".env"), "POSTGRES_PASSWORD=drill\n").unwrap();
    std::fs::write(app.join("Caddyfile"), "example.com {\n}\n").unwrap();
    std::fs::write(app.join("docker-compose.yml"), "services: {}\n").unwrap();

    let ws = Workspace::new();
    ws.write_config(
        &ws.fs_storage_toml("store"),
        &format!(
            "[[source]]\nname = \"app-db\"\ntype = \"postgres\"\nservice = \"postgres\"\n\n\
             [[source]]\nname = \"cache\"\ntype = \"redis\"\nservice = \"redis\"\n\n\
             [[source]]\nname = \"events\"\ntype = \"nats\"\nservice = \"nats\"\nmode = \"tarball\"\ndata_dir = \"/data\"\npause = true\n\n\
             [[source]]\nname = \"config\"\ntype = \"files\"\npaths = [\"{}\"]\n",
            app.display()
        ),
    );
    let (code, out, err) = ws.run_env(&["backup"], &[("DOCKER_HOST", &engine.host)]);
    assert_eq!(code, 0, "backup of the container stack failed:\n{out}\n{err}");

    // The VPS is lost: containers, their volumes and the app's files.
    engine.podman(&["rm", "-f", "-t", "0", "app-postgres-1", "app-redis-1"]);
    drop(nats);
    std::fs::remove_dir_all(&app).unwrap();
    std::fs::create_dir_all(&app).unwrap();

    // The new VPS: `docker compose up -d postgres redis && docker compose create nats`.
    let new_pg = engine.compose_postgres("app", "postgres", "app-postgres-2");
    engine.compose_redis("app", "redis", "app-redis-2", &["--appendonly", "yes"]);
    let new_nats = engine.compose_nats("app", "nats", "app-nats-2", false);
    assert_eq!(engine.redis_cli_in("app-redis-2", None, &["DBSIZE"]), "0");

    // `$COMPOSE exec -T SERVICE CMD…` for the runbook's checks, on the engine under test.
    let shim = site.path().join("compose");
    std::fs::write(
        &shim,
        format!(
            "#!/bin/bash\nset -euo pipefail\n[ \"$1\" = exec ] || {{ echo \"compose shim: only exec\" >&2; exit 2; }}\n\
             shift; [ \"$1\" = -T ] && shift\nsvc=$1; shift\n\
             export CONTAINERS_CONF={conf}\n\
             name=$(podman ps --filter label=com.docker.compose.project=app --filter label=com.docker.compose.service=$svc --format '{{{{.Names}}}}' | head -n1)\n\
             exec podman exec -i \"$name\" \"$@\"\n",
            conf = engine.containers_conf().display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&shim, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let rd = tempfile::tempdir().unwrap();
    let env = vec![
        ("DRCTL_CONFIG", ws.path().join("drctl.toml").display().to_string()),
        ("IDENTITY", ws.identity.display().to_string()),
        ("AT", "now".to_string()),
        ("RESTORE_DIR", rd.path().join("r").display().to_string()),
        ("APP_DIR", app.display().to_string()),
        ("COMPOSE", shim.display().to_string()),
        ("DOCKER_HOST", engine.host.clone()),
    ];
    run_runbook("01-total-vps-loss.md", &env);

    assert_eq!(
        users(&new_pg),
        want_users,
        "runbook 1 restored the database with its owner"
    );
    assert_eq!(engine.redis_cli_in("app-redis-2", None, &["DBSIZE"]), "200");
    let ttl: i64 = engine
        .redis_cli_in("app-redis-2", None, &["TTL", "session:7"])
        .trim()
        .parse()
        .unwrap();
    assert!(ttl > 80_000, "the TTL came back: {ttl}");
    engine.start_nats(&new_nats);
    let mut nc = engine.nats_client(&new_nats);
    assert_eq!(
        jetstream_contents(&mut nc),
        want_js,
        "runbook 1 restored the JetStream store"
    );
    assert_eq!(
        std::fs::read_to_string(app.join(".env")).unwrap(),
        "POSTGRES_PASSWORD=drill\n"
    );
}
