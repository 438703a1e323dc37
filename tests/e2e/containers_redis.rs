//! Redis in a container (issue #14): found by its Compose service with no published port,
//! backed up with redis-cli exec'd in it and the RDB read through the engine (drctl's PATH has
//! no Redis tools), restored with `--target service:…` into another container.

use crate::support::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const PW: &str = "c0ntainer-Redis-pw";

/// A workspace whose only source is the Redis section `keys` (after name and type).
fn workspace(keys: &str) -> Workspace {
    let ws = Workspace::new();
    ws.write_config(
        &ws.fs_storage_toml("local"),
        &format!("[[source]]\nname = \"cache\"\ntype = \"redis\"\n{keys}\n"),
    );
    ws
}

/// drctl with DOCKER_HOST set, `env`, and a PATH with no redis-cli, redis-server or docker CLI.
fn run_in(ws: &Workspace, engine: &DockerEngine, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    engine.run_drctl(ws, args, env)
}

/// Every stored file under `dir` of the fs storage `local` (`manifests`, `data`).
fn stored(ws: &Workspace, dir: &str) -> Vec<PathBuf> {
    files_under(&ws.fs_root("local"))
        .into_iter()
        .filter(|f| f.split('/').any(|c| c == dir))
        .map(|f| ws.fs_root("local").join(f))
        .collect()
}

/// Strings, hashes, lists, sets, sorted sets, a stream, keys with TTLs, in db0, db3 and db7.
fn seed(engine: &DockerEngine, c: &str, pw: Option<&str>) {
    let cli = |args: &[&str]| engine.redis_cli_in(c, pw, args);
    for db in ["0", "3", "7"] {
        let a = |args: &[&str]| {
            let mut v = vec!["-n", db];
            v.extend_from_slice(args);
            cli(&v)
        };
        a(&["set", &format!("str:{db}"), &format!("value in db {db}")]);
        a(&["set", "bin", "\u{1}\u{2}binary\r\nline"]);
        a(&["hset", "user:1", "name", "Ada", "role", "admin", "db", db]);
        a(&["rpush", "queue", "a", "b", "c", "a"]);
        a(&["sadd", "tags", "x", "y", "z"]);
        a(&["zadd", "scores", "1.5", "alice", "2", "bob", "-3", "carol"]);
        a(&["xadd", "events", "1700000000000-0", "kind", "signup", "user", "1"]);
        a(&["xadd", "events", "1700000000001-0", "kind", "login"]);
        a(&["set", "session", "tok", "EX", "3600"]);
        a(&["hset", "cache:h", "f", "v"]);
        a(&["expire", "cache:h", "7200"]);
        a(&[
            "eval",
            "for i = 1, 500 do redis.call('set', 'k:' .. i, string.rep('v', i % 50)) end",
            "0",
        ]);
    }
}

/// Per database, every key with its type, value and TTL in seconds (-1: none).
type Contents = BTreeMap<String, BTreeMap<String, (String, String, i64)>>;

/// Every key of the selected database as `key TAB type TAB ttl TAB value` lines, values in a
/// canonical form (members sorted where Redis does not order them), control bytes escaped.
/// One exec per database: an exec per key would take minutes.
const DESCRIBE: &str = r#"
local function esc(s) return (string.gsub(s, '[%c\\]', function(c) return string.format('\\%03d', string.byte(c)) end)) end
local out, cursor = {}, '0'
repeat
  local r = redis.call('SCAN', cursor, 'COUNT', 1000)
  cursor = r[1]
  for _, k in ipairs(r[2]) do
    local t = redis.call('TYPE', k)['ok']
    local v
    if t == 'string' then v = redis.call('GET', k)
    elseif t == 'hash' then
      local h, p = redis.call('HGETALL', k), {}
      for i = 1, #h, 2 do table.insert(p, h[i] .. '=' .. h[i + 1]) end
      table.sort(p); v = table.concat(p, ',')
    elseif t == 'list' then v = table.concat(redis.call('LRANGE', k, 0, -1), ',')
    elseif t == 'set' then local m = redis.call('SMEMBERS', k); table.sort(m); v = table.concat(m, ',')
    elseif t == 'zset' then v = table.concat(redis.call('ZRANGE', k, 0, -1, 'WITHSCORES'), ',')
    elseif t == 'stream' then
      local e = {}
      for _, x in ipairs(redis.call('XRANGE', k, '-', '+')) do table.insert(e, x[1] .. ':' .. table.concat(x[2], ',')) end
      v = table.concat(e, ';')
    else v = '?' end
    table.insert(out, esc(k) .. '\t' .. t .. '\t' .. redis.call('TTL', k) .. '\t' .. esc(v))
  end
until cursor == '0'
return table.concat(out, '\n')
"#;

fn contents(engine: &DockerEngine, c: &str, pw: Option<&str>) -> Contents {
    let mut out = Contents::new();
    let ks = engine.redis_cli_in(c, pw, &["info", "keyspace"]);
    for line in ks.lines().filter(|l| l.starts_with("db")) {
        let db = line.split(':').next().unwrap().trim_start_matches("db").to_string();
        let all = engine.redis_cli_in(c, pw, &["-n", &db, "eval", DESCRIBE, "0"]);
        let mut m = BTreeMap::new();
        for l in all.lines() {
            let f: Vec<&str> = l.splitn(4, '\t').collect();
            assert_eq!(f.len(), 4, "{l:?}");
            assert_ne!(f[1], "?", "unexpected type: {l}");
            m.insert(
                f[0].to_string(),
                (f[1].to_string(), f[3].to_string(), f[2].parse().unwrap()),
            );
        }
        out.insert(format!("db{db}"), m);
    }
    out
}

/// `want` and `got` hold the same keys, types and values, and TTLs within a few seconds.
fn assert_same(want: &Contents, got: &Contents) {
    assert_eq!(
        want.keys().collect::<Vec<_>>(),
        got.keys().collect::<Vec<_>>(),
        "databases"
    );
    for (db, keys) in want {
        let g = &got[db];
        assert_eq!(keys.len(), g.len(), "{db}: key count");
        for (k, (t, v, ttl)) in keys {
            let (gt, gv, gttl) = g.get(k).unwrap_or_else(|| panic!("{db}: {k} missing"));
            assert_eq!((t, v), (gt, gv), "{db}: {k}");
            if *ttl < 0 {
                assert_eq!(*gttl, -1, "{db}: {k} gained a TTL");
            } else {
                assert!(
                    *gttl > 0 && (ttl - gttl).abs() <= 5,
                    "{db}: {k} TTL {ttl} became {gttl}"
                );
            }
        }
    }
}

fn restore_args<'a>(ident: &'a str, target: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut a = vec![
        "restore",
        "--at",
        "now",
        "--source",
        "cache",
        "--identity",
        ident,
        "--target",
        target,
    ];
    a.extend_from_slice(extra);
    a
}

#[test]
fn aof_redis_by_service_is_backed_up_found_again_when_recreated_and_restored_into_a_fresh_container() {
    let _g = exclusive();
    let engine = DockerEngine::start();
    let vol = RedisOpts {
        volume: Some("app_redis_data".into()),
        password: None,
    };
    // Redis 7's multi-part AOF (appendonlydir/), the common case in compose files.
    engine.compose_redis_with("app", "redis", "app-redis-1", &["--appendonly", "yes"], &vol);
    seed(&engine, "app-redis-1", None);
    let aof = engine.podman(&["exec", "app-redis-1", "ls", "/data/appendonlydir"]);
    assert!(aof.iter().any(|f| f.ends_with(".incr.aof")), "{aof:?}");

    let ws = workspace("service = \"redis\"\n");
    let (code, out, err) = run_in(&ws, &engine, &["backup"], &[]);
    assert_eq!(code, 0, "backup failed:\n{out}\n{err}");
    let list = ws.list_json();
    assert_eq!(list.len(), 1, "{list:?}");
    let facts = &list[0]["facts"];
    assert!(facts["redis_version"].as_str().unwrap().starts_with('7'), "{facts}");
    for db in ["db0", "db3", "db7"] {
        assert_eq!(facts["key_counts"][db]["keys"], 509, "{facts}");
        assert_eq!(facts["key_counts"][db]["expires"], 2, "{facts}");
    }
    assert_eq!(facts["key_counts_exact"], true, "a quiet server: {facts}");
    assert_eq!(facts["rdb_path"], "/data/dump.rdb", "{facts}");
    assert!(facts["expected_size"].as_u64().unwrap() > 10_000, "{facts}");
    assert_eq!(stored(&ws, "manifests").len(), 1);
    let lines = exec_command_lines(&engine, "app-redis-1");
    assert!(
        lines.iter().any(|l| l.iter().any(|a| a == "BGSAVE")),
        "BGSAVE ran through redis-cli in the container: {lines:?}"
    );

    // `docker compose up --force-recreate`: a new container (new id, new name), same service,
    // same volume; the server reloads its AOF.
    engine.podman(&["rm", "-f", "-t", "0", "app-redis-1"]);
    engine.compose_redis_with("app", "redis", "app-redis-2", &["--appendonly", "yes"], &vol);
    engine.redis_cli_in("app-redis-2", None, &["set", "after:recreate", "yes"]);
    let (code, out, err) = run_in(&ws, &engine, &["backup", "--no-prune"], &[]);
    assert_eq!(
        code, 0,
        "backup after the container was recreated failed:\n{out}\n{err}"
    );
    let list = ws.list_json();
    assert_eq!(list.len(), 2);
    let mut db0: Vec<u64> = list
        .iter()
        .map(|b| b["facts"]["key_counts"]["db0"]["keys"].as_u64().unwrap())
        .collect();
    db0.sort();
    assert_eq!(db0, vec![509, 510], "the recreated container was backed up");

    // Into a fresh container (empty volume) of another project, by its service, from a host
    // with no Redis installed (drctl's PATH is empty: a new VPS, or the drctl image).
    engine.compose_redis("restored", "redis", "restored-redis-1", &["--appendonly", "yes"]);
    let ident = ws.identity.to_str().unwrap().to_string();
    let (code, out, err) = run_in(
        &ws,
        &engine,
        &restore_args(&ident, "service:redis", &["--compose-project", "restored"]),
        &[],
    );
    assert_eq!(code, 0, "restore failed:\n{out}\n{err}");
    assert!(out.contains("1528"), "keys restored reported: {out}");
    let want = contents(&engine, "app-redis-2", None);
    assert_eq!(want["db0"].len(), 510);
    assert_eq!(want["db3"]["events"].0, "stream");
    assert!(want["db7"]["session"].2 > 3000, "{:?}", want["db7"]["session"]);
    assert_same(&want, &contents(&engine, "restored-redis-1", None));
}

#[test]
fn a_password_protected_container_is_backed_up_without_the_password_on_any_command_line() {
    let _g = exclusive();
    let engine = DockerEngine::start();
    let opts = RedisOpts {
        volume: None,
        password: Some(PW.into()),
    };
    engine.compose_redis_with("sec", "redis", "sec-redis-1", &["--requirepass", PW], &opts);
    seed(&engine, "sec-redis-1", Some(PW));
    let ws = workspace("service = \"redis\"\npassword = \"${CACHE_REDIS_PASSWORD}\"\n");
    let (code, out, err) = run_in(&ws, &engine, &["backup"], &[("CACHE_REDIS_PASSWORD", PW)]);
    assert_eq!(code, 0, "backup failed:\n{out}\n{err}");
    assert!(!out.contains(PW) && !err.contains(PW), "the password in drctl's output");
    let (code, listed, err) = ws.run_env(&["list", "--json"], &[("CACHE_REDIS_PASSWORD", PW)]);
    assert_eq!(code, 0, "{err}");
    assert!(!listed.contains(PW), "the password in the manifest: {listed}");
    let list: Vec<serde_json::Value> = serde_json::from_str(&listed).unwrap();
    assert_eq!(list[0]["facts"]["key_counts"]["db3"]["keys"], 509);
    let lines = exec_command_lines(&engine, "sec-redis-1");
    assert!(
        lines.iter().filter(|l| l.iter().any(|a| a == "redis-cli")).count() >= 4,
        "drctl's redis-cli execs were recorded: {lines:?}"
    );
    for l in &lines {
        assert!(
            !l.iter().any(|a| a.contains(PW)),
            "a secret on an exec's command line: {l:?}"
        );
    }

    // A wrong password: the exec fails, the backup aborts with a hint, nothing is committed,
    // and the wrong password is not printed either.
    let wrong = "not-the-Password-42";
    let ws = workspace("service = \"redis\"\npassword = \"${CACHE_REDIS_PASSWORD}\"\n");
    let (code, out, err) = run_in(&ws, &engine, &["backup"], &[("CACHE_REDIS_PASSWORD", wrong)]);
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(
        err.contains("WRONGPASS") && err.contains("password is wrong") && err.contains("sec-redis-1"),
        "{err}"
    );
    assert!(!err.contains(wrong) && !out.contains(wrong), "{err}");
    assert!(stored(&ws, "manifests").is_empty(), "nothing committed");

    // No password at all: the hint names the key to set.
    let ws = workspace("service = \"redis\"\n");
    let (code, out, err) = run_in(&ws, &engine, &["backup"], &[]);
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(err.contains("NOAUTH") && err.contains("password = "), "{err}");
    assert!(stored(&ws, "manifests").is_empty(), "nothing committed");
}

#[test]
fn a_bgsave_that_fails_in_the_container_aborts_the_backup_and_commits_nothing() {
    let _g = exclusive();
    let engine = DockerEngine::start();
    engine.compose_redis("ro", "redis", "ro-redis-1", &[]);
    engine.redis_cli_in("ro-redis-1", None, &["set", "k", "v"]);
    // Redis cannot write its snapshot: the fork's save fails.
    engine.podman(&["exec", "ro-redis-1", "chmod", "555", "/data"]);
    let ws = workspace("container = \"ro-redis-1\"\n");
    let (code, out, err) = run_in(&ws, &engine, &["backup"], &[]);
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(
        err.contains("BGSAVE failed") && err.contains("/data") && err.contains("permissions"),
        "{err}"
    );
    assert!(stored(&ws, "manifests").is_empty(), "nothing committed");
    assert!(
        stored(&ws, "data").is_empty(),
        "no data object left: {:?}",
        stored(&ws, "data")
    );

    // With the directory writable again, the same source works.
    engine.podman(&["exec", "ro-redis-1", "chmod", "755", "/data"]);
    let (code, out, err) = run_in(&ws, &engine, &["backup"], &[]);
    assert_eq!(code, 0, "{out}\n{err}");
}

#[test]
fn a_non_empty_target_container_needs_clean_and_a_damaged_backup_leaves_it_untouched() {
    let _g = exclusive();
    let engine = DockerEngine::start();
    engine.compose_redis("src", "redis", "src-redis-1", &["--appendonly", "yes"]);
    seed(&engine, "src-redis-1", None);
    let ws = workspace("service = \"redis\"\ncompose_project = \"src\"\n");
    let (code, out, err) = run_in(&ws, &engine, &["backup"], &[]);
    assert_eq!(code, 0, "{out}\n{err}");

    // The target has a password (from drctl's REDISCLI_AUTH) and keys of its own.
    let opts = RedisOpts {
        volume: None,
        password: Some(PW.into()),
    };
    engine.compose_redis_with("dst", "redis", "dst-redis-1", &["--requirepass", PW], &opts);
    engine.redis_cli_in("dst-redis-1", Some(PW), &["set", "old", "data"]);
    let ident = ws.identity.to_str().unwrap().to_string();
    let env = [("DOCKER_HOST", engine.host.as_str()), ("REDISCLI_AUTH", PW)];
    let (code, out, err) = ws.run_env(&restore_args(&ident, "container:dst-redis-1", &[]), &env);
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(err.contains("not empty (1 keys)") && err.contains("--clean"), "{err}");
    assert_eq!(engine.redis_cli_in("dst-redis-1", Some(PW), &["dbsize"]), "1");

    // A flipped byte in the stored object: refused before anything is flushed.
    let data = stored(&ws, "data");
    assert_eq!(data.len(), 1, "{data:?}");
    let flip = |p: &Path| {
        let mut b = std::fs::read(p).unwrap();
        let mid = b.len() / 2;
        b[mid] ^= 0x01;
        std::fs::write(p, b).unwrap();
    };
    flip(&data[0]);
    let (code, out, err) = ws.run_env(&restore_args(&ident, "container:dst-redis-1", &["--clean"]), &env);
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(
        err.contains("damaged or was altered") || err.contains("SHA-256"),
        "{err}"
    );
    assert_eq!(
        engine.redis_cli_in("dst-redis-1", Some(PW), &["get", "old"]),
        "data",
        "target touched"
    );
    assert_eq!(engine.redis_cli_in("dst-redis-1", Some(PW), &["dbsize"]), "1");
    assert!(!err.contains(PW) && !out.contains(PW));

    // Intact again, --clean replaces the target's keys with the backup's.
    flip(&data[0]);
    let (code, out, err) = ws.run_env(&restore_args(&ident, "container:dst-redis-1", &["--clean"]), &env);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(!err.contains(PW) && !out.contains(PW));
    let want = contents(&engine, "src-redis-1", None);
    let got = contents(&engine, "dst-redis-1", Some(PW));
    assert!(!got["db0"].contains_key("old"), "--clean flushed the old keys");
    assert_same(&want, &got);
    for l in exec_command_lines(&engine, "dst-redis-1") {
        assert!(
            !l.iter().any(|a| a.contains(PW)),
            "a secret on an exec's command line: {l:?}"
        );
    }

    // Without REDISCLI_AUTH the refusal says where the password goes.
    let (code, _, err) = ws.run_env(
        &restore_args(&ident, "container:dst-redis-1", &["--clean"]),
        &[("DOCKER_HOST", engine.host.as_str())],
    );
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("NOAUTH") && err.contains("REDISCLI_AUTH"), "{err}");
}

#[test]
fn validate_checks_the_redis_container_keys_without_an_engine() {
    let no_engine = [("DOCKER_HOST", "unix:///nonexistent/engine.sock")];
    let ws = workspace("service = \"redis\"\nurl = \"redis://127.0.0.1:6379\"\n");
    let (code, _, err) = ws.run_env(&["validate"], &no_engine);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("url does not apply"), "{err}");
    let ws = workspace("password = \"x\"\nurl = \"redis://127.0.0.1:6379\"\n");
    let (code, _, err) = ws.run_env(&["validate"], &no_engine);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("password belongs to a server in a container"), "{err}");
    let ws = workspace("service = \"redis\"\ncompose_project = \"app\"\npassword = \"${CACHE_PW_FOR_VALIDATE}\"\n");
    let (code, out, err) = ws.run_env(
        &["validate"],
        &[no_engine[0], ("CACHE_PW_FOR_VALIDATE", "s3cret-validate")],
    );
    assert_eq!(
        code, 0,
        "a complete container source validates with no engine:\n{out}\n{err}"
    );
    assert!(!out.contains("s3cret-validate") && !err.contains("s3cret-validate"));
}
