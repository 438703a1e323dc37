//! Secrets in messages: URLs with their passwords replaced.

/// The URL with its password replaced, for logs and `Debug`.
pub fn redact_url(s: &str) -> String {
    match url::Url::parse(s) {
        Ok(mut u) => {
            if u.password().is_some() {
                let _ = u.set_password(Some("REDACTED"));
            }
            u.to_string()
        }
        Err(_) => "<unparseable url>".into(),
    }
}
