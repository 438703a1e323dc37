//! `${VAR}` expansion in string values, after TOML parsing so that a secret containing a quote
//! or a newline cannot change the structure of the file. `$${` writes a literal `${`.
//!
//! A command expands only the keys it uses ([`Uses`]): a CI job that restores last night's
//! backup needs the storage credentials and the identity, not the production database
//! password. A value a command does not use and whose variable is unset stays as written and
//! is listed in `Config::unexpanded`; everything else unset is an error naming key and variable.

/// What a command reads of the config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Uses {
    /// Every key: `validate` (which must report every unset variable), `backup`, the daemon,
    /// and every command not listed below.
    All,
    /// `restore`: the storages and the identity; of a source only what names and describes
    /// it (name, type, retention, verification SQL), never how to reach it (the target comes
    /// from `--target-url` or `--output-dir`). Neither jobs, notifications nor `[verify]`.
    Restore,
    /// `verify`: like `restore`, plus `[verify]` (its sandbox) and `[[notify]]` (it reports).
    Verify,
}

impl Uses {
    fn needs(self, key: &str) -> bool {
        let source_access = key.strip_prefix("source[").is_some_and(|rest| {
            let field = rest.split_once("].").map(|(_, f)| f).unwrap_or("");
            let field = field.split(['.', '[']).next().unwrap_or("");
            !matches!(field, "name" | "type" | "retention" | "verify")
        });
        match self {
            Uses::All => true,
            Uses::Restore => {
                !(source_access || key.starts_with("job[") || key.starts_with("notify[") || key.starts_with("verify."))
            }
            Uses::Verify => !(source_access || key.starts_with("job[")),
        }
    }
}

/// Expands every string in `table`. A failure on a key `uses` needs goes to `errors`; one on a
/// key it does not need leaves the value as written and goes to `unexpanded`.
pub fn expand_table(
    table: &mut toml::Table,
    prefix: &str,
    uses: Uses,
    errors: &mut Vec<String>,
    unexpanded: &mut Vec<String>,
) {
    for (k, v) in table.iter_mut() {
        let key = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        expand_value(v, &key, uses, errors, unexpanded);
    }
}

fn expand_value(v: &mut toml::Value, key: &str, uses: Uses, errors: &mut Vec<String>, unexpanded: &mut Vec<String>) {
    match v {
        toml::Value::String(s) => match expand_str(s, |name| std::env::var(name).ok()) {
            Ok(out) => *s = out,
            Err(e) if uses.needs(key) => errors.push(format!("{key}: {e}")),
            Err(e) => unexpanded.push(format!("{key}: {e}")),
        },
        toml::Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                expand_value(item, &format!("{key}[{i}]"), uses, errors, unexpanded);
            }
        }
        toml::Value::Table(t) => expand_table(t, key, uses, errors, unexpanded),
        _ => {}
    }
}

/// Expands `${NAME}` using `lookup`. Unset variables are errors, not empty strings: an empty
/// password silently sent to a server is worse than a refusal to start.
pub fn expand_str(s: &str, lookup: impl Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos..];
        if let Some(stripped) = after.strip_prefix("$${") {
            out.push_str("${");
            rest = stripped;
        } else if let Some(stripped) = after.strip_prefix("${") {
            let end = stripped
                .find('}')
                .ok_or_else(|| format!("unterminated '${{' in '{}' (write $${{ for a literal)", redact_hint(s)))?;
            let name = &stripped[..end];
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(format!("'${{{name}}}' is not a valid environment variable name"));
            }
            match lookup(name) {
                Some(v) => out.push_str(&v),
                None => {
                    return Err(format!(
                    "environment variable {name} is not set (export it; for the systemd unit add {name}=… to /etc/drctl/env, its EnvironmentFile=; with Doppler start drctl as `doppler run -- drctl …`)"
                ))
                }
            }
            rest = &stripped[end + 1..];
        } else {
            out.push('$');
            rest = &after[1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// Values that failed expansion were never expanded, so they hold no secret; still, keep
/// error lines short.
fn redact_hint(s: &str) -> String {
    s.chars().take(40).collect()
}

#[cfg(test)]
mod tests {
    use super::{expand_str, Uses};

    #[test]
    fn restore_and_verify_need_no_source_connection() {
        for key in ["source[0].url", "source[2].password_file", "source[0].access.url"] {
            assert!(Uses::All.needs(key), "{key}");
            assert!(!Uses::Restore.needs(key), "{key}");
            assert!(!Uses::Verify.needs(key), "{key}");
        }
        for key in [
            "source[0].name",
            "source[1].verify[0].sql",
            "storage[0].secret_access_key",
            "encryption.identity_file",
        ] {
            assert!(Uses::Restore.needs(key), "{key}");
            assert!(Uses::Verify.needs(key), "{key}");
        }
        assert!(!Uses::Restore.needs("notify[0].url"));
        assert!(Uses::Verify.needs("notify[0].url"));
        assert!(!Uses::Restore.needs("job[0].ping_url"));
        assert!(!Uses::Verify.needs("job[0].ping_url"));
    }

    fn env(name: &str) -> Option<String> {
        match name {
            "A" => Some("alpha".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn expands_known_and_keeps_plain_dollars() {
        assert_eq!(expand_str("x-${A}-$5-$${A}", env).unwrap(), "x-alpha-$5-${A}");
        assert_eq!(expand_str("${EMPTY}", env).unwrap(), "");
    }

    #[test]
    fn unset_and_malformed_are_errors_naming_the_variable() {
        let e = expand_str("${MISSING}", env).unwrap_err();
        assert!(e.contains("MISSING is not set"), "{e}");
        assert!(expand_str("${A", env).unwrap_err().contains("unterminated"));
        assert!(expand_str("${A-B}", env).unwrap_err().contains("not a valid"));
    }
}
