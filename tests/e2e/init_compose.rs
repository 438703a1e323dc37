//! `drctl init --from-compose` (issue #14, item 4): compose files in the shape users write
//! (Alpine Postgres with container_name and POSTGRES_* from .env, AOF Redis with
//! --requirepass ${REDIS_PASSWORD}, the scratch NATS image with -js -sd /data, Caddy with named
//! volumes), the config it writes, and a backup with that config against a real engine.

use crate::support::*;
use std::path::{Path, PathBuf};

const PG_SECRET: &str = "Pg-S3cret-from-dotenv";
const REDIS_SECRET: &str = "Redis-S3cret-from-dotenv";

/// The issue's stack: a compose file, its .env and a Caddyfile in `dir`.
fn issue_stack(dir: &Path) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let compose = dir.join("docker-compose.yml");
    std::fs::write(
        &compose,
        r#"x-logging: &logging
  logging:
    driver: json-file
services:
  postgres:
    image: postgres:16-alpine
    container_name: app-postgres
    <<: *logging
    environment:
      POSTGRES_USER: ${POSTGRES_USER}
      POSTGRES_PASSWORD: ${POSTGRES_PASSWORD}
      POSTGRES_DB: ${POSTGRES_DB:-app}
    volumes:
      - pgdata:/var/lib/postgresql/data
    networks: [internal]
  redis:
    image: redis:7-alpine
    command: redis-server --appendonly yes --requirepass ${REDIS_PASSWORD}
    volumes:
      - redisdata:/data
    networks: [internal]
  nats:
    image: nats
    command: ["-js", "-sd", "/data"]
    volumes:
      - type: volume
        source: natsdata
        target: /data
    networks: [internal]
  caddy:
    image: caddy:2-alpine
    ports: ["80:80", "443:443"]
    volumes:
      - ./Caddyfile:/etc/caddy/Caddyfile:ro
      - caddy_data:/data
      - caddy_config:/config
    networks: [internal, default]
  app:
    image: ghcr.io/example/shop-app:1.4
    env_file: .env
    networks: [internal]
  worker:
    build: ./worker
networks:
  internal:
    internal: true
volumes:
  pgdata:
  redisdata:
  natsdata:
  caddy_data:
  caddy_config:
"#,
    )
    .unwrap();
    std::fs::write(
        dir.join(".env"),
        format!(
            "# the app's secrets\nPOSTGRES_USER=shopuser\nPOSTGRES_PASSWORD={PG_SECRET}\nPOSTGRES_DB=shopdb\nREDIS_PASSWORD=\"{REDIS_SECRET}\"\n"
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("Caddyfile"),
        "shop.example.com {\n  reverse_proxy app:8080\n}\n",
    )
    .unwrap();
    compose
}

/// `drctl init --from-compose COMPOSE --config OUT --recipient R` in `cwd`, with none of the
/// stack's variables in the environment (they come from .env).
fn init(cwd: &Path, compose: &Path, out: &Path, recipient: &str) -> (i32, String, String) {
    let o = drctl_cmd(cwd)
        .args(["init", "--from-compose"])
        .arg(compose)
        .arg("--config")
        .arg(out)
        .args(["--recipient", recipient])
        .env_remove("REDIS_PASSWORD")
        .env_remove("COMPOSE_PROJECT_NAME")
        .output()
        .unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn sources(cfg: &toml::Table) -> Vec<toml::Table> {
    cfg["source"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_table().unwrap().clone())
        .collect()
}

fn by_type(srcs: &[toml::Table], kind: &str) -> Vec<toml::Table> {
    srcs.iter()
        .filter(|s| s["type"].as_str() == Some(kind))
        .cloned()
        .collect()
}

#[test]
fn init_from_compose_writes_service_sources_variable_references_and_lists_unknown_images() {
    let _g = shared();
    let ws = Workspace::new();
    // The directory's name is the project name, normalised as Compose does.
    let stack = ws.path().join("Shop.Stack");
    let compose = issue_stack(&stack);
    let out = ws.path().join("generated.toml");
    let (_code, stdout, stderr) = init(ws.path(), &compose, &out, &ws.recipient);
    let text = std::fs::read_to_string(&out).unwrap_or_else(|e| panic!("no config written ({e}):\n{stdout}\n{stderr}"));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&out).unwrap().permissions().mode() & 0o777, 0o600);

    // No value from .env anywhere: not in the config, not in what init printed.
    for secret in [PG_SECRET, REDIS_SECRET, "shopuser", "shopdb"] {
        assert!(!text.contains(secret), "{secret} copied into the config:\n{text}");
        assert!(
            !stdout.contains(secret) && !stderr.contains(secret),
            "{secret} printed:\n{stdout}\n{stderr}"
        );
    }

    let cfg: toml::Table = toml::from_str(&text).unwrap_or_else(|e| panic!("not TOML: {e}\n{text}"));
    assert_eq!(
        cfg["encryption"]["recipients"].as_array().unwrap()[0].as_str(),
        Some(ws.recipient.as_str())
    );
    assert!(
        cfg["storage"].as_array().is_some_and(|s| !s.is_empty()),
        "a storage placeholder"
    );
    let job = &cfg["job"].as_array().unwrap()[0];
    assert_eq!(job["schedule"].as_str(), Some("0 3 * * *"), "{job}");
    let srcs = sources(&cfg);

    let pg = by_type(&srcs, "postgres");
    assert_eq!(pg.len(), 1, "{text}");
    assert_eq!(pg[0]["service"].as_str(), Some("postgres"));
    assert_eq!(pg[0]["compose_project"].as_str(), Some("shopstack"), "{text}");
    for k in ["url", "user", "database", "password", "container"] {
        assert!(
            !pg[0].contains_key(k),
            "postgres source has {k}: the container supplies it\n{text}"
        );
    }

    let redis = by_type(&srcs, "redis");
    assert_eq!(redis.len(), 1, "{text}");
    assert_eq!(redis[0]["service"].as_str(), Some("redis"));
    assert_eq!(redis[0]["password"].as_str(), Some("${REDIS_PASSWORD}"), "{text}");
    assert_eq!(redis[0]["mode"].as_str(), Some("file"));
    assert!(!redis[0].contains_key("url"), "{text}");

    let nats = by_type(&srcs, "nats");
    assert_eq!(nats.len(), 1, "{text}");
    assert_eq!(nats[0]["service"].as_str(), Some("nats"));
    assert_eq!(nats[0]["mode"].as_str(), Some("tarball"));
    assert_eq!(nats[0]["data_dir"].as_str(), Some("/data"));
    assert_eq!(nats[0]["pause"].as_bool(), Some(true));

    // Caddy's named volumes as volume sources (prefixed with the project); the databases'
    // volumes are NOT copied as files (their sources back them up consistently).
    let files = by_type(&srcs, "files");
    let mut volumes: Vec<&str> = files.iter().filter_map(|f| f.get("volume")?.as_str()).collect();
    volumes.sort();
    assert_eq!(volumes, ["shopstack_caddy_config", "shopstack_caddy_data"], "{text}");
    let host: Vec<&toml::Table> = files.iter().filter(|f| f.contains_key("paths")).collect();
    assert_eq!(host.len(), 1, "{text}");
    let paths: Vec<&str> = host[0]["paths"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    let stack_abs = stack.canonicalize().unwrap();
    for f in ["docker-compose.yml", ".env", "Caddyfile"] {
        let want = stack_abs.join(f);
        assert!(
            paths.iter().any(|p| Path::new(p) == want),
            "{} not in the host files source: {paths:?}",
            want.display()
        );
    }
    assert_eq!(srcs.len(), 6, "postgres, redis, nats, two volumes, host files:\n{text}");

    // What it found, what it does not know (listed, not guessed), and what the daemon needs.
    for want in [
        "caddy (caddy:2-alpine)",
        "app (ghcr.io/example/shop-app:1.4)",
        "worker (built from source",
        "REDIS_PASSWORD",
        "Compose project 'shopstack'",
    ] {
        assert!(stdout.contains(want), "init did not say '{want}':\n{stdout}");
    }
    assert!(text.contains("must set: REDIS_PASSWORD"), "{text}");

    // Never overwrites.
    let (code, _, err) = init(ws.path(), &compose, &out, &ws.recipient);
    assert_ne!(code, 0);
    assert!(err.contains("already exists"), "{err}");
    assert_eq!(std::fs::read_to_string(&out).unwrap(), text);
}

/// The issue's config must load with drctl's own validation (every source kind's container
/// keys), given the variable it refers to.
#[test]
fn init_from_compose_config_for_the_issue_stack_validates() {
    let _g = shared();
    let ws = Workspace::new();
    let compose = issue_stack(&ws.path().join("shop"));
    let out = ws.path().join("drctl.toml");
    let (code, stdout, stderr) = init(ws.path(), &compose, &out, &ws.recipient);
    assert_eq!(code, 0, "init:\n{stdout}\n{stderr}");
    let (code, vout, verr) = ws.run_env(&["validate"], &[("REDIS_PASSWORD", "set-by-the-daemon")]);
    assert_eq!(
        code,
        0,
        "validate:\n{vout}\n{verr}\n{}",
        std::fs::read_to_string(&out).unwrap()
    );
    assert!(vout.contains("6 source(s)"), "{vout}");
}

#[test]
fn init_from_compose_never_copies_a_literal_password_and_says_what_to_set() {
    let _g = shared();
    let ws = Workspace::new();
    let dir = ws.path().join("lit");
    std::fs::create_dir_all(&dir).unwrap();
    let compose = dir.join("compose.yaml");
    std::fs::write(
        &compose,
        "name: Lit-Stack\nservices:\n  cache:\n    image: docker.io/library/redis:7.2@sha256:0123abcd\n    command: [\"redis-server\", \"--requirepass\", \"literal-hunter2\"]\n  queue:\n    image: nats:2.10-alpine\n    command: --config /etc/nats/nats.conf\n",
    )
    .unwrap();
    let out = ws.path().join("drctl.toml");
    let (_code, stdout, stderr) = init(ws.path(), &compose, &out, &ws.recipient);
    let text = std::fs::read_to_string(&out).unwrap_or_else(|e| panic!("{e}\n{stdout}\n{stderr}"));
    assert!(
        !text.contains("literal-hunter2") && !stdout.contains("literal-hunter2"),
        "{text}\n{stdout}"
    );
    let cfg: toml::Table = toml::from_str(&text).unwrap();
    let srcs = sources(&cfg);
    let redis = by_type(&srcs, "redis");
    assert_eq!(redis[0]["service"].as_str(), Some("cache"));
    assert_eq!(
        redis[0]["compose_project"].as_str(),
        Some("lit-stack"),
        "name: wins, normalised"
    );
    assert_eq!(redis[0]["password"].as_str(), Some("${REDIS_PASSWORD}"));
    assert!(stdout.contains("written in the compose file"), "{stdout}");
    // NATS with its store dir in a config file: not guessed, said.
    assert!(by_type(&srcs, "nats").is_empty(), "{text}");
    assert!(stdout.contains("/etc/nats/nats.conf"), "{stdout}");
    assert!(text.contains("TO CHECK"), "{text}");
}

#[test]
fn init_from_compose_config_backs_up_the_running_stack_and_its_files() {
    let _g = exclusive();
    let ws = Workspace::new();
    let dir = ws.path().join("stack");
    std::fs::create_dir_all(&dir).unwrap();
    // COMPOSE_PROJECT_NAME from .env names the project, as Compose does.
    std::fs::write(
        dir.join(".env"),
        format!("COMPOSE_PROJECT_NAME=initshop\nPOSTGRES_USER=app\nPOSTGRES_PASSWORD={PG_SECRET}\nPOSTGRES_DB=appdb\nREDIS_PASSWORD={REDIS_SECRET}\n"),
    )
    .unwrap();
    let compose = dir.join("docker-compose.yml");
    std::fs::write(
        &compose,
        "services:\n  postgres:\n    image: postgres:16-alpine\n    container_name: initshop-db\n    env_file: .env\n    volumes: [pgdata:/var/lib/postgresql/data]\n  \
         redis:\n    image: redis:7-alpine\n    command: redis-server --appendonly yes --requirepass ${REDIS_PASSWORD}\n    volumes: [redisdata:/data]\n  \
         nats:\n    image: nats:2.10\n    command: -js -sd /data\n    volumes: [natsdata:/data]\n  \
         web:\n    image: ghcr.io/example/web:2\nvolumes:\n  pgdata: {}\n  redisdata: {}\n  natsdata: {}\n",
    )
    .unwrap();
    let out = ws.path().join("drctl.toml");
    let (code, stdout, stderr) = init(ws.path(), &compose, &out, &ws.recipient);
    assert_eq!(code, 0, "init:\n{stdout}\n{stderr}");
    assert!(stdout.contains("web (ghcr.io/example/web:2)"), "{stdout}");
    // The test fills in the storage.
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(text.contains("root = \"/var/backups/drctl\""), "{text}");
    ws.set_config(&text.replace(
        "root = \"/var/backups/drctl\"",
        &format!("root = \"{}\"", ws.fs_root("local").display()),
    ));

    // The project as Compose would have started it: labels, no published port.
    let engine = DockerEngine::start();
    let pg = engine.compose_postgres("initshop", "postgres", "initshop-db");
    engine.psql_in(
        &pg,
        "create table orders (id int primary key, item text); insert into orders select g, 'item ' || g from generate_series(1, 250) g;",
    );

    engine.compose_redis_with(
        "initshop",
        "redis",
        "initshop-redis-1",
        &["--appendonly", "yes", "--requirepass", REDIS_SECRET],
        &RedisOpts {
            volume: None,
            password: Some(REDIS_SECRET.into()),
        },
    );
    engine.redis_cli_in("initshop-redis-1", Some(REDIS_SECRET), &["SET", "cart:1", "3 apples"]);
    let nats = engine.compose_nats("initshop", "nats", "initshop-nats-1", true);
    let mut nc = engine.nats_client(&nats);
    seed_jetstream(&mut nc, 20);
    drop(nc);

    // The daemon's environment has the variables init named; nothing else was edited.
    let secrets = [("REDIS_PASSWORD", REDIS_SECRET)];
    let (code, bout, berr) = engine.run_drctl(&ws, &["backup"], &secrets);
    assert_eq!(code, 0, "backup with the generated config:\n{bout}\n{berr}");
    assert!(!bout.contains(REDIS_SECRET) && !berr.contains(REDIS_SECRET));
    let (code, lout, lerr) = engine.run_drctl(&ws, &["list", "--json"], &secrets);
    assert_eq!(code, 0, "{lerr}");
    let list: Vec<serde_json::Value> = serde_json::from_str(&lout).unwrap();
    let mut got: Vec<&str> = list.iter().map(|b| b["source"].as_str().unwrap()).collect();
    got.sort();
    assert_eq!(got, ["nats", "postgres", "redis", "stack-files"], "{list:?}");
    let redis = list.iter().find(|b| b["source"] == "redis").unwrap();
    assert_eq!(redis["facts"]["key_counts"]["db0"]["keys"], 1, "{redis}");
    let nats_b = list.iter().find(|b| b["source"] == "nats").unwrap();
    assert!(nats_b["facts"]["file_count"].as_u64().unwrap() >= 4, "{nats_b}");
    let pgb = list.iter().find(|b| b["source"] == "postgres").unwrap();
    assert_eq!(pgb["facts"]["database"], "appdb", "{pgb}");

    // The stack files come back byte for byte; the postgres dump lists the table.
    let restored = ws.path().join("restored");
    let (code, rout, rerr) = engine.run_drctl(
        &ws,
        &[
            "restore",
            "--at",
            "now",
            "--identity",
            ws.identity.to_str().unwrap(),
            "--output-dir",
            restored.to_str().unwrap(),
            "--source",
            "stack-files",
        ],
        &secrets,
    );
    assert_eq!(code, 0, "{rout}\n{rerr}");
    let env_back = files_under(&restored)
        .into_iter()
        .find(|f| f.ends_with(".env"))
        .unwrap_or_else(|| panic!("no .env restored: {:?}", files_under(&restored)));
    assert_eq!(
        std::fs::read(restored.join(env_back)).unwrap(),
        std::fs::read(dir.join(".env")).unwrap()
    );
    let dumps = ws.path().join("dumps");
    let (code, rout, rerr) = engine.run_drctl(
        &ws,
        &[
            "restore",
            "--at",
            "now",
            "--identity",
            ws.identity.to_str().unwrap(),
            "--output-dir",
            dumps.to_str().unwrap(),
            "--source",
            "postgres",
        ],
        &secrets,
    );
    assert_eq!(code, 0, "{rout}\n{rerr}");
    let dump = files_under(&dumps).into_iter().next().expect("a dump");
    let listing = std::process::Command::new(pg_bindir().join("pg_restore"))
        .arg("--list")
        .arg(dumps.join(dump))
        .output()
        .unwrap();
    assert!(listing.status.success(), "{}", String::from_utf8_lossy(&listing.stderr));
    assert!(
        String::from_utf8_lossy(&listing.stdout).contains("TABLE DATA public orders"),
        "{}",
        String::from_utf8_lossy(&listing.stdout)
    );
}
