//! Redis, NATS JetStream and files, and a whole stack restored to one point in time, against
//! real throwaway servers.

use crate::support::*;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

// ---------- Redis ----------

fn seed_redis(r: &Redis) {
    let mut c = redis::Client::open(r.url_db(0)).unwrap().get_connection().unwrap();
    let mut p = redis::pipe();
    for i in 0..3000 {
        if i % 3 == 0 {
            p.cmd("SET")
                .arg(format!("s:{i}"))
                .arg(format!("value {i}"))
                .arg("EX")
                .arg(3600 + i);
        } else {
            p.cmd("SET").arg(format!("s:{i}")).arg(format!("value {i}"));
        }
    }
    for i in 0..300 {
        p.cmd("HSET")
            .arg(format!("h:{i}"))
            .arg("name")
            .arg(format!("n{i}"))
            .arg("n")
            .arg(i);
        p.cmd("RPUSH").arg(format!("l:{i}")).arg("a").arg("b").arg(i);
        p.cmd("SADD").arg(format!("set:{i}")).arg("x").arg("y").arg(i);
        p.cmd("ZADD").arg(format!("z:{i}")).arg(1.5).arg("a").arg(i).arg("b");
        p.cmd("XADD").arg(format!("st:{i}")).arg("*").arg("field").arg(i);
        p.cmd("PEXPIRE").arg(format!("h:{i}")).arg(7_200_000);
    }
    p.cmd("SET")
        .arg(b"bin\x00key".as_slice())
        .arg(b"\xff\x00\x01".as_slice());
    p.query::<()>(&mut c).unwrap();
    let mut c3 = redis::Client::open(r.url_db(3)).unwrap().get_connection().unwrap();
    for i in 0..100 {
        redis::cmd("SET")
            .arg(format!("db3:{i}"))
            .arg(i)
            .query::<()>(&mut c3)
            .unwrap();
    }
}

type RedisData = BTreeMap<(u32, Vec<u8>), (String, Vec<u8>, i64)>;

/// A value in a canonical form (sets and hashes sorted), so equal data compares equal.
fn redis_value(c: &mut redis::Connection, t: &str, k: &[u8]) -> Vec<u8> {
    let sorted = |mut v: Vec<Vec<u8>>| {
        v.sort();
        v.concat()
    };
    match t {
        "string" => redis::cmd("GET").arg(k).query(c).unwrap(),
        "list" => redis::cmd("LRANGE")
            .arg(k)
            .arg(0)
            .arg(-1)
            .query::<Vec<Vec<u8>>>(c)
            .unwrap()
            .concat(),
        "set" => sorted(redis::cmd("SMEMBERS").arg(k).query(c).unwrap()),
        "hash" => {
            let pairs: Vec<(Vec<u8>, Vec<u8>)> = redis::cmd("HGETALL").arg(k).query(c).unwrap();
            sorted(pairs.into_iter().map(|(a, b)| [a, b].concat()).collect())
        }
        "zset" => redis::cmd("ZRANGE")
            .arg(k)
            .arg(0)
            .arg(-1)
            .arg("WITHSCORES")
            .query::<Vec<Vec<u8>>>(c)
            .unwrap()
            .concat(),
        "stream" => format!(
            "{:?}",
            redis::cmd("XRANGE")
                .arg(k)
                .arg("-")
                .arg("+")
                .query::<redis::Value>(c)
                .unwrap()
        )
        .into_bytes(),
        other => panic!("unexpected type {other}"),
    }
}

/// Every key of dbs 0..16: type, value, and absolute expiry in ms (-1: none).
fn redis_contents(url_of: impl Fn(u32) -> String) -> RedisData {
    let mut out = BTreeMap::new();
    for db in 0..16 {
        let mut c = redis::Client::open(url_of(db)).unwrap().get_connection().unwrap();
        let keys: Vec<Vec<u8>> = redis::cmd("KEYS").arg("*").query(&mut c).unwrap();
        for k in keys {
            let t: String = redis::cmd("TYPE").arg(&k).query(&mut c).unwrap();
            let v = redis_value(&mut c, &t, &k);
            let exp: i64 = redis::cmd("PEXPIRETIME").arg(&k).query(&mut c).unwrap();
            out.insert((db, k), (t, v, exp));
        }
    }
    out
}

fn same_redis(a: &RedisData, b: &RedisData) {
    assert_eq!(a.len(), b.len(), "key counts differ");
    let mut with_ttl = 0;
    for (k, (t, d, ttl)) in a {
        let (t2, d2, ttl2) = b.get(k).unwrap_or_else(|| panic!("missing key {k:?}"));
        assert_eq!(t, t2, "type of {k:?}");
        assert_eq!(d, d2, "value of {k:?}");
        if *ttl < 0 {
            assert_eq!(ttl, ttl2, "ttl of {k:?}");
        } else {
            with_ttl += 1;
            // Restored TTLs are relative to the restore, so allow a second of drift.
            assert!((ttl - ttl2).abs() <= 1_000, "expiry of {k:?}: {ttl} vs {ttl2}");
        }
    }
    assert!(with_ttl > 1000, "the data set has TTLs to compare");
}

fn redis_source(r: &Redis, name: &str, mode: &str) -> String {
    format!(
        "[[source]]\nname = \"{name}\"\ntype = \"redis\"\nurl = \"{}\"\nmode = \"{mode}\"\n",
        r.url_env("DRCTL_REDIS_PASSWORD")
    )
}

fn redis_round_trip(mode: &str, server_args: &[&str], transfer: Option<&str>) {
    let _g = shared(); // redis-server's command line, a verification sandbox
    let r = Redis::start_with(server_args);
    seed_redis(&r);
    let before = redis_contents(|db| r.url_db(db));
    let ws = Workspace::new();
    ws.write_config(&ws.fs_storage_toml("local"), &redis_source(&r, "cache", mode));
    let env = [("DRCTL_REDIS_PASSWORD", REDIS_PASSWORD)];
    let (code, out, err) = ws.run_env(&["backup"], &env);
    assert_eq!(code, 0, "{out}\n{err}");
    let list = ws.list_json();
    assert_eq!(list[0]["kind"], "redis");
    assert_eq!(list[0]["facts"]["key_counts"]["db0"]["keys"], 3000 + 1500 + 1);
    assert_eq!(list[0]["facts"]["key_counts"]["db3"]["keys"], 100);
    if let Some(t) = transfer {
        assert_eq!(list[0]["facts"]["transfer"], t);
    }
    assert!(!err.contains(REDIS_PASSWORD), "password in logs");

    // Into a fresh, empty redis-server.
    let target = Redis::start();
    let ident = ws.identity.to_str().unwrap().to_string();
    let (code, out, err) = ws.run_env(
        &["restore", "--at", "now", "--source", "cache", "--identity", &ident],
        &[("DRCTL_TARGET_URL", &target.url()), env[0]],
    );
    assert_eq!(code, 0, "{out}\n{err}");
    same_redis(&before, &redis_contents(|db| target.url_db(db)));
    // A non-empty target is refused.
    let (code, _, err) = ws.run_env(
        &["restore", "--at", "now", "--source", "cache", "--identity", &ident],
        &[("DRCTL_TARGET_URL", &target.url()), env[0]],
    );
    assert_eq!(code, 1);
    assert!(err.contains("not empty") && err.contains("--clean"), "{err}");

    // By hand: age | zstd → dump.rdb → redis-server loads it.
    let root = ws.fs_root("local");
    let obj = root.join(files_under(&root).into_iter().find(|f| f.starts_with("data/")).unwrap());
    assert!(obj.to_str().unwrap().ends_with(".rdb.zst.age"));
    let hand = tempfile::tempdir().unwrap();
    sh(
        &format!(
            "age -d -i '{ident}' '{}' | zstd -d -q > '{}/dump.rdb'",
            obj.display(),
            hand.path().display()
        ),
        &[],
    );
    let rdb = std::fs::read(hand.path().join("dump.rdb")).unwrap();
    assert!(rdb.starts_with(b"REDIS00"), "a plain RDB, no transfer framing");
    let check = Command::new("redis-check-rdb")
        .arg(hand.path().join("dump.rdb"))
        .output()
        .unwrap();
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stdout));
    let port = free_port();
    let mut by_hand = Command::new("redis-server")
        .args(["--bind", "127.0.0.1", "--port", &port.to_string(), "--save", ""])
        .arg("--dir")
        .arg(hand.path())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(800));
    let loaded = redis_contents(|db| format!("redis://127.0.0.1:{port}/{db}"));
    let _ = by_hand.kill();
    let _ = by_hand.wait();
    same_redis(&before, &loaded);

    // And verification passes.
    let (code, out, _) = ws.run_env(&["verify", "--identity", &ident], &env);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("ok   redis-check-rdb") && out.contains("ok   key counts"),
        "{out}"
    );
}

#[test]
fn redis_file_mode_round_trip_keeps_types_and_ttls() {
    redis_round_trip("file", &[], None);
}

/// Redis 7 streams a diskless RDB framed by `$EOF:<mark>`; the stored RDB must not contain it.
#[test]
fn redis_replication_mode_diskless_round_trip_keeps_types_and_ttls() {
    redis_round_trip(
        "replication",
        &["--repl-diskless-sync", "yes", "--repl-diskless-sync-delay", "0"],
        Some("diskless"),
    );
}

#[test]
fn redis_replication_mode_disk_based_round_trip_keeps_types_and_ttls() {
    redis_round_trip("replication", &["--repl-diskless-sync", "no"], Some("disk"));
}

/// What `redis_contents` leaves out: consumer groups, their pending entries per consumer, and
/// function libraries (no field that moves with the clock).
fn redis_extras(url: &str) -> Vec<String> {
    let mut c = redis::Client::open(url).unwrap().get_connection().unwrap();
    let mut out = Vec::new();
    for q in [
        vec!["XINFO", "GROUPS", "st:groups"],
        vec!["XPENDING", "st:groups", "g1"],
        vec!["FUNCTION", "LIST", "WITHCODE"],
    ] {
        let mut cmd = redis::cmd(q[0]);
        for a in &q[1..] {
            cmd.arg(*a);
        }
        let v: redis::Value = cmd.query(&mut c).unwrap();
        out.push(format!("{v:?}"));
    }
    out
}

/// Every value encoding a Redis 7 writes into an RDB, read out of the file by drctl itself: a
/// restore needs no redis-server (drctl's PATH is empty), only the target. Big collections
/// (hash tables, skiplists, multi-node quicklists), small ones (listpacks, intsets), compressed
/// and integer strings, integer and compressed key names, a stream with a consumer group, pending
/// entries and consumers, a function library, a key that expires between backup and restore.
/// A target that refuses the data is refused before `--clean` flushes it.
#[test]
fn redis_restore_reads_every_encoding_out_of_the_rdb_without_a_redis_server() {
    let _g = shared(); // redis-server's command line
    let r = Redis::start();
    let mut c = redis::Client::open(r.url_db(0)).unwrap().get_connection().unwrap();
    let mut p = redis::pipe();
    for i in 0..500 {
        p.cmd("HSET")
            .arg("h:big")
            .arg(format!("f{i}"))
            .arg(format!("value {i}"));
        p.cmd("SADD").arg("set:big").arg(format!("m{i}"));
        p.cmd("SADD").arg("set:ints").arg(i * 7);
        p.cmd("ZADD").arg("z:big").arg(f64::from(i) / 3.0).arg(format!("m{i}"));
    }
    for i in 0..20_000 {
        p.cmd("RPUSH").arg("l:long").arg(format!("element {i}"));
    }
    p.cmd("HSET").arg("h:small").arg("a").arg("1").arg("b").arg("2");
    p.cmd("ZADD").arg("z:small").arg(1).arg("x").arg(2.5).arg("y");
    p.cmd("SET").arg("s:lzf").arg("abcdefgh".repeat(5000));
    p.cmd("SET").arg("s:int").arg(123_456_789);
    p.cmd("SET").arg("s:neg").arg(-42);
    p.cmd("SET").arg("42").arg("an integer key");
    p.cmd("SET").arg("k".repeat(300)).arg("a compressed key name");
    p.cmd("SET")
        .arg(b"bin\x00\r\nkey".as_slice())
        .arg(b"\xff\x00".as_slice());
    p.cmd("SET").arg("ttl:long").arg("v").arg("EX").arg(86_400);
    p.cmd("SET").arg("ttl:gone").arg("v").arg("PX").arg(2_500);
    for i in 0..50 {
        p.cmd("XADD")
            .arg("st:groups")
            .arg(format!("{}-0", 1_700_000_000_000u64 + i))
            .arg("n")
            .arg(i);
    }
    p.cmd("XGROUP").arg("CREATE").arg("st:groups").arg("g1").arg("0");
    p.cmd("XREADGROUP")
        .arg("GROUP")
        .arg("g1")
        .arg("alice")
        .arg("COUNT")
        .arg(10)
        .arg("STREAMS")
        .arg("st:groups")
        .arg(">");
    p.cmd("XREADGROUP")
        .arg("GROUP")
        .arg("g1")
        .arg("bob")
        .arg("COUNT")
        .arg(5)
        .arg("STREAMS")
        .arg("st:groups")
        .arg(">");
    p.cmd("XACK")
        .arg("st:groups")
        .arg("g1")
        .arg("1700000000000-0")
        .arg("1700000000001-0");
    p.cmd("FUNCTION")
        .arg("LOAD")
        .arg("#!lua name=drctllib\nredis.register_function('drctl_one', function() return 1 end)");
    p.query::<()>(&mut c).unwrap();
    let mut c5 = redis::Client::open(r.url_db(5)).unwrap().get_connection().unwrap();
    redis::cmd("SET")
        .arg("in:db5")
        .arg("five")
        .query::<()>(&mut c5)
        .unwrap();
    let ws = Workspace::new();
    ws.write_config(&ws.fs_storage_toml("local"), &redis_source(&r, "cache", "file"));
    let env = [("DRCTL_REDIS_PASSWORD", REDIS_PASSWORD)];
    let (code, out, err) = ws.run_env(&["backup"], &env);
    assert_eq!(code, 0, "{out}\n{err}");
    // After the backup, the short-lived key expires (on the source too, for the comparison).
    std::thread::sleep(std::time::Duration::from_millis(3_000));
    let before = redis_contents(|db| r.url_db(db));
    assert!(!before.contains_key(&(0, b"ttl:gone".to_vec())));
    let extras = redis_extras(&r.url());
    assert!(
        extras[1].contains("alice") && extras[2].contains("drctllib"),
        "{extras:?}"
    );

    let ident = ws.identity.to_str().unwrap().to_string();
    let empty_path = tempfile::tempdir().unwrap();
    let restore = |target: &Redis, extra: &[&str]| {
        let mut args = vec!["restore", "--at", "now", "--source", "cache", "--identity", &ident];
        args.extend_from_slice(extra);
        ws.run_env(
            &args,
            &[
                ("DRCTL_TARGET_URL", &target.url()),
                ("PATH", empty_path.path().to_str().unwrap()),
            ],
        )
    };

    // A target with RESTORE disabled refuses the probe: nothing flushed, nothing written.
    let refusing = Redis::start_with(&["--rename-command", "RESTORE", ""]);
    redis_cli(&refusing, &["set", "keep", "me"]);
    let (code, out, err) = restore(&refusing, &["--clean"]);
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(
        err.contains("refused the backup's data before anything was written"),
        "{err}"
    );
    assert_eq!(redis_cli(&refusing, &["dbsize"]), "1", "--clean flushed it anyway");
    assert_eq!(redis_cli(&refusing, &["get", "keep"]), "me");

    let target = Redis::start();
    let (code, out, err) = restore(&target, &[]);
    assert_eq!(code, 0, "{out}\n{err}");
    let after = redis_contents(|db| target.url_db(db));
    assert_eq!(before.len(), 16, "{:?}", before.keys().collect::<Vec<_>>());
    for (k, (t, v, exp)) in &before {
        let (t2, v2, exp2) = after.get(k).unwrap_or_else(|| panic!("missing key {k:?}"));
        assert_eq!((t, v), (t2, v2), "{k:?}");
        // ABSTTL: the expiry is the backup's own, to the millisecond.
        assert_eq!(exp, exp2, "expiry of {k:?}");
    }
    assert_eq!(before.len(), after.len());
    assert_eq!(redis_extras(&target.url()), extras);
}

#[test]
fn redis_bgsave_failure_is_a_clear_error_and_commits_nothing() {
    let _g = shared(); // a password on redis-server's command line until it renames itself
    let r = Redis::start_with(&["--enable-protected-configs", "yes"]);
    seed_redis(&r);
    let mut c = redis::Client::open(r.url()).unwrap().get_connection().unwrap();
    // A directory Redis cannot create files in, even as root.
    redis::cmd("CONFIG")
        .arg("SET")
        .arg("dir")
        .arg("/proc")
        .query::<()>(&mut c)
        .unwrap();
    let ws = Workspace::new();
    ws.write_config(&ws.fs_storage_toml("local"), &redis_source(&r, "cache", "file"));
    let (code, _, err) = ws.run_env(&["backup"], &[("DRCTL_REDIS_PASSWORD", REDIS_PASSWORD)]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("BGSAVE failed") && err.contains("/proc"), "{err}");
    assert!(files_under(&ws.fs_root("local"))
        .iter()
        .all(|f| !f.starts_with("manifests/") && !f.starts_with("data/")));
    assert!(!err.contains(REDIS_PASSWORD));
}

// ---------- NATS ----------

fn seed_nats(n: &Nats, count: usize) {
    let mut c = n.client();
    let r = c.request_json(
        "$JS.API.STREAM.CREATE.ORDERS",
        serde_json::json!({"name": "ORDERS", "subjects": ["orders.>"], "storage": "file"}),
    );
    assert!(r.get("error").is_none(), "{r}");
    for i in 0..count {
        let ack = c.request(
            &format!("orders.{}", i % 5),
            format!("order #{i} {}", "x".repeat(i % 50)).as_bytes(),
        );
        let ack: serde_json::Value = serde_json::from_slice(&ack).unwrap();
        assert_eq!(ack["seq"], (i + 1) as u64, "{ack}");
    }
    let r = c.request_json(
        "$JS.API.CONSUMER.DURABLE.CREATE.ORDERS.worker",
        serde_json::json!({"stream_name": "ORDERS", "config": {"durable_name": "worker", "ack_policy": "explicit"}}),
    );
    assert!(r.get("error").is_none(), "{r}");
}

/// Every message of the stream by sequence: (subject, payload).
fn nats_messages(n: &Nats) -> Vec<(u64, String, Vec<u8>)> {
    use base64::Engine;
    let mut c = n.client();
    let info = c.request_json("$JS.API.STREAM.INFO.ORDERS", serde_json::json!({}));
    let last = info["state"]["last_seq"].as_u64().unwrap();
    (1..=last)
        .map(|seq| {
            let m = c.request_json("$JS.API.STREAM.MSG.GET.ORDERS", serde_json::json!({ "seq": seq }));
            let msg = &m["message"];
            let data = base64::engine::general_purpose::STANDARD
                .decode(msg["data"].as_str().unwrap_or(""))
                .unwrap();
            (
                msg["seq"].as_u64().unwrap(),
                msg["subject"].as_str().unwrap().to_string(),
                data,
            )
        })
        .collect()
}

fn nats_source(n: &Nats) -> String {
    format!(
        "[[source]]\nname = \"events\"\ntype = \"nats\"\ndata_dir = \"{}/jetstream\"\nmonitor_url = \"http://127.0.0.1:{}\"\n",
        n.store.display(),
        n.monitor
    )
}

#[test]
fn nats_tarball_round_trip_keeps_messages_sequences_and_consumers() {
    let _g = shared(); // runs a verification sandbox
    let n = Nats::start();
    seed_nats(&n, 500);
    let before = nats_messages(&n);
    assert_eq!(before.len(), 500);
    let ws = Workspace::new();
    ws.write_config(&ws.fs_storage_toml("local"), &nats_source(&n));
    ws.ok(&["backup"]);
    let list = ws.list_json();
    assert_eq!(list[0]["facts"]["streams"]["ORDERS"]["messages"], 500);
    assert_eq!(list[0]["facts"]["streams"]["ORDERS"]["last_seq"], 500);

    let out = ws.path().join("restored");
    let ident = ws.identity.to_str().unwrap();
    ws.restore_ok(&out);
    drop(n);
    let restored = Nats::start_on(&out.join("events"));
    assert_eq!(nats_messages(&restored), before, "messages, subjects and sequences");
    let mut c = restored.client();
    let consumer = c.request_json("$JS.API.CONSUMER.INFO.ORDERS.worker", serde_json::json!({}));
    assert_eq!(consumer["name"], "worker", "{consumer}");
    drop(restored);

    // A non-empty target directory is refused.
    let (code, _, err) = ws.restore_to(&out, &[]);
    assert_eq!(code, 1);
    assert!(err.contains("is not empty"), "{err}");

    // By hand: age | zstd | tar → nats-server -sd.
    let root = ws.fs_root("local");
    let obj = root.join(files_under(&root).into_iter().find(|f| f.starts_with("data/")).unwrap());
    let hand = tempfile::tempdir().unwrap();
    sh(
        &format!(
            "age -d -i '{ident}' '{}' | zstd -d -q | tar -x -C '{}'",
            obj.display(),
            hand.path().display()
        ),
        &[],
    );
    let by_hand = Nats::start_on(hand.path());
    assert_eq!(nats_messages(&by_hand), before);
    drop(by_hand);

    let (code, out, _) = ws.run(&["verify", "--identity", ident]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("ok   streams: 1 streams"), "{out}");
}

// ---------- Files ----------

fn make_tree(root: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(root.join("app/conf.d")).unwrap();
    std::fs::write(root.join("app/.env"), "DATABASE_URL=postgres://x\nSECRET=abc\n").unwrap();
    std::fs::set_permissions(root.join("app/.env"), std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::write(
        root.join("app/Caddyfile"),
        "example.com {\n  reverse_proxy app:8080\n}\n",
    )
    .unwrap();
    std::fs::write(
        root.join("app/conf.d/big.bin"),
        (0..200_000u32).flat_map(|i| i.to_le_bytes()).collect::<Vec<u8>>(),
    )
    .unwrap();
    std::fs::set_permissions(root.join("app/conf.d/big.bin"), std::fs::Permissions::from_mode(0o640)).unwrap();
    std::fs::write(root.join("app/debug.log"), "noise").unwrap();
    std::os::unix::fs::symlink("Caddyfile", root.join("app/Caddyfile.link")).unwrap();
    let t = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
    let f = std::fs::File::options()
        .write(true)
        .open(root.join("app/Caddyfile"))
        .unwrap();
    f.set_modified(t).unwrap();
}

fn describe(root: &Path) -> BTreeMap<String, (u32, Option<u64>, Vec<u8>)> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let mut out = BTreeMap::new();
    for f in files_under(root) {
        let p = root.join(&f);
        let m = std::fs::symlink_metadata(&p).unwrap();
        let content = if m.file_type().is_symlink() {
            std::fs::read_link(&p).unwrap().to_string_lossy().as_bytes().to_vec()
        } else {
            std::fs::read(&p).unwrap()
        };
        let mtime = (!m.file_type().is_symlink()).then(|| m.mtime() as u64);
        out.insert(f, (m.permissions().mode() & 0o7777, mtime, content));
    }
    out
}

#[test]
fn files_round_trip_keeps_modes_mtimes_and_links_and_excludes() {
    let _g = shared(); // runs a verification sandbox
    let src = tempfile::tempdir().unwrap();
    make_tree(src.path());
    let ws = Workspace::new();
    let app = src.path().join("app");
    ws.write_config(
        &ws.fs_storage_toml("local"),
        &format!(
            "[[source]]\nname = \"config\"\ntype = \"files\"\npaths = [\"{}\"]\nexclude = [\"**/*.log\"]\n",
            app.display()
        ),
    );
    ws.ok(&["backup"]);
    // Per-file hashes are stored encrypted: the plain manifest has none, the identity opens them.
    let list = ws.list_json();
    assert!(list[0]["facts"].get("files").is_none(), "{}", list[0]);
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(
            ws.fs_root("local")
                .join(format!("manifests/config/{}.json", list[0]["id"].as_str().unwrap())),
        )
        .unwrap(),
    )
    .unwrap();
    assert!(manifest["private"]
        .as_str()
        .unwrap()
        .starts_with("-----BEGIN AGE ENCRYPTED FILE-----"));
    let list: Vec<serde_json::Value> =
        serde_json::from_str(&ws.ok(&["list", "--json", "--identity", ws.identity.to_str().unwrap()])).unwrap();
    let files = list[0]["facts"]["files"].as_object().unwrap();
    let env_key = format!("{}/.env", app.display()).trim_start_matches('/').to_string();
    assert_eq!(files[&env_key]["mode"], "600");
    assert!(!files.keys().any(|k| k.ends_with("debug.log")), "excluded");

    let out = ws.path().join("restored");
    let ident = ws.identity.to_str().unwrap();
    ws.restore_ok(&out);
    let restored_app = out.join("config").join(app.strip_prefix("/").unwrap());
    let mut want = describe(&app);
    want.remove("debug.log");
    assert_eq!(describe(&restored_app), want);

    let (code, out, _) = ws.run(&["verify", "--identity", ident]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("ok   file hashes: 3 files"), "{out}");
}

/// Someone with write access to the storage (the recipients are public) forges a backup whose
/// tar writes outside the restore directory. drctl refuses it and writes nothing.
#[test]
fn a_crafted_tar_escaping_the_restore_dir_is_rejected() {
    let src = tempfile::tempdir().unwrap();
    make_tree(src.path());
    let ws = Workspace::new();
    ws.write_config(
        &ws.fs_storage_toml("local"),
        &format!(
            "[[source]]\nname = \"config\"\ntype = \"files\"\npaths = [\"{}\"]\n",
            src.path().join("app").display()
        ),
    );
    ws.ok(&["backup"]);
    // The evil artifact, built with stock tools, with the manifest's hashes re-pointed at it.
    forge_tar_artifact(
        &ws,
        "local",
        "t = tarfile.open('x.tar', 'w'); d = b'pwned'; i = tarfile.TarInfo('../evil'); i.size = len(d); t.addfile(i, io.BytesIO(d)); t.close()",
    );

    let out = ws.path().join("restore-here");
    let (code, _, err) = ws.restore_to(&out, &[]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("refusing tar entry '../evil'"), "{err}");
    assert!(!out.join("evil").exists() && !ws.path().join("evil.txt").exists());
    assert!(!out.join("config").exists() || files_under(&out.join("config")).is_empty());
    assert!(
        files_under(&out).iter().all(|f| !f.contains("evil")),
        "{:?}",
        files_under(&out)
    );
}

// ---------- The whole stack at one point in time ----------

#[test]
fn whole_stack_restore_at_a_time_between_two_runs_equals_the_first() {
    let _g = shared(); // a password on redis-server's command line until it renames itself
    let pg = Postgres::start();
    pg.createdb("app");
    pg.psql("app", "create table t (id int primary key, v text); insert into t select g, 'v' || g from generate_series(1, 1000) g;");
    let r = Redis::start();
    seed_redis(&r);
    let n = Nats::start();
    seed_nats(&n, 100);
    let files = tempfile::tempdir().unwrap();
    make_tree(files.path());
    let app = files.path().join("app");

    let ws = Workspace::new();
    let sources = format!(
        "{}{}{}[[source]]\nname = \"config\"\ntype = \"files\"\npaths = [\"{}\"]\n",
        pg_source_toml("app-db", &pg, "app"),
        redis_source(&r, "cache", "file"),
        nats_source(&n),
        app.display()
    );
    ws.write_config(&ws.fs_storage_toml("local"), &sources);
    let env = [("DRCTL_REDIS_PASSWORD", REDIS_PASSWORD)];
    let (code, out, err) = ws.run_env(&["backup", "--no-prune"], &env);
    assert_eq!(code, 0, "{out}\n{err}");
    let t1 = (
        pg.contents("app"),
        redis_contents(|db| r.url_db(db)),
        nats_messages(&n),
        describe(&app),
    );

    // Everything changes.
    pg.psql(
        "app",
        "delete from t where id > 500; insert into t values (5000, 'late');",
    );
    redis::cmd("FLUSHDB")
        .query::<()>(&mut redis::Client::open(r.url_db(0)).unwrap().get_connection().unwrap())
        .unwrap();
    seed_nats_more(&n);
    std::fs::write(app.join(".env"), "SECRET=rotated\n").unwrap();
    let (code, out, err) = ws.run_env(&["backup", "--no-prune"], &env);
    assert_eq!(code, 0, "{out}\n{err}");

    // One run id per run, four sources each.
    let list = ws.list_json();
    assert_eq!(list.len(), 8);
    let runs: std::collections::BTreeSet<&str> = list.iter().map(|m| m["run_id"].as_str().unwrap()).collect();
    assert_eq!(runs.len(), 2);
    let text = ws.ok(&["list"]);
    assert_eq!(text.matches("run ").count(), 2, "grouped by run: {text}");
    let first_run_end = list
        .iter()
        .filter(|m| m["run_id"] == list[7]["run_id"])
        .map(|m| m["finished_at"].as_str().unwrap().to_string())
        .max()
        .unwrap();
    let second_start = list
        .iter()
        .filter(|m| m["run_id"] == list[0]["run_id"])
        .map(|m| m["started_at"].as_str().unwrap().to_string())
        .min()
        .unwrap();
    let t_first: chrono::DateTime<chrono::Utc> = first_run_end.parse().unwrap();
    let t_second: chrono::DateTime<chrono::Utc> = second_start.parse().unwrap();
    assert!(t_first < t_second);
    let at = (t_first + (t_second - t_first) / 2).to_rfc3339();

    // The plan names all four sources.
    let plan = ws.ok(&["restore", "--at", &at, "--dry-run"]);
    for s in ["app-db", "cache", "events", "config"] {
        assert!(plan.contains(s), "{plan}");
    }
    let ident = ws.identity.to_str().unwrap().to_string();
    pg.createdb("restored");
    let target_pg = format!("postgres://postgres:{PG_PASSWORD}@127.0.0.1:{}/restored", pg.port);
    let (code, out, err) = ws.run_env(
        &["restore", "--at", &at, "--source", "app-db", "--identity", &ident],
        &[("DRCTL_TARGET_URL", &target_pg)],
    );
    assert_eq!(code, 0, "{out}\n{err}");
    let r2 = Redis::start();
    let (code, out, err) = ws.run_env(
        &["restore", "--at", &at, "--source", "cache", "--identity", &ident],
        &[("DRCTL_TARGET_URL", &r2.url())],
    );
    assert_eq!(code, 0, "{out}\n{err}");
    let out_dir = ws.path().join("restored");
    ws.ok(&[
        "restore",
        "--at",
        &at,
        "--source",
        "events",
        "--source",
        "config",
        "--identity",
        &ident,
        "--output-dir",
        out_dir.to_str().unwrap(),
    ]);

    assert_eq!(pg.contents("restored"), t1.0, "postgres");
    same_redis(&t1.1, &redis_contents(|db| r2.url_db(db)));
    drop(n);
    let n2 = Nats::start_on(&out_dir.join("events"));
    assert_eq!(nats_messages(&n2), t1.2, "nats");
    assert_eq!(
        describe(&out_dir.join("config").join(app.strip_prefix("/").unwrap())),
        t1.3,
        "files"
    );
}

fn seed_nats_more(n: &Nats) {
    let mut c = n.client();
    for i in 0..10 {
        c.request(&format!("orders.late.{i}"), b"late");
    }
}

#[test]
fn nats_snapshot_mode_round_trip_through_the_jetstream_api() {
    let _g = shared(); // runs a verification sandbox
    let n = Nats::start();
    seed_nats(&n, 500);
    let before = nats_messages(&n);
    let ws = Workspace::new();
    ws.write_config(
        &ws.fs_storage_toml("local"),
        &format!(
            "[[source]]\nname = \"events\"\ntype = \"nats\"\nmode = \"snapshot\"\nurl = \"nats://127.0.0.1:{}\"\n",
            n.port
        ),
    );
    ws.ok(&["backup"]);
    let list = ws.list_json();
    assert_eq!(list[0]["facts"]["streams"]["ORDERS"]["messages"], 500);
    assert_eq!(list[0]["facts"]["streams"]["ORDERS"]["last_seq"], 500);
    assert_eq!(list[0]["facts"]["nats_mode"], "snapshot");

    // Into a fresh server through the API.
    let fresh = Nats::start();
    let ident = ws.identity.to_str().unwrap().to_string();
    let target = format!("nats://127.0.0.1:{}", fresh.port);
    let (code, out, err) = ws.run_env(
        &["restore", "--at", "now", "--source", "events", "--identity", &ident],
        &[("DRCTL_TARGET_URL", &target)],
    );
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        out.contains("restored stream ORDERS") && out.contains("500 messages"),
        "{out}"
    );
    assert_eq!(nats_messages(&fresh), before, "messages, subjects and sequences");
    let consumer = fresh
        .client()
        .request_json("$JS.API.CONSUMER.INFO.ORDERS.worker", serde_json::json!({}));
    assert_eq!(consumer["name"], "worker", "{consumer}");
    // The stream exists now: a second restore is refused without --clean.
    let (code, _, err) = ws.run_env(
        &["restore", "--at", "now", "--source", "events", "--identity", &ident],
        &[("DRCTL_TARGET_URL", &target)],
    );
    assert_eq!(code, 1);
    assert!(err.contains("already exists") && err.contains("--clean"), "{err}");

    // The artifact holds backup.json and the numbered snapshot parts.
    let out_dir = ws.path().join("by-hand");
    ws.restore_ok(&out_dir);
    let files = files_under(&out_dir.join("events"));
    assert!(files.contains(&"ORDERS/backup.json".to_string()), "{files:?}");
    assert!(
        files.iter().any(|f| f.starts_with("ORDERS/stream.tar.s2.0")),
        "{files:?}"
    );

    let (code, out, _) = ws.run(&["verify", "--identity", &ident]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("ok   restore the snapshots") && out.contains("ok   streams"),
        "{out}"
    );
}
