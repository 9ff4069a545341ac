//! Bearer tokens for the admin API: who may read, write or administer.
//!
//! Tokens come from a file named in the config, one per line: `name role token`, `#` comments
//! and blank lines ignored. Roles are ordered `read` < `write` < `admin`. There is no default
//! token: without a file nothing but the open endpoints (health, readiness, metrics) answers.
//! Knows nothing of HTTP beyond the `Authorization` header value.

use std::fmt;
use std::path::Path;

use crate::lists::store::Who;

/// What a token may do. Each role includes the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    Read,
    Write,
    Admin,
}

impl Role {
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "read" => Some(Role::Read),
            "write" => Some(Role::Write),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Read => "read",
            Role::Write => "write",
            Role::Admin => "admin",
        }
    }
}

/// Shortest token accepted: guessable tokens are refused at load.
pub const MIN_TOKEN_LEN: usize = 16;

#[derive(Debug, Clone)]
struct Token {
    name: String,
    role: Role,
    secret: Vec<u8>,
}

/// The loaded token table.
#[derive(Debug, Clone, Default)]
pub struct Tokens {
    tokens: Vec<Token>,
}

/// Why a request was not let through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    /// No token or an unknown one: 401.
    Unauthenticated,
    /// A known token whose role is too low: 403.
    Forbidden,
}

/// Who made a request, for the audit trail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub name: String,
    pub role: Role,
    /// The address the request came from (`ip:port`), when it came over a socket.
    pub source: Option<String>,
}

impl Caller {
    /// The caller as the audit trail names it.
    pub fn who(&self) -> Who<'_> {
        Who {
            name: &self.name,
            source: self.source.as_deref(),
        }
    }
}

/// A bad line in the tokens file, naming file and line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokensError(pub String);

impl fmt::Display for TokensError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TokensError {}

impl Tokens {
    pub fn load(path: &Path) -> Result<Tokens, TokensError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| TokensError(format!("{}: {e}", path.display())))?;
        Tokens::parse(&text, &path.display().to_string())
    }

    pub fn parse(text: &str, file: &str) -> Result<Tokens, TokensError> {
        let mut tokens: Vec<Token> = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let l = line.trim();
            if l.is_empty() || l.starts_with('#') {
                continue;
            }
            let at = |m: String| TokensError(format!("{file}:{}: {m}", i + 1));
            let f: Vec<&str> = l.split_whitespace().collect();
            let [name, role, secret] = f[..] else {
                return Err(at(format!(
                    "expected `name role token`, found {} fields",
                    f.len()
                )));
            };
            let role = Role::parse(role).ok_or_else(|| {
                at(format!(
                    "role {role:?} unknown; expected read, write or admin"
                ))
            })?;
            if secret.len() < MIN_TOKEN_LEN {
                return Err(at(format!(
                    "token of {name:?} is {} characters; expected at least {MIN_TOKEN_LEN}",
                    secret.len()
                )));
            }
            if tokens.iter().any(|t| t.name == name) {
                return Err(at(format!("name {name:?} appears twice")));
            }
            if tokens.iter().any(|t| t.secret == secret.as_bytes()) {
                return Err(at(format!(
                    "token of {name:?} is also used by another name"
                )));
            }
            tokens.push(Token {
                name: name.to_string(),
                role,
                secret: secret.as_bytes().to_vec(),
            });
        }
        Ok(Tokens { tokens })
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// Check an `Authorization` header value against the role a request needs.
    pub fn authorize(&self, header: Option<&[u8]>, need: Role) -> Result<Caller, Denied> {
        let presented = header
            .and_then(|h| {
                let h = h.trim_ascii();
                let (scheme, rest) = h.split_at(h.len().min(7));
                scheme
                    .eq_ignore_ascii_case(b"bearer ")
                    .then_some(rest.trim_ascii())
            })
            .ok_or(Denied::Unauthenticated)?;
        // Compare against every token without stopping early, so the time taken does not tell
        // how much of a guess was right or which token it was close to.
        let mut found: Option<&Token> = None;
        for t in &self.tokens {
            if ct_eq(&t.secret, presented) {
                found = Some(t);
            }
        }
        let t = found.ok_or(Denied::Unauthenticated)?;
        if t.role < need {
            return Err(Denied::Forbidden);
        }
        Ok(Caller {
            name: t.name.clone(),
            role: t.role,
            source: None,
        })
    }
}

fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "# ops\nalice admin aaaaaaaaaaaaaaaaaaaa\nbob write bbbbbbbbbbbbbbbbbbbb\n\ncarol read cccccccccccccccccccc\n";

    #[test]
    fn authorize_by_role() {
        let t = Tokens::parse(FILE, "tokens").unwrap();
        let h = |s: &'static str| Some(s.as_bytes());
        type Case<'a> = (Option<&'a [u8]>, Role, Result<&'a str, Denied>);
        let cases: &[Case] = &[
            (None, Role::Read, Err(Denied::Unauthenticated)),
            (h("Bearer nope"), Role::Read, Err(Denied::Unauthenticated)),
            (
                h("Basic cccccccccccccccccccc"),
                Role::Read,
                Err(Denied::Unauthenticated),
            ),
            (h("Bearer cccccccccccccccccccc"), Role::Read, Ok("carol")),
            (h("bearer  cccccccccccccccccccc "), Role::Read, Ok("carol")),
            (
                h("Bearer cccccccccccccccccccc"),
                Role::Write,
                Err(Denied::Forbidden),
            ),
            (h("Bearer bbbbbbbbbbbbbbbbbbbb"), Role::Write, Ok("bob")),
            (
                h("Bearer bbbbbbbbbbbbbbbbbbbb"),
                Role::Admin,
                Err(Denied::Forbidden),
            ),
            (h("Bearer aaaaaaaaaaaaaaaaaaaa"), Role::Admin, Ok("alice")),
            (
                h("Bearer aaaaaaaaaaaaaaaaaaa"),
                Role::Read,
                Err(Denied::Unauthenticated),
            ),
        ];
        for (hdr, need, want) in cases {
            let got = t.authorize(*hdr, *need).map(|c| c.name);
            assert_eq!(got.as_deref().map_err(|e| *e), *want, "{hdr:?} {need:?}");
        }
    }

    #[test]
    fn bad_files_name_the_line() {
        for (text, want) in [
            ("x admin short", "t:1: token of \"x\" is 5 characters"),
            (
                "\nx root aaaaaaaaaaaaaaaaaaaa",
                "t:2: role \"root\" unknown",
            ),
            ("x admin", "t:1: expected `name role token`"),
            (
                "x read aaaaaaaaaaaaaaaaaaaa\nx read bbbbbbbbbbbbbbbbbbbb",
                "t:2: name \"x\" appears twice",
            ),
        ] {
            let e = Tokens::parse(text, "t").unwrap_err();
            assert!(e.0.starts_with(want), "{} vs {want}", e.0);
        }
        assert!(Tokens::parse("# none\n", "t").unwrap().is_empty());
    }
}
