//! Who a request is and what it may do: the web configuration (TLS, basic-auth users, rate
//! limit, response headers) and its guard, the tenants file (identities, namespaces, limits),
//! and the confinement of a tenant's queries to its namespaces. Used by the HTTP layer (`api`)
//! and the accept loop (`connections`); uses the parsers (`logql`, `promql`) to confine queries
//! and nothing of the HTTP layer.

pub mod confined_texts;
pub mod settings_file;
pub mod tenant_limits;
pub mod tenants;
pub mod web_config;
pub mod web_guard;
