//! The few questions a file-mode backup asks Redis (INFO, LASTSAVE, BGSAVE, CONFIG GET), asked
//! either over drctl's own connection (a server on the host) or through `redis-cli` exec'd next
//! to the server in its container, so `dump.rs` holds one BGSAVE logic for both places.

use crate::place::{Container, ExecSpec};
use anyhow::{anyhow, Result};

pub enum Server {
    Net(redis::aio::MultiplexedConnection),
    Cli(Cli),
}

/// `redis-cli` in the server's container, one exec per command. `-e` makes an error reply exit
/// non-zero (printed on stderr), so every failure reaches [`ExecCompletion::wait`]. The
/// password goes in the exec's environment (`REDISCLI_AUTH`), never on its command line.
///
/// [`ExecCompletion::wait`]: crate::place::ExecCompletion::wait
pub struct Cli {
    pub container: Container,
    env: Vec<(String, String)>,
    /// Names the source (or target) in errors.
    about: String,
}

impl Cli {
    pub fn new(container: Container, password: Option<&str>, about: &str) -> Cli {
        let env = password
            .map(|pw| vec![("REDISCLI_AUTH".to_string(), pw.to_string())])
            .unwrap_or_default();
        Cli {
            container,
            env,
            about: about.to_string(),
        }
    }

    fn cmd(&self, args: &[&str]) -> Vec<String> {
        ["redis-cli", "-e", "--no-auth-warning"]
            .iter()
            .chain(args)
            .map(|s| s.to_string())
            .collect()
    }

    /// Runs one command; its reply as redis-cli prints it without a terminal (raw).
    pub async fn run(&self, args: &[&str]) -> Result<String> {
        self.container
            .exec_output(ExecSpec {
                cmd: self.cmd(args),
                env: self.env.clone(),
                what: format!("redis-cli {} for '{}'", args.join(" "), self.about),
            })
            .await
            .map_err(|e| anyhow!("{e:#}{}", hint(&format!("{e:#}"))))
    }

    /// `redis-cli --pipe` with stdin: RESP commands in, a reply summary out.
    pub async fn pipe(
        &self,
    ) -> Result<(
        impl tokio::io::AsyncRead + Send + Unpin + 'static,
        std::pin::Pin<Box<dyn tokio::io::AsyncWrite + Send>>,
        crate::place::ExecCompletion,
    )> {
        let (out, stdin, done) = self
            .container
            .exec(
                ExecSpec {
                    cmd: ["redis-cli", "--no-auth-warning", "--pipe"]
                        .iter()
                        .map(|s| s.to_string())
                        .collect(),
                    env: self.env.clone(),
                    what: format!("redis-cli --pipe for '{}'", self.about),
                },
                true,
            )
            .await?;
        Ok((out, stdin.ok_or_else(|| anyhow!("the engine attached no stdin"))?, done))
    }
}

/// What to do about the usual ways a redis-cli exec fails, from its stderr.
fn hint(err: &str) -> &'static str {
    // A wrong password also makes the command itself fail with NOAUTH: WRONGPASS first.
    if err.contains("WRONGPASS") || err.contains("invalid password") {
        " (the password is wrong: check the variable behind the source's password, or REDISCLI_AUTH for a restore target)"
    } else if err.contains("NOAUTH") {
        " (the server has requirepass: set password = \"${REDIS_PASSWORD}\" in the source; for a restore target, put it in REDISCLI_AUTH in drctl's environment)"
    } else if err.contains("Unrecognized option") {
        " (redis-cli in the container is older than 7.0; drctl needs its -e flag)"
    } else if err.contains("Connection refused") || err.contains("Could not connect") {
        " (redis-cli inside the container connects to 127.0.0.1:6379; is the server listening there?)"
    } else if err.contains("executable file not found") || err.contains("no such file or directory") {
        " (the container has no redis-cli; use an image that ships it, like the official redis image)"
    } else {
        ""
    }
}

impl Server {
    /// `INFO section`, or the default sections for `None`.
    pub async fn info(&mut self, section: Option<&str>) -> Result<String> {
        match self {
            Server::Net(c) => {
                let mut cmd = redis::cmd("INFO");
                if let Some(s) = section {
                    cmd.arg(s);
                }
                Ok(cmd.query_async::<String>(c).await?)
            }
            Server::Cli(cli) => {
                let mut args = vec!["INFO"];
                args.extend(section);
                cli.run(&args).await
            }
        }
    }

    pub async fn lastsave(&mut self) -> Result<i64> {
        match self {
            Server::Net(c) => Ok(redis::cmd("LASTSAVE").query_async(c).await?),
            Server::Cli(cli) => {
                let out = cli.run(&["LASTSAVE"]).await?;
                out.trim()
                    .parse()
                    .map_err(|_| anyhow!("LASTSAVE answered '{}'", out.trim()))
            }
        }
    }

    /// Sends BGSAVE; an error carries Redis's reply ("… already in progress").
    pub async fn bgsave(&mut self) -> Result<()> {
        match self {
            Server::Net(c) => {
                redis::cmd("BGSAVE").query_async::<String>(c).await?;
            }
            Server::Cli(cli) => {
                cli.run(&["BGSAVE"]).await?;
            }
        }
        Ok(())
    }

    /// `CONFIG GET key`'s value.
    pub async fn config_get(&mut self, key: &str) -> Result<String> {
        let pair: Vec<String> = match self {
            Server::Net(c) => redis::cmd("CONFIG").arg("GET").arg(key).query_async(c).await?,
            Server::Cli(cli) => cli
                .run(&["CONFIG", "GET", key])
                .await?
                .lines()
                .map(str::to_string)
                .collect(),
        };
        pair.get(1)
            .cloned()
            .ok_or_else(|| anyhow!("CONFIG GET {key} returned nothing"))
    }
}
