//! Secrets in messages: URLs with their passwords replaced.

/// Schemes whose URL user, given without a password, is itself the secret: a NATS token
/// (`nats://TOKEN@host`, as the NATS CLI and nats.go read it).
const TOKEN_SCHEMES: &[&str] = &["nats", "tls", "ws", "wss"];

/// The URL with its password (or token) replaced, for logs and `Debug`.
pub fn redact_url(s: &str) -> String {
    match url::Url::parse(s) {
        Ok(mut u) => {
            if u.password().is_some() {
                let _ = u.set_password(Some("REDACTED"));
            } else if !u.username().is_empty() && TOKEN_SCHEMES.contains(&u.scheme()) {
                let _ = u.set_username("REDACTED");
            }
            u.to_string()
        }
        Err(_) => "<unparseable url>".into(),
    }
}

/// A URL's percent-encoded user or password, decoded (`p%40ss` → `p@ss`).
pub fn decode_userinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match (
            b[i],
            b.get(i + 1).copied().and_then(hex),
            b.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (c, ..) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_and_nats_tokens_are_redacted() {
        assert_eq!(redact_url("nats://u:p%40ss@h:4222"), "nats://u:REDACTED@h:4222");
        assert_eq!(redact_url("nats://s3cr3t@h:4222"), "nats://REDACTED@h:4222");
        assert_eq!(redact_url("postgres://app@h/db"), "postgres://app@h/db");
        assert_eq!(decode_userinfo("p%40ss%2Fw+x"), "p@ss/w+x");
        assert_eq!(decode_userinfo("100%"), "100%");
    }
}
