//! `${VAR}` expansion in string values, after TOML parsing so that a secret containing a quote
//! or a newline cannot change the structure of the file. `$${` writes a literal `${`.

pub fn expand_table(table: &mut toml::Table, prefix: &str, errors: &mut Vec<String>) {
    for (k, v) in table.iter_mut() {
        let key = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        expand_value(v, &key, errors);
    }
}

fn expand_value(v: &mut toml::Value, key: &str, errors: &mut Vec<String>) {
    match v {
        toml::Value::String(s) => match expand_str(s, |name| std::env::var(name).ok()) {
            Ok(out) => *s = out,
            Err(e) => errors.push(format!("{key}: {e}")),
        },
        toml::Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                expand_value(item, &format!("{key}[{i}]"), errors);
            }
        }
        toml::Value::Table(t) => expand_table(t, key, errors),
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
                    "environment variable {name} is not set (export it, or put it in the environment drctl runs with)"
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
    use super::expand_str;

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
