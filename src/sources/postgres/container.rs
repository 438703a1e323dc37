//! A PostgreSQL server in a container: pg_dump runs *inside* it through the engine's exec API,
//! over the container's local socket, so its major is the server's own (a host pg_dump 15
//! cannot dump a postgres:16 container). The defaults follow the official image: the login is
//! the container's `POSTGRES_USER` (else `postgres`) and the database its `POSTGRES_DB` (else
//! the user's name); the password, when the socket asks for one, is the container's
//! `POSTGRES_PASSWORD`, handed to the exec's environment only.
//!
//! Row counts are taken like on the host, in the snapshot pg_dump dumps: a psql session in the
//! container opens a repeatable-read transaction, exports its snapshot, counts, and stays open
//! (its stdin held) until pg_dump is over.

use super::dump::{parse_tool_version, LIST_TABLES};
use super::{PostgresFacts, PostgresSource};
use crate::place::{Container, ContainerRef, Engine, ExecSpec};
use crate::sources::{Dump, Facts, Finish};
use anyhow::{anyhow, bail, Context, Result};
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// The login and database pg_dump uses in the container, with the exec environment for them.
pub struct Login {
    pub user: String,
    pub database: String,
    pub env: Vec<(String, String)>,
}

pub fn login(c: &Container, user: Option<&str>, database: Option<&str>) -> Login {
    let image_user = c.env("POSTGRES_USER").unwrap_or("postgres");
    let user = user.unwrap_or(image_user).to_string();
    let database = database
        .or(c.env("POSTGRES_DB"))
        .map(str::to_string)
        .unwrap_or_else(|| user.clone());
    let mut env = vec![
        ("PGUSER".to_string(), user.clone()),
        ("PGDATABASE".to_string(), database.clone()),
        // psql's and pg_dump's own settings, not the container's or a user's rc file.
        ("PGAPPNAME".to_string(), "drctl".to_string()),
    ];
    // The image sets POSTGRES_PASSWORD for POSTGRES_USER; the local socket usually trusts, but
    // if it asks (a custom pg_hba), that is the password it wants. Through env only.
    if user == image_user {
        if let Some(pw) = c.env("POSTGRES_PASSWORD") {
            env.push(("PGPASSWORD".to_string(), pw.to_string()));
        }
    }
    Login { user, database, env }
}

pub fn psql_cmd(extra: &[&str]) -> Vec<String> {
    ["psql", "-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1"]
        .iter()
        .chain(extra)
        .map(|s| s.to_string())
        .collect()
}

/// Starts pg_dump in the container. Stops waiting when drctl is asked to stop: the row-count
/// session may be blocked behind a lock for as long as the lock is held. (The engine has no
/// call to kill an exec: closing its connection ends psql when its query returns, and pg_dump
/// when it next writes.)
pub async fn start_dump(
    src: &PostgresSource,
    place: &ContainerRef,
    user: Option<&str>,
    database: Option<&str>,
) -> Result<Dump> {
    tokio::select! {
        r = start(src, place, user, database) => r,
        _ = crate::process::shutdown().cancelled() => bail!(
            "interrupted by a signal while starting pg_dump for '{}' in {place}; nothing was committed",
            src.name
        ),
    }
}

async fn start(src: &PostgresSource, place: &ContainerRef, user: Option<&str>, database: Option<&str>) -> Result<Dump> {
    let name = &src.name;
    let engine = Engine::connect().with_context(|| format!("source '{name}'"))?;
    let c = engine
        .resolve(place)
        .await
        .with_context(|| format!("source '{name}' ({place})"))?;
    let login = login(&c, user, database);
    let server_version = c
        .exec_output(ExecSpec {
            cmd: psql_cmd(&["-c", "show server_version"]),
            env: login.env.clone(),
            what: format!("psql for '{name}' (as '{}' into '{}')", login.user, login.database),
        })
        .await
        .with_context(|| {
            format!(
                "source '{name}': cannot connect as '{}' to database '{}' in container '{}' (set user = … / database = … in the source)",
                login.user, login.database, c.name
            )
        })?
        .trim()
        .to_string();
    let pg_dump_version = c
        .exec_output(ExecSpec {
            cmd: vec!["pg_dump".into(), "--version".into()],
            env: Vec::new(),
            what: format!("pg_dump --version for '{name}'"),
        })
        .await
        .with_context(|| format!("source '{name}': no pg_dump in container '{}'", c.name))?;
    let pg_dump_version = parse_tool_version(&pg_dump_version).map(|(_, v)| v).ok_or_else(|| {
        anyhow!(
            "source '{name}': pg_dump in container '{}' printed '{}' for its version",
            c.name,
            pg_dump_version.trim()
        )
    })?;
    tracing::info!(source = %name, container = %c.name, server = %server_version, pg_dump_version = %pg_dump_version, "starting pg_dump in the container");

    let snapshot = if src.row_counts {
        match Snapshot::open(&c, &login, name).await {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(source = %name, error = %format!("{e:#}"), "cannot record row counts; verification will skip the count check");
                None
            }
        }
    } else {
        None
    };
    let (globals, globals_note) = super::globals::capture(name, |no_passwords| {
        let mut cmd: Vec<String> = ["pg_dumpall", "--globals-only", "--no-password"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        if no_passwords {
            cmd.push("--no-role-passwords".into());
        }
        cmd.push(format!("--database={}", login.database));
        let spec = ExecSpec {
            cmd,
            env: login.env.clone(),
            what: format!("pg_dumpall --globals-only for '{name}'"),
        };
        let c = &c;
        async move { c.exec_output(spec).await }
    })
    .await;
    let mut cmd: Vec<String> = ["pg_dump", "--format=custom", "--compress=0", "--no-password"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    if let Some(s) = &snapshot {
        cmd.push(format!("--snapshot={}", s.id));
    }
    let (stdout, _, mut done) = c
        .exec(
            ExecSpec {
                cmd,
                env: login.env.clone(),
                what: format!("pg_dump for '{name}'"),
            },
            false,
        )
        .await?;
    let mut facts = PostgresFacts {
        row_counts: None,
        server_version,
        pg_dump_version,
        database: login.database.clone(),
        globals,
        globals_note,
        unknown: Default::default(),
    };
    if let Some(s) = snapshot {
        facts.row_counts = Some(s.counts);
        // The exporting transaction must stay open until pg_dump has imported the snapshot.
        done.keep_alive(Box::new(s.session));
    }
    Ok(Dump {
        reader: Box::new(stdout),
        format: "pgdump",
        // The exit code is read from the engine after the stream ended, before the manifest.
        finish: Finish::Task(tokio::spawn(async move {
            done.wait().await?;
            Ok(Facts::Postgres(facts))
        })),
    })
}

/// A psql session in the container holding a repeatable-read transaction that exported its
/// snapshot, with the exact row counts of every user table in it.
struct Snapshot {
    id: String,
    counts: BTreeMap<String, i64>,
    session: Box<dyn std::any::Any + Send>,
}

/// Ends every answer: psql prints query results as they come, so a line we asked for marks
/// where one answer stops.
const END: &str = "__drctl_end__";

impl Snapshot {
    async fn open(c: &Container, login: &Login, name: &str) -> Result<Snapshot> {
        let (out, stdin, done) = c
            .exec(
                ExecSpec {
                    cmd: psql_cmd(&[]),
                    env: login.env.clone(),
                    what: format!("psql (row counts) for '{name}'"),
                },
                true,
            )
            .await?;
        let mut stdin = stdin.expect("stdin attached");
        let mut lines = BufReader::new(out).lines();
        let mut ask = async |sql: String| -> Result<Vec<String>> {
            stdin.write_all(format!("{sql}\nselect '{END}';\n").as_bytes()).await?;
            stdin.flush().await?;
            let mut got = Vec::new();
            let read = async {
                loop {
                    match lines.next_line().await? {
                        Some(l) if l == END => return Ok::<_, anyhow::Error>(()),
                        Some(l) => got.push(l),
                        None => bail!("psql ended before answering"),
                    }
                }
            };
            tokio::time::timeout(Duration::from_secs(600), read)
                .await
                .map_err(|_| anyhow!("psql did not answer within 10 minutes"))??;
            Ok(got)
        };
        let id = ask("begin isolation level repeatable read read only;\nselect pg_export_snapshot();".into())
            .await?
            .pop()
            .ok_or_else(|| anyhow!("psql printed no snapshot id"))?;
        let tables = ask(format!("{LIST_TABLES};")).await?;
        let mut counts = BTreeMap::new();
        if !tables.is_empty() {
            let sql: String = tables.iter().map(|t| format!("select count(*) from {t};\n")).collect();
            let answers = ask(sql).await?;
            if answers.len() != tables.len() {
                bail!("psql gave {} counts for {} tables", answers.len(), tables.len());
            }
            for (t, n) in tables.into_iter().zip(answers) {
                let n: i64 = n
                    .trim()
                    .parse()
                    .map_err(|_| anyhow!("psql counted '{n}' rows of {t}"))?;
                counts.insert(t, n);
            }
        }
        // Held until pg_dump is over: closing stdin ends psql and with it the transaction.
        let session: Box<dyn std::any::Any + Send> = Box::new((stdin, lines, done));
        Ok(Snapshot { id, counts, session })
    }
}

/// `--target service:NAME | container:NAME` for a PostgreSQL backup: loads it with the
/// container's own pg_restore (its major is the server's), as the container's
/// `POSTGRES_USER`, into the database of the backup's name (created if missing).
///
/// Order: the target is inspected (a non-empty database needs `--clean`), the backup fetched
/// and checked into the local scratch directory, the missing roles created, and only then is
/// the dump copied into the container (`/tmp/drctl-restore-<random>/`, through the archive
/// endpoint, readable by the exec's user only) and restored with `pg_restore --jobs N`; the
/// copy is removed afterwards, also when the restore failed. With `--clean`, a non-empty
/// database is replaced in one transaction (a failure rolls it all back).
pub async fn restore_into(
    place: &ContainerRef,
    entry: &crate::catalog::Entry,
    storages: &[crate::storage::Storage],
    identities: &crate::keys::Identities,
    opts: crate::sources::Options<'_>,
) -> Result<crate::sources::Restored> {
    use super::restore::{quote_ident, quote_literal, recorded_globals, Replaced, COUNT_USER_RELATIONS};
    let m = &entry.manifest;
    let Facts::Postgres(facts) = &m.facts else {
        bail!("'{}' is not a PostgreSQL backup", m.source);
    };
    let engine = Engine::connect()?;
    let c = engine
        .resolve(place)
        .await
        .with_context(|| format!("restore target {place}"))?;
    // The maintenance login: the image's superuser into its own database.
    let admin = login(&c, None, None);
    let db = if facts.database.is_empty() {
        admin.database.clone()
    } else {
        facts.database.clone()
    };
    let target = format!("database '{db}' in container '{}'", c.name);
    let psql = |login: &Login, sql: &str, what: &str| {
        let spec = ExecSpec {
            cmd: psql_cmd(&["-c", sql]),
            env: login.env.clone(),
            what: format!("psql ({what})"),
        };
        let c = &c;
        async move { c.exec_output(spec).await.map(|s| s.trim().to_string()) }
    };
    let exists = psql(
        &admin,
        &format!(
            "select count(*) from pg_database where datname = {}",
            quote_literal(&db)
        ),
        "looking for the target database",
    )
    .await
    .with_context(|| {
        format!(
            "cannot connect to the server in container '{}' as '{}' (its POSTGRES_USER)",
            c.name, admin.user
        )
    })? == "1";
    let into = login(&c, None, Some(&db));
    let present: u64 = if exists {
        psql(&into, COUNT_USER_RELATIONS, "inspecting the target database")
            .await?
            .parse()
            .unwrap_or(u64::MAX)
    } else {
        0
    };
    if present > 0 && !opts.clean {
        bail!(
            "restore target {target} is not empty ({present} tables, views or sequences); restore into a fresh container, or pass --clean to replace the objects in the dump (in one transaction)"
        );
    }
    let dump = crate::fetch::fetch_to_scratch(storages, entry, identities, "dump.pgdump", opts.scratch_dir).await?;

    let mut roles_created = Vec::new();
    if !opts.no_owner {
        if let Some(g) = recorded_globals(entry, identities)? {
            let existing = psql(&admin, super::globals::LIST_ROLES, "listing the target's roles").await?;
            let existing = existing.lines().map(str::to_string).collect();
            let (script, created) = super::globals::creation_script(&g, &existing);
            if !created.is_empty() {
                run_script(&c, &admin, script, "creating the backup's roles")
                    .await
                    .with_context(|| format!("cannot create the roles {} in {target}", created.join(", ")))?;
            }
            roles_created = created;
        }
    }
    if !exists {
        psql(
            &admin,
            &format!("create database {}", quote_ident(&db)),
            "creating the target database",
        )
        .await
        .with_context(|| format!("cannot create {target}"))?;
    }

    // Into the container, owned by the user execs run as.
    let ids = c
        .exec_output(ExecSpec {
            cmd: vec!["id".into(), "-u".into()],
            env: Vec::new(),
            what: "id -u".into(),
        })
        .await
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or(0);
    let dir = format!("drctl-restore-{:016x}", rand::random::<u64>());
    let size = tokio::fs::metadata(&dump.file).await?.len();
    let file = tokio::fs::File::open(&dump.file).await?;
    let tar = single_file_tar(&dir, "dump.pgdump", size, ids, file)?;
    c.write_tree("/tmp", tar)
        .await
        .with_context(|| format!("cannot copy the dump into container '{}' (/tmp)", c.name))?;
    let path = format!("/tmp/{dir}/dump.pgdump");
    let mut cmd: Vec<String> = vec![
        "pg_restore".into(),
        "--exit-on-error".into(),
        "--no-password".into(),
        format!("--dbname={db}"),
    ];
    let replaced = if present > 0 {
        cmd.extend(["--clean", "--if-exists", "--single-transaction"].map(String::from));
        Replaced::OneTransaction
    } else {
        cmd.push(format!("--jobs={}", opts.jobs.max(1)));
        Replaced::Empty
    };
    if opts.no_owner {
        cmd.extend(["--no-owner", "--no-privileges"].map(String::from));
    }
    cmd.push(path);
    let restored = c
        .exec_output(ExecSpec {
            cmd,
            env: into.env.clone(),
            what: format!("pg_restore into {target}"),
        })
        .await;
    let removed = c
        .exec_output(ExecSpec {
            cmd: vec!["rm".into(), "-rf".into(), format!("/tmp/{dir}")],
            env: Vec::new(),
            what: "rm (the dump's copy)".into(),
        })
        .await;
    if let Err(e) = removed {
        tracing::warn!(container = %c.name, error = %format!("{e:#}"), "cannot remove /tmp/{dir} (a decrypted dump) from the container; remove it by hand");
    }
    restored.map_err(|e| {
        let undone = if present > 0 {
            " (in one transaction: the database is unchanged)"
        } else {
            ""
        };
        e.context(format!("the restore into {target} failed{undone}"))
    })?;
    Ok(crate::sources::Restored::Database {
        source: m.source.clone(),
        backup: m.id.clone(),
        target,
        replaced,
        roles_created,
    })
}

/// Runs a script (it may hold password hashes) through psql's stdin in the container.
async fn run_script(c: &Container, login: &Login, script: String, what: &str) -> Result<()> {
    let (mut out, stdin, done) = c
        .exec(
            ExecSpec {
                cmd: psql_cmd(&["-f", "-"]),
                env: login.env.clone(),
                what: format!("psql ({what})"),
            },
            true,
        )
        .await?;
    let mut stdin = stdin.expect("stdin attached");
    let write = async move {
        stdin.write_all(script.as_bytes()).await?;
        stdin.shutdown().await?;
        Ok::<_, std::io::Error>(())
    };
    let mut sink = Vec::new();
    let (w, r) = tokio::join!(write, tokio::io::AsyncReadExt::read_to_end(&mut out, &mut sink));
    w?;
    r?;
    done.wait().await?;
    Ok(())
}

/// A tar of one directory holding one file, streamed from `file` (mode 0700/0600, owned by
/// `uid`), for the engine's archive upload.
fn single_file_tar(
    dir: &str,
    name: &str,
    size: u64,
    uid: u64,
    file: tokio::fs::File,
) -> Result<impl futures::Stream<Item = std::io::Result<bytes::Bytes>> + Send + 'static> {
    use futures::StreamExt;
    let header = |path: &str, kind: tar::EntryType, mode: u32, size: u64| -> Result<bytes::Bytes> {
        let mut h = tar::Header::new_gnu();
        h.set_path(path)?;
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(size);
        h.set_uid(uid);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_cksum();
        Ok(bytes::Bytes::copy_from_slice(h.as_bytes()))
    };
    let head = [
        header(&format!("{dir}/"), tar::EntryType::Directory, 0o700, 0)?,
        header(&format!("{dir}/{name}"), tar::EntryType::Regular, 0o600, size)?,
    ];
    let pad = (512 - (size % 512) as usize) % 512;
    let tail = bytes::Bytes::from(vec![0u8; pad + 1024]);
    // Exactly `size` bytes, or an error: a file that shrank while being sent must not end the
    // archive early like a complete one (the error aborts the upload).
    let body = tokio_util::io::ReaderStream::with_capacity(tokio::io::AsyncReadExt::take(file, size), 256 * 1024);
    let mut sent = 0u64;
    let body = body
        .map(move |chunk| {
            if let Ok(b) = &chunk {
                sent += b.len() as u64;
            }
            (chunk, sent)
        })
        .chain(futures::stream::once(async { (Ok(bytes::Bytes::new()), u64::MAX) }))
        .scan(0u64, move |last, (chunk, total)| {
            let item = if total == u64::MAX {
                (*last < size).then(|| {
                    Err(std::io::Error::other(format!(
                        "the file ended {} bytes early",
                        size - *last
                    )))
                })
            } else {
                *last = total;
                Some(chunk)
            };
            futures::future::ready(Some(item))
        })
        .filter_map(futures::future::ready);
    Ok(futures::stream::iter(head.map(Ok))
        .chain(body)
        .chain(futures::stream::iter([Ok(tail)])))
}
