//! Test harness: throwaway servers (PostgreSQL, Redis, NATS, S3, WebDAV, SFTP, a Docker-API
//! engine) in temp dirs on free loopback ports, always stopped on drop; a fault proxy; and a
//! drctl workspace (config + identity). Nothing here touches the machine's own services.

mod daemon;
mod docker;
mod docker_files;
mod docker_nats;
mod forge;
mod http;
mod machine;
mod nats;
mod postgres;
mod proxy;
mod redis;
mod s3;
mod s3s;
mod sftp;
mod verify;
mod webdav;
mod workspace;

pub use self::daemon::*;
pub use self::docker::*;
pub use self::docker_files::*;
pub use self::docker_nats::*;
pub use self::forge::*;
pub use self::http::*;
pub use self::machine::*;
pub use self::nats::*;
pub use self::postgres::*;
pub use self::proxy::*;
pub use self::redis::*;
pub use self::s3::*;
pub use self::s3s::*;
pub use self::sftp::*;
pub use self::verify::*;
pub use self::webdav::*;
pub use self::workspace::*;

use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc_geteuid() == 0 }
}

extern "C" {
    #[link_name = "geteuid"]
    fn libc_geteuid() -> u32;
}

fn wait_port(port: u16, what: &str, timeout: Duration) {
    let t0 = Instant::now();
    while t0.elapsed() < timeout {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{what} did not listen on 127.0.0.1:{port} within {timeout:?}");
}

/// All files below `dir`, relative, sorted.
/// The manifest files of an fs storage whose root is `root` (absolute paths).
pub fn manifest_files(root: &Path) -> Vec<std::path::PathBuf> {
    files_under(root)
        .into_iter()
        .filter(|f| f.starts_with("manifests/"))
        .map(|f| root.join(f))
        .collect()
}

pub fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    fn walk(base: &Path, d: &Path, out: &mut Vec<String>) {
        if let Ok(rd) = std::fs::read_dir(d) {
            for e in rd.flatten() {
                let p = e.path();
                if p.is_dir() {
                    walk(base, &p, out);
                } else {
                    out.push(p.strip_prefix(base).unwrap().to_string_lossy().into_owned());
                }
            }
        }
    }
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// Runs a shell script with `sh -e`, panicking with its output if it fails.
pub fn sh(script: &str, env: &[(&str, &str)]) {
    let mut c = Command::new("sh");
    c.arg("-ec").arg(script);
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "{script}\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
