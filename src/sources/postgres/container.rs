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
struct Login {
    user: String,
    database: String,
    env: Vec<(String, String)>,
}

fn login(c: &Container, user: Option<&str>, database: Option<&str>) -> Login {
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

fn psql_cmd(extra: &[&str]) -> Vec<String> {
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
