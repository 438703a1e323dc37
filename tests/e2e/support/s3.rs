//! A local S3-compatible server: moto's standalone server, with one bucket.

use super::{free_port, wait_port};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A local S3-compatible server (moto's standalone server), with one bucket.
pub struct S3Server {
    pub port: u16,
    pub bucket: String,
    child: Child,
}

impl S3Server {
    pub fn start() -> S3Server {
        let port = free_port();
        // `python3 -m moto.server` rather than the `moto_server` script: it works whether or
        // not pip's script directory is on PATH (pyenv shims need a rehash to see new scripts).
        let child = Command::new("python3")
            .args(["-m", "moto.server", "-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot start python3 -m moto.server (pip install 'moto[server]')");
        let mut s3 = S3Server {
            port,
            bucket: "drctl-test".into(),
            child,
        };
        wait_port(port, "moto_server", Duration::from_secs(60));
        s3.create_bucket();
        s3
    }

    fn create_bucket(&mut self) {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        write!(
            s,
            "PUT /{} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.bucket, self.port
        )
        .unwrap();
        let mut resp = String::new();
        s.read_to_string(&mut resp).unwrap();
        assert!(resp.starts_with("HTTP/1.1 200"), "create bucket: {resp}");
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// A `[[storage]]` block for this server.
    pub fn storage_toml(&self, name: &str) -> String {
        format!(
            "[[storage]]\nname = \"{name}\"\ntype = \"s3\"\nbucket = \"{}\"\nendpoint = \"{}\"\nregion = \"us-east-1\"\naccess_key_id = \"testing\"\nsecret_access_key = \"${{DRCTL_TEST_S3_SECRET}}\"\nroot = \"/vps1\"\n",
            self.bucket,
            self.endpoint()
        )
    }

    /// A `[[storage]]` block reaching this server through `port` (a fault proxy).
    pub fn storage_toml_via(&self, name: &str, port: u16, root: &str) -> String {
        format!(
            "[[storage]]\nname = \"{name}\"\ntype = \"s3\"\nbucket = \"{}\"\nendpoint = \"http://127.0.0.1:{port}\"\nregion = \"us-east-1\"\naccess_key_id = \"testing\"\nsecret_access_key = \"${{DRCTL_TEST_S3_SECRET}}\"\nroot = \"{root}\"\n",
            self.bucket
        )
    }

    /// Open multipart uploads in the bucket (moto answers unsigned requests).
    pub fn open_multipart_uploads(&self) -> usize {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        write!(
            s,
            "GET /{}?uploads HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\n\r\n",
            self.bucket, self.port
        )
        .unwrap();
        let mut resp = String::new();
        s.read_to_string(&mut resp).unwrap();
        assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
        resp.matches("<Upload>").count()
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
