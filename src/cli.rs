//! Command line: one struct per subcommand.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "drctl",
    version,
    about = "Backups you have restored: PostgreSQL, Redis, NATS JetStream, files → zstd → age → local disk, S3, B2, SFTP, WebDAV"
)]
pub struct Cli {
    /// Config file [default: ./drctl.toml]
    #[arg(long, short, global = true, env = "DRCTL_CONFIG")]
    pub config: Option<PathBuf>,
    /// Log format on stderr
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// More log output (-v debug, -vv trace); RUST_LOG overrides
    #[arg(long, short, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write a commented starter config and a new identity (asks nothing)
    Init(InitArgs),
    /// Check the config file and print every problem at once (no network)
    Validate,
    /// Create a new age identity (private key) and print its public recipient
    Keygen(KeygenArgs),
    /// Back up sources now
    Backup(BackupArgs),
    /// List complete backups, newest first
    List(ListArgs),
    /// Restore the newest backup at or before a time
    Restore(RestoreArgs),
    /// Apply retention: print the plan, then (unless --dry-run) delete what it drops
    Prune(PruneArgs),
    /// Remove stale locks left by a crashed drctl (--force: all locks)
    Unlock(UnlockArgs),
    /// Remove a `backup --keep` pin, so retention may drop the backup again
    Unpin(UnpinArgs),
    /// Run the configured [[job]]s on their schedules until SIGTERM
    Daemon(DaemonArgs),
    /// Per source: last success and failure, newest backup per storage, next run
    Status(StatusArgs),
    /// Restore the newest backups into throwaway servers and check them
    Verify(VerifyArgs),
    /// Check that every backup's objects exist with the right sizes (and hashes)
    Check(CheckArgs),
    /// Copy complete backups that one storage lacks from another
    Copy(CopyArgs),
    /// Archive one WAL file: PostgreSQL's archive_command = 'drctl wal-push --source NAME %p'.
    /// Exits 0 once the file is stored on every storage (or already was, with the same
    /// content), else 1 — never anything else
    WalPush(WalPushArgs),
    /// Fetch one WAL file: restore_command = 'drctl wal-fetch --source NAME %f %p'. Exits 1
    /// only when it is not archived (the end of recovery); any other failure exits 126, which
    /// stops recovery instead of ending it early
    WalFetch(WalFetchArgs),
    /// Check the WAL archive of a postgres_cluster source: timelines, and for every base backup
    /// whether the WAL from its start to the newest segment is complete (exit 1 on a gap)
    WalVerify(WalVerifyArgs),
    /// Download the WAL segments after one into the read-ahead cache (started by wal-fetch)
    #[command(hide = true)]
    WalPrefetch(WalPrefetchArgs),
    /// Archive the WAL waiting in the spool of a postgres_cluster source in a container, once
    /// (the daemon does it every few seconds). Exits 1 when a file could not be archived
    WalSpool(WalSpoolArgs),
}

#[derive(Debug, Args)]
pub struct WalSpoolArgs {
    /// The postgres_cluster source (container = … or service = …)
    #[arg(long, short = 's')]
    pub source: String,
}

#[derive(Debug, Args)]
pub struct WalPushArgs {
    /// The postgres_cluster source whose archive this is
    #[arg(long, short = 's')]
    pub source: String,
    /// The file (%p)
    pub path: PathBuf,
}

#[derive(Debug, Args)]
pub struct WalVerifyArgs {
    #[arg(long, short = 's')]
    pub source: String,
    /// Only this storage [default: each]
    #[arg(long)]
    pub storage: Option<String>,
}

#[derive(Debug, Args)]
pub struct WalFetchArgs {
    #[arg(long, short = 's')]
    pub source: String,
    /// age identity file [default: encryption.identity_file]
    #[arg(long, short = 'i')]
    pub identity: Option<PathBuf>,
    /// The WAL file's name (%f)
    pub file: String,
    /// Where to write it (%p)
    pub dest: PathBuf,
}

#[derive(Debug, Args)]
pub struct WalPrefetchArgs {
    #[arg(long, short = 's')]
    pub source: String,
    #[arg(long, short = 'i')]
    pub identity: Option<PathBuf>,
    /// The segment just served
    #[arg(long)]
    pub after: String,
    /// The cache directory
    #[arg(long)]
    pub dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    #[arg(long)]
    pub storage: Option<String>,
    /// Also read every object and recompute its SHA-256
    #[arg(long, conflicts_with = "read_data_subset")]
    pub read_data: bool,
    /// Read this share of the backups, chosen at random, e.g. 10%
    #[arg(long)]
    pub read_data_subset: Option<String>,
}

#[derive(Debug, Args)]
pub struct CopyArgs {
    #[arg(long)]
    pub from: String,
    #[arg(long)]
    pub to: String,
    #[arg(long)]
    pub source: Option<String>,
    /// Only backups made at or after this time
    #[arg(long)]
    pub since: Option<String>,
    #[arg(long, default_value = "10m")]
    pub lock_wait: String,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Only these sources (repeatable) [default: all]
    #[arg(long = "source", short = 's')]
    pub sources: Vec<String>,
    /// Verify the newest backup at or before this time instead of the newest
    #[arg(long)]
    pub at: Option<String>,
    /// age identity file [default: encryption.identity_file]
    #[arg(long, short = 'i')]
    pub identity: Option<PathBuf>,
    /// Read from this storage only
    #[arg(long)]
    pub storage: Option<String>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct DaemonArgs {
    /// Serve Prometheus metrics on this address, e.g. 127.0.0.1:9187 (off by default)
    #[arg(long)]
    pub metrics_addr: Option<std::net::SocketAddr>,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    #[arg(long)]
    pub source: Option<String>,
    #[arg(long)]
    pub storage: Option<String>,
    /// Print the plan only
    #[arg(long)]
    pub dry_run: bool,
    /// Print the plan as JSON
    #[arg(long)]
    pub json: bool,
    /// Evaluate the policy as if it were this time (same formats as restore --at)
    #[arg(long)]
    pub now: Option<String>,
    /// Remove data without a manifest once older than this [default: prune.orphan_age, 24h]
    #[arg(long)]
    pub orphan_age: Option<String>,
    /// How long to wait for a running backup's lock, e.g. 10m
    #[arg(long, default_value = "10m")]
    pub lock_wait: String,
}

#[derive(Debug, Args)]
pub struct UnlockArgs {
    #[arg(long)]
    pub storage: Option<String>,
    /// Remove every lock, also live ones (only when you are sure no drctl runs)
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// Where to write drctl.toml and identity.txt
    #[arg(long, default_value = ".")]
    pub dir: PathBuf,
    /// Write a config for this Docker Compose file (and the .env beside it): its PostgreSQL,
    /// Redis and NATS services, named volumes and stack files. Written to --config (or
    /// DRCTL_CONFIG) if given, else DIR/drctl.toml
    #[arg(long, value_name = "COMPOSE_FILE")]
    pub from_compose: Option<PathBuf>,
    /// Encrypt to this age public key (age1…) instead of creating a new identity
    #[arg(long)]
    pub recipient: Option<String>,
}

#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// Write the identity here (mode 0600; never overwrites) instead of stdout
    #[arg(long, short)]
    pub output: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct BackupArgs {
    /// Only these sources (repeatable) [default: all]
    #[arg(long = "source", short = 's')]
    pub sources: Vec<String>,
    /// Do not apply retention after a successful run
    #[arg(long)]
    pub no_prune: bool,
    /// How long to wait for a running prune's lock, e.g. 10m
    #[arg(long, default_value = "10m")]
    pub lock_wait: String,
    /// Pin this run's backups: no retention drops them until `drctl unpin`
    #[arg(long)]
    pub keep: bool,
    /// Why they are pinned, shown by `drctl list` (with --keep)
    #[arg(long, requires = "keep")]
    pub note: Option<String>,
}

#[derive(Debug, Args)]
pub struct UnpinArgs {
    /// The backup's source
    #[arg(long = "source", short = 's')]
    pub source: String,
    /// The backup id, as `drctl list` shows it
    pub id: String,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    #[arg(long)]
    pub source: Option<String>,
    /// Only this storage
    #[arg(long)]
    pub storage: Option<String>,
    #[arg(long)]
    pub json: bool,
    /// Also show the facts stored encrypted (per-file hashes, row counts), opened with this identity
    #[arg(long, short = 'i')]
    pub identity: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// Restore point: RFC 3339, YYYY-MM-DD, 'YYYY-MM-DD HH:MM[:SS]' (UTC unless an offset is given), or now
    #[arg(long)]
    pub at: String,
    /// Only these sources (repeatable) [default: all]
    #[arg(long = "source", short = 's')]
    pub sources: Vec<String>,
    /// Read from this storage only [default: the first that holds the backup, then the next]
    #[arg(long)]
    pub storage: Option<String>,
    /// age identity file [default: encryption.identity_file]
    #[arg(long, short = 'i')]
    pub identity: Option<PathBuf>,
    /// Load into this database (password via PGPASSWORD/PGPASSFILE, not here)
    #[arg(long, env = "DRCTL_TARGET_URL", conflicts_with = "output_dir")]
    pub target_url: Option<String>,
    /// Load into the server running in this container: container:NAME or service:NAME (a Compose
    /// service, found through its labels; --compose-project when several projects have it)
    #[arg(long, conflicts_with_all = ["target_url", "output_dir"])]
    pub target: Option<String>,
    /// The Compose project of --target service:NAME [default: the only one with that service]
    #[arg(long, requires = "target")]
    pub compose_project: Option<String>,
    /// Write the decrypted dump files here instead
    #[arg(long)]
    pub output_dir: Option<PathBuf>,
    /// Allow a non-empty target: drop and recreate the objects in the dump
    #[arg(long)]
    pub clean: bool,
    /// Print which backups would be restored and the data-loss window, then stop
    #[arg(long)]
    pub dry_run: bool,
    /// pg_restore parallel jobs [default: number of CPUs, at most 8]
    #[arg(long)]
    pub jobs: Option<usize>,
    /// Do not restore ownership and privileges (target has different roles)
    #[arg(long)]
    pub no_owner: bool,
    /// Keep setuid/setgid bits of extracted files (stripped by default)
    #[arg(long)]
    pub keep_special_bits: bool,
    /// Where a dump is decrypted before loading it into a server (checked for free space first)
    /// [default: <state_dir>/scratch]
    #[arg(long)]
    pub scratch_dir: Option<PathBuf>,
    /// postgres_cluster: write the base backup into this new or empty data directory and set
    /// up point-in-time recovery to --at (a time with an offset, or now: the end of the archive)
    #[arg(long, conflicts_with_all = ["target_url", "target", "output_dir"])]
    pub target_datadir: Option<PathBuf>,
    /// With --target-datadir: start PostgreSQL on it (on --port), wait for recovery to finish,
    /// and print the point reached
    #[arg(long, requires = "target_datadir")]
    pub start: bool,
    /// The port for --start
    #[arg(long, requires = "start")]
    pub port: Option<u16>,
}
