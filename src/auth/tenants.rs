//! `--auth.tenants-file`: who a request is, and what it may see and write.
//!
//! A request is identified in one of three ways: a basic-auth user that `--web.config.file`
//! verified; a bearer token listed in a tenant's token file; or, behind an authenticating proxy,
//! a header (`X-Forwarded-User`, `X-Scope-OrgID`, …) believed only from the proxy's addresses.
//! The tenant then decides what the request may reach: `all: true` is unrestricted (answers stay
//! byte-identical to the upstream's), otherwise a list of namespaces (anchored regexes, as PromQL
//! matchers), whether node logs are visible, and where it may push.
//!
//! The file is checked whole at start-up: an unknown key, a bad regex, a user of two tenants, an
//! unreadable token file stops Janus with one line naming the key.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;

/// Why a tenants file was refused: the key (a path in the file) and what is wrong.
pub type TenantsError = crate::auth::settings_file::SettingsFileError;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileFormat {
    tenants: BTreeMap<String, TenantFormat>,
    #[serde(default)]
    identity_header: Option<HeaderFormat>,
    /// Whether `/metrics` answers without an identity (a scraper inside the cluster).
    #[serde(default)]
    metrics_open: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TenantFormat {
    #[serde(default)]
    users: Vec<String>,
    #[serde(default)]
    bearer_token_files: Vec<PathBuf>,
    #[serde(default)]
    namespaces: Vec<String>,
    #[serde(default)]
    node_logs: bool,
    /// `true`: into its namespaces; a list: into these namespaces (anchored regexes) only.
    #[serde(default)]
    push: Option<PushFormat>,
    #[serde(default)]
    all: bool,
    upstream_org_id: Option<String>,
    #[serde(default)]
    limits: crate::auth::tenant_limits::LimitsFormat,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum PushFormat {
    Allowed(bool),
    Namespaces(Vec<String>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HeaderFormat {
    name: String,
    /// Source addresses (CIDR) the header is believed from; from anywhere else it is ignored.
    from: Vec<String>,
    /// What the header names: a `user` of a tenant, or the `tenant` itself.
    #[serde(default = "default_names")]
    names: String,
}

fn default_names() -> String {
    "user".into()
}

/// Namespaces as anchored regexes: `shop` is exactly `shop`, `cart-.*` every cart namespace.
#[derive(Debug, Clone)]
pub struct Namespaces {
    patterns: Vec<String>,
    regex: regex::Regex,
}

impl Namespaces {
    fn new(
        patterns: Vec<String>,
        key: &str,
        error: &dyn Fn(&str, String) -> TenantsError,
    ) -> Result<Self, TenantsError> {
        for p in &patterns {
            regex::Regex::new(&format!("^(?:{p})$"))
                .map_err(|e| error(key, format!("{p:?} is not a regex: {}", one_line(&e))))?;
        }
        let joined = patterns
            .iter()
            .map(|p| format!("(?:{p})"))
            .collect::<Vec<_>>()
            .join("|");
        let regex = regex::RegexBuilder::new(&format!("^(?:{joined})$"))
            .size_limit(1 << 20)
            .build()
            .map_err(|e| error(key, format!("too large a set of regexes: {}", one_line(&e))))?;
        Ok(Namespaces { patterns, regex })
    }

    pub fn contains(&self, namespace: &str) -> bool {
        !self.patterns.is_empty() && self.regex.is_match(namespace)
    }

    /// The set as one PromQL regex matcher value (`shop|cart-.*`), for injection.
    pub fn matcher_value(&self) -> String {
        self.patterns
            .iter()
            .map(|p| format!("(?:{p})"))
            .collect::<Vec<_>>()
            .join("|")
    }
}

/// What a restricted tenant may read and write.
#[derive(Debug, Clone)]
pub struct Scope {
    pub namespaces: Namespaces,
    pub node_logs: bool,
    /// Where it may push; `None`: nowhere.
    pub push: Option<Namespaces>,
}

/// One tenant.
#[derive(Debug, Clone)]
pub struct Tenant {
    pub name: String,
    /// `None`: unrestricted (`all: true`).
    pub scope: Option<Scope>,
    /// Sent as `X-Scope-OrgID` towards the upstream, replacing any the client sent.
    pub upstream_org_id: Option<String>,
    /// Its push rate and queries at once, with their state.
    pub limits: Arc<crate::auth::tenant_limits::TenantLimits>,
    /// Its queries as confined to its scope, remembered.
    pub confined_texts: crate::auth::confined_texts::ConfinedTexts,
}

impl Scope {
    /// Narrows a log selector to what the scope reaches: pod logs of its namespaces (a matcher
    /// on the directory name, intersected with the selector's own), node logs only when
    /// `node_logs` allows them. A selector naming another namespace then finds nothing, exactly
    /// as if that namespace held no logs.
    pub fn restrict(&self, query: &mut crate::logql::LogQuery) {
        use promql_parser::label::{MatchOp, Matcher};
        match query.kind {
            crate::logql::LogKind::Pod => query.targets.push(self.namespace_matcher()),
            // Directory names are never empty: this matcher matches none.
            crate::logql::LogKind::Node if !self.node_logs => {
                query.targets.push(Matcher::new(MatchOp::Equal, "node", ""))
            }
            crate::logql::LogKind::Node => {}
        }
    }
}

impl Scope {
    /// How metric selectors are confined to the scope (see [`crate::promql::confine`]).
    pub fn confinement(&self) -> crate::promql::confine::Confinement<'_> {
        crate::promql::confine::Confinement {
            matcher: self.namespace_matcher(),
            contains: Box::new(|value| self.namespaces.contains(value)),
        }
    }

    /// `namespace=~"shop|cart-.*"` (anchored): what a log selector's directory and a metric
    /// selector's series must match.
    pub fn namespace_matcher(&self) -> promql_parser::label::Matcher {
        use promql_parser::label::{MatchOp, Matcher};
        Matcher::new(
            MatchOp::Re(self.namespaces.regex.clone()),
            "namespace",
            &self.namespaces.matcher_value(),
        )
    }
}

#[cfg(test)]
impl Scope {
    /// A scope over `namespaces` (anchored regexes), for other modules' tests.
    pub(crate) fn for_tests(namespaces: &[&str], node_logs: bool) -> Scope {
        let patterns = namespaces.iter().map(|n| n.to_string()).collect();
        let file =
            crate::auth::settings_file::SettingsFile::new("--auth.tenants-file", Path::new("-"));
        let error = |key: &str, message: String| file.error(key, message);
        Scope {
            namespaces: Namespaces::new(patterns, "namespaces", &error).expect("valid regexes"),
            node_logs,
            push: None,
        }
    }
}

impl Tenant {
    pub fn may_push_into(&self, namespace: &str) -> bool {
        match &self.scope {
            None => true,
            Some(scope) => scope.push.as_ref().is_some_and(|n| n.contains(namespace)),
        }
    }
}

/// Where an identity header is believed from, and what it names.
#[derive(Debug, Clone)]
pub struct IdentityHeader {
    pub name: http::HeaderName,
    pub from: Vec<ipnet::IpNet>,
    pub names_tenant: bool,
}

/// The checked tenants file.
#[derive(Debug, Clone)]
pub struct Tenants {
    tenants: BTreeMap<String, Arc<Tenant>>,
    by_user: BTreeMap<String, Arc<Tenant>>,
    /// SHA-256 of each token → its tenant (tokens are not kept in clear).
    by_token: BTreeMap<[u8; 32], Arc<Tenant>>,
    pub header: Option<IdentityHeader>,
    pub metrics_open: bool,
}

/// How a request presented itself.
#[derive(Debug, Default)]
pub struct Presented<'a> {
    /// A basic-auth user that `--web.config.file` verified.
    pub verified_user: Option<&'a str>,
    pub bearer: Option<&'a str>,
    pub header: Option<&'a str>,
    pub peer: Option<IpAddr>,
}

impl Tenants {
    pub fn load(path: &Path) -> Result<Tenants, TenantsError> {
        let file = crate::auth::settings_file::SettingsFile::new("--auth.tenants-file", path);
        let error = |key: &str, message: String| file.error(key, message);
        let format: FileFormat = file.read(path)?;
        if format.tenants.is_empty() {
            return Err(error("tenants", "names no tenant".into()));
        }
        let base = path.parent().unwrap_or(Path::new("."));
        let mut tenants = BTreeMap::new();
        let mut by_user: BTreeMap<String, Arc<Tenant>> = BTreeMap::new();
        let mut by_token = BTreeMap::new();
        for (name, t) in format.tenants {
            let key = |k: &str| format!("tenants.{name}.{k}");
            let scope = if t.all {
                if !t.namespaces.is_empty() || t.node_logs || t.push.is_some() {
                    return Err(error(
                        &key("all"),
                        "an unrestricted tenant takes no namespaces, node_logs or push".into(),
                    ));
                }
                None
            } else {
                let namespaces = Namespaces::new(t.namespaces.clone(), &key("namespaces"), &error)?;
                let push = match t.push {
                    None | Some(PushFormat::Allowed(false)) => None,
                    Some(PushFormat::Allowed(true)) => Some(namespaces.clone()),
                    Some(PushFormat::Namespaces(list)) => {
                        Some(Namespaces::new(list, &key("push"), &error)?)
                    }
                };
                Some(Scope {
                    namespaces,
                    node_logs: t.node_logs,
                    push,
                })
            };
            let limits = crate::auth::tenant_limits::TenantLimits::new(t.limits)
                .map_err(|(k, message)| error(&key(&format!("limits.{k}")), message))?;
            let tenant = Arc::new(Tenant {
                name: name.clone(),
                scope,
                upstream_org_id: t.upstream_org_id,
                limits: Arc::new(limits),
                confined_texts: Default::default(),
            });
            for user in t.users {
                if let Some(other) = by_user.insert(user.clone(), Arc::clone(&tenant)) {
                    return Err(error(
                        &key("users"),
                        format!("{user:?} is also a user of {:?}", other.name),
                    ));
                }
            }
            for file in t.bearer_token_files {
                let file = base.join(file);
                let text = std::fs::read_to_string(&file).map_err(|e| {
                    error(
                        &key("bearer_token_files"),
                        format!("cannot read {}: {e}", file.display()),
                    )
                })?;
                for token in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
                    if by_token
                        .insert(token_key(token), Arc::clone(&tenant))
                        .is_some()
                    {
                        return Err(error(
                            &key("bearer_token_files"),
                            format!("{} holds a token another file holds", file.display()),
                        ));
                    }
                }
            }
            tenants.insert(name, tenant);
        }
        let header = match format.identity_header {
            None => None,
            Some(h) => {
                let name = http::HeaderName::from_bytes(h.name.as_bytes()).map_err(|_| {
                    error(
                        "identity_header.name",
                        format!("{:?} is not a header name", h.name),
                    )
                })?;
                let mut from = Vec::new();
                for cidr in &h.from {
                    let net = cidr
                        .parse::<ipnet::IpNet>()
                        .or_else(|_| cidr.parse::<IpAddr>().map(ipnet::IpNet::from))
                        .map_err(|_| {
                            error(
                                "identity_header.from",
                                format!("{cidr:?} is not an address or CIDR range"),
                            )
                        })?;
                    from.push(net);
                }
                if from.is_empty() {
                    return Err(error(
                        "identity_header.from",
                        "the proxy's addresses are required: a header anyone can send proves nothing".into(),
                    ));
                }
                let names_tenant = match h.names.as_str() {
                    "user" => false,
                    "tenant" => true,
                    other => {
                        return Err(error(
                            "identity_header.names",
                            format!("{other:?} is not `user` or `tenant`"),
                        ))
                    }
                };
                Some(IdentityHeader {
                    name,
                    from,
                    names_tenant,
                })
            }
        };
        Ok(Tenants {
            tenants,
            by_user,
            by_token,
            header,
            metrics_open: format.metrics_open,
        })
    }

    /// The tenant a request is, if it presented a known identity. A bearer token or a proxy's
    /// header is tried after a verified user.
    pub fn identify(&self, presented: &Presented<'_>) -> Option<Arc<Tenant>> {
        if let Some(user) = presented.verified_user {
            return self.by_user.get(user).cloned();
        }
        if let Some(token) = presented.bearer {
            return self.by_token.get(&token_key(token)).cloned();
        }
        let header = self.header.as_ref()?;
        let value = presented.header?;
        let peer = presented.peer?;
        if !header.from.iter().any(|net| net.contains(&peer)) {
            return None;
        }
        if header.names_tenant {
            self.tenants.get(value).cloned()
        } else {
            self.by_user.get(value).cloned()
        }
    }

    /// Tenant names, for metrics (a bounded set: those in the file).
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tenants.keys().map(String::as_str)
    }
}

/// A regex error on one line (the regex crate draws a caret under the pattern): start-up
/// errors are one line.
fn one_line(e: &regex::Error) -> String {
    e.to_string()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.chars().all(|c| c == '^'))
        .collect::<Vec<_>>()
        .join(" ")
}

fn token_key(token: &str) -> [u8; 32] {
    let digest = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
    let mut key = [0u8; 32];
    key.copy_from_slice(digest.as_ref());
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<Tenants, TenantsError> {
        let dir = std::env::temp_dir().join(format!("janus-tenants-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        std::fs::write(dir.join("a.tokens"), "tok-a\n\n").expect("tokens");
        let path = dir.join("tenants.yml");
        std::fs::write(&path, text).expect("write");
        Tenants::load(&path)
    }

    const FILE: &str = r#"
tenants:
  team-a:
    users: [alice]
    bearer_token_files: [a.tokens]
    namespaces: [shop, "cart-.*"]
    push: true
    upstream_org_id: team-a
  ops:
    users: [root]
    all: true
identity_header:
  name: X-Forwarded-User
  from: [10.0.0.0/8, 127.0.0.1]
"#;

    #[test]
    fn identities_and_scopes() {
        let tenants = load(FILE).expect("loads");
        let a = tenants
            .identify(&Presented {
                verified_user: Some("alice"),
                ..Default::default()
            })
            .expect("alice");
        assert_eq!(a.name, "team-a");
        let scope = a.scope.as_ref().expect("restricted");
        assert!(scope.namespaces.contains("shop"));
        assert!(scope.namespaces.contains("cart-1"));
        // Anchored: no prefix or suffix match, no alternation escaping the anchors.
        for other in ["shop2", "xshop", "cart", "b", ""] {
            assert!(!scope.namespaces.contains(other), "{other}");
        }
        assert!(a.may_push_into("cart-2") && !a.may_push_into("b"));
        let token = Presented {
            bearer: Some("tok-a"),
            ..Default::default()
        };
        assert_eq!(
            tenants.identify(&token).map(|t| t.name.clone()).as_deref(),
            Some("team-a")
        );
        let wrong = Presented {
            bearer: Some("tok-b"),
            ..Default::default()
        };
        assert!(tenants.identify(&wrong).is_none());
        let proxied = |peer: &str| Presented {
            header: Some("root"),
            peer: peer.parse().ok(),
            ..Default::default()
        };
        let ops = tenants
            .identify(&proxied("10.1.2.3"))
            .expect("from the proxy");
        assert!(ops.scope.is_none());
        assert!(tenants.identify(&proxied("192.168.0.1")).is_none());
        assert!(tenants.identify(&proxied("127.0.0.2")).is_none());
    }

    #[test]
    fn bad_files_name_the_key() {
        for (text, key) in [
            ("tenants: {}\n", "tenants"),
            (
                "tenants:\n  a:\n    namespaces: ['(']\n",
                "tenants.a.namespaces",
            ),
            (
                "tenants:\n  a:\n    users: [x]\n  b:\n    users: [x]\n",
                "tenants.b.users",
            ),
            (
                "tenants:\n  a:\n    all: true\n    namespaces: [x]\n",
                "tenants.a.all",
            ),
            (
                "tenants:\n  a:\n    bearer_token_files: [missing]\n",
                "tenants.a.bearer_token_files",
            ),
            ("tenants:\n  a:\n    namespace: [x]\n", "namespace"),
            (
                "tenants:\n  a: {}\nidentity_header:\n  name: X-User\n  from: []\n",
                "identity_header.from",
            ),
            (
                "tenants:\n  a: {}\nidentity_header:\n  name: X-User\n  from: [nowhere]\n",
                "identity_header.from",
            ),
        ] {
            let e = load(text).err().unwrap_or_else(|| panic!("{text} loads"));
            assert!(e.to_string().contains(key), "{text}: {e}");
        }
    }
}
