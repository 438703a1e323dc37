//! A local HTTP receiver for webhooks and pings.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

/// One request's headers: (lower-cased name, value).
pub type Headers = Vec<(String, String)>;

/// A local HTTP receiver for webhooks and pings: records (method, path, body), answers 200.
#[derive(Clone)]
pub struct Receiver {
    pub port: u16,
    got: Arc<Mutex<Vec<(String, String, String)>>>,
    heads: Arc<Mutex<Vec<Headers>>>,
}

impl Receiver {
    pub fn start() -> Receiver {
        Self::serve(false)
    }

    /// A receiver that reads and records each request and then never answers (a ping
    /// endpoint that hangs); the connection stays open until the test ends.
    pub fn start_hanging() -> Receiver {
        Self::serve(true)
    }

    fn serve(hang: bool) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let got = Arc::new(Mutex::new(Vec::new()));
        let heads = Arc::new(Mutex::new(Vec::new()));
        let (g, hd) = (got.clone(), heads.clone());
        let mut held = Vec::new();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut s) = stream else { continue };
                let mut r = BufReader::new(s.try_clone().unwrap());
                let mut line = String::new();
                if r.read_line(&mut line).is_err() {
                    continue;
                }
                let mut parts = line.split_whitespace();
                let (method, path) = (
                    parts.next().unwrap_or("").to_string(),
                    parts.next().unwrap_or("").to_string(),
                );
                let mut len = 0usize;
                let mut hs = Vec::new();
                loop {
                    let mut h = String::new();
                    if r.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                        break;
                    }
                    if let Some((k, v)) = h.split_once(':') {
                        hs.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
                    }
                    if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap_or(0);
                    }
                }
                let mut body = vec![0u8; len];
                let _ = r.read_exact(&mut body);
                g.lock()
                    .unwrap()
                    .push((method, path, String::from_utf8_lossy(&body).into_owned()));
                hd.lock().unwrap().push(hs);
                if hang {
                    held.push(s);
                    continue;
                }
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
            }
        });
        Receiver { port, got, heads }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn requests(&self) -> Vec<(String, String, String)> {
        self.got.lock().unwrap().clone()
    }

    /// The headers of each request (names lower-cased), in the order of [`Receiver::requests`].
    pub fn headers(&self) -> Vec<Headers> {
        self.heads.lock().unwrap().clone()
    }
}
