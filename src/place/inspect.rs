//! What drctl reads about a container beyond finding it: its addresses on its networks (to
//! reach a server that publishes no port) and its command line (where a server keeps its data).

use super::Container;
use anyhow::{anyhow, Result};
use std::net::IpAddr;

/// An address of a container on one of its networks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    pub network: String,
    pub ip: IpAddr,
}

impl Container {
    async fn inspect(&self) -> Result<bollard::models::ContainerInspectResponse> {
        self.engine
            .docker
            .inspect_container(&self.id, None)
            .await
            .map_err(|e| self.engine.unreachable(e))
    }

    /// Its IP addresses, one per network it is attached to (sorted by network name). Empty
    /// for a container with host networking or none.
    pub async fn addresses(&self) -> Result<Vec<Address>> {
        let info = self.inspect().await?;
        let mut out: Vec<Address> = info
            .network_settings
            .and_then(|n| n.networks)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|(network, ep)| {
                let ip = ep.ip_address.filter(|s| !s.is_empty())?.parse().ok()?;
                Some(Address { network, ip })
            })
            .collect();
        out.sort_by(|a, b| a.network.cmp(&b.network));
        Ok(out)
    }

    /// Entrypoint and command, as the container runs them (`/nats-server -js -sd /data`).
    pub async fn command_line(&self) -> Result<Vec<String>> {
        let config = self
            .inspect()
            .await?
            .config
            .ok_or_else(|| anyhow!("the engine gave no configuration for container '{}'", self.name))?;
        Ok(config
            .entrypoint
            .unwrap_or_default()
            .into_iter()
            .chain(config.cmd.unwrap_or_default())
            .collect())
    }
}
