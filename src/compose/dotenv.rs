//! The `.env` file beside a compose file, read as Compose reads it: `KEY=value` lines (an
//! optional `export ` prefix), `#` comments, single quotes literal, double quotes with escapes
//! and interpolation, unquoted values trimmed, interpolated and cut at ` #`. Values may refer
//! to the environment and to earlier lines.

use super::interpolate::{expand, Vars};
use std::collections::BTreeMap;

/// The variables a `.env` text defines. `env` is the process environment, which its values
/// may refer to (as to earlier lines); errors name the line.
pub fn parse(text: &str, env: &BTreeMap<String, String>) -> Result<BTreeMap<String, String>, String> {
    let mut vars = Vars {
        env: env.clone(),
        dotenv: BTreeMap::new(),
    };
    let mut lines = text.lines().enumerate();
    while let Some((n, line)) = lines.next() {
        let line = line.trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line).trim_start();
        let Some(eq) = line.find('=') else {
            return Err(format!(".env line {}: no '=' (write KEY=value)", n + 1));
        };
        let key = line[..eq].trim();
        if key.is_empty()
            || !key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '-')
        {
            return Err(format!(".env line {}: '{key}' is not a variable name", n + 1));
        }
        let raw = line[eq + 1..].trim_start();
        let value = match raw.chars().next() {
            Some(q @ ('\'' | '"')) => {
                // A quoted value may span lines, up to the closing quote.
                let mut body = raw[1..].to_string();
                let close = loop {
                    if let Some(i) = closing_quote(&body, q) {
                        break i;
                    }
                    match lines.next() {
                        Some((_, more)) => {
                            body.push('\n');
                            body.push_str(more);
                        }
                        None => return Err(format!(".env line {}: the value's {q} is never closed", n + 1)),
                    }
                };
                let inner = &body[..close];
                if q == '\'' {
                    inner.to_string()
                } else {
                    let unescaped = unescape(inner);
                    expand(&unescaped, &vars, &mut Vec::new()).map_err(|e| format!(".env line {}: {e}", n + 1))?
                }
            }
            _ => {
                let cut = raw.find(" #").or_else(|| raw.find("\t#")).unwrap_or(raw.len());
                let v = raw[..cut].trim();
                expand(v, &vars, &mut Vec::new()).map_err(|e| format!(".env line {}: {e}", n + 1))?
            }
        };
        vars.dotenv.insert(key.to_string(), value);
    }
    Ok(vars.dotenv)
}

fn closing_quote(body: &str, q: char) -> Option<usize> {
    let mut escaped = false;
    for (i, c) in body.char_indices() {
        if q == '"' && c == '\\' && !escaped {
            escaped = true;
            continue;
        }
        if c == q && !escaped {
            return Some(i);
        }
        escaped = false;
    }
    None
}

fn unescape(s: &str) -> String {
    let mut out = String::new();
    let mut it = s.chars();
    while let Some(c) = it.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match it.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some(o) => out.push(o),
            None => out.push('\\'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dotenv_lines_as_compose_reads_them() {
        let text =
            "# comment\n\nA=plain  # note\nexport B='lit ${A} #x'\nC=\"q ${A}\\n\"\nD=${A}-x\nM=\"two\nlines\"\nE=\n";
        let v = parse(text, &BTreeMap::new()).unwrap();
        assert_eq!(v["A"], "plain");
        assert_eq!(v["B"], "lit ${A} #x");
        assert_eq!(v["C"], "q plain\n");
        assert_eq!(v["D"], "plain-x");
        assert_eq!(v["M"], "two\nlines");
        assert_eq!(v["E"], "");
        assert!(parse("JUSTAWORD\n", &BTreeMap::new()).unwrap_err().contains("line 1"));
    }
}
