//! Compose's variable interpolation (`$VAR`, `${VAR}`, `${VAR:-default}`, `${VAR-default}`,
//! `${VAR:?error}`, `${VAR?error}`, `${VAR:+alt}`, `${VAR+alt}`, `$$` for a literal `$`), as
//! the Compose specification defines it. Defaults may themselves hold references.
//!
//! Besides expanding a string, this module answers the question `init --from-compose` cares
//! about most: *which variable* a value came from, so the written config can refer to it by
//! name (`${REDIS_PASSWORD}`) instead of copying a secret.

use std::collections::BTreeMap;

/// Where variables come from: the process environment first, then the `.env` beside the
/// compose file (Compose's precedence).
#[derive(Default, Clone)]
pub struct Vars {
    pub env: BTreeMap<String, String>,
    pub dotenv: BTreeMap<String, String>,
}

impl Vars {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.env.get(name).or_else(|| self.dotenv.get(name)).map(String::as_str)
    }
}

// Variable values are secrets: never print them.
impl std::fmt::Debug for Vars {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vars")
            .field("env", &self.env.keys().collect::<Vec<_>>())
            .field("dotenv", &self.dotenv.keys().collect::<Vec<_>>())
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InterpolateError {
    #[error("'{text}': unterminated ${{ (close it with }}, or write $$ for a literal $)")]
    Unterminated { text: String },
    #[error("'{text}': '${{{inner}}}' is not a variable reference")]
    Invalid { text: String, inner: String },
    /// `${VAR:?message}` with VAR unset: Compose refuses the file.
    #[error("variable {name} is required: {message} (set it in .env or the environment)")]
    Required { name: String, message: String },
}

/// A `${…}` or `$NAME` found in a string, before expansion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    pub name: String,
}

fn is_name_start(c: char) -> bool {
    c == '_' || c.is_ascii_alphabetic()
}

fn is_name_char(c: char) -> bool {
    c == '_' || c.is_ascii_alphanumeric()
}

/// Splits `text` into literal pieces and references. Shared by `expand` and `references`.
enum Piece<'a> {
    Literal(std::borrow::Cow<'a, str>),
    /// name, operator (":-", "-", ":?", "?", ":+", "+" or ""), the operand (unexpanded)
    Ref(&'a str, &'a str, &'a str),
}

fn pieces(text: &str) -> Result<Vec<Piece<'_>>, InterpolateError> {
    let mut out = Vec::new();
    let mut lit_start = 0;
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'$' {
            i += 1;
            continue;
        }
        if lit_start < i {
            out.push(Piece::Literal(text[lit_start..i].into()));
        }
        match b.get(i + 1) {
            Some(b'$') => {
                out.push(Piece::Literal("$".into()));
                i += 2;
            }
            Some(b'{') => {
                // Find the matching brace: defaults may nest references.
                let mut depth = 1;
                let mut j = i + 2;
                while j < b.len() && depth > 0 {
                    match b[j] {
                        b'{' => depth += 1,
                        b'}' => depth -= 1,
                        _ => {}
                    }
                    j += 1;
                }
                if depth > 0 {
                    return Err(InterpolateError::Unterminated { text: text.into() });
                }
                let inner = &text[i + 2..j - 1];
                let name_len = inner.find(|c: char| !is_name_char(c)).unwrap_or(inner.len());
                let (name, rest) = inner.split_at(name_len);
                if name.is_empty() || !name.starts_with(is_name_start) {
                    return Err(InterpolateError::Invalid {
                        text: text.into(),
                        inner: inner.into(),
                    });
                }
                let op = [":-", ":?", ":+", "-", "?", "+"]
                    .into_iter()
                    .find(|op| rest.starts_with(op))
                    .unwrap_or("");
                if op.is_empty() && !rest.is_empty() {
                    return Err(InterpolateError::Invalid {
                        text: text.into(),
                        inner: inner.into(),
                    });
                }
                out.push(Piece::Ref(name, op, &rest[op.len()..]));
                i = j;
            }
            Some(&c) if is_name_start(c as char) => {
                let mut j = i + 1;
                while j < b.len() && is_name_char(b[j] as char) {
                    j += 1;
                }
                out.push(Piece::Ref(&text[i + 1..j], "", ""));
                i = j;
            }
            // A lone `$` (end of string, `$1`, `$ `) stays as written, as Compose does.
            _ => {
                out.push(Piece::Literal("$".into()));
                i += 1;
            }
        }
        lit_start = i;
    }
    if lit_start < b.len() {
        out.push(Piece::Literal(text[lit_start..].into()));
    }
    Ok(out)
}

/// `text` with every reference replaced. Unset variables without a default expand to the empty
/// string (Compose warns; `unset` collects their names for the caller to report).
pub fn expand(text: &str, vars: &Vars, unset: &mut Vec<String>) -> Result<String, InterpolateError> {
    let mut out = String::new();
    for p in pieces(text)? {
        match p {
            Piece::Literal(s) => out.push_str(&s),
            Piece::Ref(name, op, operand) => {
                let value = vars.get(name);
                let empty = value.is_none_or(str::is_empty);
                match op {
                    "" => match value {
                        Some(v) => out.push_str(v),
                        None => {
                            if !unset.iter().any(|u| u == name) {
                                unset.push(name.to_string());
                            }
                        }
                    },
                    ":-" if empty => out.push_str(&expand(operand, vars, unset)?),
                    "-" if value.is_none() => out.push_str(&expand(operand, vars, unset)?),
                    ":?" if empty => return Err(required(name, operand, vars, unset)?),
                    "?" if value.is_none() => return Err(required(name, operand, vars, unset)?),
                    ":+" => {
                        if !empty {
                            out.push_str(&expand(operand, vars, unset)?)
                        }
                    }
                    "+" => {
                        if value.is_some() {
                            out.push_str(&expand(operand, vars, unset)?)
                        }
                    }
                    _ => out.push_str(value.unwrap_or_default()),
                }
            }
        }
    }
    Ok(out)
}

fn required(
    name: &str,
    operand: &str,
    vars: &Vars,
    unset: &mut Vec<String>,
) -> Result<InterpolateError, InterpolateError> {
    Ok(InterpolateError::Required {
        name: name.into(),
        message: expand(operand, vars, unset)?,
    })
}

/// Every variable `text` refers to, outermost first (defaults' references too).
pub fn references(text: &str) -> Vec<Reference> {
    let mut out = Vec::new();
    if let Ok(ps) = pieces(text) {
        for p in ps {
            if let Piece::Ref(name, _, operand) = p {
                out.push(Reference { name: name.into() });
                out.extend(references(operand));
            }
        }
    }
    out
}

/// The variable `text` consists of, when it is exactly one reference (`$X`, `${X}`,
/// `${X:-default}`…) and nothing else.
pub fn sole_reference(text: &str) -> Option<String> {
    match pieces(text).ok()?.as_slice() {
        [Piece::Ref(name, _, _)] => Some(name.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vars {
        Vars {
            env: BTreeMap::new(),
            dotenv: pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        }
    }

    fn x(text: &str, v: &Vars) -> String {
        expand(text, v, &mut Vec::new()).unwrap()
    }

    #[test]
    fn compose_interpolation_rules() {
        let v = vars(&[("A", "one"), ("EMPTY", "")]);
        assert_eq!(x("${A}", &v), "one");
        assert_eq!(x("$A-x", &v), "one-x");
        assert_eq!(x("pre${A}post", &v), "preonepost");
        assert_eq!(x("$$A", &v), "$A");
        assert_eq!(x("$${A}", &v), "${A}");
        assert_eq!(x("${NOPE:-d}", &v), "d");
        assert_eq!(x("${EMPTY:-d}", &v), "d");
        assert_eq!(x("${EMPTY-d}", &v), "");
        assert_eq!(x("${NOPE-d}", &v), "d");
        assert_eq!(x("${NOPE:-${A}}", &v), "one");
        assert_eq!(x("${A:+alt}", &v), "alt");
        assert_eq!(x("${EMPTY:+alt}", &v), "");
        assert_eq!(x("${EMPTY+alt}", &v), "alt");
        assert_eq!(x("cost $ 5", &v), "cost $ 5");
        let mut unset = Vec::new();
        assert_eq!(expand("${NOPE}/$NOPE", &v, &mut unset).unwrap(), "/");
        assert_eq!(unset, vec!["NOPE".to_string()]);
        assert!(matches!(
            expand("${NOPE:?set it}", &v, &mut Vec::new()),
            Err(InterpolateError::Required { .. })
        ));
        assert!(matches!(
            expand("${A", &v, &mut Vec::new()),
            Err(InterpolateError::Unterminated { .. })
        ));
    }

    #[test]
    fn the_environment_wins_over_dotenv() {
        let mut v = vars(&[("A", "file")]);
        v.env.insert("A".into(), "shell".into());
        assert_eq!(x("${A}", &v), "shell");
    }

    #[test]
    fn references_name_the_variables() {
        assert_eq!(sole_reference("${REDIS_PASSWORD}").as_deref(), Some("REDIS_PASSWORD"));
        assert_eq!(sole_reference("$P").as_deref(), Some("P"));
        assert_eq!(sole_reference("${P:-x}").as_deref(), Some("P"));
        assert_eq!(sole_reference("x${P}"), None);
        assert_eq!(sole_reference("$$P"), None);
        let names: Vec<String> = references("${A:-${B}}$C").into_iter().map(|r| r.name).collect();
        assert_eq!(names, ["A", "B", "C"]);
    }
}
