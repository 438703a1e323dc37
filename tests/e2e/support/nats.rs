//! A throwaway nats-server with JetStream (optionally asking for a user and password or a
//! token), and a minimal client for its API.

use super::{free_port, wait_port};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub const NATS_USER: &str = "drctl-nats";
pub const NATS_PASSWORD: &str = "n4ts-pw-Qx7-never-log-me";
pub const NATS_TOKEN: &str = "n4ts-token-Wr2-never-log-me";

/// How a test nats-server asks clients to authenticate (set in its config file, so no secret
/// is on its command line).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NatsAuth {
    None,
    /// `authorization { user: NATS_USER, password: NATS_PASSWORD }`
    UserPassword,
    /// `authorization { token: NATS_TOKEN }`
    Token,
}

/// A throwaway nats-server with JetStream and monitoring, store in a temp dir.
pub struct Nats {
    pub port: u16,
    pub monitor: u16,
    pub store: PathBuf,
    pub auth: NatsAuth,
    _dir: Option<tempfile::TempDir>,
    child: Child,
}

impl Nats {
    pub fn start() -> Nats {
        Nats::start_with_auth(NatsAuth::None)
    }

    /// A server that refuses clients without the credentials `auth` names.
    pub fn start_with_auth(auth: NatsAuth) -> Nats {
        let dir = tempfile::Builder::new().prefix("drctl-nats-test-").tempdir().unwrap();
        let store = dir.path().join("store");
        let conf = dir.path().join("nats.conf");
        let authorization = match auth {
            NatsAuth::None => String::new(),
            NatsAuth::UserPassword => {
                format!("authorization {{ user: \"{NATS_USER}\", password: \"{NATS_PASSWORD}\" }}\n")
            }
            NatsAuth::Token => format!("authorization {{ token: \"{NATS_TOKEN}\" }}\n"),
        };
        std::fs::write(&conf, authorization).unwrap();
        let conf = (auth != NatsAuth::None).then_some(conf.as_path());
        let mut n = Nats::spawn(&store, conf, auth);
        n._dir = Some(dir);
        n
    }

    /// On an existing store directory (a restore).
    pub fn start_on(store: &Path) -> Nats {
        Nats::spawn(store, None, NatsAuth::None)
    }

    fn spawn(store: &Path, conf: Option<&Path>, auth: NatsAuth) -> Nats {
        let port = free_port();
        let monitor = free_port();
        let mut cmd = Command::new("nats-server");
        if let Some(conf) = conf {
            cmd.arg("-c").arg(conf);
        }
        let child = cmd
            .args([
                "-js",
                "-a",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-m",
                &monitor.to_string(),
                "-sd",
            ])
            .arg(store)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server (apt-get install nats-server)");
        wait_port(port, "nats-server", Duration::from_secs(20));
        wait_port(monitor, "nats-server monitoring", Duration::from_secs(20));
        Nats {
            port,
            monitor,
            store: store.to_path_buf(),
            auth,
            _dir: None,
            child,
        }
    }

    pub fn client(&self) -> NatsClient {
        NatsClient::connect(self.port, self.auth)
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Just enough of the NATS text protocol for tests: request/reply against the JetStream API.
pub struct NatsClient {
    r: std::io::BufReader<std::net::TcpStream>,
    w: std::net::TcpStream,
    n: u64,
}

impl NatsClient {
    pub fn connect(port: u16, auth: NatsAuth) -> NatsClient {
        NatsClient::connect_to(std::net::SocketAddr::from(([127, 0, 0, 1], port)), auth)
    }

    /// A client of the server at `addr` (a container's address on its network).
    pub fn connect_to(addr: std::net::SocketAddr, auth: NatsAuth) -> NatsClient {
        use std::io::{BufRead, Write};
        let s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut r = std::io::BufReader::new(s.try_clone().unwrap());
        let mut line = String::new();
        r.read_line(&mut line).unwrap(); // INFO
        let mut w = s;
        let mut connect = serde_json::json!({"verbose": false, "pedantic": false, "headers": false});
        match auth {
            NatsAuth::None => {}
            NatsAuth::UserPassword => {
                connect["user"] = NATS_USER.into();
                connect["pass"] = NATS_PASSWORD.into();
            }
            NatsAuth::Token => connect["auth_token"] = NATS_TOKEN.into(),
        }
        w.write_all(format!("CONNECT {connect}\r\nSUB _INBOX.drctl.* 1\r\n").as_bytes())
            .unwrap();
        NatsClient { r, w, n: 0 }
    }

    /// Publishes with a reply inbox and returns the reply payload.
    pub fn request(&mut self, subject: &str, payload: &[u8]) -> Vec<u8> {
        use std::io::{BufRead, Read, Write};
        self.n += 1;
        let inbox = format!("_INBOX.drctl.{}", self.n);
        let mut msg = format!("PUB {subject} {inbox} {}\r\n", payload.len()).into_bytes();
        msg.extend_from_slice(payload);
        msg.extend_from_slice(b"\r\n");
        self.w.write_all(&msg).unwrap();
        loop {
            let mut line = String::new();
            self.r.read_line(&mut line).unwrap();
            if line.starts_with("PING") {
                self.w.write_all(b"PONG\r\n").unwrap();
                continue;
            }
            if line.starts_with("MSG ") {
                let parts: Vec<&str> = line.split_whitespace().collect();
                let len: usize = parts.last().unwrap().parse().unwrap();
                let mut body = vec![0u8; len + 2];
                self.r.read_exact(&mut body).unwrap();
                body.truncate(len);
                if parts[1] == inbox {
                    return body;
                }
            }
            assert!(!line.starts_with("-ERR"), "nats: {line}");
        }
    }

    pub fn request_json(&mut self, subject: &str, v: serde_json::Value) -> serde_json::Value {
        let out = self.request(subject, v.to_string().as_bytes());
        serde_json::from_slice(&out).unwrap()
    }
}
