//! Where a source runs: on this host (drctl spawns the tools itself) or in a container (drctl
//! runs them there through the Docker Engine API). A container is a *place*, not a kind: the
//! Postgres source is the same backup either way, only how drctl reaches the server changes.
//!
//! A container is named in the config as `container = "app-postgres"`, or as a Compose service
//! (`service = "postgres"`, optional `compose_project`), which is looked up through the labels
//! Compose puts on its containers on *every run*, so a recreated container (new id, same service)
//! is found again. drctl talks to the engine named by `DOCKER_HOST` (default: the local socket);
//! it needs no docker CLI.

mod archive;
mod engine;
mod exec;
mod inspect;
mod pause;
mod volume;

pub use archive::{ArchiveFile, TreeReader};
pub use engine::{Container, Engine};
pub use exec::{ExecCompletion, ExecSpec};
pub use inspect::Address;
pub use pause::Paused;
pub use volume::{Cleanup, VolumeReader};

use std::fmt;

/// The Compose labels drctl resolves a service through.
pub const SERVICE_LABEL: &str = "com.docker.compose.service";
pub const PROJECT_LABEL: &str = "com.docker.compose.project";

/// Which container a source runs in, as the config names it. Parsed once from the section's
/// `container`, `service` and `compose_project` keys ([`ContainerRef::from_keys`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContainerRef {
    /// `container = "app-postgres"`: a container name (or id).
    Name(String),
    /// `service = "postgres"` (+ `compose_project`): the running container of that Compose
    /// service; without a project, the only project that has such a service.
    Service { service: String, project: Option<String> },
}

impl ContainerRef {
    /// The place the keys describe: `None` for the host (no key given). Errors name the key.
    pub fn from_keys(
        container: Option<String>,
        service: Option<String>,
        compose_project: Option<String>,
    ) -> Result<Option<ContainerRef>, String> {
        let nonempty = |key: &str, v: Option<String>| -> Result<Option<String>, String> {
            match v {
                Some(s) if s.trim().is_empty() => Err(format!("{key} is empty; name a container or remove the key")),
                Some(s) if s.chars().any(|c| c.is_control() || c == '/') => Err(format!(
                    "{key} '{}' is not a container or service name",
                    s.escape_debug()
                )),
                other => Ok(other),
            }
        };
        let container = nonempty("container", container)?;
        let service = nonempty("service", service)?;
        let project = nonempty("compose_project", compose_project)?;
        match (container, service, project) {
            (None, None, None) => Ok(None),
            (Some(c), None, None) => Ok(Some(ContainerRef::Name(c))),
            (Some(c), Some(s), _) => Err(format!(
                "both container = '{c}' and service = '{s}' given; keep one (service follows a recreated container)"
            )),
            (Some(_), None, Some(_)) => {
                Err("compose_project belongs to service = \"…\", not container = \"…\"; remove it".into())
            }
            (None, Some(service), project) => Ok(Some(ContainerRef::Service { service, project })),
            (None, None, Some(p)) => Err(format!(
                "compose_project = '{p}' without service; add service = \"<compose service name>\""
            )),
        }
    }
}

impl fmt::Display for ContainerRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ContainerRef::Name(n) => write!(f, "container '{n}'"),
            ContainerRef::Service { service, project: None } => write!(f, "service '{service}'"),
            ContainerRef::Service {
                service,
                project: Some(p),
            } => write!(f, "service '{service}' of compose project '{p}'"),
        }
    }
}

/// The running containers of a service, grouped by Compose project: which one to use, or why
/// none can be chosen. Pure, so the choice is unit-tested without an engine.
/// `found` is (project, container name) of every running container with the service label.
pub fn choose_service_container(
    service: &str,
    project: Option<&str>,
    found: &[(String, String)],
) -> Result<String, String> {
    let matching: Vec<&(String, String)> = found
        .iter()
        .filter(|(p, _)| project.is_none_or(|want| p == want))
        .collect();
    let mut projects: Vec<&str> = matching.iter().map(|(p, _)| p.as_str()).collect();
    projects.sort();
    projects.dedup();
    match (matching.as_slice(), projects.len()) {
        ([], _) => {
            let wanted = match project {
                Some(p) => format!("service '{service}' in compose project '{p}'"),
                None => format!("service '{service}'"),
            };
            let others: Vec<String> = {
                let mut o: Vec<String> = found.iter().map(|(p, _)| p.clone()).collect();
                o.sort();
                o.dedup();
                o
            };
            let hint = if others.is_empty() {
                "is the stack up? (docker compose ps)".to_string()
            } else {
                format!("running in project(s): {} (set compose_project)", others.join(", "))
            };
            Err(format!("no running container of {wanted}; {hint}"))
        }
        ([(_, name)], _) => Ok(name.clone()),
        (_, 1) => {
            let mut names: Vec<&str> = matching.iter().map(|(_, n)| n.as_str()).collect();
            names.sort();
            Err(format!(
                "service '{service}' has {} running containers ({}); name one with container = \"…\"",
                names.len(),
                names.join(", ")
            ))
        }
        (_, _) => Err(format!(
            "service '{service}' runs in several compose projects ({}); set compose_project to one of them",
            projects.join(", ")
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_parse_into_one_place() {
        assert_eq!(ContainerRef::from_keys(None, None, None), Ok(None));
        assert_eq!(
            ContainerRef::from_keys(Some("app-postgres".into()), None, None),
            Ok(Some(ContainerRef::Name("app-postgres".into())))
        );
        assert_eq!(
            ContainerRef::from_keys(None, Some("postgres".into()), Some("app".into())),
            Ok(Some(ContainerRef::Service {
                service: "postgres".into(),
                project: Some("app".into())
            }))
        );
        let e = ContainerRef::from_keys(Some("a".into()), Some("b".into()), None).unwrap_err();
        assert!(e.contains("keep one"), "{e}");
        let e = ContainerRef::from_keys(None, None, Some("app".into())).unwrap_err();
        assert!(e.contains("without service"), "{e}");
        let e = ContainerRef::from_keys(Some("a".into()), None, Some("app".into())).unwrap_err();
        assert!(e.contains("compose_project"), "{e}");
        assert!(ContainerRef::from_keys(None, Some(" ".into()), None).is_err());
    }

    #[test]
    fn service_choice_names_the_candidates() {
        let found = vec![
            ("app".to_string(), "app-postgres-1".to_string()),
            ("blog".to_string(), "blog-postgres-1".to_string()),
        ];
        assert_eq!(
            choose_service_container("postgres", Some("blog"), &found).unwrap(),
            "blog-postgres-1"
        );
        let e = choose_service_container("postgres", None, &found).unwrap_err();
        assert!(e.contains("app, blog") && e.contains("compose_project"), "{e}");
        assert_eq!(
            choose_service_container("postgres", None, &found[..1]).unwrap(),
            "app-postgres-1"
        );
        let e = choose_service_container("postgres", None, &[]).unwrap_err();
        assert!(
            e.contains("no running container of service 'postgres'") && e.contains("docker compose ps"),
            "{e}"
        );
        let e = choose_service_container("postgres", Some("shop"), &found).unwrap_err();
        assert!(e.contains("app, blog"), "{e}");
        let two = vec![
            ("app".to_string(), "app-postgres-2".to_string()),
            ("app".to_string(), "app-postgres-1".to_string()),
        ];
        let e = choose_service_container("postgres", None, &two).unwrap_err();
        assert!(e.contains("app-postgres-1, app-postgres-2"), "{e}");
    }
}
