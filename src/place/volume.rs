//! A named volume, read through a container that mounts it.
//!
//! The engine has no call to read a volume directly; its archive endpoint reads paths of a
//! container, volumes included, and works on containers that are stopped or were never
//! started. So drctl reads a volume through:
//! 1. a container that already mounts it (running or stopped, found by inspecting the Mounts of
//!    every container), at its mount point; or else
//! 2. a temporary container it creates for the purpose: the volume mounted **read-only** at
//!    `/drctl-volume`, no network, from an image already on the engine (`reader_image` when the
//!    config names one, else the image of any container there). drctl **never pulls** an image
//!    and **never starts** this container (nothing in the image runs: its command is a name
//!    that does not exist), and always removes it afterwards, on success and on error
//!    ([`Cleanup::release`], with a best-effort removal on drop as the last resort). It is
//!    named `drctl-volume-reader-…` and labelled `drctl.role=volume-reader`, so a leftover (drctl
//!    killed by SIGKILL) is easy to find: `docker ps -a --filter label=drctl.role=volume-reader`.

use super::{Container, ContainerRef, Engine};
use anyhow::{anyhow, bail, Result};
use bollard::errors::Error as DockerError;
use bollard::models::{ContainerCreateBody, HostConfig, Mount, MountType};
use bollard::query_parameters::{CreateContainerOptionsBuilder, ListContainersOptions, RemoveContainerOptionsBuilder};

/// Where the temporary reader container mounts the volume.
const READER_MOUNT: &str = "/drctl-volume";
/// The label on temporary reader containers.
pub const READER_LABEL: &str = "drctl.role";

/// A container through which a volume is read, and where in it the volume is mounted.
pub struct VolumeReader {
    pub container: Container,
    /// The volume's root inside `container` (an absolute path).
    pub mount_point: String,
    /// Removes `container` if drctl created it: call [`Cleanup::release`] when done.
    pub cleanup: Cleanup,
}

/// drctl's temporary reader container, to remove however the read ends (nothing to do for a
/// container that was already there).
pub struct Cleanup(Option<Temporary>);

struct Temporary {
    engine: Engine,
    id: String,
}

impl Temporary {
    async fn remove(&self) -> Result<()> {
        let opts = RemoveContainerOptionsBuilder::default().force(true).build();
        match self.engine.docker.remove_container(&self.id, Some(opts)).await {
            Ok(()) | Err(DockerError::DockerResponseServerError { status_code: 404, .. }) => Ok(()),
            Err(e) => Err(anyhow!(
                "cannot remove drctl's temporary volume reader container {}: {e} (remove it with `docker rm -f {}`)",
                self.id,
                self.id
            )),
        }
    }
}

impl Cleanup {
    /// Whether there is a temporary container to remove.
    pub fn is_temporary(&self) -> bool {
        self.0.is_some()
    }

    /// Removes the temporary container, if drctl created one. A failure is logged, not
    /// returned: the backup's own result is what the caller reports.
    pub async fn release(mut self) {
        if let Some(t) = self.0.take() {
            if let Err(e) = t.remove().await {
                tracing::warn!(error = %format!("{e:#}"), "temporary volume reader left behind");
            }
        }
    }
}

impl Drop for Cleanup {
    /// The last resort when `release` was not reached (a panic, a dropped future): removal is
    /// handed to the runtime, which may or may not still run it.
    fn drop(&mut self) {
        if let Some(t) = self.0.take() {
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(async move {
                    if let Err(e) = t.remove().await {
                        tracing::warn!(error = %format!("{e:#}"), "temporary volume reader left behind");
                    }
                });
            }
        }
    }
}

impl Engine {
    /// A container to read the named volume `volume` through: one that mounts it, else a
    /// temporary one (see the module docs). `image` is the user's choice for the temporary one.
    pub async fn volume_reader(&self, volume: &str, image: Option<&str>) -> Result<VolumeReader> {
        // Creating a container with a mount of a volume that does not exist would create an
        // empty one, and back that up: ask first.
        match self.docker.inspect_volume(volume).await {
            Ok(_) => {}
            Err(DockerError::DockerResponseServerError { status_code: 404, .. }) => bail!(
                "no volume named '{volume}' on the engine (check the name with `docker volume ls`; Compose prefixes it with the project: <project>_<volume>)"
            ),
            Err(e) => return Err(self.unreachable(e)),
        }
        let all = self
            .docker
            .list_containers(Some(ListContainersOptions {
                all: true,
                ..Default::default()
            }))
            .await
            .map_err(|e| self.unreachable(e))?;
        // The summaries' Mounts are not filled in by every engine; inspect each container.
        // Prefer a running one, then any; skip drctl's own leftovers.
        let mut mounting: Vec<(bool, String, String)> = Vec::new();
        for c in &all {
            let Some(id) = c.id.as_deref() else { continue };
            if c.labels.as_ref().and_then(|l| l.get(READER_LABEL)).is_some() {
                continue;
            }
            let info = match self.docker.inspect_container(id, None).await {
                Ok(i) => i,
                Err(DockerError::DockerResponseServerError { status_code: 404, .. }) => continue,
                Err(e) => return Err(self.unreachable(e)),
            };
            let running = info.state.as_ref().and_then(|s| s.running).unwrap_or(false);
            for m in info.mounts.iter().flatten() {
                if m.name.as_deref() == Some(volume) {
                    if let Some(dest) = &m.destination {
                        mounting.push((running, id.to_string(), dest.clone()));
                    }
                }
            }
        }
        mounting.sort_by_key(|(running, _, _)| !running);
        if let Some((_, id, dest)) = mounting.into_iter().next() {
            let container = self.resolve_any(&ContainerRef::Name(id)).await?;
            tracing::info!(volume, container = %container.name, mount_point = %dest, "reading the volume through a container that mounts it");
            return Ok(VolumeReader {
                container,
                mount_point: dest,
                cleanup: Cleanup(None),
            });
        }

        let image = match image {
            Some(i) => {
                match self.docker.inspect_image(i).await {
                    Ok(_) => {}
                    Err(DockerError::DockerResponseServerError { status_code: 404, .. }) => bail!(
                        "no container mounts volume '{volume}', and reader_image '{i}' is not on the engine; drctl never pulls (pull it yourself, or name an image `docker images` lists)"
                    ),
                    Err(e) => return Err(self.unreachable(e)),
                }
                i.to_string()
            }
            None => all
                .iter()
                .find_map(|c| c.image_id.clone().filter(|s| !s.is_empty()).or_else(|| c.image.clone()))
                .ok_or_else(|| {
                    anyhow!(
                        "no container mounts volume '{volume}', and there is no container whose image drctl could use to read it; set reader_image = \"<an image `docker images` lists>\" (drctl never pulls, and never starts that container)"
                    )
                })?,
        };
        let name = format!("drctl-volume-reader-{}", crate::layout::new_id(chrono::Utc::now())).to_lowercase();
        let body = ContainerCreateBody {
            image: Some(image.clone()),
            // Never started; a command is still required to create a container.
            entrypoint: Some(vec!["/drctl-volume-reader-is-never-started".to_string()]),
            cmd: Some(Vec::new()),
            labels: Some([(READER_LABEL.to_string(), "volume-reader".to_string())].into()),
            host_config: Some(HostConfig {
                network_mode: Some("none".to_string()),
                mounts: Some(vec![Mount {
                    target: Some(READER_MOUNT.to_string()),
                    source: Some(volume.to_string()),
                    typ: Some(MountType::VOLUME),
                    read_only: Some(true),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        };
        let created = self
            .docker
            .create_container(Some(CreateContainerOptionsBuilder::default().name(&name).build()), body)
            .await
            .map_err(|e| {
                anyhow!("cannot create a temporary container (image {image}) to read volume '{volume}': {e}")
            })?;
        let temporary = Temporary {
            engine: self.clone(),
            id: created.id.clone(),
        };
        let container = match self.resolve_any(&ContainerRef::Name(created.id.clone())).await {
            Ok(c) => c,
            Err(e) => {
                if let Err(e2) = temporary.remove().await {
                    tracing::warn!(error = %format!("{e2:#}"), "temporary volume reader left behind");
                }
                return Err(e);
            }
        };
        tracing::info!(volume, container = %container.name, image = %image, "reading the volume through a temporary container (created, never started)");
        Ok(VolumeReader {
            container,
            mount_point: READER_MOUNT.to_string(),
            cleanup: Cleanup(Some(temporary)),
        })
    }
}
