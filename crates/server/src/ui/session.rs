//! The web UI's sessions and single-use login codes (ADR 0019).
//!
//! A session is made by presenting a credential once (a pasted API token or OIDC JWT, or a
//! login code minted with one) and lives in the server's memory: the browser holds a random
//! 256-bit id in the `__Host-tv_session` cookie (`Secure; HttpOnly; SameSite=Strict`), the
//! server only its SHA-256. A session is the credential that made it, seen through a cookie:
//! the same principal (role, tenants, services), re-checked on every request (a revoked or
//! expired token, or an expired JWT, ends it), with an idle and an absolute timeout. Every
//! state-changing request made with the cookie must carry the session's CSRF token in
//! `X-CSRF-Token` and this server's origin in `Origin`.
//!
//! A login code is a credential too: 256 random bits, shown once (in a URL's fragment), stored
//! as its SHA-256, valid for [`LOGIN_CODE_TTL`], taken out of the table in one step when used
//! (so it works once), bound to the principal that minted it.
//!
//! A restart ends every session and unused code (they are not written to disk).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::HeaderMap;
use subtle::ConstantTimeEq;
use tv_access::{AuthError, Principal, TokenStore, now_unix};

use crate::config::UiSettings;

/// The session cookie (`__Host-`: set by this host only, `Secure`, `Path=/`, no `Domain`).
pub const COOKIE: &str = "__Host-tv_session";

/// The header carrying the session's CSRF token on state-changing requests.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// How long a login code may wait for its use.
pub const LOGIN_CODE_TTL: Duration = Duration::from_secs(300);

/// Sessions held at once; beyond it the oldest idle one is ended.
const MAX_SESSIONS: usize = 10_000;

/// Unused login codes held at once; beyond it minting is refused until some expire.
const MAX_CODES: usize = 1_000;

/// Unused login codes one principal may hold (so one user cannot fill the table).
const MAX_CODES_PER_PRINCIPAL: usize = 5;

/// Sessions one credential may hold; a new one ends that credential's least recently used
/// (so one credential signing in again and again cannot push everyone else's sessions out).
const MAX_SESSIONS_PER_CREDENTIAL: usize = 20;

/// How long an OIDC sign-in may take at the provider.
pub const OIDC_TTL: Duration = Duration::from_secs(600);

/// OIDC sign-ins under way at once; beyond it the oldest is dropped.
const MAX_PENDING_OIDC: usize = 1_000;

/// An OIDC sign-in under way: what the callback needs (PKCE verifier, nonce, landing page).
#[derive(Debug, Clone)]
pub struct PendingOidc {
    pub verifier: String,
    pub nonce: String,
    pub next: String,
    pub redirect_uri: String,
    started: Instant,
}

/// What keeps a session (or a login code) valid: the credential it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Binding {
    /// An API token: it must still exist, unrevoked and unexpired.
    Token(String),
    /// An OIDC JWT: valid until its `exp`.
    Jwt { expires_unix: u64 },
}

impl Binding {
    /// Whether the credential still holds.
    fn check(&self, tokens: &TokenStore) -> Result<(), AuthError> {
        match self {
            Binding::Token(id) => match tokens.get(id) {
                None => Err(AuthError::Revoked),
                Some(t) if t.revoked => Err(AuthError::Revoked),
                Some(t) if t.expires_unix.is_some_and(|e| now_unix() >= e) => {
                    Err(AuthError::Expired)
                }
                Some(_) => Ok(()),
            },
            Binding::Jwt { expires_unix } if now_unix() >= *expires_unix => Err(AuthError::Expired),
            Binding::Jwt { .. } => Ok(()),
        }
    }
}

struct Session {
    principal: Principal,
    binding: Binding,
    csrf: String,
    created: Instant,
    last_used: Instant,
}

struct LoginCode {
    principal: Principal,
    binding: Binding,
    next: String,
    expires: Instant,
    /// Minted through a UI session: when that session began (a session cannot outlive its
    /// absolute timeout by minting a link to itself).
    session_started: Option<Instant>,
}

/// A redeemed login code: who it signs in, as what, where to, and since when the session counts.
pub struct Redeemed {
    pub principal: Principal,
    pub binding: Binding,
    pub next: String,
    pub started: Option<Instant>,
}

/// A session as the page sees it (`GET /ui/session`).
#[derive(Debug, Clone)]
pub struct SessionView {
    pub principal: Principal,
    pub binding: Binding,
    pub csrf: String,
    /// Seconds until the session ends if unused, and at the latest.
    pub idle_secs: u64,
    pub max_secs: u64,
    /// When the session began (what its absolute timeout counts from).
    pub started: Instant,
}

/// A new session: the cookie value (shown to the browser once) and its view.
pub struct NewSession {
    pub cookie: String,
    pub view: SessionView,
}

/// The sessions and login codes of this server.
pub struct Sessions {
    settings: UiSettings,
    sessions: Mutex<HashMap<[u8; 32], Session>>,
    codes: Mutex<HashMap<[u8; 32], LoginCode>>,
    oidc: Mutex<HashMap<[u8; 32], PendingOidc>>,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Sessions({:?})", self.settings)
    }
}

/// 256 random bits, base64url.
fn random_secret() -> String {
    let mut b = [0u8; 32];
    aws_lc_rs::rand::fill(&mut b).expect("system random");
    URL_SAFE_NO_PAD.encode(b)
}

fn digest(secret: &str) -> [u8; 32] {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, secret.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// Why a session cookie did not authenticate (never its value).
fn ended(why: &str) -> AuthError {
    AuthError::Rejected(format!("UI session {why}: sign in again"))
}

impl Sessions {
    pub fn new(settings: UiSettings) -> Self {
        Sessions {
            settings,
            sessions: Mutex::new(HashMap::new()),
            codes: Mutex::new(HashMap::new()),
            oidc: Mutex::new(HashMap::new()),
        }
    }

    /// Starts an OIDC sign-in: returns its `state` (for the provider and the browser's cookie)
    /// and what the callback will need. Only the state's SHA-256 is kept.
    pub fn begin_oidc(&self, next: String, redirect_uri: String) -> (String, PendingOidc) {
        let state = random_secret();
        let p = PendingOidc {
            verifier: random_secret(),
            nonce: random_secret(),
            next,
            redirect_uri,
            started: Instant::now(),
        };
        let mut map = self.oidc.lock().expect("oidc lock");
        map.retain(|_, x| x.started.elapsed() < OIDC_TTL);
        if map.len() >= MAX_PENDING_OIDC
            && let Some(k) = map.iter().min_by_key(|(_, x)| x.started).map(|(k, _)| *k)
        {
            map.remove(&k);
        }
        map.insert(digest(&state), p.clone());
        (state, p)
    }

    /// Takes the sign-in `state` names (once; expired ones are gone).
    pub fn take_oidc(&self, state: &str) -> Option<PendingOidc> {
        self.oidc
            .lock()
            .expect("oidc lock")
            .remove(&digest(state))
            .filter(|p| p.started.elapsed() < OIDC_TTL)
    }

    pub fn settings(&self) -> UiSettings {
        self.settings
    }

    /// Starts a session for a credential just checked.
    pub fn create(&self, principal: Principal, binding: Binding) -> NewSession {
        self.create_since(principal, binding, Instant::now())
    }

    /// Starts a session whose absolute timeout counts from `started` (a login link minted by
    /// a session carries that session's start).
    pub fn create_since(
        &self,
        principal: Principal,
        binding: Binding,
        started: Instant,
    ) -> NewSession {
        let cookie = random_secret();
        let csrf = random_secret();
        let now = Instant::now();
        let mut map = self.sessions.lock().expect("session lock");
        self.expire(&mut map, now);
        let lru = |map: &HashMap<[u8; 32], Session>, same: bool| {
            map.iter()
                .filter(|(_, s)| !same || s.binding == binding)
                .min_by_key(|(_, s)| s.last_used)
                .map(|(k, _)| *k)
        };
        let mine = map.values().filter(|s| s.binding == binding).count();
        if mine >= MAX_SESSIONS_PER_CREDENTIAL
            && let Some(k) = lru(&map, true)
        {
            map.remove(&k);
        }
        if map.len() >= MAX_SESSIONS
            && let Some(k) = lru(&map, false)
        {
            map.remove(&k);
        }
        let view = SessionView {
            principal: principal.clone(),
            binding: binding.clone(),
            csrf: csrf.clone(),
            idle_secs: self.settings.session_idle.as_secs(),
            max_secs: self
                .settings
                .session_max
                .saturating_sub(now.duration_since(started))
                .as_secs(),
            started,
        };
        map.insert(
            digest(&cookie),
            Session {
                principal,
                binding,
                csrf,
                created: started,
                last_used: now,
            },
        );
        NewSession { cookie, view }
    }

    fn expire(&self, map: &mut HashMap<[u8; 32], Session>, now: Instant) {
        map.retain(|_, s| {
            now.duration_since(s.last_used) < self.settings.session_idle
                && now.duration_since(s.created) < self.settings.session_max
        });
    }

    /// The session a cookie value names, if it still holds (its credential re-checked); marks
    /// it used.
    pub fn lookup(&self, cookie: &str, tokens: &TokenStore) -> Result<SessionView, AuthError> {
        let key = digest(cookie);
        let now = Instant::now();
        let mut map = self.sessions.lock().expect("session lock");
        let Some(s) = map.get_mut(&key) else {
            return Err(ended("is unknown or has ended"));
        };
        let idle = now.duration_since(s.last_used);
        let age = now.duration_since(s.created);
        let refusal = if idle >= self.settings.session_idle {
            Some(ended(&format!(
                "was idle for more than {} s",
                self.settings.session_idle.as_secs()
            )))
        } else if age >= self.settings.session_max {
            Some(ended(&format!(
                "is older than {} s",
                self.settings.session_max.as_secs()
            )))
        } else {
            s.binding.check(tokens).err().map(|e| {
                ended(&match e {
                    AuthError::Expired => "ended: its credential has expired".to_string(),
                    _ => "ended: its credential has been revoked".to_string(),
                })
            })
        };
        if let Some(e) = refusal {
            map.remove(&key);
            return Err(e);
        }
        s.last_used = now;
        Ok(SessionView {
            principal: s.principal.clone(),
            binding: s.binding.clone(),
            csrf: s.csrf.clone(),
            idle_secs: self.settings.session_idle.as_secs(),
            max_secs: self
                .settings
                .session_max
                .saturating_sub(age)
                .as_secs()
                .max(1),
            started: s.created,
        })
    }

    /// Ends the session a cookie names (logout); whether there was one.
    pub fn end(&self, cookie: &str) -> bool {
        self.sessions
            .lock()
            .expect("session lock")
            .remove(&digest(cookie))
            .is_some()
    }

    /// Mints a login code for `principal`, landing on `next`.
    pub fn mint_code(
        &self,
        principal: Principal,
        binding: Binding,
        next: String,
        session_started: Option<Instant>,
    ) -> Result<String, crate::error::ApiError> {
        let now = Instant::now();
        let mut codes = self.codes.lock().expect("code lock");
        codes.retain(|_, c| c.expires > now);
        let id = principal.id();
        if codes.values().filter(|c| c.principal.id() == id).count() >= MAX_CODES_PER_PRINCIPAL {
            // The caller's quota, not the server's capacity: 429 with when to retry.
            let wait = codes
                .values()
                .filter(|c| c.principal.id() == id)
                .map(|c| c.expires.saturating_duration_since(now).as_secs() + 1)
                .min()
                .unwrap_or(LOGIN_CODE_TTL.as_secs());
            return Err(crate::error::ApiError::RateLimited(
                format!(
                    "{MAX_CODES_PER_PRINCIPAL} of your login links are waiting to be used; use them or wait until one expires ({wait} s)"
                ),
                wait,
            ));
        }
        if codes.len() >= MAX_CODES {
            return Err(crate::error::ApiError::Unavailable(format!(
                "{MAX_CODES} login links are waiting to be used; wait until some expire ({} s)",
                LOGIN_CODE_TTL.as_secs()
            )));
        }
        let code = random_secret();
        codes.insert(
            digest(&code),
            LoginCode {
                principal,
                binding,
                next,
                expires: now + LOGIN_CODE_TTL,
                session_started,
            },
        );
        Ok(code)
    }

    /// Who a login code would sign in, without using it (the page asks before it spends it).
    pub fn peek_code(&self, code: &str, tokens: &TokenStore) -> Result<Principal, AuthError> {
        let codes = self.codes.lock().expect("code lock");
        match codes.get(&digest(code)) {
            Some(c) if c.expires > Instant::now() && c.binding.check(tokens).is_ok() => {
                Ok(c.principal.clone())
            }
            _ => Err(AuthError::Rejected(
                "login link is unknown, already used or expired (links work once, for 5 minutes): mint a new one with `tracevault login-url`".into(),
            )),
        }
    }

    /// Uses a login code: taken out of the table in the same step that finds it, so a second
    /// use (or a racing one) finds nothing. Returns who minted it, its binding and its page.
    pub fn redeem(&self, code: &str, tokens: &TokenStore) -> Result<Redeemed, AuthError> {
        let taken = self.codes.lock().expect("code lock").remove(&digest(code));
        let refused = || {
            AuthError::Rejected(
                "login link is unknown, already used or expired (links work once, for 5 minutes): mint a new one with `tracevault login-url`".into(),
            )
        };
        let c = taken.ok_or_else(refused)?;
        if c.expires <= Instant::now() {
            return Err(refused());
        }
        c.binding.check(tokens).map_err(|e| {
            AuthError::Rejected(format!(
                "login link's credential no longer holds ({e}): mint a new one"
            ))
        })?;
        Ok(Redeemed {
            principal: c.principal,
            binding: c.binding,
            next: c.next,
            started: c.session_started,
        })
    }
}

/// The session cookie's value in a request, if any.
pub fn cookie(headers: &HeaderMap) -> Option<&str> {
    named_cookie(headers, COOKIE)
}

/// A cookie's value in a request, if any.
pub fn named_cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
}

/// The PKCE S256 challenge of a verifier (RFC 7636).
pub fn pkce_challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(digest(verifier))
}

/// The `Set-Cookie` value for a new session.
pub fn set_cookie(value: &str, max: Duration) -> String {
    format!(
        "{COOKIE}={value}; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age={}",
        max.as_secs()
    )
}

/// The `Set-Cookie` value that removes the session cookie.
pub fn clear_cookie() -> String {
    format!("{COOKIE}=; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=0")
}

/// The request comes from a page of this server: its `Origin` is this server's own (the
/// scheme the listener speaks, and the `Host` it was asked for). Browsers send `Origin` on
/// every POST and DELETE, so a missing one is refused too.
pub fn same_origin(headers: &HeaderMap, host: Option<&str>, https: bool) -> Result<(), String> {
    let origin = headers
        .get(http::header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .ok_or("a state change with the UI session needs an Origin header")?;
    let host = host.ok_or("the request names no host")?;
    let own = format!("{}://{host}", if https { "https" } else { "http" });
    if origin.eq_ignore_ascii_case(&own) {
        Ok(())
    } else {
        Err(format!(
            "Origin {origin:?} is not this server's ({own}): cross-site requests may not use the UI session"
        ))
    }
}

/// The CSRF token in a request matches the session's.
pub fn csrf_ok(headers: &HeaderMap, view: &SessionView) -> bool {
    headers
        .get(CSRF_HEADER)
        .map(|v| bool::from(v.as_bytes().ct_eq(view.csrf.as_bytes())))
        .unwrap_or(false)
}

/// Checks `next` for a login link: a path of this UI (and its query), never another origin.
pub fn check_next(next: &str) -> Result<String, String> {
    let bad = |why: &str| {
        Err(format!(
            "next must be a path of this UI such as /trace/<id> or /search?q=...: {why}"
        ))
    };
    if next.len() > 2048 {
        return bad("longer than 2048 bytes");
    }
    if !next.starts_with('/') || next.starts_with("//") || next.contains('\\') {
        return bad("not a same-origin relative path");
    }
    if next.chars().any(|c| c.is_control() || c == '#') {
        return bad("it holds a control character or a fragment");
    }
    let base = url::Url::parse("https://tracevault.invalid/").expect("base");
    let u = base.join(next).map_err(|e| format!("next: {e}"))?;
    if u.origin() != base.origin() {
        return bad("it leaves this origin");
    }
    if !super::is_page(u.path()) {
        return bad("no page of the UI has that path");
    }
    Ok(match u.query() {
        Some(q) => format!("{}?{q}", u.path()),
        None => u.path().to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_takes_only_this_uis_pages() {
        assert_eq!(check_next("/").unwrap(), "/");
        assert_eq!(check_next("/search?q=%7B%7D").unwrap(), "/search?q=%7B%7D");
        let t = format!("/trace/{}", "ab".repeat(16));
        assert_eq!(check_next(&t).unwrap(), t);
        for bad in [
            "https://evil.example/",
            "//evil.example/",
            "/\\evil.example",
            "evil",
            "javascript:alert(1)",
            "/trace/xyz",
            "/api/admin/tokens",
            "/search#x",
            "/se\narch",
        ] {
            assert!(check_next(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_cookie_is_found_among_others() {
        let mut h = HeaderMap::new();
        h.insert(
            http::header::COOKIE,
            format!("a=1; {COOKIE}=abc; b=2").parse().unwrap(),
        );
        assert_eq!(cookie(&h), Some("abc"));
        assert_eq!(cookie(&HeaderMap::new()), None);
    }
}
