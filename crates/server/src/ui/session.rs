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
//! A restart ends every session and unused code (they are not written to disk). In a cluster
//! they are shared through the bucket as well (`shared`): a session or code made on one node
//! holds on every node, and ends (or is used) once for all of them.

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
    /// In a cluster: the version of its object in the bucket (None: not stored there).
    version: Option<String>,
    /// When this node last wrote it to the bucket (or read it from there).
    synced: Instant,
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
    /// A cluster's shared copy (the bucket).
    shared: std::sync::OnceLock<std::sync::Arc<super::shared::SharedUi>>,
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

/// An instant `unix` (seconds) stands for on this machine's monotonic clock.
fn instant_of(unix: u64) -> Instant {
    let ago = Duration::from_secs(now_unix().saturating_sub(unix));
    Instant::now().checked_sub(ago).unwrap_or_else(Instant::now)
}

/// The unix time (seconds) of an instant in the past.
fn unix_of(i: Instant) -> u64 {
    now_unix().saturating_sub(i.elapsed().as_secs())
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
            shared: std::sync::OnceLock::new(),
        }
    }

    /// Shares sessions, login codes and OIDC sign-ins with the cluster's other nodes through
    /// the bucket from now on.
    pub fn share(&self, shared: std::sync::Arc<super::shared::SharedUi>) {
        let _ = self.shared.set(shared);
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
        drop(map);
        if let Some(sh) = self.shared.get() {
            let stored = super::shared::StoredOidc {
                verifier: p.verifier.clone(),
                nonce: p.nonce.clone(),
                next: p.next.clone(),
                redirect_uri: p.redirect_uri.clone(),
                started_unix: now_unix(),
            };
            if let Err(e) = sh.put(super::shared::Kind::Oidc, &digest(&state), &stored, None) {
                tracing::warn!(error = %e, "cannot share an OIDC sign-in with the cluster; its callback works on this node only");
            }
        }
        (state, p)
    }

    /// Takes the sign-in `state` names (once, in the whole cluster; expired ones are gone).
    pub fn take_oidc(&self, state: &str) -> Option<PendingOidc> {
        use super::shared::{Kind, StoredOidc};
        let d = digest(state);
        let local = self.oidc.lock().expect("oidc lock").remove(&d);
        let Some(sh) = self.shared.get() else {
            return local.filter(|p| p.started.elapsed() < OIDC_TTL);
        };
        let p = match local {
            Some(p) => p,
            None => {
                let (o, _) = sh.get::<StoredOidc>(Kind::Oidc, &d).ok()??;
                PendingOidc {
                    verifier: o.verifier,
                    nonce: o.nonce,
                    next: o.next,
                    redirect_uri: o.redirect_uri,
                    started: instant_of(o.started_unix),
                }
            }
        };
        if p.started.elapsed() >= OIDC_TTL || !sh.claim(Kind::Oidc, &d).unwrap_or(false) {
            return None;
        }
        sh.delete(Kind::Oidc, &d);
        Some(p)
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
        let key = digest(&cookie);
        map.insert(
            key,
            Session {
                principal,
                binding,
                csrf,
                created: started,
                last_used: now,
                version: None,
                synced: now,
            },
        );
        drop(map);
        if let Some(sh) = self.shared.get() {
            let stored = self.stored_session(&key);
            match stored.map(|st| sh.put(super::shared::Kind::Session, &key, &st, None)) {
                Some(Ok(v)) => {
                    if let Some(s) = self.sessions.lock().expect("session lock").get_mut(&key) {
                        s.version = Some(v);
                    }
                }
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "cannot share a UI session with the cluster; it holds on this node only")
                }
                None => {}
            }
        }
        NewSession { cookie, view }
    }

    /// The session as the bucket keeps it.
    fn stored_session(&self, key: &[u8; 32]) -> Option<super::shared::StoredSession> {
        let map = self.sessions.lock().expect("session lock");
        let s = map.get(key)?;
        Some(super::shared::StoredSession {
            principal: super::shared::StoredPrincipal::from(&s.principal)?,
            binding: super::shared::StoredBinding::from(&s.binding),
            csrf: s.csrf.clone(),
            created_unix: unix_of(s.created),
            last_used_unix: unix_of(s.last_used),
        })
    }

    /// In a cluster: reads a session this node does not hold (made on another node), or one
    /// idle here long enough that a use on another node matters, from the bucket; forgets one
    /// the bucket no longer has (ended on another node).
    fn sync_session(&self, sh: &super::shared::SharedUi, key: &[u8; 32]) {
        use super::shared::{Kind, StoredSession};
        let need = match self.sessions.lock().expect("session lock").get(key) {
            None => true,
            Some(s) => {
                s.version.is_some() && s.last_used.elapsed() >= self.settings.session_idle / 2
            }
        };
        if !need {
            return;
        }
        let found = match sh.get::<StoredSession>(Kind::Session, key) {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read a UI session from the cluster's bucket");
                return;
            }
        };
        let now = Instant::now();
        let mut map = self.sessions.lock().expect("session lock");
        match found {
            None => {
                if map.get(key).is_some_and(|s| s.version.is_some()) {
                    map.remove(key);
                }
            }
            Some((st, version)) => {
                let last_used = instant_of(st.last_used_unix);
                if let Some(s) = map.get_mut(key) {
                    s.last_used = s.last_used.max(last_used);
                    s.version = Some(version);
                    s.synced = now;
                    return;
                }
                let (Some(principal), Some(binding)) =
                    (st.principal.principal(), st.binding.binding())
                else {
                    return;
                };
                self.expire(&mut map, now);
                if map.len() >= MAX_SESSIONS {
                    return;
                }
                map.insert(
                    *key,
                    Session {
                        principal,
                        binding,
                        csrf: st.csrf,
                        created: instant_of(st.created_unix),
                        last_used,
                        version: Some(version),
                        synced: now,
                    },
                );
            }
        }
    }

    /// Records a use in the bucket when this node has not for a quarter of the idle timeout
    /// (other nodes then see the session in use).
    fn touch_session(&self, sh: &super::shared::SharedUi, key: &[u8; 32]) {
        let version = {
            let mut map = self.sessions.lock().expect("session lock");
            let Some(s) = map.get_mut(key) else { return };
            if s.version.is_none() || s.synced.elapsed() < self.settings.session_idle / 4 {
                return;
            }
            s.synced = Instant::now();
            s.version.clone()
        };
        let Some(stored) = self.stored_session(key) else {
            return;
        };
        match sh.put(
            super::shared::Kind::Session,
            key,
            &stored,
            version.as_deref(),
        ) {
            Ok(v) => {
                if let Some(s) = self.sessions.lock().expect("session lock").get_mut(key) {
                    s.version = Some(v);
                }
            }
            // Another node recorded a use meanwhile: the next read takes its version.
            Err(e) => tracing::debug!(error = %e, "UI session use not recorded in the bucket"),
        }
    }

    /// Forgets the shared sessions the bucket no longer holds (ended on another node); `listed`
    /// is the bucket's listing, begun at `listed_at`.
    pub fn prune_shared(&self, listed: &std::collections::HashSet<[u8; 32]>, listed_at: Instant) {
        self.sessions
            .lock()
            .expect("session lock")
            .retain(|k, s| s.version.is_none() || s.synced > listed_at || listed.contains(k));
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
        let shared = self.shared.get();
        if let Some(sh) = shared {
            self.sync_session(sh, &key);
        }
        let known = self
            .sessions
            .lock()
            .expect("session lock")
            .contains_key(&key);
        let view = self.lookup_here(&key, tokens);
        if let Some(sh) = shared {
            match &view {
                Ok(_) => self.touch_session(sh, &key),
                // Ended here (idle, too old, its credential revoked): for every node.
                Err(_) if known => sh.delete(super::shared::Kind::Session, &key),
                Err(_) => {}
            }
        }
        view
    }

    fn lookup_here(&self, key: &[u8; 32], tokens: &TokenStore) -> Result<SessionView, AuthError> {
        let key = *key;
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

    /// Ends the session a cookie names (logout), on every node of a cluster; whether there was
    /// one here.
    pub fn end(&self, cookie: &str) -> bool {
        let key = digest(cookie);
        if let Some(sh) = self.shared.get() {
            sh.delete(super::shared::Kind::Session, &key);
        }
        self.sessions
            .lock()
            .expect("session lock")
            .remove(&key)
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
        let stored = self.shared.get().and_then(|_| {
            Some(super::shared::StoredCode {
                principal: super::shared::StoredPrincipal::from(&principal)?,
                binding: super::shared::StoredBinding::from(&binding),
                next: next.clone(),
                expires_unix: now_unix() + LOGIN_CODE_TTL.as_secs(),
                session_started_unix: session_started.map(unix_of),
            })
        });
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
        drop(codes);
        if let (Some(sh), Some(stored)) = (self.shared.get(), stored)
            && let Err(e) = sh.put(super::shared::Kind::Code, &digest(&code), &stored, None)
        {
            tracing::warn!(error = %e, "cannot share a login link with the cluster; it works on this node only");
        }
        Ok(code)
    }

    /// A code minted on another node of the cluster, from the bucket.
    fn shared_code(&self, d: &[u8; 32]) -> Option<LoginCode> {
        let sh = self.shared.get()?;
        let (c, _) = sh
            .get::<super::shared::StoredCode>(super::shared::Kind::Code, d)
            .ok()??;
        let left = c.expires_unix.saturating_sub(now_unix());
        Some(LoginCode {
            principal: c.principal.principal()?,
            binding: c.binding.binding()?,
            next: c.next,
            expires: Instant::now() + Duration::from_secs(left),
            session_started: c.session_started_unix.map(instant_of),
        })
    }

    /// Who a login code would sign in, without using it (the page asks before it spends it).
    pub fn peek_code(&self, code: &str, tokens: &TokenStore) -> Result<Principal, AuthError> {
        let d = digest(code);
        let here = self
            .codes
            .lock()
            .expect("code lock")
            .get(&d)
            .map(|c| LoginCode {
                principal: c.principal.clone(),
                binding: c.binding.clone(),
                next: c.next.clone(),
                expires: c.expires,
                session_started: c.session_started,
            });
        match here.or_else(|| self.shared_code(&d)) {
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
        let d = digest(code);
        let taken = self.codes.lock().expect("code lock").remove(&d);
        let refused = || {
            AuthError::Rejected(
                "login link is unknown, already used or expired (links work once, for 5 minutes): mint a new one with `tracevault login-url`".into(),
            )
        };
        let c = match self.shared.get() {
            None => taken.ok_or_else(refused)?,
            Some(sh) => {
                // Once in the whole cluster: only the node whose use marker is created goes on.
                let c = taken.or_else(|| self.shared_code(&d)).ok_or_else(refused)?;
                match sh.claim(super::shared::Kind::Code, &d) {
                    Ok(true) => sh.delete(super::shared::Kind::Code, &d),
                    Ok(false) => return Err(refused()),
                    Err(e) => {
                        return Err(AuthError::Rejected(format!(
                            "login link cannot be checked against the cluster's other nodes now ({e}); try again"
                        )));
                    }
                }
                c
            }
        };
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
