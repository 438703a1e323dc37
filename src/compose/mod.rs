//! Reading a Docker Compose project the way Compose does, for `drctl init --from-compose`:
//! the compose file, the `.env` beside it, variable interpolation, the project name, and per
//! service what drctl needs to back it up (image, command, volumes, environment *names*).
//!
//! Nothing here connects to an engine: this is the file as written. `plan` turns it into a
//! config; values that are secrets stay references (`${VAR}`), never copied.

pub mod dotenv;
pub mod interpolate;
pub mod plan;

use interpolate::{expand, Vars};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use yaml_rust2::Yaml;

#[derive(Debug, thiserror::Error)]
pub enum ComposeError {
    #[error("cannot read {}: {source} (pass the path of your docker-compose.yml)", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{} is not valid YAML: {message}", path.display())]
    Yaml { path: PathBuf, message: String },
    #[error("{}: {message}", path.display())]
    Invalid { path: PathBuf, message: String },
}

/// A compose project as written.
#[derive(Debug)]
pub struct Project {
    /// The compose file, absolute.
    pub file: PathBuf,
    /// Its directory: where `.env`, `Caddyfile` and relative paths are.
    pub dir: PathBuf,
    /// The `.env` beside the compose file, when there is one.
    pub dotenv: Option<PathBuf>,
    /// The name Compose gives the project (labels, volume prefixes), normalised.
    pub name: String,
    /// Where `name` came from, for the report.
    pub name_from: &'static str,
    pub services: Vec<Service>,
    /// Top-level `volumes:` key → the volume's name in the engine.
    pub volumes: BTreeMap<String, String>,
    /// Variables referred to without a value or default.
    pub unset: Vec<String>,
    /// Top-level keys this reader does not follow (`include`, …), for the report.
    pub unsupported: Vec<String>,
    pub vars: Vars,
}

#[derive(Debug, Clone)]
pub struct Service {
    pub name: String,
    /// `image:`, interpolated; None for a service with only `build:`.
    pub image: Option<String>,
    /// `command:` as tokens, NOT interpolated: `plan` needs to see `${VAR}` as written.
    pub command: Option<Vec<String>>,
    pub entrypoint: Option<Vec<String>>,
    /// `environment:` as written: name → raw value (None: passed through from the shell).
    pub environment: BTreeMap<String, Option<String>>,
    /// `env_file:` paths, absolute.
    pub env_files: Vec<PathBuf>,
    pub mounts: Vec<Mount>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mount {
    /// A named volume: the top-level key (see `Project::volumes` for the engine's name).
    Volume { key: String, target: String },
    /// A host path, absolute.
    Bind { source: PathBuf, target: String },
    /// An anonymous volume or tmpfs: nothing to back up by name.
    Other { target: String },
}

impl Project {
    /// Reads `file` and the `.env` beside it. `env` is the process environment (it wins over
    /// `.env`, as in Compose).
    pub fn load(file: &Path, env: BTreeMap<String, String>) -> Result<Project, ComposeError> {
        let read = |p: &Path| {
            std::fs::read_to_string(p).map_err(|source| ComposeError::Read {
                path: p.to_path_buf(),
                source,
            })
        };
        let text = read(file)?;
        let file = std::path::absolute(file).map_err(|source| ComposeError::Read {
            path: file.to_path_buf(),
            source,
        })?;
        let dir = file
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("/"));
        let invalid = |message: String| ComposeError::Invalid {
            path: file.clone(),
            message,
        };

        let dotenv_path = dir.join(".env");
        let (dotenv, dotenv_vars) = if dotenv_path.is_file() {
            let t = read(&dotenv_path)?;
            let v = dotenv::parse(&t, &env).map_err(|message| ComposeError::Invalid {
                path: dotenv_path.clone(),
                message,
            })?;
            (Some(dotenv_path), v)
        } else {
            (None, BTreeMap::new())
        };
        let vars = Vars {
            env,
            dotenv: dotenv_vars,
        };

        let docs = yaml_rust2::YamlLoader::load_from_str(&text).map_err(|e| ComposeError::Yaml {
            path: file.clone(),
            message: e.to_string(),
        })?;
        let root = docs.into_iter().next().unwrap_or(Yaml::Null);
        let root = merge_keys(root);
        if !matches!(root, Yaml::Hash(_)) {
            return Err(invalid("the file is not a mapping with services: at the top".into()));
        }

        let mut unset = Vec::new();
        let mut text_of = |y: &Yaml, at: &str| -> Result<Option<String>, ComposeError> {
            match scalar(y) {
                Some(raw) => expand(&raw, &vars, &mut unset)
                    .map(Some)
                    .map_err(|e| invalid(format!("{at}: {e}"))),
                None => Ok(None),
            }
        };

        // The project name, with Compose's precedence (-p aside): COMPOSE_PROJECT_NAME from
        // the environment or .env, then `name:`, then the directory's name.
        let (raw_name, name_from) = if let Some(n) = vars.get("COMPOSE_PROJECT_NAME").filter(|n| !n.is_empty()) {
            (
                n.to_string(),
                if vars.env.contains_key("COMPOSE_PROJECT_NAME") {
                    "COMPOSE_PROJECT_NAME in the environment"
                } else {
                    "COMPOSE_PROJECT_NAME in .env"
                },
            )
        } else if let Some(n) = text_of(&root["name"], "name")? {
            (n, "name: in the compose file")
        } else {
            (
                dir.file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                "the directory's name",
            )
        };
        let name = normalize_project_name(&raw_name);
        if name.is_empty() {
            return Err(invalid(format!(
                "project name '{raw_name}' (from {name_from}) has no letter or digit; set name: in the compose file"
            )));
        }

        let mut volumes = BTreeMap::new();
        if let Yaml::Hash(vs) = &root["volumes"] {
            for (k, v) in vs {
                let Some(key) = scalar(k) else { continue };
                let external = matches!(v["external"], Yaml::Boolean(true));
                let engine_name = match text_of(&v["name"], &format!("volumes.{key}.name"))? {
                    Some(n) => n,
                    None if external => key.clone(),
                    None => format!("{name}_{key}"),
                };
                volumes.insert(key, engine_name);
            }
        }

        let mut services = Vec::new();
        let Yaml::Hash(svcs) = &root["services"] else {
            return Err(invalid("no services: section".into()));
        };
        for (k, s) in svcs {
            let Some(sname) = scalar(k) else { continue };
            let at = format!("services.{sname}");
            let image = text_of(&s["image"], &format!("{at}.image"))?;
            let command = tokens(&s["command"]);
            let entrypoint = tokens(&s["entrypoint"]);
            let mut environment = BTreeMap::new();
            match &s["environment"] {
                Yaml::Hash(h) => {
                    for (k, v) in h {
                        if let Some(k) = scalar(k) {
                            environment.insert(k, scalar(v));
                        }
                    }
                }
                Yaml::Array(a) => {
                    for item in a.iter().filter_map(scalar) {
                        match item.split_once('=') {
                            Some((k, v)) => environment.insert(k.to_string(), Some(v.to_string())),
                            None => environment.insert(item, None),
                        };
                    }
                }
                _ => {}
            }
            let mut env_files = Vec::new();
            let env_file_items: Vec<Yaml> = match &s["env_file"] {
                Yaml::Array(a) => a.clone(),
                y @ Yaml::String(_) => vec![y.clone()],
                _ => vec![],
            };
            for item in env_file_items {
                let p = match &item {
                    Yaml::Hash(_) => text_of(&item["path"], &format!("{at}.env_file"))?,
                    y => text_of(y, &format!("{at}.env_file"))?,
                };
                if let Some(p) = p {
                    env_files.push(normalize(&dir.join(p)));
                }
            }
            let mut mounts = Vec::new();
            if let Yaml::Array(vs) = &s["volumes"] {
                for v in vs {
                    let (source, target, kind) = match v {
                        Yaml::Hash(_) => (
                            text_of(&v["source"], &format!("{at}.volumes"))?,
                            text_of(&v["target"], &format!("{at}.volumes"))?.unwrap_or_default(),
                            scalar(&v["type"]),
                        ),
                        y => {
                            let spec = text_of(y, &format!("{at}.volumes"))?.unwrap_or_default();
                            let mut parts = spec.splitn(3, ':');
                            let first = parts.next().unwrap_or_default().to_string();
                            match parts.next() {
                                Some(t) => (Some(first), t.to_string(), None),
                                None => (None, first, None),
                            }
                        }
                    };
                    mounts.push(match (source, kind.as_deref()) {
                        (Some(src), None | Some("volume")) if !looks_like_path(&src) => {
                            Mount::Volume { key: src, target }
                        }
                        (Some(src), None | Some("bind")) => Mount::Bind {
                            source: normalize(&dir.join(expand_home(&src))),
                            target,
                        },
                        _ => Mount::Other { target },
                    });
                }
            }
            services.push(Service {
                name: sname,
                image,
                command,
                entrypoint,
                environment,
                env_files,
                mounts,
            });
        }

        let unsupported = ["include", "extends"]
            .into_iter()
            .filter(|k| !matches!(root[*k], Yaml::BadValue))
            .map(str::to_string)
            .chain(
                services
                    .iter()
                    .filter(|s| !matches!(svcs_get(&root, &s.name)["extends"], Yaml::BadValue))
                    .map(|s| format!("services.{}.extends", s.name)),
            )
            .collect();

        Ok(Project {
            file,
            dir,
            dotenv,
            name,
            name_from,
            services,
            volumes,
            unset,
            unsupported,
            vars,
        })
    }

    /// `raw` interpolated with the project's variables (unset ones expand to nothing).
    pub fn expand(&self, raw: &str) -> Option<String> {
        expand(raw, &self.vars, &mut Vec::new()).ok()
    }
}

fn svcs_get<'a>(root: &'a Yaml, service: &str) -> &'a Yaml {
    &root["services"][service]
}

/// Compose's `NormalizeProjectName`: lower case, only `a-z 0-9 _ -`, no leading `_`/`-`.
pub fn normalize_project_name(s: &str) -> String {
    let kept: String = s
        .to_lowercase()
        .chars()
        .filter(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_' || *c == '-')
        .collect();
    kept.trim_start_matches(['_', '-']).to_string()
}

/// `a/./b/../c` as `a/c`, without touching the filesystem (the path may not exist).
fn normalize(p: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    out
}

fn looks_like_path(s: &str) -> bool {
    s.starts_with('.') || s.starts_with('/') || s.starts_with('~')
}

fn expand_home(s: &str) -> PathBuf {
    match s.strip_prefix("~/") {
        Some(rest) => std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_default()
            .join(rest),
        None => PathBuf::from(s),
    }
}

/// A scalar as text (numbers and booleans as YAML wrote them).
fn scalar(y: &Yaml) -> Option<String> {
    match y {
        Yaml::String(s) | Yaml::Real(s) => Some(s.clone()),
        Yaml::Integer(i) => Some(i.to_string()),
        Yaml::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}

/// `command:`/`entrypoint:` as tokens: a list as it is, a string split as a shell would.
fn tokens(y: &Yaml) -> Option<Vec<String>> {
    match y {
        Yaml::Array(a) => Some(a.iter().filter_map(scalar).collect()),
        y => scalar(y).map(|s| shell_split(&s)),
    }
}

/// Splits like a POSIX shell's words (quotes and backslashes), without expanding anything:
/// how Compose splits a `command:` string.
pub fn shell_split(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                for c in chars.by_ref() {
                    if c == '\'' {
                        break;
                    }
                    cur.push(c);
                }
            }
            '"' => {
                in_word = true;
                while let Some(c) = chars.next() {
                    match c {
                        '"' => break,
                        '\\' => {
                            if let Some(n) = chars.next() {
                                if !matches!(n, '"' | '\\' | '$' | '`') {
                                    cur.push('\\');
                                }
                                cur.push(n);
                            }
                        }
                        c => cur.push(c),
                    }
                }
            }
            '\\' => {
                in_word = true;
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
            }
            c if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        out.push(cur);
    }
    out
}

/// Applies YAML merge keys (`<<: *defaults`), which Compose files use with `x-` anchors and
/// the YAML library leaves as an ordinary key. Keys written beside `<<` win.
fn merge_keys(y: Yaml) -> Yaml {
    match y {
        Yaml::Hash(h) => {
            let mut out = yaml_rust2::yaml::Hash::new();
            let mut merged: Vec<Yaml> = Vec::new();
            for (k, v) in h {
                if matches!(&k, Yaml::String(s) if s == "<<") {
                    match merge_keys(v) {
                        Yaml::Array(a) => merged.extend(a),
                        other => merged.push(other),
                    }
                } else {
                    out.insert(k, merge_keys(v));
                }
            }
            for m in merged {
                if let Yaml::Hash(mh) = m {
                    for (k, v) in mh {
                        out.entry(k).or_insert(v);
                    }
                }
            }
            Yaml::Hash(out)
        }
        Yaml::Array(a) => Yaml::Array(a.into_iter().map(merge_keys).collect()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn project_names_are_normalised_as_compose_does() {
        assert_eq!(normalize_project_name("My App.v2"), "myappv2");
        assert_eq!(normalize_project_name("_-shop_1"), "shop_1");
        assert_eq!(normalize_project_name("..."), "");
    }

    #[test]
    fn commands_split_like_a_shell() {
        assert_eq!(
            shell_split("redis-server --appendonly yes --requirepass ${REDIS_PASSWORD}"),
            [
                "redis-server",
                "--appendonly",
                "yes",
                "--requirepass",
                "${REDIS_PASSWORD}"
            ]
        );
        assert_eq!(
            shell_split(r#"sh -c 'a b' "c \"d\"" e\ f"#),
            ["sh", "-c", "a b", "c \"d\"", "e f"]
        );
    }

    #[test]
    fn merge_keys_fill_in_what_the_mapping_does_not_say() {
        let docs = yaml_rust2::YamlLoader::load_from_str(
            "x-base: &base\n  image: a\n  restart: always\nservices:\n  s:\n    <<: *base\n    image: b\n",
        )
        .unwrap();
        let y = merge_keys(docs[0].clone());
        assert_eq!(y["services"]["s"]["image"].as_str(), Some("b"));
        assert_eq!(y["services"]["s"]["restart"].as_str(), Some("always"));
    }
}
