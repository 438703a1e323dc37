//! The `[[source]] type = "files"` section. Where the files are is a variant: on this host
//! (`paths` absolute or relative to the config file), inside a container (`container = …` /
//! `service = …`, `paths` absolute inside it), or in a named volume (`volume = …`, `paths`
//! relative to the volume's root, default all of it).

use crate::place::ContainerRef;
use crate::retention::RetentionRef;
use serde::Deserialize;
use std::fmt;
use std::path::{Component, Path, PathBuf};

#[derive(Clone, Deserialize)]
#[serde(try_from = "RawFilesSource")]
pub struct FilesSource {
    pub name: String,
    pub place: FilesPlace,
    /// Glob patterns matched against full paths, e.g. "**/*.log" (inside a container: the path
    /// there; in a volume: the path from the volume's root).
    pub exclude: Vec<String>,
    pub retention: Option<RetentionRef>,
}

#[derive(Debug, Clone)]
pub enum FilesPlace {
    /// Files and directories on this host (absolute, or relative to the config file).
    Host { paths: Vec<PathBuf> },
    /// Absolute paths inside a container, read through the engine's archive endpoint.
    Container { place: ContainerRef, paths: Vec<PathBuf> },
    /// A named volume, read through a container that mounts it (or a temporary one that is
    /// created, never started, and removed). `paths` are relative to the volume's root; empty
    /// means all of it.
    Volume {
        volume: String,
        paths: Vec<PathBuf>,
        /// The image of the temporary reader container when no container mounts the volume;
        /// default: the image of any container on the engine. Never pulled.
        reader_image: Option<String>,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFilesSource {
    name: String,
    #[serde(default)]
    paths: Option<Vec<PathBuf>>,
    #[serde(default)]
    exclude: Vec<String>,
    #[serde(default)]
    container: Option<String>,
    #[serde(default)]
    service: Option<String>,
    #[serde(default)]
    compose_project: Option<String>,
    #[serde(default)]
    volume: Option<String>,
    #[serde(default)]
    reader_image: Option<String>,
    #[serde(default)]
    retention: Option<RetentionRef>,
}

/// `p` without `.`, doubled or trailing `/`; None if it has a `..` (a path inside a container
/// or volume is never resolved on this host, so `..` cannot be resolved either).
fn clean(p: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::ParentDir => return None,
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    Some(out)
}

impl TryFrom<RawFilesSource> for FilesSource {
    type Error = String;

    fn try_from(r: RawFilesSource) -> Result<FilesSource, String> {
        // The loader prefixes these with "source[i] ('name'): ".
        let place = ContainerRef::from_keys(r.container, r.service, r.compose_project)?;
        let place = match (place, r.volume) {
            (Some(place), Some(v)) => {
                return Err(format!(
                "both {place} and volume = '{v}' given; keep one (a volume is read through a container that mounts it)"
            ))
            }
            (None, None) => {
                if r.reader_image.is_some() {
                    return Err("reader_image belongs to volume = \"…\"; remove it".into());
                }
                FilesPlace::Host {
                    paths: r.paths.unwrap_or_default(),
                }
            }
            (Some(place), None) => {
                if r.reader_image.is_some() {
                    return Err(format!(
                        "reader_image belongs to volume = \"…\"; {place} is read directly, remove it"
                    ));
                }
                let mut paths = Vec::new();
                for p in r.paths.unwrap_or_default() {
                    let cleaned = clean(&p).filter(|c| c.is_absolute()).ok_or_else(|| {
                        format!(
                            "paths: '{}' is not an absolute path without '..'; paths of a source in a container are absolute paths inside it (e.g. \"/data\")",
                            p.display()
                        )
                    })?;
                    if cleaned == Path::new("/") {
                        return Err(
                            "paths: '/' is the container's whole filesystem; list the directories to back up (e.g. \"/data\"), or use volume = \"…\""
                        .into());
                    }
                    paths.push(cleaned);
                }
                FilesPlace::Container { place, paths }
            }
            (None, Some(volume)) => {
                if volume.trim().is_empty() || volume.contains('/') || volume.chars().any(char::is_control) {
                    return Err(format!(
                        "volume '{}' is not a volume name (see `docker volume ls`)",
                        volume.escape_debug()
                    ));
                }
                let mut paths = Vec::new();
                for p in r.paths.unwrap_or_default() {
                    let cleaned = clean(&p).filter(|c| c.is_relative()).ok_or_else(|| {
                        format!(
                            "paths: '{}' is not a relative path without '..'; paths of a volume are relative to its root (e.g. \"caddy\"), or leave paths out for the whole volume",
                            p.display()
                        )
                    })?;
                    // "." (the root) stands for the whole volume.
                    if cleaned.as_os_str().is_empty() {
                        paths.clear();
                        break;
                    }
                    paths.push(cleaned);
                }
                if r.reader_image.as_deref().is_some_and(|i| i.trim().is_empty()) {
                    return Err("reader_image is empty; name a local image or remove the key".into());
                }
                FilesPlace::Volume {
                    volume,
                    paths,
                    reader_image: r.reader_image,
                }
            }
        };
        Ok(FilesSource {
            name: r.name,
            place,
            exclude: r.exclude,
            retention: r.retention,
        })
    }
}

impl FilesSource {
    /// Host paths the config resolves against its own directory (none in a container or
    /// volume: those paths are not on this host).
    pub fn host_paths_mut(&mut self) -> Vec<&mut PathBuf> {
        match &mut self.place {
            FilesPlace::Host { paths } => paths.iter_mut().collect(),
            FilesPlace::Container { .. } | FilesPlace::Volume { .. } => Vec::new(),
        }
    }

    /// Config errors found without touching the host or the engine.
    pub fn validate(&self, at: &str, errors: &mut Vec<String>) {
        match &self.place {
            FilesPlace::Host { paths } | FilesPlace::Container { paths, .. } if paths.is_empty() => {
                errors.push(format!("{at}.paths: empty; list the files or directories to back up"))
            }
            _ => {}
        }
        if let Err(e) = crate::tarball::globs(&self.exclude) {
            errors.push(format!("{at}.{e}"));
        }
    }
}

impl fmt::Debug for FilesSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FilesSource")
            .field("name", &self.name)
            .field("place", &self.place)
            .field("exclude", &self.exclude)
            .field("retention", &self.retention)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(toml_text: &str) -> Result<FilesSource, String> {
        toml::from_str::<FilesSource>(&format!("name = \"f\"\n{toml_text}")).map_err(|e| e.to_string())
    }

    #[test]
    fn keys_choose_the_place() {
        let s = parse("paths = [\"rel\", \"/abs\"]").unwrap();
        assert!(matches!(s.place, FilesPlace::Host { ref paths } if paths.len() == 2));

        let s = parse("service = \"caddy\"\npaths = [\"/data/\", \"/config/./x\"]").unwrap();
        let FilesPlace::Container { place, paths } = s.place else {
            panic!("{s:?}")
        };
        assert_eq!(
            place,
            ContainerRef::Service {
                service: "caddy".into(),
                project: None
            }
        );
        assert_eq!(paths, vec![PathBuf::from("/data"), PathBuf::from("/config/x")]);

        let s = parse("volume = \"app_caddy_data\"").unwrap();
        assert!(matches!(s.place, FilesPlace::Volume { ref paths, .. } if paths.is_empty()));
        let s = parse("volume = \"app_caddy_data\"\npaths = [\"caddy\", \"./x/\"]").unwrap();
        assert!(
            matches!(s.place, FilesPlace::Volume { ref paths, .. } if *paths == vec![PathBuf::from("caddy"), PathBuf::from("x")])
        );
    }

    #[test]
    fn wrong_paths_and_keys_are_named() {
        let e = parse("container = \"app-caddy\"\npaths = [\"data\"]").unwrap_err();
        assert!(e.contains("paths: 'data' is not an absolute path"), "{e}");
        let e = parse("container = \"app-caddy\"\npaths = [\"/data/../etc\"]").unwrap_err();
        assert!(e.contains("'..'"), "{e}");
        let e = parse("container = \"app-caddy\"\npaths = [\"/\"]").unwrap_err();
        assert!(e.contains("whole filesystem"), "{e}");
        let e = parse("volume = \"v\"\npaths = [\"/data\"]").unwrap_err();
        assert!(e.contains("relative to its root"), "{e}");
        let e = parse("volume = \"v\"\nservice = \"caddy\"").unwrap_err();
        assert!(e.contains("keep one"), "{e}");
        let e = parse("paths = [\"/x\"]\nreader_image = \"debian\"").unwrap_err();
        assert!(e.contains("reader_image belongs to volume"), "{e}");
        let e = parse("volume = \"a/b\"").unwrap_err();
        assert!(e.contains("not a volume name"), "{e}");
    }

    #[test]
    fn only_host_paths_are_resolved_against_the_config_dir() {
        let mut s = parse("service = \"caddy\"\npaths = [\"/data\"]").unwrap();
        assert!(s.host_paths_mut().is_empty());
        let mut s = parse("paths = [\"rel\"]").unwrap();
        assert_eq!(s.host_paths_mut().len(), 1);
        let mut errors = Vec::new();
        parse("service = \"caddy\"").unwrap().validate("source[0]", &mut errors);
        assert_eq!(errors.len(), 1, "{errors:?}");
        let mut errors = Vec::new();
        parse("volume = \"v\"").unwrap().validate("source[0]", &mut errors);
        assert!(errors.is_empty(), "{errors:?}");
    }
}
