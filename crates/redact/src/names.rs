//! Whether a name says its value is a secret: one decision for attribute keys, URL parameters and
//! the names in free-text assignments (`STRIPE_SECRET_KEY=...`, `"clientSecret": "..."`,
//! `vendor API KEY ...`).
//!
//! A name is split into words in any case and separator (`clientSecret`, `CLIENT_SECRET`,
//! `client-secret` and `client.secret` are the same two words). The last word that names a secret
//! decides, and only value-shaped words may follow it (`token_value`, `password_hash`):
//! a describing word (`token_count`, `api_key_id`, `password_reset_sent_at`, `secret_name`)
//! means the value is about a secret, not one. `key` is a secret word only with a qualifier that
//! is not a data-structure key (`stripe_key`, `api_key`, not `cache_key`, `partition_key`).

/// How strongly a name says its value is a secret; what a value must look like follows from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Strength {
    /// `key` with nothing before it, `login`, `license`: a secret only when the value is random
    /// by its shape.
    BareKey,
    /// `<qualifier>_key`: the value must look like a key, not a structured identifier.
    Key,
    /// `token`, `api_key`, `auth`, `signature`, session ids: the value must look random.
    Token,
    /// `secret`, `client_secret`: whatever it holds beyond a placeholder (as free text, a space
    /// also assigns).
    Secret,
    /// Passwords, passphrases, credentials: any value.
    Password,
}

/// Words that follow the secret word and still name its value.
const VALUE_WORDS: &[&str] = &[
    "value",
    "val",
    "str",
    "string",
    "b64",
    "base64",
    "hex",
    "raw",
    "enc",
    "encrypted",
    "plain",
    "plaintext",
    "text",
    "data",
    "bytes",
    "base",
    "hash",
    "digest",
    "secret",
    "v1",
    "v2",
    "v3",
    "old",
    "new",
    "current",
    "prev",
    "previous",
    "next",
    "primary",
    "secondary",
];

/// Qualifiers before `key` that make it a data-structure or public key, not a secret.
const NOT_SECRET_KEY: &[&str] = &[
    "cache",
    "primary",
    "partition",
    "sort",
    "routing",
    "foreign",
    "object",
    "lookup",
    "dedup",
    "dedupe",
    "deduplication",
    "idempotency",
    "idempotent",
    "row",
    "hash",
    "range",
    "shard",
    "sharding",
    "message",
    "msg",
    "event",
    "i18n",
    "translation",
    "locale",
    "sequence",
    "public",
    "pub",
    "group",
    "bucket",
    "s3",
    "map",
    "dict",
    "correlation",
    "trace",
    "span",
    "ordering",
    "order",
    "composite",
    "unique",
    "natural",
    "surrogate",
    "join",
    "index",
    "idx",
    "field",
    "attribute",
    "attr",
    "label",
    "tag",
    "metric",
    "config",
    "setting",
    "settings",
    "property",
    "prop",
    "registry",
    "header",
    "query",
    "param",
    "json",
    "yaml",
    "dns",
    "host",
    "record",
    "entry",
    "item",
    "cursor",
    "page",
    "pagination",
    "continuation",
    "resume",
    "lock",
    "request",
    "feature",
    "flag",
    "experiment",
    "rate",
    "ratelimit",
    "throttle",
    "redis",
    "kafka",
    "memcache",
    "memcached",
    "file",
    "path",
    "column",
    "table",
    "db",
    "schema",
    "type",
    "sub",
    "parent",
    "child",
    "music",
    "piano",
    "hot",
    "short",
    "keyboard",
    "the",
    "a",
    "this",
    "that",
    "which",
    "each",
    "every",
    "no",
    "new",
    "next",
    "same",
    "missing",
    "unknown",
    "duplicate",
    "invalid",
];

/// One word's class, if it names a secret.
fn word_class(w: &str) -> Option<Strength> {
    const PASSWORD: &[&str] = &[
        "password",
        "passwords",
        "passwd",
        "passwort",
        "pwd",
        "pass",
        "passphrase",
        "passcode",
        "pword",
        "pw",
    ];
    const SECRET: &[&str] = &["secret", "secrets"];
    const TOKEN: &[&str] = &[
        "token",
        "apikey",
        "apitoken",
        "accesskey",
        "secretkey",
        "privatekey",
        "authkey",
        "appkey",
        "clientkey",
        "licensekey",
        "masterkey",
        "signingkey",
        "encryptionkey",
        "sessionkey",
        "accountkey",
        "subscriptionkey",
        "crumb",
        "auth",
        "sig",
        "signature",
        "sessionid",
        "jsessionid",
        "phpsessid",
        "sid",
        "pat",
        "otp",
        "totp",
        "jwt",
        // Credentials: an object's name as often as a value (`credentials=default`).
        "credential",
        "credentials",
        "creds",
    ];
    // Names that hold a secret only when the value is random (`sonar.login=<40 hex>`,
    // `license: <key>`), and a user or a product otherwise.
    const RANDOM_ONLY: &[&str] = &["login", "license", "licence"];
    if PASSWORD.contains(&w) {
        return Some(Strength::Password);
    }
    if SECRET.contains(&w) {
        return Some(Strength::Secret);
    }
    if TOKEN.contains(&w) {
        return Some(Strength::Token);
    }
    if w == "key" {
        return Some(Strength::Key);
    }
    if RANDOM_ONLY.contains(&w) {
        return Some(Strength::BareKey);
    }
    // Compounds written as one word (`DBPASSWORD`, `clientsecret`, `accesstoken`).
    if w.len() > 8 {
        if ["password", "passwd", "passphrase"]
            .iter()
            .any(|s| w.ends_with(s))
        {
            return Some(Strength::Password);
        }
        if w.ends_with("secret") {
            return Some(Strength::Secret);
        }
    }
    if w.len() > 5 && w.ends_with("token") {
        return Some(Strength::Token);
    }
    None
}

/// `name` split into lowercase words: at every non-alphanumeric character, at a lowercase or digit
/// followed by an uppercase letter, and before the last capital of a run followed by lowercase
/// (`APIKey` is `api key`).
pub fn words(name: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let chars: Vec<char> = name.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        if !c.is_alphanumeric() {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            continue;
        }
        if let Some(&p) = i.checked_sub(1).and_then(|j| chars.get(j)) {
            let next_lower = chars.get(i + 1).is_some_and(|n| n.is_lowercase());
            let boundary = c.is_uppercase()
                && ((p.is_lowercase() || p.is_ascii_digit()) || (p.is_uppercase() && next_lower));
            if boundary && !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
        }
        cur.extend(c.to_lowercase());
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// Whether `name` says its value is a secret, and how strongly.
pub fn secret_name(name: &str) -> Option<Strength> {
    secret_words(&words(name))
}

/// [`secret_name`] on words already split.
pub fn secret_words(ws: &[String]) -> Option<Strength> {
    let mut j = ws.len();
    while j > 0 {
        j -= 1;
        let w = ws[j].as_str();
        // `session_id`, `session.key`, `session-token`: a session's credential.
        if j > 0 && ws[j - 1] == "session" && matches!(w, "id" | "key" | "token" | "cookie") {
            return Some(Strength::Token);
        }
        if let Some(class) = word_class(w) {
            if class == Strength::BareKey && w != "key" {
                return Some(class);
            }
            let derived = ws[j + 1..].iter().any(|t| t == "hash" || t == "digest");
            let class = match class {
                Strength::Key => match j.checked_sub(1).map(|i| ws[i].as_str()) {
                    None => Strength::BareKey,
                    Some(q) if NOT_SECRET_KEY.contains(&q) => return None,
                    Some(q) if q.chars().all(|c| c.is_ascii_digit()) => Strength::BareKey,
                    Some(_) => Strength::Key,
                },
                // `password_hash`, `secret_digest`: what is stored is derived, still keyed.
                Strength::Password | Strength::Secret if derived => Strength::Token,
                c => c,
            };
            return Some(class);
        }
        if VALUE_WORDS.contains(&w) || w.chars().all(|c| c.is_ascii_digit()) {
            continue;
        }
        return None;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_split_into_words_in_any_case_and_separator() {
        for (name, want) in [
            ("clientSecret", "client secret"),
            ("CLIENT_SECRET", "client secret"),
            ("client-secret", "client secret"),
            ("okta.client.secret", "okta client secret"),
            ("APIKey", "api key"),
            ("x-api-key", "x api key"),
            ("OAuth2Token", "o auth2 token"),
            ("aws_secret_access_key", "aws secret access key"),
        ] {
            assert_eq!(words(name).join(" "), want, "{name}");
        }
    }

    #[test]
    fn the_last_secret_word_decides_and_describing_words_undo_it() {
        use Strength::*;
        for (name, want) in [
            ("password", Some(Password)),
            ("DB_PASSWORD", Some(Password)),
            ("dbpassword", Some(Password)),
            ("client_secret", Some(Secret)),
            ("clientSecret", Some(Secret)),
            ("STRIPE_SECRET_KEY", Some(Key)),
            ("sendgrid_api_key", Some(Key)),
            ("heroku_key", Some(Key)),
            ("x-api-key", Some(Key)),
            ("key", Some(BareKey)),
            ("githubToken", Some(Token)),
            ("X-Auth-Token", Some(Token)),
            ("access_token", Some(Token)),
            ("session_id", Some(Token)),
            ("JSESSIONID", Some(Token)),
            ("password_hash", Some(Token)),
            ("secret_key_base", Some(Key)),
            ("token_value", Some(Token)),
            ("api_key_2", Some(Key)),
            ("basic_auth", Some(Token)),
            // About a secret, not one.
            ("token_count", None),
            ("gen_ai.usage.input_tokens", None),
            ("gen_ai.token.type", None),
            ("api_key_id", None),
            ("aws_access_key_id", None),
            ("password_reset_sent_at", None),
            ("k8s.secret.name", None),
            ("secretName", None),
            ("token_expires_in", None),
            ("api_key_header", None),
            // Keys of data structures.
            ("cache_key", None),
            ("idempotency_key", None),
            ("partition-key", None),
            ("messaging.kafka.message.key", None),
            ("public_key", None),
            ("sortKey", None),
            // Words that only contain a secret word.
            ("author", None),
            ("bypass", None),
            ("monkey", None),
            ("keyboard", None),
            ("tokenizer", None),
            ("passenger", None),
        ] {
            assert_eq!(secret_name(name), want, "{name}");
        }
    }
}
