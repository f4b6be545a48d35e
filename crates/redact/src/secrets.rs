//! Secret and credential detectors. Token formats with a documented, distinctive prefix (AWS key
//! ids, GitHub, GitLab, Slack, Stripe, Google, and other vendors) are matched directly; everything
//! else needs context: a JWT must decode to JSON objects, an authorization value needs its scheme, a
//! URL password its userinfo or a secret-named query parameter, and a free-text assignment a
//! secret-looking name and a value that is not a placeholder.
//!
//! The patterns here are written from the vendors' documented formats; the Nosey Parker examples
//! (`../shared/evaldata/noseyparker-rules`) are used only to measure them.

use std::sync::OnceLock;

use base64::Engine as _;
use regex::Regex;

use crate::detect::{Finding, Kind};
use crate::names::{self, Strength};

struct Patterns {
    pem: Regex,
    jwt: Regex,
    auth: Regex,
    url_userinfo: Regex,
    url_param: Regex,
    /// One alternation over the prefixed token formats; the group that matched names the kind.
    tokens: Regex,
    tokens_context: Regex,
    pw_hash: Regex,
    vault_legacy: Regex,
    basic_cli: Regex,
    cli_password: Regex,
    xml_element: Regex,
    xml_pair: Regex,
    assign_name: Regex,
}

/// Token formats by kind: `(kind, pattern)`. Patterns must not contain capture groups.
const TOKENS: &[(Kind, &str)] = &[
    // Our own credential first (tv-access `TokenSecret`).
    (Kind::TracevaultToken, r"\btvk_[0-9a-f]{16}_[0-9a-f]{64}\b"),
    (
        Kind::AwsAccessKeyId,
        r"\b(?:A3T[A-Z0-9]|AKIA|ASIA|AGPA|AIDA|AROA|AIPA|ANPA|ANVA|ABIA|ACCA)[A-Z0-9]{16}\b",
    ),
    (Kind::GcpApiKey, r"\bAIza[0-9A-Za-z_-]{35}"),
    (
        Kind::GithubToken,
        r"\b(?:gh[pousr]_[A-Za-z0-9]{36,251}|github_pat_[A-Za-z0-9_]{22,247})\b",
    ),
    (
        Kind::GitlabToken,
        r"\b(?:gl(?:pat|ptt|dt|rt|cbt|oas|soat|ft|imt|agent|ffct|wt)-[A-Za-z0-9_-]{20,}|GR1348941[A-Za-z0-9_-]{20,})",
    ),
    (
        Kind::SlackToken,
        r"\b(?:xox[abposer]-[A-Za-z0-9-]{10,}|xapp-\d-[A-Za-z0-9-]{20,})|https://hooks\.slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9/_-]{20,}",
    ),
    (
        Kind::StripeKey,
        r"\b(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{10,}|\bwhsec_[A-Za-z0-9]{20,}",
    ),
    (
        Kind::VendorToken,
        concat!(
            // OpenAI / Anthropic / Google OAuth / Hugging Face / npm / PyPI / Docker Hub
            r"\bsk-(?:ant-|proj-|svcacct-|admin-)?[A-Za-z0-9_-]{20,}",
            r"|\bGOCSPX-[A-Za-z0-9_-]{20,}|\bya29\.[0-9A-Za-z_-]{20,}",
            r"|\bhf_[A-Za-z0-9]{30,}|\bnpm_[A-Za-z0-9]{36}\b|\bpypi-AgE[A-Za-z0-9_-]{50,}",
            r"|\bdckr_pat_[A-Za-z0-9_-]{20,}",
            // DigitalOcean / Doppler / Dynatrace / Grafana / HashiCorp Vault and Terraform
            r"|\bdo[opr]_v1_[a-f0-9]{64}\b|\bdp\.(?:pt|st|ct|sa|scim|audit)\.[A-Za-z0-9._-]{30,}",
            r"|\bdt0[a-z][0-9]{2}\.[A-Z0-9]{24}\.[A-Z0-9]{64}\b|\bgl(?:c|sa)_[A-Za-z0-9_=+/-]{30,}",
            r"|\bhv[sbr]\.[A-Za-z0-9_-]{24,}",
            // Atlassian / Bitbucket / Mailgun / Mailchimp / SendGrid / Twilio / Shopify
            r"|\bATATT3[A-Za-z0-9_=-]{50,}|\bATBB[A-Za-z0-9]{28,}|\bkey-[a-f0-9]{32}\b",
            r"|\bSG\.[A-Za-z0-9_-]{16,}\.[A-Za-z0-9_-]{16,}",
            r"|\b(?:SK|AC)[a-f0-9]{32}\b|\bshp(?:at|ss|ca|pa)_[a-fA-F0-9]{32}\b",
            // Postman / Sourcegraph / age / Databricks / New Relic / Square / Telegram
            r"|\bPMAK-[a-f0-9]{24}-[a-f0-9]{34}\b|\bsgp_[A-Za-z0-9_]{40,}",
            r"|\bAGE-SECRET-KEY-1[0-9A-Z]{58}\b|\bdapi[a-f0-9]{32}(?:-[0-9])?\b",
            r"|\bNR(?:AK|II|AA|JS|RA|RI|SP)-[A-Za-z0-9]{20,}|\bsq0(?:atp|csp)-[A-Za-z0-9_-]{20,}",
            r"|\bEAAA[A-Za-z0-9_-]{60,}",
            r"|\bNRIQ-[A-Za-z0-9_-]{20,}",
            r"|\bpx-(?:api|dep)-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b",
            // Facebook / Figma / Groq / Tavily / Firecrawl / Jina / Adafruit / crates.io
            r"|\bEAA[A-Za-z0-9]{80,}|\bfigd_[A-Za-z0-9_-]{40,}|\bgsk_[A-Za-z0-9]{48,}",
            r"|\btvly-[A-Za-z0-9-]{30,}|\bfc-[a-f0-9]{32}\b|\bjina_[A-Za-z0-9]{60,}",
            r"|\baio_[A-Za-z0-9]{28}\b|\bcio[A-Za-z0-9]{32}\b|\blive_[0-9]{5,}_[A-Za-z0-9]{30}\b",
            // Microsoft Teams incoming webhooks / Mapbox public / Grafana API keys / TrueNAS
            r"|https://[a-z0-9.-]*(?:outlook\.office\.com|webhook\.office\.com)/webhook[a-z0-9]*/[A-Za-z0-9@/_-]{30,}",
            r"|\bpk\.eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}|\beyJrIjoi[A-Za-z0-9+/=_-]{40,}",
            // Dropbox / Dependency-Track / Pulumi / Artifactory / Mapbox secret / SonarQube
            r"|\bsl\.[A-Za-z0-9_-]{60,}|\bodt_[A-Za-z0-9_-]{32,}|\bpul-[a-f0-9]{40}\b",
            r"|\bAKCp[A-Za-z0-9]{60,}|\bsk\.eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}",
            r"|\bsq[pau]_[a-f0-9]{40}\b|\boy2[a-z0-9]{43}\b|\brubygems_[a-f0-9]{48}\b",
            // Linear / Heroku / Salesforce / StackHawk / Azure DevOps / AppSync / Amazon MWS
            r"|\blin_(?:api|oauth)_[A-Za-z0-9]{40}\b|\bHRKU-[A-Za-z0-9_-]{30,}",
            r"|\b00D[A-Za-z0-9]{12}![A-Za-z0-9_.]{80,}|\bhawk\.[A-Za-z0-9_-]{20}\.[A-Za-z0-9_-]{20}\b",
            r"|\bda2-[a-z0-9]{26}\b",
            r"|\bamzn\.mws\.[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b",
            // Azure connection-string secrets
            r"|(?:AccountKey|SharedAccessKey|SharedAccessSignature)=[A-Za-z0-9+/%]{30,}={0,2}",
            r"|\bSecret=[A-Za-z0-9+/]{30,}={0,2}",
        ),
    ),
];

/// Vendor formats without a literal prefix (Mailchimp, Telegram, Terraform Cloud, Azure DevOps,
/// TrueNAS); run only when a gate in [`Gates`] says one could be there.
const TOKENS_CONTEXT: &str = concat!(
    r"\b[a-f0-9]{32}-us[0-9]{1,2}\b|\b[0-9]{8,10}:AA[A-Za-z0-9_-]{30,35}\b",
    r"|\b[a-z0-9]{14}\.atlasv1\.[A-Za-z0-9_=-]{60,}|\b[A-Za-z0-9]{76}AZDO[A-Za-z0-9]{4}\b",
    r"|\b[0-9]{1,4}-[A-Za-z0-9]{64}\b",
);

/// Keyword groups found in one case-insensitive pass; each detector runs only when its group (or
/// a cheap byte fact) says a match is possible. Most attribute values trip none.
const G_AUTH: u32 = 1;
const G_ASSIGN: u32 = 2;
const G_USER_FLAG: u32 = 4;
const G_XML: u32 = 8;
const G_CONTEXT: u32 = 16;

const KEYWORDS: &[(&str, u32)] = &[
    ("bearer", G_AUTH),
    ("basic", G_AUTH),
    ("token", G_AUTH | G_ASSIGN),
    ("digest", G_AUTH),
    ("negotiate", G_AUTH),
    ("apikey", G_AUTH | G_ASSIGN),
    ("api-key", G_AUTH | G_ASSIGN),
    ("ssws", G_AUTH),
    ("pass", G_ASSIGN),
    ("pwd", G_ASSIGN),
    ("secret", G_ASSIGN),
    ("credential", G_ASSIGN),
    ("crumb", G_ASSIGN),
    ("key", G_ASSIGN),
    ("pat", G_ASSIGN),
    ("auth", G_ASSIGN),
    ("sig", G_ASSIGN),
    ("sess", G_ASSIGN),
    ("sid", G_ASSIGN),
    ("cred", G_ASSIGN),
    ("pw", G_ASSIGN),
    ("otp", G_ASSIGN),
    ("login", G_ASSIGN),
    ("licen", G_ASSIGN),
    ("-u ", G_USER_FLAG),
    ("--user", G_USER_FLAG),
    ("key=\"", G_XML),
    ("-us", G_CONTEXT),
    (":aa", G_CONTEXT),
    ("atlasv1", G_CONTEXT),
    ("azdo", G_CONTEXT),
];

fn keyword_groups(text: &str) -> u32 {
    static AC: OnceLock<aho_corasick::AhoCorasick> = OnceLock::new();
    let ac = AC.get_or_init(|| {
        aho_corasick::AhoCorasick::builder()
            .ascii_case_insensitive(true)
            .build(KEYWORDS.iter().map(|(k, _)| k))
            .expect("keywords build")
    });
    let mut g = 0;
    for m in ac.find_overlapping_iter(text) {
        g |= KEYWORDS[m.pattern().as_usize()].1;
    }
    g
}

fn patterns() -> &'static Patterns {
    static P: OnceLock<Patterns> = OnceLock::new();
    P.get_or_init(|| {
        let re = |s: &str| Regex::new(s).expect("secret patterns compile");
        let tokens = TOKENS
            .iter()
            .map(|(_, p)| format!("({p})"))
            .collect::<Vec<_>>()
            .join("|");
        Patterns {
            // A missing END line redacts to the end of the value (a truncated key is still a key).
            pem: re(
                r"-----BEGIN[ A-Z0-9]*PRIVATE KEY(?: BLOCK)?-----(?s:.*?)(?:-----END[ A-Z0-9]*PRIVATE KEY(?: BLOCK)?-----|\z)",
            ),
            jwt: re(r"\beyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}(?:\.[A-Za-z0-9_-]*){1,3}"),
            auth: re(
                r"(?i)\b(?:bearer|basic|token|digest|negotiate|apikey|api-key|ssws)[ \t]+([A-Za-z0-9._~+/=-]{8,})",
            ),
            // `redis://:pw@host` (no user) and `postgres://app:p@ss@db` (the password runs to
            // the last `@` before the path, as URL parsers read it).
            url_userinfo: re(r"(?i)\b[a-z][a-z0-9+.-]{1,20}://([^\s:/?#@\[\]]*):([^\s/?#\[\]]*)@"),
            url_param: re(
                r"(?i)[?&;]([a-z0-9_.\[\]-]*(?:passw|pwd|secret|token|api[_-]?key|apikey|access[_-]?key|auth|signature|\bsig\b|credential|session|\bkey\b|client[_-]?secret|\bcode\b)[a-z0-9_.\[\]-]*)=([^&#\s\x22'<>]+)",
            ),
            tokens: re(&tokens),
            tokens_context: re(TOKENS_CONTEXT),
            pw_hash: re(
                r"\$(?:1|2[abxy]|5|6|7|8|9|y|gy|argon2(?:id|i|d)|krb5asrep\$[0-9]+|krb5tgs\$[0-9]+)\$[./A-Za-z0-9$:@=,+*-]{16,}",
            ),
            // Vault's pre-1.10 service/batch/recovery tokens; validated by `mixed`.
            vault_legacy: re(r"\bs\.[A-Za-z0-9_-]{24,}|\b[br]\.[A-Za-z0-9]{24}\b"),
            // `curl -u user:password`, `--user user:password`.
            basic_cli: re(r#"(?:^|\s)(?:-u|--user)\s+['"]?([^\s:'"]+):([^\s'"]+)"#),
            // A user and a password on one command line (`psexec -u admin -p x`, `mysql -u root
            // -pX`, `Connect-VIServer -User a -Password b`).
            cli_password: re(
                r#"(?:^|\s)(?:-u|--user|-user|-username)\s*\S+\s+(?:-p\s*|--password[= ]|-password\s+|-pw\s+)['"]?([^\s'"]+)"#,
            ),
            // `<password>...</password>`, `<apiKey>...</apiKey>` (XML configuration).
            // `<password>...</password>`, `<vendorApiKey>...</vendorApiKey>`: the tag a secret name.
            xml_element: re(r"<([A-Za-z_][A-Za-z0-9_.:-]{0,63})>([^<]{1,256})</"),
            // .NET configuration: <add key="SmtpPassword" value="..."/>
            xml_pair: re(
                r#"(?i)key="[^"]*(?:passw|pwd|secret|token|api[_-]?key|credential)[^"]*"\s+value="([^"]*)""#,
            ),
            // Any identifier holding a secret word; `names::secret_name` decides by its words.
            assign_name: re(
                r"(?i)[A-Za-z0-9_.-]*(?:pass|pw|secret|token|key|cred|crumb|auth|sig|sess|sid|pat|otp|jwt|login|licen[cs]e)[A-Za-z0-9_.-]*",
            ),
        }
    })
}

/// Adds every secret found in `text` to `out` (unresolved; [`crate::detect::scan`] resolves
/// overlaps).
pub(crate) fn scan_secrets(text: &str, out: &mut Vec<Finding>) {
    let p = patterns();
    let g = keyword_groups(text);
    let b = text.as_bytes();
    let has = |c: u8| b.contains(&c);
    // Every token format holds a run of 16+ characters of [A-Za-z0-9_-]; most values have none.
    // A value of hex digits alone (request ids, hashes, trace ids) is no vendor's format but
    // Twilio's (`AC`/`SK` + 32 hex).
    let mut run = 0usize;
    let mut longest = 0usize;
    let mut all_hex = true;
    for &c in b {
        if c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-') {
            run += 1;
            longest = longest.max(run);
        } else {
            run = 0;
        }
        all_hex &= c.is_ascii_hexdigit() || c == b'-';
    }
    let tokenish =
        longest >= 16 && !(all_hex && !text.starts_with("AC") && !text.starts_with("SK"));
    let mut push = |kind, start, end| out.push(Finding { kind, start, end });
    if text.contains("-----BEGIN") {
        for m in p.pem.find_iter(text) {
            push(Kind::PrivateKey, m.start(), m.end());
        }
    }
    if tokenish && text.contains("eyJ") {
        for m in p.jwt.find_iter(text) {
            if jwt_valid(m.as_str()) {
                push(Kind::Jwt, m.start(), m.end());
            }
        }
    }
    if g & G_AUTH != 0 {
        for c in p.auth.captures_iter(text) {
            let m = c.get(1).expect("credential group");
            if credential_like(m.as_str()) {
                push(Kind::AuthHeader, m.start(), m.end());
            }
        }
    }
    if has(b'@') && text.contains("://") {
        for c in p.url_userinfo.captures_iter(text) {
            let (user, pass) = (c.get(1).expect("user"), c.get(2).expect("password"));
            if !pass.as_str().is_empty() && !placeholder(pass.as_str()) {
                push(
                    Kind::UrlCredential,
                    user.start().min(pass.start()),
                    pass.end(),
                );
            }
        }
    }
    if has(b'=') && (has(b'?') || has(b'&') || has(b';')) {
        for c in p.url_param.captures_iter(text) {
            let v = c.get(2).expect("value");
            if !placeholder(v.as_str()) {
                push(Kind::UrlCredential, v.start(), v.end());
            }
        }
    }
    if tokenish {
        for c in p.tokens.captures_iter(text) {
            for (i, (kind, _)) in TOKENS.iter().enumerate() {
                if let Some(m) = c.get(i + 1) {
                    push(*kind, m.start(), m.end());
                    break;
                }
            }
        }
    }
    if tokenish && text.len() >= 30 && (g & G_CONTEXT != 0 || (text.len() >= 66 && has(b'-'))) {
        for m in p.tokens_context.find_iter(text) {
            push(Kind::VendorToken, m.start(), m.end());
        }
    }
    if has(b'$') {
        for m in p.pw_hash.find_iter(text) {
            push(Kind::PasswordHash, m.start(), m.end());
        }
    }
    if tokenish && has(b'.') && text.len() >= 26 {
        for m in p.vault_legacy.find_iter(text) {
            if mixed(&m.as_str()[2..]) {
                push(Kind::VendorToken, m.start(), m.end());
            }
        }
    }
    if g & G_USER_FLAG != 0 {
        for c in p.basic_cli.captures_iter(text) {
            let (user, pass) = (c.get(1).expect("user"), c.get(2).expect("password"));
            if !placeholder(pass.as_str()) {
                push(Kind::AuthHeader, user.start(), pass.end());
            }
        }
        for c in p.cli_password.captures_iter(text) {
            let v = c.get(1).expect("password");
            if plausible_secret(v.as_str(), false, true) {
                push(Kind::SecretAssignment, v.start(), v.end());
            }
        }
    }
    if has(b'<') && g & G_ASSIGN != 0 {
        for c in p.xml_element.captures_iter(text) {
            let tag = c.get(1).expect("tag").as_str();
            let v = c.get(2).expect("value");
            let ok = match names::secret_name(tag) {
                None => false,
                Some(Strength::Password | Strength::Secret) => {
                    plausible_secret(v.as_str().trim(), true, true)
                }
                Some(Strength::Token) => plausible_secret(v.as_str().trim(), true, false),
                Some(Strength::Key | Strength::BareKey) => random_token(v.as_str().trim()),
            };
            if ok {
                push(Kind::SecretAssignment, v.start(), v.end());
            }
        }
    }
    if g & G_XML != 0 {
        for c in p.xml_pair.captures_iter(text) {
            let v = c.get(1).expect("value");
            if plausible_secret(v.as_str(), true, true) {
                push(Kind::SecretAssignment, v.start(), v.end());
            }
        }
    }
    if g & G_ASSIGN != 0 {
        for m in p.assign_name.find_iter(text) {
            let Some(strength) = names::secret_name(m.as_str()) else {
                continue;
            };
            let strong = matches!(strength, Strength::Password | Strength::Secret);
            let Some(a) = assigned_value(text, m.end()) else {
                continue;
            };
            let value = &text[a.start..a.end];
            let ok = match (strength, a.spaced) {
                // `password hunter22`, `vendor SECRET x`: a space assigns to a password or a
                // secret (not a lowercase word: `password reset email sent`).
                (Strength::Password | Strength::Secret, _) => {
                    plausible_secret(value, a.quoted, strong)
                }
                // `VENDOR TOKEN x`, `--vendor-token x`, `ENV VENDOR_LICENSE_KEY x`: only a value
                // random by its shape.
                (Strength::Token | Strength::Key, true) => random_token(value),
                (Strength::Token, false) => plausible_secret(value, a.quoted, false),
                (Strength::Key, false) => {
                    plausible_secret(value, a.quoted, false) && !structured(value)
                }
                // `key = ...` alone: a random value; `vendor key x`: the word before qualifies.
                (Strength::BareKey, false) => random_token(value),
                (Strength::BareKey, true) => {
                    key_qualified_before(text, m.start()) && random_token(value)
                }
            };
            if ok {
                let name = m.as_str().to_ascii_lowercase();
                let kind = if name.contains("aws") && value.len() == 40 {
                    Kind::AwsSecretKey
                } else {
                    Kind::SecretAssignment
                };
                push(kind, a.start, a.end);
            }
        }
    }
}

/// Whether the word before a bare `key` at `at` qualifies it (`Stripe key ...`, `API KEY ...`),
/// rather than being absent or naming a data structure (`cache key ...`, `sort key ...`).
fn key_qualified_before(text: &str, at: usize) -> bool {
    let before = text[..at].trim_end_matches([' ', '\t']);
    if before.len() == text[..at].len() {
        return false;
    }
    let word: String = before
        .chars()
        .rev()
        .take_while(|c| c.is_alphanumeric())
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    !word.is_empty()
        && names::secret_words(&[word.to_lowercase(), "key".to_string()])
            .is_some_and(|s| s == Strength::Key)
}

/// A value random by its shape alone (no name vouches for it strongly): 12 or more characters
/// without spaces, not a URL, path or structured identifier, with letters and digits or both
/// cases, and enough entropy; UUIDs and long hex count.
pub(crate) fn random_token(v: &str) -> bool {
    let v = v.trim_matches(['"', '\'', '`']);
    if v.len() < 12 || v.len() > 1024 || placeholder(v) {
        return false;
    }
    if v.bytes()
        .any(|c| c.is_ascii_whitespace() || c.is_ascii_control())
    {
        return false;
    }
    let lower = v.to_ascii_lowercase();
    let base64ish = base64ish(v);
    if lower.contains("://")
        || (v.starts_with('/') && !base64ish)
        || v.starts_with('.')
        || structured(v)
    {
        return false;
    }
    let digit = v.bytes().any(|c| c.is_ascii_digit());
    let upper = v.bytes().any(|c| c.is_ascii_uppercase());
    let lower_c = v.bytes().any(|c| c.is_ascii_lowercase());
    let e = entropy(v);
    if v.bytes().all(|c| c.is_ascii_hexdigit() || c == b'-') {
        return v.len() >= 16 && digit && e >= 2.5;
    }
    (e >= 3.0 && ((digit && (upper || lower_c)) || (upper && lower_c && v.len() >= 16)))
        || (v.len() >= 20 && e >= 3.8)
}

/// A value made of plain parts: words, numbers and separators (`user:48213:profile:v2`,
/// `orders.created.v2`, `tenant-42-prod`, `AB-1234-XL`), as keys of data structures are, or a
/// date and time; not random characters.
pub(crate) fn structured(v: &str) -> bool {
    // A date or a time (`2024-03-25T09:40:00Z`, `09:40:00.123`).
    if v.bytes().filter(u8::is_ascii_digit).count() >= 6
        && v.bytes()
            .all(|c| c.is_ascii_digit() || b"-:.TZ+ /".contains(&c))
    {
        return true;
    }
    let parts: Vec<&str> = v
        .split([':', '/', '.', '@', '_', '-', '#', '|', ','])
        .filter(|p| !p.is_empty())
        .collect();
    // Groups of one length with letters and digits are a key's (`ABCD-1234-EFGH-5678`,
    // `7XKQ2-9PLMN-...`), not words and numbers.
    let digits = v.bytes().any(|c| c.is_ascii_digit());
    let letters = v.bytes().any(|c| c.is_ascii_alphabetic());
    if parts.len() >= 3
        && parts[0].len() >= 4
        && parts.iter().all(|p| p.len() == parts[0].len())
        && ((digits && letters) || entropy(&parts.concat()) >= 3.5)
    {
        return false;
    }
    parts.len() >= 2
        && parts.iter().all(|p| {
            let b = p.as_bytes();
            b.iter().all(u8::is_ascii_digit)
                || (b.len() <= 12 && b.iter().all(u8::is_ascii_lowercase))
                || (b.len() <= 4 && b.iter().all(u8::is_ascii_alphanumeric))
                || (b.len() <= 12 && b.iter().all(u8::is_ascii_uppercase))
        })
}

/// A long base64 value (which may start with `+` or `/`, unlike a path or a concatenation).
fn base64ish(v: &str) -> bool {
    v.len() >= 20
        && v.bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"+/=".contains(&c))
        && mixed(v)
}

/// Digits, upper and lower case letters all present (random tokens have all three).
fn mixed(v: &str) -> bool {
    v.bytes().any(|c| c.is_ascii_digit())
        && v.bytes().any(|c| c.is_ascii_uppercase())
        && v.bytes().any(|c| c.is_ascii_lowercase())
}

/// A JWT (or JWE) whose header and payload segments are base64url of JSON objects.
fn jwt_valid(s: &str) -> bool {
    let mut parts = s.split('.');
    let json_object = |seg: Option<&str>| {
        seg.and_then(|seg| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(seg.trim_end_matches('='))
                .ok()
        })
        .is_some_and(|b| {
            let t = b.trim_ascii_start();
            t.first() == Some(&b'{')
        })
    };
    let header = parts.next();
    let header_ok = header.is_some_and(|h| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(h.trim_end_matches('='))
            .is_ok_and(|b| {
                b.starts_with(b"{")
                    && (contains(&b, b"\"alg\"")
                        || contains(&b, b"\"typ\"")
                        || contains(&b, b"\"enc\""))
            })
    });
    // Lenient on the payload: a JWS payload is JSON, a JWE's second part is an encrypted key.
    header_ok && (json_object(parts.next()) || s.split('.').count() == 5)
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// A credential after an authorization scheme: not a plain word ("Bearer authentication").
fn credential_like(v: &str) -> bool {
    v.bytes()
        .any(|c| c.is_ascii_digit() || b"._~+/=-".contains(&c))
        || (v.bytes().any(|c| c.is_ascii_uppercase())
            && v.bytes().any(|c| c.is_ascii_lowercase())
            && v.len() >= 16)
}

/// Template and environment references, masks, documentation examples and empty values: not
/// secrets themselves.
pub(crate) fn placeholder(v: &str) -> bool {
    let t = v.trim().trim_matches(['"', '\'', '`']);
    let lower = t.to_ascii_lowercase();
    t.is_empty()
        || t.starts_with('$')
        || t.starts_with('%')
        || t.starts_with('<')
        || t.starts_with('{')
        || t.starts_with("#{")
        || t.starts_with("&lt;")
        || t.starts_with('[')
        || t.contains("${")
        || t.contains("$(")
        || t.contains("{{")
        || lower.starts_with("env")
        || lower.starts_with("process.env")
        || lower.starts_with("os.")
        // Masks.
        || ["xxxx", "****", "redacted"].iter().any(|w| lower.contains(w))
        || docs_value(&lower)
        || t.bytes().all(|c| c == t.as_bytes()[0])
}

/// A value written for the docs: a placeholder word or a sequence people type when they need a
/// value (`changeme`, `your-api-key`, `example-secret`, `abcdef123456`), with little else. A
/// random value that happens to contain one (`wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY`, AWS's
/// documented secret key, is still a key's shape) is not a placeholder.
fn docs_value(lower: &str) -> bool {
    const WORDS: [&str; 11] = [
        "changeme", "your_", "your-", "example", "dummy", "sample", "abcdef", "fedcba", "a1b2c3",
        "c3b2a1", "qwerty",
    ];
    if sequential(lower) {
        return true;
    }
    if !WORDS.iter().any(|w| lower.contains(w)) {
        return false;
    }
    let mut rest = lower.to_string();
    for w in WORDS {
        rest = rest.replace(w, "");
    }
    let rest: String = rest.chars().filter(|c| c.is_ascii_alphanumeric()).collect();
    rest.len() < 16 || entropy(&rest) < 3.5
}

/// Letters or digits that mostly step through the alphabet (`a1b2c3d4e5f6g7h8`,
/// `d4c3b2a1-f6e5-h8g7`, `1234567890`): typed for an example. In random text fewer than one
/// letter pair in ten and one digit pair in five are neighbours.
fn sequential(lower: &str) -> bool {
    let steps = |xs: &[u8], wrap: u8| -> (usize, usize) {
        let pairs = xs.len().saturating_sub(1);
        let near = xs
            .windows(2)
            .filter(|w| {
                let d = w[0].abs_diff(w[1]);
                d == 1 || d == wrap - 1
            })
            .count();
        (pairs, near)
    };
    let letters: Vec<u8> = lower.bytes().filter(u8::is_ascii_lowercase).collect();
    let digits: Vec<u8> = lower.bytes().filter(u8::is_ascii_digit).collect();
    let (lp, ln) = steps(&letters, 26);
    let (dp, dn) = steps(&digits, 10);
    // Hex letters (a to f) are neighbours too often by chance to tell.
    let beyond_hex = letters.iter().any(|&c| c > b'f');
    (beyond_hex && lp >= 10 && ln * 2 >= lp) || (dp >= 8 && dn * 10 >= dp * 8)
}

/// A value assigned after a name.
struct Assigned {
    start: usize,
    end: usize,
    quoted: bool,
    /// Assigned by a space alone (`password hunter22`, `VENDOR TOKEN x`), no operator.
    spaced: bool,
}

/// After a secret-looking name ending at `at`: an assignment (`=`, `:`, `=>`, `:=`, `==`, a
/// closing quote or bracket before it) followed by a value, quoted or bare; or a space and a
/// value that is not a lowercase word (`password hunter22`, `the password is 'x'`, not
/// `password reset email sent`). Whether a space may assign is the caller's to judge.
fn assigned_value(text: &str, at: usize) -> Option<Assigned> {
    let b = text.as_bytes();
    let mut i = at;
    while i < b.len() && matches!(b[i], b'"' | b'\'' | b'`' | b']' | b')' | b'\\') {
        i += 1;
    }
    let name_end = i;
    while i < b.len() && matches!(b[i], b' ' | b'\t') {
        i += 1;
    }
    let op_start = i;
    while i < b.len() && matches!(b[i], b'=' | b':' | b'>' | b'!') {
        i += 1;
    }
    // A quoted name, a comma and a quoted value: arguments (`define('DB_PASSWORD', 'x')`,
    // `put("apiKey", "x")`, `buildConfigField 'String', 'API_KEY', '"x"'`).
    if i == op_start && b.get(i) == Some(&b',') && text[at..name_end].contains(['"', '\'']) {
        let mut j = i + 1;
        while j < b.len() && b[j] == b' ' {
            j += 1;
        }
        if matches!(b.get(j), Some(b'"' | b'\'')) {
            i += 1;
        }
    }
    let op = &text[op_start..i];
    let spaced = op.is_empty();
    if spaced && i > name_end && i < b.len() {
        // `password hunter22`, `password is 'x'`
        if text[i..].starts_with("is ") {
            i += 3;
        }
        // Without `=` or `:`, a lowercase word is prose (`password reset email sent`,
        // `password changed`), not a password.
        let word: &[u8] = &b[i..];
        let n = word
            .iter()
            .position(|c| c.is_ascii_whitespace())
            .unwrap_or(word.len());
        if n > 0 && word[..n].iter().all(u8::is_ascii_lowercase) {
            return None;
        }
    } else if !matches!(
        op,
        "=" | ":" | "=>" | ":=" | "==" | "!=" | "===" | "!==" | ","
    ) {
        return None;
    }
    while i < b.len() && matches!(b[i], b' ' | b'\t') {
        i += 1;
    }
    // An escaped quote (JSON inside a string) or a plain one.
    if i + 1 < b.len() && b[i] == b'\\' && matches!(b[i + 1], b'"' | b'\'') {
        i += 1;
    }
    let quote = match b.get(i) {
        Some(q @ (b'"' | b'\'' | b'`')) => {
            i += 1;
            Some(*q)
        }
        _ => None,
    };
    let start = i;
    let end = match quote {
        Some(q) => {
            let rest = &b[start..];
            let n = rest.iter().position(|&c| c == q || c == b'\n')?;
            // Drop a trailing backslash of an escaped quote.
            let mut e = start + n;
            if e > start && b[e - 1] == b'\\' {
                e -= 1;
            }
            e
        }
        None => {
            let rest = &b[start..];
            start
                + rest
                    .iter()
                    .position(|&c| {
                        c.is_ascii_whitespace()
                            || matches!(
                                c,
                                b',' | b';' | b'&' | b'"' | b'\'' | b')' | b'}' | b'<' | b'>'
                            )
                    })
                    .unwrap_or(rest.len())
        }
    };
    (end > start).then_some(Assigned {
        start,
        end,
        quoted: quote.is_some(),
        spaced,
    })
}

/// A value that could be a secret rather than a word, a placeholder, a path or code: three
/// character classes, or letters and digits (6+ characters for passwords, 8+ otherwise), or long
/// and random-looking. Unquoted values that read as code (calls, member access, shell variables)
/// are references to a secret, not the secret.
fn plausible_secret(v: &str, quoted: bool, strong: bool) -> bool {
    if v.len() > 4096 || placeholder(v) {
        return false;
    }
    // Passwords may hold a few spaces when quoted; nothing else does, and code never counts.
    let spaces = v.bytes().filter(|&c| c == b' ').count();
    if spaces > 0
        && !(strong
            && quoted
            && spaces <= 3
            && v.len() <= 64
            && !v.contains(['(', '+', '=', ';', '{', '}']))
    {
        return false;
    }
    // The end of one string and the start of the next (`"a" + x + "b"`, `'x'.$y`, `"a",b:"c"`).
    // (A long base64 value may start with `+` or `/`.)
    let base64ish = base64ish(v);
    if (v.starts_with([',', ';', ':', '.']) || v.ends_with(['+']))
        || (v.starts_with('+') && !base64ish)
    {
        return false;
    }
    let lower = v.to_ascii_lowercase();
    if ["arn:", "http://", "https://", "file:"]
        .iter()
        .any(|p| lower.starts_with(p))
        || (v.starts_with('/') && !base64ish)
    {
        return false;
    }
    // A route, path or selector of plain words (`cms/sites/passwords#edit`, `#add-password`).
    if (v.contains('/') || v.starts_with('#'))
        && v.bytes()
            .all(|c| c.is_ascii_lowercase() || b"/_-#.:".contains(&c))
    {
        return false;
    }
    // A label that names the field instead of filling it ("Password:", "token").
    let bare = lower.trim_matches(|c: char| !c.is_ascii_alphanumeric());
    if [
        "password",
        "passwd",
        "pass",
        "secret",
        "token",
        "true",
        "false",
        "null",
        "none",
        "undefined",
        "required",
        "optional",
        "string",
    ]
    .contains(&bare)
    {
        return false;
    }
    if !quoted {
        if v.contains('(') || v.contains("->") {
            return false;
        }
        // Shell interpolation (`super$ecret` is "super" plus a variable).
        let b = v.as_bytes();
        if b.windows(2)
            .any(|w| w[0] == b'$' && (w[1].is_ascii_alphabetic() || w[1] == b'_'))
        {
            return false;
        }
        // An identifier path (`request.form`, `self.password`): code, not data.
        if v.contains('.')
            && v.split('.')
                .all(|p| !p.is_empty() && p.bytes().all(|c| c.is_ascii_alphabetic() || c == b'_'))
        {
            return false;
        }
    }
    if strong {
        // Whatever a password field holds is a password, weak ones included.
        return v.len() >= 4;
    }
    let digit = v.bytes().any(|c| c.is_ascii_digit());
    let upper = v.bytes().any(|c| c.is_ascii_uppercase());
    let lower_c = v.bytes().any(|c| c.is_ascii_lowercase());
    let special = v
        .bytes()
        .any(|c| c.is_ascii_punctuation() && !b"_-.:/".contains(&c));
    let letter = upper || lower_c;
    let classes = [digit, upper, lower_c, special]
        .iter()
        .filter(|&&x| x)
        .count();
    v.len() >= 8
        && entropy(v) >= 2.0
        && (classes >= 3 || (digit && letter) || (v.len() >= 16 && entropy(v) >= 3.5))
}

/// Shannon entropy in bits per byte.
pub(crate) fn entropy(v: &str) -> f64 {
    let mut counts = [0u32; 256];
    for c in v.bytes() {
        counts[c as usize] += 1;
    }
    let n = v.len() as f64;
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = c as f64 / n;
            -p * p.log2()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use crate::detect::{Kind, scan};

    fn found(text: &str) -> Vec<(Kind, &str)> {
        scan(text)
            .into_iter()
            .filter(|f| f.kind.is_secret())
            .map(|f| (f.kind, &text[f.start..f.end]))
            .collect()
    }

    #[test]
    fn prefixed_tokens_are_found_by_kind() {
        // Shapes from the vendors' documentation (not real credentials).
        let cases = [
            (
                "tvk_0123456789abcdef_0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
                Kind::TracevaultToken,
            ),
            ("AKIAIOSFODNN7EXAMPLE", Kind::AwsAccessKeyId),
            ("AIzaSyA-1234567890abcdefghijklmnopqrstu", Kind::GcpApiKey),
            (
                "ghp_0123456789abcdefghijklmnopqrstuvwxyz",
                Kind::GithubToken,
            ),
            ("glpat-0123456789abcdefghij", Kind::GitlabToken),
            ("xoxb-123456789012-abcdefghijkl", Kind::SlackToken),
            ("sk_live_0123456789abcdefghij", Kind::StripeKey),
            ("hf_abcdefghijklmnopqrstuvwxyz0123456789", Kind::VendorToken),
        ];
        for (t, kind) in cases {
            let text = format!("token in text {t} here");
            assert_eq!(found(&text), vec![(kind, t)], "{t}");
        }
    }

    #[test]
    fn contextual_secrets_need_their_context() {
        let jwt = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U";
        assert_eq!(found(jwt), vec![(Kind::Jwt, jwt)]);
        assert_eq!(
            found("Authorization: Bearer mF_9.B5f-4.1JqM"),
            vec![(Kind::AuthHeader, "mF_9.B5f-4.1JqM")]
        );
        assert_eq!(found("we use Bearer authentication"), vec![]);
        assert_eq!(
            found("postgres://app:S3cr3t!@db.internal:5432/orders"),
            vec![(Kind::UrlCredential, "app:S3cr3t!")]
        );
        assert_eq!(
            found("GET /login?user=bob&password=hunter22&next=/"),
            vec![(Kind::UrlCredential, "hunter22")]
        );
        assert_eq!(
            found("DB_PASSWORD=\"Pa55w0rd-2024\""),
            vec![(Kind::SecretAssignment, "Pa55w0rd-2024")]
        );
        let pem =
            "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA\n-----END RSA PRIVATE KEY-----";
        assert_eq!(found(pem), vec![(Kind::PrivateKey, pem)]);
    }

    #[test]
    fn placeholders_and_code_are_not_secrets() {
        for t in [
            "password = $DB_PASSWORD",
            "password: ${PASSWORD}",
            "api_key = \"<your key here>\"",
            "password = request.form.password",
            "token = getToken()",
            "secret: xxxxxxxx",
            "password: ********",
            "eyJub3QiOiJqd3QifQ.bm90IGpzb24.c2ln", // header without alg/typ
            "the token endpoint returns 200",
        ] {
            assert_eq!(found(t), vec![], "{t}");
        }
    }
}
