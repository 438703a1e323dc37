//! Subcommand bodies: glue between the CLI and the library, one file per subcommand, and the
//! only code that prints. Each returns the exit code.

mod backup;
mod check;
mod copy;
mod init;
mod list;
mod prune;
mod restore;
mod status;
mod unlock;
mod unpin;
mod verify;
mod wal;
mod wal_spool;

use backup::backup;
use check::check;
use copy::copy;
use init::init;
use list::list;
use prune::prune;
use restore::restore;
use status::status;
use unlock::unlock;
use unpin::unpin;
use verify::verify;

use crate::catalog;
use crate::cli::{
    BackupArgs, CheckArgs, Cli, Command, CopyArgs, ListArgs, PruneArgs, RestoreArgs, StatusArgs, UnlockArgs, UnpinArgs,
    VerifyArgs,
};
use crate::config::{self, Config};
use crate::lock;
use crate::storage;
use crate::storage::Storage;
use anyhow::{bail, Result};
use tokio_util::sync::CancellationToken;

fn load(cli: &Cli) -> Result<Config> {
    load_for(cli, config::Uses::All)
}

/// The config with `${VAR}` expanded only where the command reads it (`config::Uses`).
fn load_for(cli: &Cli, uses: config::Uses) -> Result<Config> {
    let path = config::resolve_path(cli.config.as_deref());
    Ok(config::load_for(&path, uses)?)
}

pub async fn run(cli: Cli) -> Result<i32> {
    match &cli.command {
        Command::Init(a) => init(a, cli.config.as_deref()),
        Command::Validate => {
            let path = config::resolve_path(cli.config.as_deref());
            let cfg = config::load(&path)?;
            println!(
                "config {} is valid: {} source(s), {} storage(s)",
                path.display(),
                cfg.sources.len(),
                cfg.storages.len()
            );
            Ok(0)
        }
        Command::Keygen(a) => {
            let recipient = crate::keys::keygen(a.output.as_deref())?;
            if let Some(p) = &a.output {
                eprintln!(
                    "wrote identity to {} (mode 0600); keep a copy offline: without it no backup can be restored",
                    p.display()
                );
                println!("{recipient}");
            } else {
                eprintln!("public key: {recipient}");
            }
            Ok(0)
        }
        Command::Backup(a) => backup(&load(&cli)?, a).await,
        Command::List(a) => list(&load(&cli)?, a).await,
        Command::Restore(a) => restore(&load_for(&cli, config::Uses::Restore)?, a, &cli).await,
        Command::Prune(a) => prune(&load(&cli)?, a).await,
        Command::Unlock(a) => unlock(&load(&cli)?, a).await,
        Command::Unpin(a) => unpin(&load(&cli)?, a).await,
        Command::Daemon(a) => {
            crate::daemon::run(
                config::resolve_path(cli.config.as_deref()),
                a.metrics_addr,
                Some(status::page),
            )
            .await
        }
        Command::Status(a) => status(&load(&cli)?, a).await,
        Command::Verify(a) => verify(&load_for(&cli, config::Uses::Verify)?, a).await,
        Command::Check(a) => check(&load(&cli)?, a).await,
        Command::Copy(a) => copy(&load(&cli)?, a).await,
        Command::WalPush(a) => Ok(wal::push(&cli, a).await),
        Command::WalFetch(a) => Ok(wal::fetch(&cli, a).await),
        Command::WalPrefetch(a) => Ok(wal::prefetch(&cli, a).await),
        Command::WalVerify(a) => wal::verify(&load_for(&cli, config::Uses::Restore)?, a).await,
        Command::WalSpool(a) => wal_spool::drain_once(&load(&cli)?, a).await,
    }
}

/// SIGINT/SIGTERM cancel the token; the pipeline then aborts its uploads, and child processes
/// are stopped and waited for (`process::shutdown`).
fn cancel_on_signal() -> CancellationToken {
    let token = crate::process::shutdown().clone();
    let t = token.clone();
    tokio::spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
            return;
        };
        tokio::select! {
            _ = term.recv() => {},
            _ = int.recv() => {},
        }
        tracing::warn!("signal received: stopping (uploads are aborted and nothing of this run is committed; child processes are stopped and scratch files removed)");
        t.cancel();
    });
    token
}

fn events_for(cfg: &Config) -> crate::events::Events {
    crate::events::Events::new(
        crate::state::StateDir::new(cfg.daemon.state_dir()),
        cfg.notify.clone(),
        None,
    )
}

fn duration_arg(flag: &str, v: &str) -> Result<std::time::Duration> {
    let d = crate::config::parse_duration(v).map_err(|e| anyhow::anyhow!("{flag}: {e}"))?;
    Ok(d.to_std().unwrap_or_default())
}
