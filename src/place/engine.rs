//! The engine connection and the lookup of a source's container.

use super::{choose_service_container, ContainerRef, PROJECT_LABEL, SERVICE_LABEL};
use anyhow::{anyhow, bail, Result};
use bollard::errors::Error as DockerError;
use bollard::query_parameters::ListContainersOptions;
use bollard::Docker;
use std::collections::HashMap;

/// The Docker Engine API drctl talks to: `DOCKER_HOST`, else the local socket.
#[derive(Clone)]
pub struct Engine {
    pub(super) docker: Docker,
    /// What `DOCKER_HOST` said (or the default), for errors.
    host: String,
}

impl Engine {
    pub fn connect() -> Result<Engine> {
        Engine::at(std::env::var("DOCKER_HOST").ok().filter(|h| !h.is_empty()))
    }

    /// The engine at `host` (`unix:///path`, `tcp://…`), or the local socket.
    pub fn at(host: Option<String>) -> Result<Engine> {
        let shown = host.clone().unwrap_or_else(|| "unix:///var/run/docker.sock".into());
        let docker = match host.as_deref().and_then(|h| h.strip_prefix("unix://")) {
            Some(path) => Docker::connect_with_unix(path, 120, bollard::API_DEFAULT_VERSION),
            // tcp://, http://, https:// (with DOCKER_CERT_PATH): bollard reads DOCKER_HOST itself.
            None if host.is_some() => Docker::connect_with_defaults(),
            None => Docker::connect_with_local_defaults(),
        }
        .map_err(|e| {
            anyhow!("cannot use the Docker engine at {shown}: {e} (set DOCKER_HOST, or mount the engine socket)")
        })?;
        Ok(Engine { docker, host: shown })
    }

    /// The running container `place` names, looked up now (a recreated container has a new id).
    pub async fn resolve(&self, place: &ContainerRef) -> Result<Container> {
        self.find(place, true).await
    }

    /// The container `place` names, running or not (a volume is written with its server
    /// stopped; the archive endpoint works on a stopped container).
    pub async fn resolve_any(&self, place: &ContainerRef) -> Result<Container> {
        self.find(place, false).await
    }

    async fn find(&self, place: &ContainerRef, running: bool) -> Result<Container> {
        let name = match place {
            ContainerRef::Name(n) => n.clone(),
            ContainerRef::Service { service, project } => {
                let mut filters = HashMap::new();
                let mut labels = vec![format!("{SERVICE_LABEL}={service}")];
                if let Some(p) = project {
                    labels.push(format!("{PROJECT_LABEL}={p}"));
                }
                filters.insert("label".to_string(), labels);
                if running {
                    filters.insert("status".to_string(), vec!["running".to_string()]);
                }
                let list = self
                    .docker
                    .list_containers(Some(ListContainersOptions {
                        all: !running,
                        filters: Some(filters),
                        ..Default::default()
                    }))
                    .await
                    .map_err(|e| self.unreachable(e))?;
                let found: Vec<(String, String)> = list
                    .iter()
                    .map(|c| {
                        let project = c
                            .labels
                            .as_ref()
                            .and_then(|l| l.get(PROJECT_LABEL))
                            .cloned()
                            .unwrap_or_default();
                        let name = c
                            .names
                            .as_ref()
                            .and_then(|n| n.first())
                            .map(|n| n.trim_start_matches('/').to_string())
                            .or_else(|| c.id.clone())
                            .unwrap_or_default();
                        (project, name)
                    })
                    .collect();
                choose_service_container(service, project.as_deref(), &found).map_err(|e| anyhow!(e))?
            }
        };
        let info = match self.docker.inspect_container(&name, None).await {
            Ok(i) => i,
            Err(DockerError::DockerResponseServerError { status_code: 404, .. }) => {
                bail!(
                    "no container named '{name}' on {}; check the name with `docker ps`",
                    self.host
                )
            }
            Err(e) => return Err(self.unreachable(e)),
        };
        let state = info.state.as_ref();
        let is_running = state.and_then(|s| s.running).unwrap_or(false);
        if running && !is_running {
            let status = state
                .and_then(|s| s.status)
                .map(|s| s.to_string())
                .unwrap_or_else(|| "not running".into());
            bail!("container '{name}' is {status}; start it (docker compose up -d) before the backup");
        }
        let env = info
            .config
            .and_then(|c| c.env)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|kv| kv.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())))
            .collect();
        Ok(Container {
            engine: self.clone(),
            id: info.id.unwrap_or(name.clone()),
            name: info.name.map(|n| n.trim_start_matches('/').to_string()).unwrap_or(name),
            env,
            running: is_running,
        })
    }

    pub(super) fn unreachable(&self, e: DockerError) -> anyhow::Error {
        anyhow!(
            "the Docker engine at {} did not answer: {e} (is it running, and may drctl use its socket? check DOCKER_HOST)",
            self.host
        )
    }
}

/// A running container, as found for this run.
pub struct Container {
    pub(super) engine: Engine,
    pub id: String,
    pub name: String,
    /// The container's configured environment (`POSTGRES_USER`, …). Holds secrets: never log it.
    env: Vec<(String, String)>,
    /// Whether it was running when looked up.
    pub running: bool,
}

impl std::fmt::Debug for Container {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Container")
            .field("id", &self.id)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Container {
    /// A variable of the container's environment (`POSTGRES_USER`), if set and not empty.
    pub fn env(&self, key: &str) -> Option<&str> {
        self.env
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }
}
