//! A restricted tenant's confined query texts, remembered.
//!
//! A dashboard asks the same few queries on every refresh; parsing, confining and printing one
//! costs 0.1–1 ms of CPU and a trip to a blocking thread, on every request. The result depends
//! only on the text, the kind of text (a query or a `match[]` selector) and the tenant's scope,
//! which is fixed for the tenant's lifetime, so it is remembered per tenant: a repeated query is
//! one hash lookup. Refusals are remembered too (a client retrying an unparsable query costs
//! nothing either). The memory is bounded by bytes, per tenant ([`BYTES_PER_TENANT`]).

use std::sync::Arc;

use crate::auth::tenants::Tenant;

/// What one tenant's remembered texts may hold: keys and results, in bytes.
pub const BYTES_PER_TENANT: u64 = 4 << 20;

/// Texts longer than this are confined every time: a dashboard's queries are far shorter, and
/// one huge text would evict many useful ones.
const MAX_REMEMBERED_TEXT: usize = 64 << 10;

type Key = (bool, Arc<str>);
type Confined = Result<Arc<str>, Arc<str>>;

/// One tenant's remembered confinements: `(selector_only, text)` → printed text or refusal.
#[derive(Clone)]
pub struct ConfinedTexts {
    cache: moka::sync::Cache<Key, Confined>,
}

impl std::fmt::Debug for ConfinedTexts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfinedTexts")
            .field("entries", &self.cache.entry_count())
            .finish()
    }
}

impl Default for ConfinedTexts {
    fn default() -> Self {
        Self::with_capacity(BYTES_PER_TENANT)
    }
}

impl ConfinedTexts {
    pub fn with_capacity(bytes: u64) -> Self {
        let cache = moka::sync::Cache::builder()
            .max_capacity(bytes)
            .weigher(|(_, text): &Key, confined: &Confined| {
                let result = match confined {
                    Ok(t) | Err(t) => t.len(),
                };
                // An entry's own bookkeeping counts too, so many tiny entries stay bounded.
                u32::try_from(text.len() + result + 96).unwrap_or(u32::MAX)
            })
            .build();
        ConfinedTexts { cache }
    }

    fn get(&self, text: &str, selector_only: bool) -> Option<Result<String, String>> {
        let key: Key = (selector_only, Arc::from(text));
        self.cache.get(&key).map(|c| match c {
            Ok(t) => Ok(t.to_string()),
            Err(e) => Err(e.to_string()),
        })
    }

    fn remember(&self, text: &str, selector_only: bool, confined: &Result<String, String>) {
        if text.len() > MAX_REMEMBERED_TEXT {
            return;
        }
        let value: Confined = match confined {
            Ok(t) => Ok(Arc::from(t.as_str())),
            Err(e) => Err(Arc::from(e.as_str())),
        };
        self.cache.insert((selector_only, Arc::from(text)), value);
    }

    /// Bytes held now (after pending maintenance), for tests and metrics.
    pub fn weighted_size(&self) -> u64 {
        self.cache.run_pending_tasks();
        self.cache.weighted_size()
    }
}

/// `text` confined to `tenant`'s scope (see [`crate::promql::confine::confine_text`]):
/// remembered, or worked out on a blocking thread and remembered. `None` for an unrestricted
/// tenant, which has nothing to confine to.
pub async fn confine(
    tenant: &Arc<Tenant>,
    text: &str,
    selector_only: bool,
) -> Option<Result<String, String>> {
    tenant.scope.as_ref()?;
    if let Some(known) = tenant.confined_texts.get(text, selector_only) {
        return Some(known);
    }
    let owned = Arc::clone(tenant);
    let text = text.to_string();
    tokio::task::spawn_blocking(move || {
        let scope = owned.scope.as_ref()?;
        let confined =
            crate::promql::confine::confine_text(&text, &scope.confinement(), selector_only);
        owned
            .confined_texts
            .remember(&text, selector_only, &confined);
        Some(confined)
    })
    .await
    .unwrap_or_else(|e| Some(Err(format!("confining the query failed: {e}"))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembered_texts_stay_within_their_bytes() {
        let texts = ConfinedTexts::with_capacity(64 << 10);
        for i in 0..10_000 {
            let text = format!("rate(http_requests_total{{job=\"{i}\"}}[5m])");
            let confined = Ok(format!("{text} confined"));
            texts.remember(&text, false, &confined);
        }
        assert!(
            texts.weighted_size() <= 64 << 10,
            "{}",
            texts.weighted_size()
        );
        // A text too long to remember is not.
        let long = "a".repeat(MAX_REMEMBERED_TEXT + 1);
        texts.remember(&long, false, &Ok(long.clone()));
        assert!(texts.get(&long, false).is_none());
    }

    #[test]
    fn a_query_and_a_selector_of_the_same_text_are_remembered_apart() {
        let texts = ConfinedTexts::default();
        texts.remember("up", false, &Ok("query".into()));
        texts.remember("up", true, &Err("selector".into()));
        assert_eq!(texts.get("up", false), Some(Ok("query".into())));
        assert_eq!(texts.get("up", true), Some(Err("selector".into())));
        assert_eq!(texts.get("down", false), None);
    }
}
