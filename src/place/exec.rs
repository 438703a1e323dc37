//! Commands run inside a container through the engine's exec API: stdout demultiplexed into a
//! byte stream, stderr kept (its tail) for errors, and the exit code read from exec inspect
//! *after* the output ended — the stream closing says nothing about success (a pg_dump that
//! fails half-way closes it like one that is done).
//!
//! Secrets go in the exec's environment, never in its command: the command is visible to
//! anyone who can inspect the exec or list the container's processes.

use super::Container;
use anyhow::{anyhow, bail, Result};
use bollard::container::LogOutput;
use bollard::exec::{StartExecOptions, StartExecResults};
use bollard::models::ExecConfig;
use bytes::Bytes;
use futures::StreamExt;
use std::pin::Pin;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// How much of an exec's stderr is kept for the error message.
const STDERR_TAIL: usize = 16 * 1024;

/// A command to run in a container.
pub struct ExecSpec {
    /// Program and arguments. No secrets here.
    pub cmd: Vec<String>,
    /// Added to the container's environment for this command only (PGPASSWORD, …).
    pub env: Vec<(String, String)>,
    /// Names the command in errors ("pg_dump for 'app-db' in container 'app-postgres-1'").
    pub what: String,
}

/// The end of an exec: [`ExecCompletion::wait`] after the stream ended.
pub struct ExecCompletion {
    container: String,
    docker: bollard::Docker,
    exec_id: String,
    what: String,
    pump: JoinHandle<Result<String>>,
    keep: Vec<Box<dyn std::any::Any + Send>>,
}

pub type ExecStdin = Pin<Box<dyn AsyncWrite + Send>>;

impl Container {
    /// Starts `spec`; stdout as a stream. With `stdin`, also the exec's stdin.
    pub async fn exec(
        &self,
        spec: ExecSpec,
        stdin: bool,
    ) -> Result<(
        impl AsyncRead + Send + Unpin + 'static,
        Option<ExecStdin>,
        ExecCompletion,
    )> {
        let docker = self.engine.docker.clone();
        let what = format!("{} in container '{}'", spec.what, self.name);
        let config = ExecConfig {
            attach_stdin: Some(stdin),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            tty: Some(false),
            env: Some(spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
            cmd: Some(spec.cmd.clone()),
            ..Default::default()
        };
        let created = docker
            .create_exec(&self.id, config)
            .await
            .map_err(|e| anyhow!("cannot start {what}: {e}"))?;
        let started = docker
            .start_exec(
                &created.id,
                Some(StartExecOptions {
                    detach: false,
                    tty: false,
                    output_capacity: Some(256 * 1024),
                }),
            )
            .await
            .map_err(|e| anyhow!("cannot start {what}: {e}"))?;
        let StartExecResults::Attached { mut output, input } = started else {
            bail!("cannot start {what}: the engine detached the exec");
        };
        // A small bounded channel: the engine's stream is read only as fast as the pipeline
        // takes the bytes, so a dump is never buffered in memory.
        let (tx, rx) = mpsc::channel::<std::io::Result<Bytes>>(8);
        let pump_what = what.clone();
        let pump = tokio::spawn(async move {
            let mut stderr: Vec<u8> = Vec::new();
            while let Some(item) = output.next().await {
                match item {
                    Ok(LogOutput::StdOut { message }) | Ok(LogOutput::Console { message }) => {
                        if tx.send(Ok(message)).await.is_err() {
                            // The reader is gone (the upload failed first); stop reading.
                            break;
                        }
                    }
                    Ok(LogOutput::StdErr { message }) => {
                        stderr.extend_from_slice(&message);
                        if stderr.len() > STDERR_TAIL * 2 {
                            stderr.drain(..stderr.len() - STDERR_TAIL);
                        }
                    }
                    Ok(LogOutput::StdIn { .. }) => {}
                    Err(e) => {
                        let msg = format!("the engine's stream of {pump_what} broke: {e}");
                        let _ = tx.send(Err(std::io::Error::other(msg.clone()))).await;
                        bail!(msg);
                    }
                }
            }
            if stderr.len() > STDERR_TAIL {
                stderr.drain(..stderr.len() - STDERR_TAIL);
            }
            Ok(String::from_utf8_lossy(&stderr).into_owned())
        });
        let reader = tokio_util::io::StreamReader::new(tokio_stream_from(rx));
        Ok((
            reader,
            stdin.then_some(input),
            ExecCompletion {
                container: self.name.clone(),
                docker,
                exec_id: created.id,
                what,
                pump,
                keep: Vec::new(),
            },
        ))
    }

    /// Runs `spec` to the end and returns its stdout; a non-zero exit carries stderr.
    pub async fn exec_output(&self, spec: ExecSpec) -> Result<String> {
        let (mut out, _, done) = self.exec(spec, false).await?;
        let mut text = String::new();
        tokio::io::AsyncReadExt::read_to_string(&mut out, &mut text).await?;
        done.wait().await?;
        Ok(text)
    }
}

fn tokio_stream_from(
    mut rx: mpsc::Receiver<std::io::Result<Bytes>>,
) -> impl futures::Stream<Item = std::io::Result<Bytes>> + Send + Unpin + 'static {
    Box::pin(futures::stream::poll_fn(move |cx| rx.poll_recv(cx)))
}

impl ExecCompletion {
    /// Keeps `thing` alive until the exec has ended (a session holding a snapshot).
    pub fn keep_alive(&mut self, thing: Box<dyn std::any::Any + Send>) {
        self.keep.push(thing);
    }

    /// Waits for the output to end, then asks the engine how the command exited: Ok only on 0.
    /// Returns the stderr tail.
    pub async fn wait(mut self) -> Result<String> {
        let stderr = (&mut self.pump)
            .await
            .map_err(|e| anyhow!("{}: reading its output failed: {e}", self.what))??;
        // The engine may report the exec as running for a moment after its output closed.
        let mut tries = 0;
        let code = loop {
            let info = self
                .docker
                .inspect_exec(&self.exec_id)
                .await
                .map_err(|e| anyhow!("cannot ask the engine how {} ended: {e}", self.what))?;
            match (info.running, info.exit_code) {
                (Some(false), Some(code)) | (None, Some(code)) => break code,
                _ if tries < 100 => {
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                _ => bail!(
                    "{}: its output ended but the engine still reports it running (container '{}')",
                    self.what,
                    self.container
                ),
            }
        };
        drop(std::mem::take(&mut self.keep));
        let tail = stderr.trim();
        match (code, tail.is_empty()) {
            (0, _) => Ok(stderr),
            (c, true) => Err(anyhow!(
                "{} exited with status {c} (it printed nothing on stderr)",
                self.what
            )),
            (c, false) => Err(anyhow!("{} exited with status {c}: {tail}", self.what)),
        }
    }

    /// Stops reading (the upload failed first). The engine has no call to kill an exec; the
    /// command ends when it next writes to the closed stream.
    pub async fn kill(self) {
        self.pump.abort();
    }
}

/// Dropping the completion closes the exec's connection: its stdin ends (a psql session holding
/// a snapshot exits and ends its transaction) and its next write fails. Without this, a reader
/// task waiting for output that never comes would keep the session open as long as drctl runs.
impl Drop for ExecCompletion {
    fn drop(&mut self) {
        self.pump.abort();
    }
}
