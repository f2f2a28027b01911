//! `api-spec/openapi.yaml` and the route table in `src/api/mod.rs` describe the same API: a route
//! without a spec entry, or a spec entry without a route, fails here.

use std::collections::BTreeSet;

use janus::api::ROUTES;

#[test]
fn every_route_is_specified_and_every_specified_path_is_served() {
    let text = include_str!("../api-spec/openapi.yaml");
    let spec: serde_json::Value = serde_norway::from_str(text).expect("openapi.yaml parses");
    let paths = spec["paths"].as_object().expect("paths");
    let mut specified = BTreeSet::new();
    for (path, operations) in paths {
        for method in operations.as_object().expect("operations").keys() {
            specified.insert(format!("{} {path}", method.to_uppercase()));
        }
    }
    let served: BTreeSet<String> = ROUTES
        .iter()
        .flat_map(|r| r.methods.iter().map(move |m| format!("{m} {}", r.path)))
        .collect();
    let missing_from_spec: Vec<_> = served.difference(&specified).collect();
    let missing_from_router: Vec<_> = specified.difference(&served).collect();
    assert!(
        missing_from_spec.is_empty() && missing_from_router.is_empty(),
        "served but not specified: {missing_from_spec:?}\nspecified but not served: {missing_from_router:?}"
    );
}

#[test]
fn every_operation_documents_its_answers() {
    let spec: serde_json::Value =
        serde_norway::from_str(include_str!("../api-spec/openapi.yaml")).expect("parses");
    for (path, operations) in spec["paths"].as_object().expect("paths") {
        for (method, operation) in operations.as_object().expect("operations") {
            assert!(
                operation.get("responses").is_some() && operation.get("operationId").is_some(),
                "{method} {path} lacks responses or operationId"
            );
        }
    }
}
