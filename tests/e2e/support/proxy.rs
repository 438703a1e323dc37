//! A fault-injecting TCP proxy to put in front of a test server.

use std::net::TcpListener;
use std::time::Duration;

/// What the fault proxy does to the next connections.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Fault {
    /// Pass traffic through.
    None,
    /// Answer `503 Slow Down` without forwarding.
    Unavailable,
    /// Forward the request headers and part of the body, then cut both connections.
    DropMidBody,
    /// Accept, read, never answer.
    Stall,
}

/// A fault-injecting TCP proxy in front of a test server (S3, WebDAV). `fail_next(f, n)` applies
/// `f` to the next `n` connections (usize::MAX: for good); everything else passes through.
pub struct FaultProxy {
    pub port: u16,
    state: std::sync::Arc<std::sync::Mutex<(Fault, usize)>>,
    pub faults_injected: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl FaultProxy {
    pub fn start(upstream: u16) -> FaultProxy {
        use std::io::{Read, Write};
        use std::sync::atomic::Ordering;
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = std::sync::Arc::new(std::sync::Mutex::new((Fault::None, 0usize)));
        let injected = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (st, inj) = (state.clone(), injected.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut client) = conn else { continue };
                let fault = {
                    let mut s = st.lock().unwrap();
                    if s.1 > 0 {
                        if s.1 != usize::MAX {
                            s.1 -= 1;
                        }
                        s.0
                    } else {
                        Fault::None
                    }
                };
                if fault != Fault::None {
                    inj.fetch_add(1, Ordering::SeqCst);
                }
                std::thread::spawn(move || match fault {
                    Fault::Unavailable => {
                        let mut buf = [0u8; 65536];
                        let _ = client.set_read_timeout(Some(Duration::from_millis(200)));
                        let _ = client.read(&mut buf);
                        let body =
                            "<?xml version=\"1.0\"?><Error><Code>SlowDown</Code><Message>injected</Message></Error>";
                        let _ = write!(
                            client,
                            "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                            body.len()
                        );
                    }
                    Fault::Stall => {
                        let mut buf = [0u8; 65536];
                        let t0 = std::time::Instant::now();
                        while t0.elapsed() < Duration::from_secs(120) {
                            if matches!(client.read(&mut buf), Ok(0) | Err(_)) {
                                break;
                            }
                        }
                    }
                    Fault::DropMidBody => {
                        let Ok(mut up) = std::net::TcpStream::connect(("127.0.0.1", upstream)) else {
                            return;
                        };
                        let mut buf = [0u8; 16384];
                        let mut sent = 0;
                        while sent < 32768 {
                            match client.read(&mut buf) {
                                Ok(0) | Err(_) => break,
                                Ok(n) => {
                                    let _ = up.write_all(&buf[..n]);
                                    sent += n;
                                }
                            }
                        }
                        let _ = client.shutdown(std::net::Shutdown::Both);
                        let _ = up.shutdown(std::net::Shutdown::Both);
                    }
                    Fault::None => {
                        let Ok(up) = std::net::TcpStream::connect(("127.0.0.1", upstream)) else {
                            return;
                        };
                        let (mut c2, mut u2) = (client.try_clone().unwrap(), up.try_clone().unwrap());
                        let t = std::thread::spawn(move || {
                            let _ = std::io::copy(&mut c2, &mut u2);
                            let _ = u2.shutdown(std::net::Shutdown::Write);
                        });
                        let (mut c3, mut u3) = (client, up);
                        let _ = std::io::copy(&mut u3, &mut c3);
                        let _ = c3.shutdown(std::net::Shutdown::Write);
                        let _ = t.join();
                    }
                });
            }
        });
        FaultProxy {
            port,
            state,
            faults_injected: injected,
        }
    }

    pub fn fail_next(&self, f: Fault, n: usize) {
        *self.state.lock().unwrap() = (f, n);
    }

    pub fn heal(&self) {
        *self.state.lock().unwrap() = (Fault::None, 0);
    }

    pub fn injected(&self) -> usize {
        self.faults_injected.load(std::sync::atomic::Ordering::SeqCst)
    }
}
