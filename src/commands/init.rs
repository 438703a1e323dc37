//! `drctl init`: a commented starter config, or with `--from-compose` a config for a Docker
//! Compose stack (`crate::compose`).

use super::*;
use crate::cli::InitArgs;
use std::path::{Path, PathBuf};

const STARTER: &str = include_str!("starter.toml");

pub(super) fn init(args: &InitArgs, config_flag: Option<&Path>) -> Result<i32> {
    match &args.from_compose {
        None => starter(&args.dir, args.recipient.as_deref()),
        Some(compose) => {
            let out = config_flag
                .map(Path::to_path_buf)
                .unwrap_or_else(|| args.dir.join("drctl.toml"));
            from_compose(compose, &out, args.recipient.as_deref())
        }
    }
}

/// Refuses an existing path: init never overwrites a config or a key.
fn refuse_existing(paths: &[&Path], hint: &str) -> Result<()> {
    for p in paths {
        if p.exists() {
            bail!("{} already exists; refusing to overwrite it ({hint})", p.display());
        }
    }
    Ok(())
}

/// The recipient to encrypt to: the one given (checked), else a new identity at `identity`.
fn recipient_or_keygen(given: Option<&str>, identity: &Path) -> Result<(String, bool)> {
    match given {
        Some(r) => {
            let r = r.trim();
            if r.parse::<age::x25519::Recipient>().is_err() {
                bail!("--recipient '{r}' is not an age public key (age1…; `drctl keygen` prints one)");
            }
            Ok((r.to_string(), false))
        }
        None => Ok((crate::keys::keygen(Some(identity))?, true)),
    }
}

fn write_private(path: &Path, text: &str) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", path.display()))?;
    f.write_all(text.as_bytes())?;
    Ok(())
}

fn print_identity_advice(identity: &Path, recipient: &str) {
    println!(
        "wrote {} (mode 0600): the private key; public key {recipient}",
        identity.display()
    );
    println!("  move it OFF this machine: a password manager and a printed copy. The server needs only the public key");
    println!(
        "  (already in the config); the identity is for restore and verify. Without it no backup can be restored."
    );
}

fn starter(dir: &Path, recipient: Option<&str>) -> Result<i32> {
    std::fs::create_dir_all(dir)?;
    let config = dir.join("drctl.toml");
    let identity = dir.join("identity.txt");
    let check: Vec<&Path> = if recipient.is_some() {
        vec![&config]
    } else {
        vec![&config, &identity]
    };
    refuse_existing(&check, "choose another --dir")?;
    let (recipient, made) = recipient_or_keygen(recipient, &identity)?;
    write_private(&config, &STARTER.replace("RECIPIENT", &recipient))?;
    println!(
        "wrote {} (mode 0600): one local storage, no sources yet",
        config.display()
    );
    if made {
        print_identity_advice(&identity, &recipient);
    }
    println!();
    println!("next:");
    println!(
        "  1. add your [[source]] blocks (examples are in the file), then: drctl validate --config {}",
        config.display()
    );
    println!("  2. drctl backup --config {}", config.display());
    Ok(0)
}

fn from_compose(compose: &Path, out: &Path, recipient: Option<&str>) -> Result<i32> {
    let dir: PathBuf = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let identity = dir.join("identity.txt");
    let check: Vec<&Path> = if recipient.is_some() {
        vec![out]
    } else {
        vec![out, &identity]
    };
    refuse_existing(
        &check,
        "pass --config OTHER.toml, or --recipient age1… to keep your identity",
    )?;
    // Read everything before writing anything: a compose file drctl cannot read leaves no
    // half-made config or stray identity behind.
    let project = crate::compose::Project::load(compose, std::env::vars().collect())?;
    std::fs::create_dir_all(&dir)?;
    let (recipient, made) = recipient_or_keygen(recipient, &identity)?;
    let plan = crate::compose::plan::plan(&project, &recipient);

    println!(
        "read {}{}: Compose project '{}' (from {})",
        project.file.display(),
        project
            .dotenv
            .as_ref()
            .map(|e| format!(" and {}", e.display()))
            .unwrap_or_default(),
        project.name,
        project.name_from
    );
    println!("found:");
    for f in &plan.found {
        println!("  {f}");
    }
    if !plan.unknown.is_empty() {
        println!("images drctl does not know (listed, not guessed; no source written):");
        for u in &plan.unknown {
            println!("  {u}");
        }
    }
    if !plan.undecided.is_empty() {
        println!("could not decide (marked TO CHECK in the config):");
        for u in &plan.undecided {
            println!("  {u}");
        }
    }
    if plan.env_vars.is_empty() {
        println!("secrets: none of this stack's; the config has no value from .env or the compose file");
    } else {
        println!(
            "secrets: the config refers to ${{{}}}; drctl's environment must set {} (values are never copied into the config)",
            plan.env_vars.join("}, ${"),
            if plan.env_vars.len() == 1 { "it" } else { "them" }
        );
    }

    for x in &plan.pitr {
        if x.archiving {
            println!(
                "point-in-time recovery: service '{}' archives into its WAL spool; source '{}' (postgres_cluster) takes base backups and archives the spool",
                x.service, x.source
            );
        } else {
            println!(
                "point-in-time recovery (optional) for service '{}': give it this command in {}{}, run `docker compose up -d {}`, and uncomment source '{}' in the config:",
                x.service,
                project.file.display(),
                if x.has_command { " (merged with the command it has)" } else { "" },
                x.service,
                x.source
            );
            println!("    command: {}", x.command);
        }
    }
    write_private(out, &plan.config)?;
    println!("wrote {} (mode 0600)", out.display());
    if made {
        print_identity_advice(&identity, &recipient);
    }

    // What drctl would say about the file, without the secrets it cannot have yet: keys and
    // structure (every source's own keys), not whether ${VAR}s are set.
    let base = dir.canonicalize().unwrap_or(dir.clone());
    if let Err(errors) = config::parse_for(&plan.config, &base, config::Uses::Restore) {
        println!("the written config does not validate (a drctl bug; please report it, and fix these by hand):");
        for e in errors {
            println!("  {e}");
        }
        return Ok(1);
    }
    println!();
    println!("next:");
    println!("  1. fill in the storage (FILL IN in the file); keep an offsite copy");
    if !plan.env_vars.is_empty() {
        println!("  2. set {} in drctl's environment", plan.env_vars.join(", "));
    } else {
        println!("  2. (no secrets to set for the stack itself)");
    }
    println!("  3. drctl validate --config {}", out.display());
    println!("  4. drctl backup --config {}", out.display());
    Ok(0)
}
