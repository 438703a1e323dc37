//! `drctl init`.

use super::*;

const STARTER: &str = include_str!("starter.toml");

pub(super) fn init(dir: &std::path::Path) -> Result<i32> {
    std::fs::create_dir_all(dir)?;
    let config = dir.join("drctl.toml");
    let identity = dir.join("identity.txt");
    for p in [&config, &identity] {
        if p.exists() {
            bail!(
                "{} already exists; refusing to overwrite it (choose another --dir)",
                p.display()
            );
        }
    }
    let recipient = crate::keys::keygen(Some(&identity))?;
    let text = STARTER.replace("RECIPIENT", &recipient);
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&config)?;
        f.write_all(text.as_bytes())?;
    }
    println!(
        "wrote {} (mode 0600): one local storage, no sources yet",
        config.display()
    );
    println!(
        "wrote {} (mode 0600): the private key; public key {recipient}",
        identity.display()
    );
    println!();
    println!("next:");
    println!(
        "  1. move {} OFF this machine: a password manager and a printed copy.",
        identity.display()
    );
    println!(
        "     The server needs only the public key (already in drctl.toml); the identity is for restore and verify."
    );
    println!("     Without it no backup can ever be restored.");
    println!(
        "  2. add your [[source]] blocks (examples are in the file), then: drctl validate --config {}",
        config.display()
    );
    println!("  3. drctl backup --config {}", config.display());
    Ok(0)
}
