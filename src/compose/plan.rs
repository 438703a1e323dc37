//! From a compose project to a drctl config: which services are databases drctl knows (by
//! image), how each is reached (`service = …`, the container place), which named volumes and
//! host files to keep, and which environment variables the daemon needs. A value, not output:
//! `commands/init.rs` prints it and writes the file.
//!
//! The rule for secrets: a value from `.env` or the compose file that is a credential is never
//! written; the config refers to the variable it came from (`${REDIS_PASSWORD}`), or, when
//! the compose file has the value literally, to a variable the user is told to set.

use super::interpolate::sole_reference;
use super::{Mount, Project, Service};
use std::collections::BTreeSet;
use std::fmt::Write;
use std::path::PathBuf;

/// The database kinds `init` recognises by image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbKind {
    Postgres,
    Redis,
    Nats,
}

impl DbKind {
    /// The kind of an image reference: `postgres:16-alpine`, `docker.io/library/postgres@sha256:…`
    /// and any `*/postgres:*` mirror are Postgres; Redis and NATS only under their official
    /// names (a third-party `*/redis` image keeps its data and password elsewhere).
    pub fn of_image(image: &str) -> Option<DbKind> {
        let no_digest = image.split('@').next().unwrap_or(image);
        // A tag is after the last ':' that has no '/' after it (a registry port has one).
        let repo = match no_digest.rfind(':') {
            Some(i) if !no_digest[i..].contains('/') => &no_digest[..i],
            _ => no_digest,
        };
        let official = |name: &str| {
            [
                name.to_string(),
                format!("library/{name}"),
                format!("docker.io/library/{name}"),
                format!("index.docker.io/library/{name}"),
            ]
            .contains(&repo.to_string())
        };
        if repo.rsplit('/').next() == Some("postgres") {
            Some(DbKind::Postgres)
        } else if official("redis") {
            Some(DbKind::Redis)
        } else if official("nats") {
            Some(DbKind::Nats)
        } else {
            None
        }
    }

    fn type_name(self) -> &'static str {
        match self {
            DbKind::Postgres => "postgres",
            DbKind::Redis => "redis",
            DbKind::Nats => "nats",
        }
    }
}

/// What `init --from-compose` decided, for the command to print and write.
#[derive(Debug, Default)]
pub struct Plan {
    /// The config text (TOML with comments).
    pub config: String,
    /// One line per source written: what was found and how it will be backed up.
    pub found: Vec<String>,
    /// What could not be decided from the files: the user must look (and the config says so).
    pub undecided: Vec<String>,
    /// Services whose image drctl does not know, "service (image)": listed, not guessed.
    pub unknown: Vec<String>,
    /// Variables the daemon's environment must set, sorted.
    pub env_vars: Vec<String>,
    /// Point-in-time recovery, per PostgreSQL service: the `command:` that makes the server
    /// archive into its spool, and whether it already does.
    pub pitr: Vec<Pitr>,
}

/// Point-in-time recovery for one PostgreSQL service (`postgres_cluster`).
#[derive(Debug)]
pub struct Pitr {
    pub service: String,
    pub source: String,
    /// The service's `command:` with archiving into the spool, as a YAML flow sequence.
    pub command: String,
    /// The service's command already archives into the spool: the source is written enabled.
    pub archiving: bool,
    /// The service has a command of its own, which the user must merge with these arguments.
    pub has_command: bool,
}

/// One `[[source]]` in the making: its lines after `name` and `type`.
struct Source {
    name: String,
    kind: &'static str,
    comment: Vec<String>,
    keys: Vec<(String, String)>,
}

fn q(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// A source name from free text: the characters drctl allows, unique among `taken`.
fn source_name(want: &str, taken: &mut BTreeSet<String>) -> String {
    let mut base: String = want
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .take(56)
        .collect();
    if base.is_empty() {
        base = "source".into();
    }
    let mut name = base.clone();
    let mut n = 2;
    while !taken.insert(name.clone()) {
        name = format!("{base}-{n}");
        n += 1;
    }
    name
}

/// The config for `project`, with `recipient` as the age public key.
pub fn plan(project: &Project, recipient: &str) -> Plan {
    let mut p = Plan::default();
    let mut env_vars = BTreeSet::new();
    let mut taken = BTreeSet::new();
    let mut sources: Vec<Source> = Vec::new();
    let mut volume_sources: Vec<Source> = Vec::new();
    let mut db_services = BTreeSet::new();

    for s in &project.services {
        let Some(image) = &s.image else {
            p.unknown.push(format!("{} (built from source, no image:)", s.name));
            continue;
        };
        let Some(kind) = DbKind::of_image(image) else {
            p.unknown.push(format!("{} ({image})", s.name));
            continue;
        };
        db_services.insert(s.name.clone());
        let name = source_name(&s.name, &mut taken);
        let mut src = Source {
            name: name.clone(),
            kind: kind.type_name(),
            comment: vec![],
            keys: vec![
                ("service".into(), q(&s.name)),
                ("compose_project".into(), q(&project.name)),
            ],
        };
        match kind {
            DbKind::Postgres => {
                postgres(s, &mut src, &mut p);
                let words = words(s);
                let mut args: Vec<String> = vec!["postgres".into()];
                args.extend(crate::sources::postgres_cluster::spool::server_args());
                p.pitr.push(Pitr {
                    service: s.name.clone(),
                    source: source_name(&format!("{}-pitr", s.name), &mut taken),
                    command: format!(
                        "[{}]",
                        args.iter()
                            .map(|a| serde_json::Value::from(a.as_str()).to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                    archiving: words
                        .iter()
                        .any(|w| w.contains(crate::sources::postgres_cluster::spool::SPOOL)),
                    has_command: !words.is_empty(),
                });
            }
            DbKind::Redis => redis(s, &mut src, &mut p, &mut env_vars),
            DbKind::Nats => {
                if !nats(project, s, &mut src, &mut p) {
                    continue;
                }
            }
        }
        let keys: Vec<String> = src
            .keys
            .iter()
            .filter(|(k, _)| k != "service" && k != "compose_project")
            .map(|(k, v)| format!("{k} = {v}"))
            .collect();
        p.found.push(format!(
            "{}: service '{}' ({image}) → source '{name}'{}",
            kind.type_name(),
            s.name,
            if keys.is_empty() {
                " (user and database from the container)".to_string()
            } else {
                format!(" ({})", keys.join(", "))
            }
        ));
        sources.push(src);
        for m in &s.mounts {
            if let Mount::Volume { key, target } = m {
                p.found.push(format!(
                    "  volume {key} on {target} of '{}' holds the live data: backed up by the {} source, not as files",
                    s.name,
                    kind.type_name()
                ));
            }
        }
    }

    // Named volumes of the other services (caddy_data, uploads…): as files, through a reader
    // container the engine mounts them in. Each volume once, however many services use it.
    let mut seen_volumes = BTreeSet::new();
    for s in project.services.iter().filter(|s| !db_services.contains(&s.name)) {
        for m in &s.mounts {
            match m {
                Mount::Volume { key, target } => {
                    let Some(engine_name) = project.volumes.get(key) else {
                        p.undecided.push(format!(
                            "service '{}' mounts volume '{key}' on {target}, which the top-level volumes: does not declare; not backed up",
                            s.name
                        ));
                        continue;
                    };
                    if !seen_volumes.insert(engine_name.clone()) {
                        continue;
                    }
                    let name = source_name(key, &mut taken);
                    p.found.push(format!(
                        "volume '{key}' ({engine_name}) of service '{}' on {target} → files source '{name}'",
                        s.name
                    ));
                    volume_sources.push(Source {
                        name,
                        kind: "files",
                        comment: vec![format!(
                            "the named volume {key} of service '{}' (mounted on {target})",
                            s.name
                        )],
                        keys: vec![("volume".into(), q(engine_name))],
                    });
                }
                // The stack's own files (Caddyfile, .env) are in the host files source.
                Mount::Bind { source, .. } if is_stack_file(project, source) => {}
                Mount::Bind { source, target } => {
                    p.undecided.push(format!(
                        "service '{}' bind-mounts {} on {target}: not included; add it to the files source's paths if it holds data you cannot recreate",
                        s.name,
                        source.display()
                    ));
                }
                Mount::Other { .. } => {}
            }
        }
    }

    // The stack's own files on the host.
    let mut host_files: Vec<PathBuf> = Vec::new();
    let add = |f: PathBuf, host_files: &mut Vec<PathBuf>| {
        if f.is_file() && !host_files.contains(&f) {
            host_files.push(f);
        }
    };
    add(project.file.clone(), &mut host_files);
    if let Some(e) = &project.dotenv {
        add(e.clone(), &mut host_files);
    }
    add(project.dir.join("Caddyfile"), &mut host_files);
    for s in &project.services {
        for f in &s.env_files {
            add(f.clone(), &mut host_files);
        }
    }
    for o in [
        "docker-compose.override.yml",
        "compose.override.yaml",
        "compose.override.yml",
        "docker-compose.override.yaml",
    ] {
        let f = project.dir.join(o);
        if f.is_file() {
            p.undecided.push(format!(
                "{} exists and was not read (Compose merges it): check it for services or volumes to add",
                f.display()
            ));
            add(f, &mut host_files);
        }
    }
    let files_name = source_name("stack-files", &mut taken);
    p.found.push(format!(
        "host files → files source '{files_name}': {}",
        host_files
            .iter()
            .map(|f| f.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    ));
    let files_source = Source {
        name: files_name,
        kind: "files",
        comment: vec![
            "the stack's own files on this host (absolute paths). When drctl runs in a container,".into(),
            format!("mount {} at the same path, read-only.", project.dir.display()),
        ],
        keys: vec![(
            "paths".into(),
            format!(
                "[{}]",
                host_files
                    .iter()
                    .map(|f| q(&f.to_string_lossy()))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )],
    };

    for k in &project.unsupported {
        p.undecided.push(format!(
            "{k}: not followed by this reader; add what it brings in by hand"
        ));
    }
    for v in &project.unset {
        p.undecided.push(format!(
            "${{{v}}} is used in the compose file but set neither in .env nor in the environment"
        ));
    }
    if sources.is_empty() {
        p.undecided
            .push("no PostgreSQL, Redis or NATS service found by image".into());
    }

    p.env_vars = env_vars.into_iter().collect();
    p.config = render(
        project,
        recipient,
        &p,
        sources.iter().chain(&volume_sources).chain([&files_source]),
    );
    p
}

fn is_stack_file(project: &Project, f: &std::path::Path) -> bool {
    f == project.file
        || Some(f) == project.dotenv.as_deref()
        || f == project.dir.join("Caddyfile")
        || project.services.iter().any(|s| s.env_files.iter().any(|e| e == f))
}

fn postgres(s: &Service, src: &mut Source, p: &mut Plan) {
    // The source asks the container for POSTGRES_USER and POSTGRES_DB at every run, so
    // nothing from .env is copied here, and a changed .env needs no config change.
    let mut said = Vec::new();
    for (var, what) in [("POSTGRES_USER", "user"), ("POSTGRES_DB", "database")] {
        if s.environment.contains_key(var) || s.env_files.iter().any(|f| file_defines(f, var)) {
            said.push(format!("{what}: the container's {var}"));
        } else {
            said.push(format!(
                "{what}: {} (the image's default)",
                if what == "user" { "postgres" } else { "the user's name" }
            ));
        }
    }
    src.comment.push(format!(
        "pg_dump runs inside the container (its major matches the server); {}",
        said.join("; ")
    ));
    src.comment
        .push("no password needed: the dump connects over the container's local socket".into());
    if s.environment.contains_key("PGUSER") {
        p.undecided.push(format!(
            "service '{}' sets PGUSER: if it differs from POSTGRES_USER, add user = \"…\" to source '{}'",
            s.name, src.name
        ));
    }
}

fn file_defines(f: &std::path::Path, var: &str) -> bool {
    std::fs::read_to_string(f)
        .map(|t| {
            t.lines().any(|l| {
                l.trim_start()
                    .trim_start_matches("export ")
                    .starts_with(&format!("{var}="))
            })
        })
        .unwrap_or(false)
}

/// The words of a command, with `sh -c "…"` scripts split too, so `--requirepass` inside a
/// shell wrapper is still seen.
fn words(s: &Service) -> Vec<String> {
    let mut all: Vec<String> = s
        .entrypoint
        .iter()
        .flatten()
        .chain(s.command.iter().flatten())
        .cloned()
        .collect();
    if let Some(i) = all.iter().position(|w| w == "-c") {
        if i > 0 && matches!(all[i - 1].rsplit('/').next(), Some("sh" | "bash" | "ash")) && i + 1 < all.len() {
            let script = super::shell_split(&all[i + 1]);
            all.splice(i + 1..i + 2, script);
        }
    }
    all
}

/// The value after `flag` (`--flag v` or `--flag=v`), as written.
fn flag_value(words: &[String], flags: &[&str]) -> Option<String> {
    for (i, w) in words.iter().enumerate() {
        for f in flags {
            if w == f {
                return words.get(i + 1).cloned();
            }
            if let Some(v) = w.strip_prefix(&format!("{f}=")) {
                return Some(v.to_string());
            }
        }
    }
    None
}

/// The variable a `--requirepass` value comes from: `${VAR}` in the compose file is VAR; `$$VAR`
/// (a `$VAR` left for the container's shell) is the service's environment entry VAR, followed
/// to the compose variable it is set from. None when the password is written literally.
fn password_var(raw: &str, s: &Service) -> Option<String> {
    if let Some(inner) = raw.strip_prefix('$').filter(|r| r.starts_with('$')) {
        // `inner` is `$VAR` or `${VAR}`: what the container's shell expands.
        let container_var = sole_reference(inner)?;
        return match s.environment.get(&container_var) {
            Some(Some(value)) => sole_reference(value),
            // Passed through (`- VAR`) or from env_file: the same name.
            _ => Some(container_var),
        };
    }
    sole_reference(raw)
}

fn redis(s: &Service, src: &mut Source, p: &mut Plan, env_vars: &mut BTreeSet<String>) {
    src.keys.push(("mode".into(), q("file")));
    src.comment
        .push("BGSAVE, then the RDB file is streamed out of the container (no port needed)".into());
    let w = words(s);
    if let Some(raw) = flag_value(&w, &["--requirepass"]) {
        let var = password_var(&raw, s);
        let var = match var {
            Some(v) => v,
            None => {
                p.undecided.push(format!(
                    "service '{}' has --requirepass written in the compose file, not as ${{VAR}}: the config refers to ${{REDIS_PASSWORD}}; set it to that password in drctl's environment (better: move the password to .env)",
                    s.name
                ));
                "REDIS_PASSWORD".to_string()
            }
        };
        src.keys.push(("password".into(), q(&format!("${{{var}}}"))));
        env_vars.insert(var);
    } else if w.iter().any(|x| x.ends_with(".conf")) {
        p.undecided.push(format!(
            "service '{}' runs redis-server with a config file: if it sets requirepass, add password = \"${{VAR}}\" to source '{}'",
            s.name, src.name
        ));
    }
    if w.windows(2).any(|x| x[0] == "--appendonly" && x[1] == "yes") {
        src.comment
            .push("appendonly yes: the backup is the RDB BGSAVE writes (a consistent point in time)".into());
    }
}

/// False when the service has no JetStream store to back up.
fn nats(project: &Project, s: &Service, src: &mut Source, p: &mut Plan) -> bool {
    let w = words(s);
    let store = flag_value(&w, &["-sd", "--store_dir"]);
    let config = flag_value(&w, &["-c", "--config"]);
    let js = w.iter().any(|x| x == "-js" || x == "--jetstream");
    src.keys.push(("mode".into(), q("tarball")));
    match store {
        Some(raw) => {
            let dir = project.expand(&raw).unwrap_or(raw);
            src.keys.push(("data_dir".into(), q(&dir)));
            src.keys.push(("pause".into(), "true".into()));
            src.comment.push(
                "the JetStream store (-sd) read through the engine, the container paused for a consistent copy".into(),
            );
            if !js && config.is_none() {
                p.undecided.push(format!(
                    "service '{}' has -sd but no -js: is JetStream on? If not, remove source '{}'",
                    s.name, src.name
                ));
            }
            true
        }
        None => {
            let why = match config {
                Some(c) => format!("its store directory is in the config file {c}"),
                None if js => "it runs -js without -sd (the store is in a temporary directory)".into(),
                None => "it has no -js: JetStream looks off".into(),
            };
            p.undecided.push(format!(
                "service '{}' (nats): {why}; add a source by hand: type = \"nats\", service = \"{}\", mode = \"tarball\", data_dir = \"<the -sd path inside the container>\", pause = true",
                s.name, s.name
            ));
            false
        }
    }
}

fn render<'a>(project: &Project, recipient: &str, p: &Plan, sources: impl Iterator<Item = &'a Source>) -> String {
    let mut t = String::new();
    let _ = writeln!(
        t,
        "# drctl configuration written by `drctl init --from-compose {}`",
        project.file.display()
    );
    let _ = writeln!(
        t,
        "# for the Compose project '{}' (from {}). Check it with: drctl validate --config <this file>",
        project.name, project.name_from
    );
    t.push_str(
        "# Containers are found by their Compose labels on every run, so a recreated container is found\n\
         # again. No value from .env or the compose file is copied here: secrets are ${VAR} references.\n",
    );
    if p.env_vars.is_empty() {
        t.push_str("# The daemon needs no secret from this stack in its environment (storage keys aside).\n");
    } else {
        let _ = writeln!(
            t,
            "# The daemon's environment must set: {} (e.g. in /etc/drctl/env, or the drctl service's environment:).",
            p.env_vars.join(", ")
        );
    }
    let _ = writeln!(
        t,
        "\n[encryption]\n# Public keys (age1…) only: this host can write backups but never read them.\nrecipients = [{}]\n",
        q(recipient)
    );
    t.push_str("[compression]\nalgorithm = \"zstd\"\nlevel = 3\n\n");
    t.push_str(
        "[daemon]\ntimezone = \"UTC\"\n# state_dir: /var/lib/drctl as root (the drctl image's state volume), else ~/.local/state/drctl\n\n",
    );
    t.push_str(
        "# FILL IN: where backups go. This local directory is a placeholder that works as it is; keep an\n\
         # offsite copy too (3-2-1), e.g. the S3 block below (Cloudflare R2, Backblaze B2, MinIO, AWS).\n\
         [[storage]]\nname = \"local\"\ntype = \"fs\"\nroot = \"/var/backups/drctl\"\n\n\
         # [[storage]]\n# name = \"offsite\"\n# type = \"s3\"\n# bucket = \"backups\"\n\
         # endpoint = \"https://ACCOUNT.r2.cloudflarestorage.com\"\n# region = \"auto\"\n\
         # access_key_id = \"${R2_ACCESS_KEY_ID}\"\n# secret_access_key = \"${R2_SECRET_ACCESS_KEY}\"\n\n",
    );
    let retention = "{ keep_within = \"24h\", keep_daily = 7, keep_weekly = 4, keep_monthly = 3 }";
    for s in sources {
        for c in &s.comment {
            let _ = writeln!(t, "# {}: {c}", s.name);
        }
        let _ = writeln!(t, "[[source]]\nname = {}\ntype = {}", q(&s.name), q(s.kind));
        for (k, v) in &s.keys {
            let _ = writeln!(t, "{k} = {v}");
        }
        let _ = writeln!(t, "retention = {retention}\n");
    }
    for x in &p.pitr {
        let c = if x.archiving { "" } else { "# " };
        if x.archiving {
            let _ = writeln!(
                t,
                "# {}: point-in-time recovery of service '{}': base backups by pg_basebackup in the container,\n\
                 # and the WAL its archive_command copies into {} (the daemon archives it every few seconds).",
                x.source,
                x.service,
                crate::sources::postgres_cluster::spool::SPOOL
            );
        } else {
            let _ = writeln!(
                t,
                "# Point-in-time recovery of service '{}' (optional): give the service this command in the\n\
                 # compose file{} and `docker compose up -d {}`, then uncomment:\n#   command: {}",
                x.service,
                if x.has_command { " (merged with its own)" } else { "" },
                x.service,
                x.command
            );
        }
        let _ = writeln!(
            t,
            "{c}[[source]]\n{c}name = {}\n{c}type = \"postgres_cluster\"\n{c}service = {}\n{c}compose_project = {}\n{c}retention = {retention}\n",
            q(&x.source),
            q(&x.service),
            q(&project.name)
        );
    }
    for u in &p.undecided {
        let _ = writeln!(t, "# TO CHECK: {u}");
    }
    if !p.undecided.is_empty() {
        t.push('\n');
    }
    if !p.unknown.is_empty() {
        let _ = writeln!(
            t,
            "# Not databases drctl knows (no source written; their named volumes are above): {}\n",
            p.unknown.join(", ")
        );
    }
    t.push_str(
        "# Every source, daily at 03:00 (the [daemon] timezone); alert when a backup is older than 26 hours.\n\
         [[job]]\nname = \"nightly\"\nschedule = \"0 3 * * *\"\nmax_age = \"26h\"\n\
         # ping_url = \"https://hc-ping.com/YOUR-UUID\"\n",
    );
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(command: &str, env: &[(&str, Option<&str>)]) -> Service {
        Service {
            name: "redis".into(),
            image: Some("redis:7".into()),
            command: Some(super::super::shell_split(command)),
            entrypoint: None,
            environment: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.map(str::to_string)))
                .collect(),
            env_files: vec![],
            mounts: vec![],
        }
    }

    fn password_of(s: &Service) -> Option<String> {
        flag_value(&words(s), &["--requirepass"]).and_then(|raw| password_var(&raw, s))
    }

    #[test]
    fn the_password_variable_is_found_as_written_or_through_a_shell_wrapper() {
        let s = service("redis-server --requirepass ${REDIS_PASSWORD}", &[]);
        assert_eq!(password_of(&s).as_deref(), Some("REDIS_PASSWORD"));
        let s = service("redis-server --requirepass=$PW", &[]);
        assert_eq!(password_of(&s).as_deref(), Some("PW"));
        // `$$REDIS_PASS` is the container's variable, set from the compose variable SECRET.
        let s = service(
            "sh -c 'exec redis-server --requirepass \"$$REDIS_PASS\"'",
            &[("REDIS_PASS", Some("${SECRET}"))],
        );
        assert_eq!(password_of(&s).as_deref(), Some("SECRET"));
        let s = service("sh -c 'redis-server --requirepass $${P}'", &[("P", None)]);
        assert_eq!(password_of(&s).as_deref(), Some("P"));
        // Written literally (in the command or the environment): no variable to refer to.
        assert_eq!(password_of(&service("redis-server --requirepass hunter2", &[])), None);
        let s = service("sh -c 'redis-server --requirepass $$P'", &[("P", Some("hunter2"))]);
        assert_eq!(password_of(&s), None);
    }

    #[test]
    fn images_are_recognised_by_name_tag_and_digest() {
        for (image, kind) in [
            ("postgres:16-alpine", Some(DbKind::Postgres)),
            ("postgres", Some(DbKind::Postgres)),
            ("docker.io/library/postgres:16", Some(DbKind::Postgres)),
            (
                "registry.example:5000/mirror/postgres:15@sha256:abcd",
                Some(DbKind::Postgres),
            ),
            ("postgres@sha256:abcd", Some(DbKind::Postgres)),
            ("redis:7-alpine", Some(DbKind::Redis)),
            ("docker.io/library/redis:7", Some(DbKind::Redis)),
            ("nats", Some(DbKind::Nats)),
            ("nats:2.10-alpine", Some(DbKind::Nats)),
            ("bitnami/redis:7", None),
            ("postgis/postgis:16-3.4", None),
            ("caddy:2", None),
            ("registry.example:5000/app", None),
        ] {
            assert_eq!(DbKind::of_image(image), kind, "{image}");
        }
    }
}
