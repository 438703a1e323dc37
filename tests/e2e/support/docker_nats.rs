//! NATS in the throwaway engine: the scratch-like test image (no shell, no `tar`), containers
//! created as Compose would run `nats` with `command: -js -sd /data` on a named volume, and
//! a JetStream seed/read-back through the container's address (no published port).

use super::{DockerEngine, NatsAuth, NatsClient};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

/// Debian's nats-server alone in an image, like the official scratch-based `nats` image: built
/// by `scripts/lib/nats-test-image/build.sh`.
pub fn nats_test_image() -> String {
    super::built_image(
        "localhost/drctl-test/nats:latest".into(),
        "bash scripts/lib/nats-test-image/build.sh",
    )
}

/// A NATS container of a Compose service, with its named volume on /data (removed on drop,
/// with the container).
pub struct ComposeNats<'e> {
    engine: &'e DockerEngine,
    pub name: String,
    pub volume: String,
}

impl Drop for ComposeNats<'_> {
    fn drop(&mut self) {
        let _ = self
            .engine
            .podman_command(&["rm", "-f", "-t", "0", &self.name])
            .output();
        let _ = self
            .engine
            .podman_command(&["volume", "rm", "-f", &self.volume])
            .output();
    }
}

impl DockerEngine {
    /// Creates (and with `start`, starts and waits for) `name` from the NATS test image as
    /// Compose runs `service` of `project`: its labels, the project's user-defined network, a
    /// fresh named volume on /data, `-js -sd /data`, and no published port.
    pub fn compose_nats(&self, project: &str, service: &str, name: &str, start: bool) -> ComposeNats<'_> {
        let image = nats_test_image();
        let net = format!("{project}_default");
        self.network(&net);
        let volume = format!("{name}_data");
        let _ = self.podman_command(&["volume", "rm", "-f", &volume]).output();
        self.podman(&["volume", "create", &volume]);
        let mount = format!("{volume}:/data");
        let (project_label, service_label) = (
            format!("com.docker.compose.project={project}"),
            format!("com.docker.compose.service={service}"),
        );
        self.podman(&[
            "create",
            "--name",
            name,
            "--network",
            &net,
            "--label",
            &project_label,
            "--label",
            &service_label,
            "-v",
            &mount,
            &image,
            "-js",
            "-sd",
            "/data",
        ]);
        self.created.lock().unwrap().push(("container", name.to_string()));
        let n = ComposeNats {
            engine: self,
            name: name.to_string(),
            volume,
        };
        if start {
            self.start_nats(&n);
        }
        n
    }

    /// Starts the container and waits until JetStream answers at its address.
    pub fn start_nats(&self, n: &ComposeNats) {
        self.podman(&["start", &n.name]);
        let t0 = Instant::now();
        loop {
            if let Some(ip) = self.try_ip(&n.name) {
                let addr = SocketAddr::new(ip, 4222);
                if std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok() {
                    let mut c = NatsClient::connect_to(addr, NatsAuth::None);
                    let info = c.request("$JS.API.INFO", b"");
                    if serde_json::from_slice::<serde_json::Value>(&info).is_ok_and(|v| v.get("error").is_none()) {
                        break;
                    }
                }
            }
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "nats in container {} did not start: {:?}",
                n.name,
                self.podman(&["logs", &n.name])
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        let ports = self.podman(&["inspect", "--format", "{{json .NetworkSettings.Ports}}", &n.name]);
        assert!(
            ports.iter().all(|p| !p.contains("HostPort")),
            "the NATS container must publish no port: {ports:?}"
        );
    }

    fn try_ip(&self, name: &str) -> Option<IpAddr> {
        let out = self
            .podman_command(&[
                "inspect",
                "--format",
                "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}",
                name,
            ])
            .output()
            .ok()?;
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .find_map(|s| s.parse().ok())
    }

    /// A JetStream client at the container's address.
    pub fn nats_client(&self, n: &ComposeNats) -> NatsClient {
        let ip = self.try_ip(&n.name).expect("the container has an address");
        NatsClient::connect_to(SocketAddr::new(ip, 4222), NatsAuth::None)
    }

    /// `running`, `paused`, `exited`, …
    pub fn state(&self, name: &str) -> String {
        self.podman(&["inspect", "--format", "{{.State.Status}}", name])
            .join("")
    }
}

/// Stream ORDERS with `count` messages on `orders.*` and durable consumer `shipper`; a
/// second stream AUDIT with 3 messages.
pub fn seed_jetstream(c: &mut NatsClient, count: usize) {
    for (stream, subjects) in [("ORDERS", "orders.>"), ("AUDIT", "audit.>")] {
        let r = c.request_json(
            &format!("$JS.API.STREAM.CREATE.{stream}"),
            serde_json::json!({"name": stream, "subjects": [subjects], "storage": "file"}),
        );
        assert!(r.get("error").is_none(), "{r}");
    }
    for i in 0..count {
        let ack = c.request(
            &format!("orders.{}", i % 7),
            format!("order #{i} {}", "y".repeat(i % 40)).as_bytes(),
        );
        let ack: serde_json::Value = serde_json::from_slice(&ack).unwrap();
        assert_eq!(ack["seq"], (i + 1) as u64, "{ack}");
    }
    for i in 0..3 {
        let ack = c.request("audit.login", format!("login {i}").as_bytes());
        assert!(!ack.is_empty());
    }
    let r = c.request_json(
        "$JS.API.CONSUMER.DURABLE.CREATE.ORDERS.shipper",
        serde_json::json!({"stream_name": "ORDERS", "config": {"durable_name": "shipper", "ack_policy": "explicit", "filter_subject": "orders.3"}}),
    );
    assert!(r.get("error").is_none(), "{r}");
}

/// What a restore must bring back: per stream its message count, last sequence and every
/// message (sequence, subject, body); per consumer its name, filter and pending count.
pub fn jetstream_contents(c: &mut NatsClient) -> serde_json::Value {
    use base64::Engine;
    let names = c.request_json("$JS.API.STREAM.NAMES", serde_json::json!({}));
    let mut names: Vec<String> = names["streams"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| s.as_str().unwrap().to_string())
        .collect();
    names.sort();
    let mut out = serde_json::Map::new();
    for stream in names {
        let info = c.request_json(&format!("$JS.API.STREAM.INFO.{stream}"), serde_json::json!({}));
        let last = info["state"]["last_seq"].as_u64().unwrap();
        let messages: Vec<serde_json::Value> = (1..=last)
            .map(|seq| {
                let m = c.request_json(
                    &format!("$JS.API.STREAM.MSG.GET.{stream}"),
                    serde_json::json!({ "seq": seq }),
                );
                let msg = &m["message"];
                let body = base64::engine::general_purpose::STANDARD
                    .decode(msg["data"].as_str().unwrap_or(""))
                    .unwrap();
                serde_json::json!([msg["seq"], msg["subject"], String::from_utf8_lossy(&body)])
            })
            .collect();
        let consumers = c.request_json(&format!("$JS.API.CONSUMER.LIST.{stream}"), serde_json::json!({}));
        let mut consumers: Vec<serde_json::Value> = consumers["consumers"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|k| {
                serde_json::json!({
                    "name": k["name"],
                    "filter": k["config"]["filter_subject"],
                    "ack_policy": k["config"]["ack_policy"],
                    "num_pending": k["num_pending"],
                })
            })
            .collect();
        consumers.sort_by_key(|k| k["name"].to_string());
        out.insert(
            stream,
            serde_json::json!({
                "messages": info["state"]["messages"],
                "last_seq": last,
                "bodies": messages,
                "consumers": consumers,
            }),
        );
    }
    serde_json::Value::Object(out)
}
