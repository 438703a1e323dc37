//! Roles with the data. A database dump names its roles (owners, grants) but does not hold
//! them: they are cluster-wide. So every PostgreSQL backup, host or container, also takes
//! `pg_dumpall --globals-only` in the same run (roles with their password hashes, memberships),
//! kept encrypted in the manifest's private facts (it holds password hashes). A restore creates
//! the roles the target lacks from it, with their attributes and password hashes, before
//! pg_restore runs, so a brand-new server takes the dump with its owners and the application
//! logs in with its old password. Existing roles are never altered; `--no-owner` skips all of
//! it.
//!
//! The globals are parsed, not run as they are: only `CREATE ROLE`, `ALTER ROLE` and role
//! membership `GRANT`s of the missing roles are executed, each statement split out with a lexer
//! that respects quoting (a role name with a `;` in it stays one identifier), memberships
//! rebuilt from the parsed names. Tablespaces and settings are left to the operator.
//!
//! By hand: `jq -r .private MANIFEST.json | age -d -i key.txt | jq -r .globals > globals.sql`,
//! then `psql -f globals.sql` (it errors on roles that exist, harmlessly).

use anyhow::{bail, Result};
use std::collections::BTreeSet;

/// The roles of a `pg_dumpall --globals-only` output.
#[derive(Debug, Default, PartialEq)]
pub struct Globals {
    pub roles: Vec<Role>,
    /// (role, member): `GRANT role TO member`.
    pub memberships: Vec<(String, String)>,
}

#[derive(Debug, PartialEq)]
pub struct Role {
    pub name: String,
    /// `CREATE ROLE …;` then `ALTER ROLE … WITH …;` and `ALTER ROLE … SET …;`, verbatim.
    pub statements: Vec<String>,
}

/// The most globals a backup keeps (they are in the manifest): far more than any real cluster.
pub const MAX_GLOBALS: usize = 8 << 20;

/// Splits SQL into statements at `;` outside quotes and comments, dropping `--` comments.
/// Quoting that psql reads differently from this lexer (dollar quotes, `E'…'` escapes,
/// block comments) is refused: pg_dumpall writes none of it for roles, and a script psql
/// would split elsewhere could smuggle a statement past the filter.
fn statements(sql: &str) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = sql.chars().peekable();
    let mut prev = ' ';
    while let Some(c) = chars.next() {
        match c {
            '$' => bail!("dollar quoting ('$') outside a quoted string"),
            // psql meta-commands: pg_dumpall (15.14+, 16.10+) brackets its output with
            // `\restrict KEY` / `\unrestrict KEY` lines; any other one (`\!` runs a shell) or
            // one inside a statement is refused, so none can reach the psql that runs the script.
            '\\' if cur.trim().is_empty() => {
                let line: String = std::iter::once(c)
                    .chain(chars.by_ref().take_while(|d| *d != '\n'))
                    .collect();
                let cmd = line.split_whitespace().next().unwrap_or("");
                if cmd != "\\restrict" && cmd != "\\unrestrict" {
                    bail!("a psql meta-command ('{cmd}')");
                }
                cur.clear();
            }
            '\\' => bail!("a backslash outside a quoted string"),
            '/' if chars.peek() == Some(&'*') => bail!("a block comment ('/*')"),
            '\'' if matches!(prev, 'e' | 'E')
                && !cur
                    .trim_end_matches(['e', 'E'])
                    .ends_with(|p: char| p.is_alphanumeric() || p == '_') =>
            {
                bail!("an E'…' string (backslash escapes)")
            }
            '\'' | '"' => {
                cur.push(c);
                let mut closed = false;
                while let Some(d) = chars.next() {
                    cur.push(d);
                    if d == c {
                        if chars.peek() == Some(&c) {
                            cur.push(chars.next().unwrap());
                        } else {
                            closed = true;
                            break;
                        }
                    }
                }
                if !closed {
                    bail!("an unterminated {} quote", if c == '"' { "double" } else { "single" });
                }
            }
            '-' if chars.peek() == Some(&'-') => {
                for d in chars.by_ref() {
                    if d == '\n' {
                        break;
                    }
                }
                cur.push(' ');
            }
            ';' => {
                let s = cur.trim();
                if !s.is_empty() {
                    out.push(format!("{s};"));
                }
                cur.clear();
            }
            c => cur.push(c),
        }
        prev = cur.chars().last().unwrap_or(' ');
    }
    if !cur.trim().is_empty() {
        bail!("a statement without its ';' at the end");
    }
    Ok(out)
}

/// An identifier at the start of `s` (`"quoted ""name"""` or a plain one), and the rest.
fn ident(s: &str) -> Option<(String, &str)> {
    let s = s.trim_start();
    if let Some(rest) = s.strip_prefix('"') {
        let mut name = String::new();
        let mut it = rest.char_indices().peekable();
        while let Some((i, c)) = it.next() {
            if c == '"' {
                if let Some((_, '"')) = it.peek() {
                    it.next();
                    name.push('"');
                } else {
                    return (!name.is_empty()).then(|| (name, &rest[i + 1..]));
                }
            } else {
                name.push(c);
            }
        }
        None
    } else {
        let end = s
            .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == '$'))
            .unwrap_or(s.len());
        (end > 0 && !s.starts_with(|c: char| c.is_ascii_digit() || c == '$'))
            .then(|| (s[..end].to_lowercase(), &s[end..]))
    }
}

fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// Strips a case-insensitive keyword sequence from the start of `s`.
fn keyword<'a>(s: &'a str, words: &str) -> Option<&'a str> {
    let mut rest = s.trim_start();
    for w in words.split(' ') {
        let head = rest.get(..w.len())?;
        if !head.eq_ignore_ascii_case(w) {
            return None;
        }
        rest = &rest[w.len()..];
        if !rest.is_empty() && !rest.starts_with(|c: char| c.is_whitespace() || c == ';') {
            return None;
        }
        rest = rest.trim_start();
    }
    Some(rest)
}

pub fn parse(sql: &str) -> Result<Globals> {
    let mut g = Globals::default();
    for st in statements(sql)? {
        if let Some(rest) = keyword(&st, "CREATE ROLE") {
            let Some((name, tail)) = ident(rest) else {
                bail!(
                    "cannot read the role name in '{}'",
                    st.chars().take(80).collect::<String>()
                );
            };
            if tail.trim() != ";" {
                bail!("unexpected text after CREATE ROLE {}", quote_ident(&name));
            }
            g.roles.push(Role {
                name,
                statements: vec![st.clone()],
            });
        } else if let Some(rest) = keyword(&st, "ALTER ROLE") {
            let Some((name, tail)) = ident(rest) else {
                bail!(
                    "cannot read the role name in '{}'",
                    st.chars().take(80).collect::<String>()
                );
            };
            if keyword(tail, "WITH").is_none() && keyword(tail, "SET").is_none() {
                continue;
            }
            match g.roles.iter_mut().find(|r| r.name == name) {
                Some(r) => r.statements.push(st.clone()),
                None => bail!("ALTER ROLE {} before its CREATE ROLE", quote_ident(&name)),
            }
        } else if let Some(rest) = keyword(&st, "GRANT") {
            // Role memberships: GRANT role TO member [WITH …] [GRANTED BY …]. Object
            // privileges (GRANT … ON …) are not in --globals-only except on tablespaces.
            let Some((role, tail)) = ident(rest) else { continue };
            let Some(tail) = keyword(tail, "TO") else { continue };
            let Some((member, _)) = ident(tail) else { continue };
            g.memberships.push((role, member));
        }
    }
    Ok(g)
}

/// The script that creates the roles of `g` missing from `existing`, and their names.
/// Memberships are granted where both sides exist afterwards and the member is new.
pub fn creation_script(g: &Globals, existing: &BTreeSet<String>) -> (String, Vec<String>) {
    let mut created = Vec::new();
    let mut script = String::from("begin;\n");
    for r in g.roles.iter().filter(|r| !existing.contains(&r.name)) {
        for st in &r.statements {
            script.push_str(st);
            script.push('\n');
        }
        created.push(r.name.clone());
    }
    let all: BTreeSet<&str> = existing
        .iter()
        .map(String::as_str)
        .chain(created.iter().map(String::as_str))
        .collect();
    for (role, member) in &g.memberships {
        if created.contains(member) && all.contains(role.as_str()) {
            script.push_str(&format!("grant {} to {};\n", quote_ident(role), quote_ident(member)));
        }
    }
    script.push_str("commit;\n");
    (script, created)
}

/// Takes the globals with `run(no_role_passwords)`: first with password hashes, then without
/// (reading them needs a superuser). Returns the globals and, when something was left out, why.
/// A backup never fails over its globals: the dump is the data.
pub async fn capture<F, Fut>(source: &str, run: F) -> (Option<String>, Option<String>)
where
    F: Fn(bool) -> Fut,
    Fut: std::future::Future<Output = Result<String>>,
{
    let (sql, note) = match run(false).await {
        Ok(sql) => (sql, None),
        Err(first) => match run(true).await {
            Ok(sql) => (
                sql,
                Some(format!(
                    "role passwords not included (pg_dumpall could not read them: {}); restored roles get no password",
                    one_line(&first)
                )),
            ),
            Err(e) => {
                tracing::warn!(source = %source, error = %format!("{e:#}"), "cannot take the roles (pg_dumpall --globals-only); a restore onto a new server needs them made by hand or --no-owner");
                return (None, Some(format!("roles not recorded: {}", one_line(&e))));
            }
        },
    };
    if sql.len() > MAX_GLOBALS {
        return (
            None,
            Some(format!("roles not recorded: pg_dumpall printed {} bytes", sql.len())),
        );
    }
    if let Err(e) = parse(&sql) {
        return (
            None,
            Some(format!(
                "roles not recorded: pg_dumpall's output could not be read: {e}"
            )),
        );
    }
    if let Some(n) = &note {
        tracing::warn!(source = %source, "{n}");
    }
    (Some(sql), note)
}

fn one_line(e: &anyhow::Error) -> String {
    let s = format!("{e:#}");
    let s = s
        .lines()
        .find(|l| l.contains("ERROR") || l.contains("error"))
        .unwrap_or(s.lines().next().unwrap_or(""));
    s.chars().take(300).collect()
}

/// Lists the roles of the target server, one per line (for [`creation_script`]).
pub const LIST_ROLES: &str = "select rolname from pg_roles";

#[cfg(test)]
mod tests {
    use super::*;

    const DUMPALL16: &str = r#"\restrict 3vX9aG2kLmN0pQ
--
-- PostgreSQL database cluster dump
--

SET default_transaction_read_only = off;

SET client_encoding = 'UTF8';
SET standard_conforming_strings = on;

--
-- Roles
--

CREATE ROLE app;
ALTER ROLE app WITH SUPERUSER INHERIT CREATEROLE CREATEDB LOGIN REPLICATION BYPASSRLS PASSWORD 'SCRAM-SHA-256$4096:abc=$def=:ghi=';
CREATE ROLE "Web App; drop table x --";
ALTER ROLE "Web App; drop table x --" WITH NOSUPERUSER INHERIT NOCREATEROLE NOCREATEDB LOGIN NOREPLICATION NOBYPASSRLS PASSWORD 'SCRAM-SHA-256$4096:x;y';
ALTER ROLE "Web App; drop table x --" SET search_path TO 'app', 'public';
CREATE ROLE readers;
ALTER ROLE readers WITH NOSUPERUSER INHERIT NOCREATEROLE NOCREATEDB NOLOGIN NOREPLICATION NOBYPASSRLS;

--
-- User Configurations
--

--
-- Role memberships
--

GRANT readers TO "Web App; drop table x --" WITH INHERIT TRUE GRANTED BY app;

--
-- PostgreSQL database cluster dump complete
--

\unrestrict 3vX9aG2kLmN0pQ
"#;

    #[test]
    fn roles_and_memberships_are_read_with_quoting_respected() {
        let g = parse(DUMPALL16).unwrap();
        let names: Vec<&str> = g.roles.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["app", "Web App; drop table x --", "readers"]);
        assert_eq!(g.roles[1].statements.len(), 3);
        assert!(g.roles[1].statements[1].ends_with("PASSWORD 'SCRAM-SHA-256$4096:x;y';"));
        assert_eq!(
            g.memberships,
            [("readers".to_string(), "Web App; drop table x --".to_string())]
        );
    }

    #[test]
    fn only_missing_roles_are_created_and_existing_ones_never_altered() {
        let g = parse(DUMPALL16).unwrap();
        let existing: BTreeSet<String> = ["app", "postgres"].iter().map(|s| s.to_string()).collect();
        let (script, created) = creation_script(&g, &existing);
        assert_eq!(created, ["Web App; drop table x --", "readers"]);
        assert!(!script.contains("ROLE app"), "{script}");
        assert!(
            script.contains("grant \"readers\" to \"Web App; drop table x --\";"),
            "{script}"
        );
        assert!(script.starts_with("begin;\n") && script.ends_with("commit;\n"));
        let all: BTreeSet<String> = names(&g);
        let (script, created) = creation_script(&g, &all);
        assert!(created.is_empty());
        assert_eq!(script, "begin;\ncommit;\n");
    }

    fn names(g: &Globals) -> BTreeSet<String> {
        g.roles.iter().map(|r| r.name.clone()).collect()
    }

    #[test]
    fn damaged_globals_are_refused() {
        assert!(parse("CREATE ROLE \"open;\n").is_err());
        assert!(parse("CREATE ROLE app").is_err());
        assert!(parse("ALTER ROLE ghost WITH LOGIN;").is_err());
        assert!(parse("CREATE ROLE app; DROP TABLE x;").unwrap().roles.len() == 1);
        assert!(parse("CREATE ROLE app extra;").is_err());
        // Quoting psql would read differently is refused, not filtered.
        let e = parse("ALTER ROLE x WITH PASSWORD $$a;").unwrap_err();
        assert!(e.to_string().contains("dollar"), "{e}");
        let e = parse("CREATE ROLE x;\nALTER ROLE x WITH PASSWORD E'a\\'; DROP DATABASE prod; --';").unwrap_err();
        assert!(e.to_string().contains("E'"), "{e}");
        assert!(parse("CREATE ROLE x; /* ; */").is_err());
        let e = parse("CREATE ROLE x;\nALTER ROLE x WITH LOGIN \\! touch /tmp/pwned\n;").unwrap_err();
        assert!(e.to_string().contains("backslash"), "{e}");
        let e = parse("\\! touch /tmp/pwned\nCREATE ROLE x;").unwrap_err();
        assert!(e.to_string().contains("meta-command"), "{e}");
        // A role named like the keyword is fine.
        assert_eq!(
            parse("CREATE ROLE e;\nALTER ROLE e WITH LOGIN PASSWORD 'x';")
                .unwrap()
                .roles[0]
                .statements
                .len(),
            2
        );
    }
}
