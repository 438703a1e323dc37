//! age keys: recipients (public, on the backup host) and identities (private, kept offline).

use anyhow::{bail, Context, Result};
use std::io::Write;
use std::path::Path;

pub type Identities = Vec<Box<dyn age::Identity + Send + Sync>>;

pub fn parse_recipient(s: &str) -> Result<age::x25519::Recipient, String> {
    if s.starts_with("AGE-SECRET-KEY-") {
        return Err("this is a private identity, not a public recipient; put only the age1… public key here and keep the identity offline".into());
    }
    s.parse::<age::x25519::Recipient>().map_err(|e| {
        format!("'{s}' is not an age public key ({e}); it looks like age1… (from `drctl keygen` or `age-keygen -y`)")
    })
}

/// A new identity in the same text format as `age-keygen`, written with mode 0600.
/// Refuses to overwrite: losing the only copy of an identity loses every backup made for it.
pub fn keygen(output: Option<&Path>) -> Result<String> {
    use age::secrecy::ExposeSecret;
    let identity = age::x25519::Identity::generate();
    let recipient = identity.to_public().to_string();
    let text = format!(
        "# created: {}\n# public key: {}\n{}\n",
        chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        recipient,
        identity.to_string().expose_secret()
    );
    match output {
        Some(path) => {
            use std::os::unix::fs::OpenOptionsExt;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .map_err(|e| {
                    if e.kind() == std::io::ErrorKind::AlreadyExists {
                        anyhow::anyhow!(
                            "{} already exists; refusing to overwrite an identity (choose another --output, or move the old file away after you have a copy)",
                            path.display()
                        )
                    } else {
                        anyhow::anyhow!("cannot create {}: {e}", path.display())
                    }
                })?;
            f.write_all(text.as_bytes())?;
            f.sync_all()?;
        }
        None => {
            std::io::stdout().write_all(text.as_bytes())?;
        }
    }
    Ok(recipient)
}

/// Set to 1 to accept config and identity files that group or others can read.
pub const ALLOW_INSECURE: &str = "DRCTL_ALLOW_INSECURE_PERMISSIONS";

/// A config, identity or password file readable by group or others is refused: the config
/// names the storage credentials, the identity decrypts every backup.
pub fn check_private(path: &Path, what: &str) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).ok()?.permissions().mode();
    if mode & 0o077 == 0 || std::env::var(ALLOW_INSECURE).as_deref() == Ok("1") {
        return None;
    }
    Some(format!(
        "{what} file {} can be read by group or others (mode {:o}); run `chmod 600 {}` (or set {ALLOW_INSECURE}=1 to accept it)",
        path.display(),
        mode & 0o777,
        path.display()
    ))
}

/// Loads every identity in an age identity file (the `age-keygen` format).
pub fn load_identities(path: &Path) -> Result<Identities> {
    let meta = std::fs::metadata(path).with_context(|| {
        format!(
            "cannot read identity file {} (pass --identity FILE or set encryption.identity_file)",
            path.display()
        )
    })?;
    if !meta.is_file() {
        bail!("identity file {} is not a regular file", path.display());
    }
    if let Some(e) = check_private(path, "identity") {
        bail!(e);
    }
    let file = age::IdentityFile::from_file(path.to_string_lossy().into_owned())
        .with_context(|| format!("cannot parse identity file {}", path.display()))?;
    let ids = file
        .into_identities()
        .map_err(|e| anyhow::anyhow!("cannot use identity file {}: {e}", path.display()))?;
    if ids.is_empty() {
        bail!(
            "identity file {} holds no identity (expected a line starting with AGE-SECRET-KEY-)",
            path.display()
        );
    }
    Ok(ids)
}

/// `data`, age-encrypted to `recipients` in ASCII armor (`-----BEGIN AGE ENCRYPTED FILE-----`),
/// for small secrets kept inside JSON (a manifest's private facts). `age -d -i key` reads it.
pub fn seal_text(recipients: &[&age::x25519::Recipient], data: &[u8]) -> Result<String> {
    use age::armor::{ArmoredWriter, Format};
    let encryptor = age::Encryptor::with_recipients(recipients.iter().map(|r| *r as &dyn age::Recipient))
        .map_err(|e| anyhow::anyhow!("cannot set up encryption: {e}"))?;
    let mut out = Vec::new();
    let armor = ArmoredWriter::wrap_output(&mut out, Format::AsciiArmor)?;
    let mut w = encryptor.wrap_output(armor)?;
    w.write_all(data)?;
    w.finish()?.finish()?;
    Ok(String::from_utf8(out).expect("ASCII armor is ASCII"))
}

/// The plaintext of `seal_text`'s output.
pub fn open_text(identities: &Identities, armored: &str) -> Result<Vec<u8>> {
    use std::io::Read;
    let d = age::Decryptor::new(age::armor::ArmoredReader::new(armored.as_bytes()))
        .map_err(|e| anyhow::anyhow!("not an age-encrypted text: {e}"))?;
    let mut r = d
        .decrypt(identities.iter().map(|i| i.as_ref() as &dyn age::Identity))
        .map_err(|e| match e {
            age::DecryptError::NoMatchingKeys => {
                anyhow::anyhow!("wrong identity: it is not one of the recipients this was encrypted to")
            }
            e => anyhow::anyhow!("cannot decrypt: {e}"),
        })?;
    let mut out = Vec::new();
    r.read_to_end(&mut out)?;
    Ok(out)
}
