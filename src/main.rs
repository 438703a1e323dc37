//! Thin: parse the command line, run, map errors to exit codes
//! (0 ok, 1 a job failed, 2 usage or config error, 3 degraded: the backup is complete on some
//! storages and missing on others).

use clap::Parser;
use drctl::cli::{Cli, LogFormat};

fn init_logging(cli: &Cli) {
    use tracing_subscriber::EnvFilter;
    let default = match cli.verbose {
        0 => "drctl=info,opendal=warn",
        1 => "drctl=debug,opendal=info",
        _ => "trace",
    };
    let mut filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    // reqsign (OpenDAL's request signer) prints its credential providers, secret keys
    // included, at debug level; bollard (the Docker client under the docker verify sandbox)
    // prints every request body, the sandbox's POSTGRES_PASSWORD included. No verbosity or
    // RUST_LOG may turn that on. async-nats traces its CONNECT message (user, password and
    // token) from its connection module, and its connector logs server addresses with Debug.
    for target in [
        "async_nats::connection=debug",
        "async_nats::connector=info",
        "reqsign=warn",
        "reqsign_core=warn",
        "reqsign_aws_v4=warn",
        "reqsign_file_read_tokio=warn",
        "bollard=warn",
    ] {
        filter = filter.add_directive(target.parse().expect("static directive"));
    }
    use std::io::IsTerminal;
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Text => b.init(),
        LogFormat::Json => b.json().init(),
    }
}

/// Whether the config this run reads names an SFTP storage (a cheap look at its text; a false
/// positive only costs an empty private directory for the run).
fn uses_sftp(cli: &Cli) -> bool {
    let path = drctl::config::resolve_path(cli.config.as_deref());
    std::fs::read_to_string(path).is_ok_and(|t| t.contains("sftp"))
}

fn main() {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) if e.use_stderr() => {
            // PostgreSQL reads wal-push's and wal-fetch's exit codes (commands/wal.rs): a
            // mistyped archive_command must not look like a crash, nor a mistyped
            // restore_command like the end of the archive.
            let _ = e.print();
            let args: Vec<String> = std::env::args().collect();
            std::process::exit(if args.iter().any(|a| a == "wal-push") {
                1
            } else if args.iter().any(|a| a == "wal-fetch") {
                126
            } else {
                e.exit_code()
            });
        }
        Err(e) => e.exit(),
    };
    // The same for a panic: 1 for wal-push, 126 for wal-fetch, whatever thread it is on.
    let panic_code = match &cli.command {
        drctl::cli::Command::WalPush(_) => Some(1),
        drctl::cli::Command::WalFetch(_) => Some(126),
        _ => None,
    };
    if let Some(code) = panic_code {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            default(info);
            std::process::exit(code);
        }));
    }
    init_logging(&cli);
    {
        use std::io::IsTerminal;
        drctl::progress::enable(std::io::stderr().is_terminal() && matches!(cli.log_format, LogFormat::Text));
    }
    // Before the runtime starts any thread: it sets $XDG_STATE_HOME for openssh. Declared before
    // the runtime, so that on a panic too it is dropped after it.
    // Only for a config with an SFTP storage: other runs leave nothing in $TMPDIR.
    let ssh_control = uses_sftp(&cli).then(drctl::storage::ssh::ControlDir::create).flatten();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let code = match rt.block_on(drctl::commands::run(cli)) {
        Ok(code) => code,
        Err(e) => {
            if let Some(ce) = e.downcast_ref::<drctl::config::ConfigErrors>() {
                eprint!("error: {ce}");
                2
            } else {
                eprintln!("error: {e:#}");
                1
            }
        }
    };
    // Drop the runtime, and with it every task and storage, before exiting: an SFTP storage's
    // ssh control master is closed by its Drop (ssh -O exit); process::exit would skip that and
    // leave a master process behind for every run. Then stop the masters whose close the crates
    // cancelled (storage::ssh), and wait for them: none outlives the run.
    drop(rt);
    drop(ssh_control);
    std::process::exit(code);
}
