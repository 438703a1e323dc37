//! A throwaway PostgreSQL cluster from the newest installed server binaries, and the
//! databases and pg_dump stand-ins the tests build on it.

use super::{free_port, is_root, wait_port};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

pub const PG_PASSWORD: &str = "s3cret-Pg-pw";

/// The newest PostgreSQL server binaries installed (Debian keeps them out of PATH).
pub fn pg_bindir() -> PathBuf {
    if let Ok(d) = std::env::var("DRCTL_TEST_PG_BIN") {
        return PathBuf::from(d);
    }
    let mut dirs: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| {
                    let v: u32 = e.file_name().to_str()?.parse().ok()?;
                    let bin = e.path().join("bin");
                    bin.join("initdb").exists().then_some((v, bin))
                })
                .collect()
        })
        .unwrap_or_default();
    dirs.sort();
    dirs.pop()
        .map(|(_, p)| p)
        .expect("no PostgreSQL server binaries under /usr/lib/postgresql/*/bin (apt-get install postgresql)")
}

/// A throwaway PostgreSQL cluster. initdb refuses to run as root, so as root the cluster is
/// owned by and run as the `postgres` user.
pub struct Postgres {
    pub port: u16,
    dir: tempfile::TempDir,
    data: PathBuf,
    bin: PathBuf,
    as_postgres: bool,
}

impl Postgres {
    pub fn start() -> Postgres {
        Self::start_with(&[], "")
    }

    /// A cluster made with extra `initdb` arguments and `conf` appended to its
    /// postgresql.conf before the first start (archive settings, say).
    pub fn start_with(initdb_args: &[&str], conf: &str) -> Postgres {
        Self::start_on(free_port(), initdb_args, conf)
    }

    /// [`start_with`] on a given port; `@DATA@` in `conf` becomes the data directory's path.
    pub fn start_on(port: u16, initdb_args: &[&str], conf: &str) -> Postgres {
        let bin = pg_bindir();
        let as_postgres = is_root();
        let dir = tempfile::Builder::new().prefix("drctl-pg-").tempdir().unwrap();
        let data = dir.path().join("data");
        let pwfile = dir.path().join("pw");
        std::fs::write(&pwfile, PG_PASSWORD).unwrap();
        if as_postgres {
            let st = Command::new("chown")
                .arg("-R")
                .arg("postgres:postgres")
                .arg(dir.path())
                .status()
                .unwrap();
            assert!(st.success());
        }
        let pg = Postgres {
            port,
            dir,
            data,
            bin,
            as_postgres,
        };
        let pwfile_arg = format!("--pwfile={}", pwfile.display());
        let mut args = vec![
            "-D",
            pg.data.to_str().unwrap(),
            "-U",
            "postgres",
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            &pwfile_arg,
            "--no-sync",
            "-E",
            "UTF8",
            "--locale=C",
        ];
        args.extend_from_slice(initdb_args);
        pg.run_as(&pg.bin.join("initdb"), &args);
        if !conf.is_empty() {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .open(pg.data.join("postgresql.conf"))
                .unwrap();
            let data = std::fs::canonicalize(&pg.data).unwrap();
            writeln!(f, "\n{}", conf.replace("@DATA@", data.to_str().unwrap())).unwrap();
        }
        pg.pg_ctl_start();
        pg
    }

    /// Starts (again) the cluster on its port.
    pub fn pg_ctl_start(&self) {
        let (pg, port) = (self, self.port);
        let opts = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off",
            pg.dir.path().display()
        );
        pg.run_as(
            &pg.bin.join("pg_ctl"),
            &[
                "-D",
                pg.data.to_str().unwrap(),
                "-o",
                &opts,
                "-l",
                pg.dir.path().join("log").to_str().unwrap(),
                "-w",
                "-t",
                "60",
                "start",
            ],
        );
        wait_port(port, "postgres", Duration::from_secs(30));
    }

    /// `pg_ctl stop -m immediate`: a crash, as far as the server knows.
    #[allow(dead_code)]
    pub fn crash(&self) {
        self.run_as(
            &self.bin.join("pg_ctl"),
            &["-D", self.data.to_str().unwrap(), "-m", "immediate", "-w", "stop"],
        );
    }

    pub fn data_dir(&self) -> &Path {
        &self.data
    }

    /// The server's log file.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
    }

    fn run_as(&self, prog: &Path, args: &[&str]) {
        let mut cmd = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(prog);
            c
        } else {
            Command::new(prog)
        };
        cmd.args(args).current_dir(self.dir.path());
        let out = cmd
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", prog.display()));
        assert!(
            out.status.success(),
            "{} failed: {}\n{}",
            prog.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn url_with_password_env(&self, db: &str, var: &str) -> String {
        format!("postgres://postgres:${{{var}}}@127.0.0.1:{}/{db}", self.port)
    }

    /// psql over TCP with the password in the environment; panics on error.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        let out = self.psql_raw(db, sql);
        assert!(
            out.status.success(),
            "psql failed on {sql:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    pub fn psql_raw(&self, db: &str, sql: &str) -> std::process::Output {
        Command::new(self.bin.join("psql"))
            .env("PGPASSWORD", PG_PASSWORD)
            .args([
                "-X",
                "-A",
                "-t",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                "127.0.0.1",
                "-U",
                "postgres",
            ])
            .arg("-p")
            .arg(self.port.to_string())
            .arg("-d")
            .arg(db)
            .arg("-c")
            .arg(sql)
            .output()
            .unwrap()
    }

    pub fn createdb(&self, db: &str) {
        self.psql("postgres", &format!("create database \"{db}\""));
    }

    /// Every row of every user table, ordered, as text: what "equal databases" means here.
    pub fn contents(&self, db: &str) -> String {
        let tables = self.psql(
            db,
            "select quote_ident(table_schema)||'.'||quote_ident(table_name) from information_schema.tables \
             where table_schema not in ('pg_catalog','information_schema') and table_type='BASE TABLE' order by 1",
        );
        let mut out = String::new();
        for t in tables.lines().filter(|l| !l.is_empty()) {
            out.push_str(&format!("## {t}\n"));
            out.push_str(&self.psql(db, &format!("select t::text from {t} t order by t::text")));
        }
        out
    }

    pub fn bin(&self) -> &Path {
        &self.bin
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let mut cmd = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(self.bin.join("pg_ctl"));
            c
        } else {
            Command::new(self.bin.join("pg_ctl"))
        };
        let _ = cmd
            .args(["-D", self.data.to_str().unwrap(), "-m", "immediate", "-w", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

pub fn pg_source_toml(name: &str, pg: &Postgres, db: &str) -> String {
    format!(
        "[[source]]\nname = \"{name}\"\ntype = \"postgres\"\nurl = \"{}\"\n",
        pg.url_with_password_env(db, "DRCTL_PG_PASSWORD")
    )
}

/// A database holding ~24 MiB of incompressible bytes: enough for several multipart parts.
pub fn big_pg() -> Postgres {
    let pg = Postgres::start();
    pg.createdb("app");
    pg.psql(
        "app",
        "create table blobs (id int, b bytea); insert into blobs select g, decode(string_agg(md5(random()::text), ''), 'hex') \
         from generate_series(1, 3000) g, generate_series(1, 512) h group by g;",
    );
    pg
}

/// A pg_dump wrapper that produces a real dump, then runs `after` (e.g. `exec sleep 60`) while
/// still holding its stdout open, as a pg_dump stuck on a slow server would. Returns its path.
pub fn slow_pg_dump(dir: &Path, after: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let slow = dir.join("slow-pg_dump");
    std::fs::write(
        &slow,
        format!("#!/bin/sh\nif [ \"$1\" = \"--version\" ]; then exec pg_dump --version; fi\npg_dump \"$@\"\n{after}\n"),
    )
    .unwrap();
    std::fs::set_permissions(&slow, std::fs::Permissions::from_mode(0o755)).unwrap();
    slow
}

/// The major version of the newest installed PostgreSQL server (what `Postgres::start` runs).
pub fn pg_major() -> u32 {
    pg_bindir()
        .parent()
        .and_then(|p| p.file_name())
        .and_then(|n| n.to_str())
        .and_then(|n| n.parse().ok())
        .expect("a /usr/lib/postgresql/<major>/bin directory")
}
