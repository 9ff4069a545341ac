//! Console sessions: a login exchanges an API token for a random session id kept in an
//! `HttpOnly`, `SameSite=Strict` cookie, with an expiry, and a CSRF token every write must
//! carry. The table is bounded: when it is full the session closest to its end goes first.
//!
//! Ids and CSRF tokens are 32 random bytes from the operating system (`ring`'s `SystemRandom`),
//! compared in constant time. Knows nothing of HTTP beyond cookie text, nor of pages.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ring::rand::{SecureRandom, SystemRandom};

use crate::api::auth::Role;

/// The session cookie's name.
pub const COOKIE: &str = "sg_session";
/// The login form's double-submit cookie: set with the form, compared with its hidden field.
pub const LOGIN_COOKIE: &str = "sg_login";

/// One logged-in operator.
#[derive(Debug, Clone)]
pub struct Session {
    /// The token's name, as the audit trail names it.
    pub name: String,
    pub role: Role,
    /// The token every write of this session must carry.
    pub csrf: String,
    pub expires: Instant,
}

/// The sessions in force.
#[derive(Debug)]
pub struct Sessions {
    ttl: Duration,
    max: usize,
    table: Mutex<HashMap<String, Session>>,
    rng: SystemRandom,
}

/// 32 random bytes as hex; `None` only when the system's random source fails.
pub fn random_hex(rng: &SystemRandom) -> Option<String> {
    let mut b = [0u8; 32];
    rng.fill(&mut b).ok()?;
    Some(b.iter().map(|x| format!("{x:02x}")).collect())
}

/// Equal texts, in time that does not depend on where they differ.
pub fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

impl Sessions {
    pub fn new(ttl: Duration, max: usize) -> Sessions {
        Sessions {
            ttl,
            max: max.max(1),
            table: Mutex::new(HashMap::new()),
            rng: SystemRandom::new(),
        }
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// A random token for a login form.
    pub fn login_token(&self) -> Option<String> {
        random_hex(&self.rng)
    }

    /// Open a session for `name`: its id (the cookie's value) and the session.
    pub fn open(&self, name: &str, role: Role, now: Instant) -> Option<(String, Session)> {
        let id = random_hex(&self.rng)?;
        let s = Session {
            name: name.to_string(),
            role,
            csrf: random_hex(&self.rng)?,
            expires: now + self.ttl,
        };
        let mut t = self.table.lock().unwrap_or_else(|p| p.into_inner());
        t.retain(|_, s| s.expires > now);
        if t.len() >= self.max {
            let oldest = t
                .iter()
                .min_by_key(|(_, s)| s.expires)
                .map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                t.remove(&k);
            }
        }
        t.insert(id.clone(), s.clone());
        Some((id, s))
    }

    /// The session behind a cookie value, while it lasts.
    pub fn get(&self, id: &str, now: Instant) -> Option<Session> {
        let mut t = self.table.lock().unwrap_or_else(|p| p.into_inner());
        let s = t.get(id)?;
        if s.expires <= now {
            t.remove(id);
            return None;
        }
        Some(s.clone())
    }

    pub fn close(&self, id: &str) {
        let mut t = self.table.lock().unwrap_or_else(|p| p.into_inner());
        t.remove(id);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.table.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The value of cookie `name` in a `Cookie` header.
pub fn cookie<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header.split(';').find_map(|kv| {
        let (k, v) = kv.trim().split_once('=')?;
        (k == name).then_some(v)
    })
}

/// A `Set-Cookie` value for the console's path: `HttpOnly`, `SameSite=Strict`, `Secure` over
/// HTTPS, living `max_age` seconds (0 deletes it).
pub fn set_cookie(name: &str, value: &str, max_age: u64, secure: bool) -> String {
    format!(
        "{name}={value}; Path=/console; Max-Age={max_age}; HttpOnly; SameSite=Strict{}",
        if secure { "; Secure" } else { "" }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_expire_and_the_table_is_bounded() {
        let s = Sessions::new(Duration::from_secs(60), 3);
        let t0 = Instant::now();
        let (a, sa) = s.open("ops", Role::Admin, t0).unwrap();
        assert_eq!(a.len(), 64);
        assert_ne!(sa.csrf, a);
        assert_eq!(s.get(&a, t0).unwrap().name, "ops");
        assert!(s.get(&a, t0 + Duration::from_secs(60)).is_none(), "expired");
        assert!(s.is_empty(), "an expired session is forgotten when seen");
        let ids: Vec<String> = (0..5)
            .map(|i| {
                s.open("v", Role::Read, t0 + Duration::from_secs(i))
                    .unwrap()
                    .0
            })
            .collect();
        assert_eq!(s.len(), 3);
        let now = t0 + Duration::from_secs(5);
        assert!(s.get(&ids[0], now).is_none() && s.get(&ids[1], now).is_none());
        assert!(s.get(&ids[4], now).is_some());
        s.close(&ids[4]);
        assert!(s.get(&ids[4], now).is_none());
        assert!(s.get("not-an-id", now).is_none());
    }

    #[test]
    fn cookies_and_comparison() {
        let h = "a=1; sg_session=abc; sg_login=xyz";
        assert_eq!(cookie(h, COOKIE), Some("abc"));
        assert_eq!(cookie(h, LOGIN_COOKIE), Some("xyz"));
        assert_eq!(cookie(h, "b"), None);
        let c = set_cookie(COOKIE, "abc", 60, true);
        assert!(c.contains("HttpOnly") && c.contains("SameSite=Strict") && c.ends_with("Secure"));
        assert!(!set_cookie(COOKIE, "abc", 60, false).contains("Secure"));
        assert!(same("abc", "abc") && !same("abc", "abd") && !same("abc", "ab"));
    }
}
