use super::RedisFacts;
use crate::verification::{check, verdict, Check};
use anyhow::{anyhow, bail, Context, Result};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub async fn verify(facts: &RedisFacts, rdb: &Path, work: &Path, t0: Instant) -> (Vec<Check>, Option<f64>) {
    let mut checks = Vec::new();
    let out = crate::process::command("redis-check-rdb").arg(rdb).output().await;
    let read = match &out {
        Ok(o) => String::from_utf8_lossy(&o.stdout).lines().find_map(|l| {
            l.strip_prefix("[info] ")
                .and_then(|r| r.strip_suffix(" keys read"))
                .and_then(|n| n.trim().parse::<u64>().ok())
        }),
        Err(_) => None,
    };
    checks.push(check(
        "redis-check-rdb",
        match out {
            Ok(o) if o.status.success() => Ok(format!(
                "RDB looks OK, {} keys",
                read.map(|n| n.to_string()).unwrap_or_else(|| "?".into())
            )),
            Ok(o) => Err(anyhow!(
                "{}",
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .rev()
                    .take(3)
                    .collect::<Vec<_>>()
                    .join(" / ")
            )),
            Err(e) => Err(anyhow!("cannot run redis-check-rdb (install redis-tools): {e}")),
        },
    ));
    let temp = match TempRedis::start(rdb, work).await {
        Ok(t) => t,
        Err(e) => {
            checks.push(check("load into a throwaway redis-server", Err(e)));
            return (checks, None);
        }
    };
    let rto = t0.elapsed().as_secs_f64();
    let loaded = async {
        let mut c = crate::sources::redis::connect(&temp.url(0)).await?;
        crate::sources::redis::keyspace(&mut c).await
    }
    .await;
    let recorded = facts.key_counts.as_ref();
    let exact = facts.key_counts_exact;
    checks.push(check(
        "key counts",
        loaded.and_then(|ks| match (recorded, exact) {
            (Some(rec), true) => {
                let mut diffs = Vec::new();
                for (db, v) in rec {
                    let (want, expires) = (v.keys, v.expires);
                    let got = ks.get(db).map(|x| x.keys).unwrap_or(0);
                    // Keys whose TTL ran out since the backup are dropped on load.
                    if got > want || want - got > expires {
                        diffs.push(format!(
                            "{db}: loaded {got} keys, recorded {want} ({expires} with a TTL)"
                        ));
                    }
                }
                let ok = format!("{} databases, counts equal to those recorded at backup time", rec.len());
                verdict(diffs, ok, "key counts")
            }
            _ => Ok("loaded; counts not compared (writes happened while the snapshot was taken)".into()),
        }),
    ));
    drop(temp);
    (checks, Some(rto))
}

/// A throwaway redis-server on an RDB file, reachable only through its private socket.
pub struct TempRedis {
    child: std::process::Child,
    pub dir: tempfile::TempDir,
}

impl TempRedis {
    pub async fn start(rdb: &Path, work: &Path) -> Result<TempRedis> {
        let dir = tempfile::Builder::new().prefix("drctl-redis-").tempdir_in(work)?;
        std::fs::copy(rdb, dir.path().join("dump.rdb")).context("cannot stage the RDB")?;
        let sock = dir.path().join("redis.sock");
        let child = std::process::Command::new("redis-server")
            .env_clear()
            .envs(crate::process::base_env())
            .args([
                "--port",
                "0",
                "--unixsocketperm",
                "700",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dbfilename",
                "dump.rdb",
            ])
            .arg("--unixsocket")
            .arg(&sock)
            .arg("--dir")
            .arg(dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .context("cannot start redis-server (install the redis-server package)")?;
        let t = TempRedis { child, dir };
        let t0 = Instant::now();
        loop {
            if let Ok(mut c) = crate::sources::redis::connect(&t.url(0)).await {
                let info = crate::sources::redis::info(&mut c, "persistence")
                    .await
                    .unwrap_or_default();
                if info.contains("loading:0") {
                    return Ok(t);
                }
            }
            if t0.elapsed() > Duration::from_secs(120) {
                bail!("the throwaway redis-server did not load the RDB within 120s");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn url(&self, db: u32) -> String {
        format!("redis+unix://{}?db={db}", self.dir.path().join("redis.sock").display())
    }

    pub fn rdb(&self) -> PathBuf {
        self.dir.path().join("dump.rdb")
    }
}

impl Drop for TempRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
