//! The `[[source]] type = "redis"` section. Where the server is and how drctl gets its RDB is
//! one variant, carrying what it needs: on the host through `url` (`mode = "file"` or
//! `"replication"`), or in a container (`container = …` / `service = …`), where `redis-cli`
//! runs by exec next to the server and the RDB comes out through the engine's archive endpoint.

use crate::place::ContainerRef;
use crate::retention::RetentionRef;
use crate::units::Duration;
use serde::Deserialize;
use std::fmt;
use std::path::PathBuf;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum RedisMode {
    /// BGSAVE, then read the RDB file from disk (`rdb_path`, or Redis's dir + dbfilename).
    #[default]
    File,
    /// Fetch a fresh RDB over the network like `redis-cli --rdb` (replication handshake).
    Replication,
}

/// How a Redis source gets its RDB, with what that mode needs.
#[derive(Clone)]
pub enum RedisAccess {
    /// BGSAVE, then the file: `rdb_path` where Redis's file is on this host (Redis in a
    /// container whose volume is mounted here), else where Redis says it is (`CONFIG GET dir`
    /// + `dbfilename`).
    File {
        /// `redis://[:password@]host:port` (password via ${ENV}).
        url: String,
        rdb_path: Option<PathBuf>,
    },
    /// Over the replication protocol; no disk access.
    Replication { url: String },
    /// The server in a container: BGSAVE through `redis-cli` exec'd in it, the file read out
    /// through the engine's archive endpoint. Nothing needs to be published or mounted.
    Container {
        place: ContainerRef,
        /// `requirepass`; handed to the exec's environment only (`REDISCLI_AUTH`).
        password: Option<String>,
    },
}

#[derive(Clone, Deserialize)]
#[serde(try_from = "RawRedisSource")]
pub struct RedisSource {
    pub name: String,
    pub access: RedisAccess,
    /// How long to wait for BGSAVE ("10m").
    pub bgsave_timeout: Duration,
    pub retention: Option<RetentionRef>,
}

impl RedisSource {
    /// The URL drctl connects to, for a server on the host (none for one in a container).
    pub fn url(&self) -> Option<&str> {
        match &self.access {
            RedisAccess::File { url, .. } | RedisAccess::Replication { url } => Some(url),
            RedisAccess::Container { .. } => None,
        }
    }
}

/// The section as written; `try_from` turns it into the variant its keys describe.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRedisSource {
    name: String,
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    mode: RedisMode,
    #[serde(default)]
    rdb_path: Option<PathBuf>,
    #[serde(default)]
    container: Option<String>,
    #[serde(default)]
    service: Option<String>,
    #[serde(default)]
    compose_project: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default = "default_bgsave_timeout")]
    bgsave_timeout: Duration,
    #[serde(default)]
    retention: Option<RetentionRef>,
}

fn default_bgsave_timeout() -> Duration {
    Duration::known("10m")
}

impl TryFrom<RawRedisSource> for RedisSource {
    type Error = String;

    fn try_from(r: RawRedisSource) -> Result<RedisSource, String> {
        // The loader prefixes these with "source[i] ('name'): ".
        let place = ContainerRef::from_keys(r.container, r.service, r.compose_project)?;
        let access = match place {
            None => {
                if r.password.is_some() {
                    return Err(
                        "password belongs to a server in a container (container = … or service = …); on the host, put it in url (redis://:${REDIS_PASSWORD}@host:6379)"
                            .into(),
                    );
                }
                let url = r.url.ok_or_else(|| {
                    "missing url (redis://[:password@]host:6379), or container = … / service = … for a server in a container"
                        .to_string()
                })?;
                match (r.mode, r.rdb_path) {
                    (RedisMode::File, rdb_path) => RedisAccess::File { url, rdb_path },
                    (RedisMode::Replication, None) => RedisAccess::Replication { url },
                    (RedisMode::Replication, Some(_)) => {
                        return Err(
                            "rdb_path belongs to mode = \"file\"; replication mode reads no file (remove it, or set mode = \"file\")"
                                .into(),
                        )
                    }
                }
            }
            Some(place) => {
                for (key, given) in [("url", r.url.is_some()), ("rdb_path", r.rdb_path.is_some())] {
                    if given {
                        return Err(format!(
                            "{key} does not apply to a server in a container ({place}): redis-cli runs inside it and the RDB is read through the engine; remove {key} (password = \"${{REDIS_PASSWORD}}\" if it has requirepass)"
                        ));
                    }
                }
                if r.mode == RedisMode::Replication {
                    return Err(format!(
                        "mode = \"replication\" connects over the network, which a server in a container ({place}) need not offer; remove mode (the default, \"file\", reads its RDB through the engine)"
                    ));
                }
                if r.password.as_deref().is_some_and(str::is_empty) {
                    return Err("password is empty; remove it if the server has no requirepass".into());
                }
                RedisAccess::Container {
                    place,
                    password: r.password,
                }
            }
        };
        Ok(RedisSource {
            name: r.name,
            access,
            bgsave_timeout: r.bgsave_timeout,
            retention: r.retention,
        })
    }
}

impl fmt::Debug for RedisAccess {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RedisAccess::File { url, rdb_path } => f
                .debug_struct("File")
                .field("url", &crate::secret::redact_url(url))
                .field("rdb_path", rdb_path)
                .finish(),
            RedisAccess::Replication { url } => f
                .debug_struct("Replication")
                .field("url", &crate::secret::redact_url(url))
                .finish(),
            RedisAccess::Container { place, password } => f
                .debug_struct("Container")
                .field("place", place)
                .field("password", &password.as_ref().map(|_| "REDACTED"))
                .finish(),
        }
    }
}

impl fmt::Debug for RedisSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisSource")
            .field("name", &self.name)
            .field("access", &self.access)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(keys: &str) -> Result<RedisSource, String> {
        let t: toml::Table = toml::from_str(&format!("name = \"cache\"\n{keys}")).unwrap();
        RedisSource::deserialize(toml::Value::Table(t)).map_err(|e| e.to_string())
    }

    #[test]
    fn a_container_source_is_its_own_variant_and_keeps_its_password_out_of_debug() {
        let s = parse("service = \"redis\"\ncompose_project = \"app\"\npassword = \"pa55-Secret\"\n").unwrap();
        match &s.access {
            RedisAccess::Container { place, password } => {
                assert_eq!(
                    place,
                    &ContainerRef::Service {
                        service: "redis".into(),
                        project: Some("app".into())
                    }
                );
                assert_eq!(password.as_deref(), Some("pa55-Secret"));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(s.url(), None);
        let dbg = format!("{s:?}");
        assert!(!dbg.contains("pa55-Secret") && dbg.contains("REDACTED"), "{dbg}");
        let s = parse("container = \"cache-redis-1\"\nmode = \"file\"\n").unwrap();
        assert!(matches!(s.access, RedisAccess::Container { password: None, .. }));

        let host = parse("url = \"redis://:hunter2@127.0.0.1:6379\"\n").unwrap();
        assert_eq!(host.url(), Some("redis://:hunter2@127.0.0.1:6379"));
        assert!(!format!("{host:?}").contains("hunter2"));
    }

    #[test]
    fn container_and_host_keys_do_not_mix() {
        let e = parse("service = \"redis\"\nurl = \"redis://127.0.0.1\"\n").unwrap_err();
        assert!(e.contains("url does not apply") && e.contains("service 'redis'"), "{e}");
        let e = parse("service = \"redis\"\nrdb_path = \"/data/dump.rdb\"\n").unwrap_err();
        assert!(e.contains("rdb_path does not apply"), "{e}");
        let e = parse("service = \"redis\"\nmode = \"replication\"\n").unwrap_err();
        assert!(e.contains("replication"), "{e}");
        let e = parse("service = \"redis\"\npassword = \"\"\n").unwrap_err();
        assert!(e.contains("password is empty"), "{e}");
        let e = parse("url = \"redis://127.0.0.1\"\npassword = \"x\"\n").unwrap_err();
        assert!(e.contains("password belongs to a server in a container"), "{e}");
        let e = parse("mode = \"file\"\n").unwrap_err();
        assert!(e.contains("missing url") && e.contains("service = …"), "{e}");
        let e = parse("service = \"redis\"\ncontainer = \"x\"\n").unwrap_err();
        assert!(e.contains("keep one"), "{e}");
    }
}
