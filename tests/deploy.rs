//! `deploy/kubernetes/` as a cluster would take it: every overlay renders with `kubectl
//! kustomize` and validates against Kubernetes 1.30's schemas (`kubernetes-validate --strict`,
//! offline); every Janus container's arguments and embedded `janus.yml` load with `janus check
//! config`; the Fluent Bit pipeline ships to Janus's Service with the labels Janus stores; the
//! Grafana datasources point at Janus; and every query of the dashboard parses as PromQL and
//! names only metrics a running Janus exports.

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_norway::Value;

const JANUS: &str = env!("CARGO_BIN_EXE_janus");

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/kubernetes")
}

/// `kubectl kustomize <overlay>`: the documents it renders.
fn render(overlay: &str) -> (String, Vec<Value>) {
    render_dir(&deploy_dir().join(overlay))
}

/// `kubectl kustomize <dir>`: the text and the documents it renders.
fn render_dir(dir: &Path) -> (String, Vec<Value>) {
    let out = Command::new("kubectl")
        .arg("kustomize")
        .arg(dir)
        .output()
        .expect("kubectl runs (the test command installs it)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let docs = serde_norway::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).expect("rendered YAML"))
        .collect();
    (text, docs)
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    let mut cur = v;
    for key in path {
        cur = cur.get(*key)?;
    }
    cur.as_str()
}

fn kinds(docs: &[Value]) -> BTreeSet<String> {
    docs.iter()
        .filter_map(|d| str_at(d, &["kind"]).map(str::to_string))
        .collect()
}

/// The rendered overlays validate strictly against Kubernetes 1.30.
#[test]
fn every_overlay_renders_and_validates_against_kubernetes_1_30() {
    let validate = support::required_env("JANUS_TEST_KUBERNETES_VALIDATE");
    let dir = support::temp_dir("deploy-validate");
    for (overlay, expected) in [
        (
            "single-node",
            &[
                "ConfigMap",
                "PodDisruptionBudget",
                "Service",
                "ServiceAccount",
                "StatefulSet",
            ][..],
        ),
        (
            "clickhouse",
            &[
                "ConfigMap",
                "Deployment",
                "PodDisruptionBudget",
                "Service",
                "ServiceAccount",
            ],
        ),
        (
            "fluent-bit",
            &[
                "ClusterRole",
                "ClusterRoleBinding",
                "ConfigMap",
                "DaemonSet",
                "ServiceAccount",
            ],
        ),
        ("grafana", &["ConfigMap"]),
    ] {
        let (text, docs) = render(overlay);
        let want: BTreeSet<String> = expected.iter().map(|k| k.to_string()).collect();
        assert_eq!(kinds(&docs), want, "{overlay}");
        let file = dir.join(format!("{overlay}.yaml"));
        std::fs::write(&file, &text).expect("write");
        let out = Command::new(&validate)
            .args(["-k", "1.30.0", "--strict", "--quiet"])
            .arg(&file)
            .output()
            .expect("kubernetes-validate runs");
        assert!(
            out.status.success(),
            "{overlay}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        // Every workload runs as the image's user, without root or a writable root filesystem.
        for doc in &docs {
            let Some(spec) = doc.get("spec").and_then(|s| s.get("template")) else {
                continue;
            };
            if str_at(doc, &["metadata", "name"]) == Some("fluent-bit") {
                continue; // reads root-owned host logs
            }
            let pod = &spec["spec"];
            assert_eq!(
                pod["securityContext"]["runAsUser"].as_u64(),
                Some(65532),
                "{overlay}"
            );
            assert_eq!(pod["securityContext"]["runAsNonRoot"].as_bool(), Some(true));
            for c in pod["containers"].as_sequence().expect("containers") {
                assert_eq!(
                    c["securityContext"]["readOnlyRootFilesystem"].as_bool(),
                    Some(true)
                );
                assert!(c["resources"]["limits"]["memory"].as_str().is_some());
            }
        }
    }
    // The optional ServiceMonitor (a CRD the schemas do not hold) renders and selects the Service.
    let overlay = support::temp_dir("deploy-servicemonitor");
    let copied = Command::new("cp")
        .arg("-r")
        .arg(deploy_dir())
        .arg(overlay.join("kubernetes"))
        .status()
        .expect("cp");
    assert!(copied.success());
    let with_monitor = overlay.join("kubernetes/with-servicemonitor");
    std::fs::create_dir_all(&with_monitor).expect("mkdir");
    std::fs::write(
        with_monitor.join("kustomization.yaml"),
        "resources: [../single-node]\ncomponents: [../components/servicemonitor]\n",
    )
    .expect("write");
    let (text, _) = render_dir(&with_monitor);
    assert!(text.contains("kind: ServiceMonitor") && text.contains("port: http"));
    let _ = std::fs::remove_dir_all(dir);
    let _ = std::fs::remove_dir_all(overlay);
}

/// The image and the manifests agree on the user: the Dockerfile makes uid 65532 and runs as it,
/// which is what every Janus workload's securityContext asks for.
#[test]
fn the_image_runs_as_the_user_the_manifests_ask_for() {
    let dockerfile =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Dockerfile"))
            .expect("Dockerfile");
    assert!(dockerfile.contains("--uid 65532"), "{dockerfile}");
    let user = dockerfile
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("a USER line");
    assert_eq!(user.trim(), "janus");
    assert!(dockerfile
        .contains("useradd --system --uid 65532 --home-dir /var/lib/janus --create-home janus"));
    for overlay in ["single-node", "clickhouse"] {
        let (_, docs) = render(overlay);
        let workload = docs
            .iter()
            .find(|d| matches!(str_at(d, &["kind"]), Some("StatefulSet" | "Deployment")))
            .expect("a workload");
        let context = &workload["spec"]["template"]["spec"]["securityContext"];
        assert_eq!(context["runAsUser"].as_u64(), Some(65532), "{overlay}");
        assert_eq!(context["runAsGroup"].as_u64(), Some(65532), "{overlay}");
    }
}

/// Each Janus container's arguments, with its mounted files laid out in a temporary directory,
/// load as a start would load them: the flags exist, the embedded `janus.yml` is valid, and the
/// files it names are where the manifests mount them.
#[test]
fn every_janus_container_config_loads_with_janus_check_config() {
    for overlay in ["single-node", "clickhouse"] {
        let (_, docs) = render(overlay);
        let root = support::temp_dir(&format!("deploy-{overlay}"));
        let configmaps: Vec<&Value> = docs
            .iter()
            .filter(|d| str_at(d, &["kind"]) == Some("ConfigMap"))
            .collect();
        let workload = docs
            .iter()
            .find(|d| matches!(str_at(d, &["kind"]), Some("StatefulSet" | "Deployment")))
            .expect("a workload");
        let pod = &workload["spec"]["template"]["spec"];
        let container = &pod["containers"][0];
        // Mount paths become directories under `root`; paths in args and files are rewritten.
        let mut rewrites: Vec<(String, String)> = Vec::new();
        for mount in container["volumeMounts"].as_sequence().expect("mounts") {
            let name = mount["name"].as_str().expect("name");
            let path = mount["mountPath"].as_str().expect("mountPath");
            let local = root.join(path.trim_start_matches('/'));
            std::fs::create_dir_all(&local).expect("mkdir");
            rewrites.push((path.to_string(), local.display().to_string()));
            let claimed = workload["spec"]["volumeClaimTemplates"]
                .as_sequence()
                .is_some_and(|c| {
                    c.iter()
                        .any(|t| t["metadata"]["name"].as_str() == Some(name))
                });
            if claimed {
                continue; // a PersistentVolumeClaim: an empty directory
            }
            let volume = pod["volumes"]
                .as_sequence()
                .expect("volumes")
                .iter()
                .find(|v| v["name"].as_str() == Some(name))
                .expect("the mount's volume");
            if let Some(cm) = volume["configMap"]["name"].as_str() {
                let data = configmaps
                    .iter()
                    .find(|c| str_at(c, &["metadata", "name"]) == Some(cm))
                    .expect("the mounted ConfigMap is rendered")["data"]
                    .as_mapping()
                    .expect("data");
                for (file, text) in data {
                    std::fs::write(
                        local.join(file.as_str().expect("key")),
                        text.as_str().expect("text"),
                    )
                    .expect("write");
                }
            }
            if volume["secret"].is_mapping() {
                // Made by the operator (docs/deploy.md): a placeholder with the named key.
                std::fs::write(local.join("password"), "placeholder\n").expect("write");
            }
        }
        rewrites.sort_by_key(|(from, _)| std::cmp::Reverse(from.len()));
        // Longest mount first, through placeholders, so `/etc/janus` never rewrites inside an
        // already rewritten `/etc/janus-clickhouse`.
        let rewrite = |text: &str| {
            let marked = rewrites
                .iter()
                .enumerate()
                .fold(text.to_string(), |t, (i, (from, _))| {
                    t.replace(from.as_str(), &format!("\u{0}{i}\u{0}"))
                });
            rewrites.iter().enumerate().fold(marked, |t, (i, (_, to))| {
                t.replace(&format!("\u{0}{i}\u{0}"), to)
            })
        };
        for entry in std::fs::read_dir(root.join("etc/janus")).expect("config dir") {
            let path = entry.expect("entry").path();
            let text = std::fs::read_to_string(&path).expect("read");
            std::fs::write(&path, rewrite(&text)).expect("write");
        }
        let args: Vec<String> = container["args"]
            .as_sequence()
            .expect("args")
            .iter()
            .map(|a| rewrite(a.as_str().expect("arg")))
            .collect();
        let out = Command::new(JANUS)
            .args(&args)
            .args(["check", "config"])
            .output()
            .expect("janus runs");
        let said = format!(
            "{overlay}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "{said}");
        assert!(said.contains("SUCCESS"), "{said}");
        if overlay == "clickhouse" {
            assert!(said.contains("ClickHouse http://clickhouse"), "{said}");
        }
        // Probes and the port are the ones Janus serves.
        assert_eq!(
            container["readinessProbe"]["httpGet"]["path"].as_str(),
            Some("/-/ready")
        );
        assert_eq!(
            container["livenessProbe"]["httpGet"]["path"].as_str(),
            Some("/-/healthy")
        );
        assert_eq!(container["ports"][0]["containerPort"].as_u64(), Some(9099));
        let _ = std::fs::remove_dir_all(root);
    }
}

/// `[section]` blocks of Fluent Bit's classic format: (section, keys and values in order).
fn fluent_bit_sections(text: &str) -> Vec<(String, Vec<(String, String)>)> {
    let mut sections: Vec<(String, Vec<(String, String)>)> = Vec::new();
    for line in text.lines() {
        let line = line.trim_end();
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        if let Some(name) = trimmed.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
            assert_eq!(line, trimmed, "a section header starts its line: {line}");
            sections.push((name.to_ascii_uppercase(), Vec::new()));
            continue;
        }
        assert!(
            line.starts_with("    "),
            "an entry is indented by four spaces: {line}"
        );
        let (key, value) = trimmed
            .split_once(char::is_whitespace)
            .unwrap_or_else(|| panic!("an entry is `key value`: {line}"));
        let section = sections
            .last_mut()
            .unwrap_or_else(|| panic!("an entry outside a section: {line}"));
        section
            .1
            .push((key.to_ascii_lowercase(), value.trim().to_string()));
    }
    sections
}

/// The Fluent Bit pipeline, checked structurally (Fluent Bit is not packaged here): container
/// logs tailed and labelled by the kubernetes filter, the journal read, both shipped to the
/// Service's name and port with exactly the labels Janus stores.
#[test]
fn fluent_bit_ships_to_janus_with_the_labels_it_stores() {
    let (_, docs) = render("fluent-bit");
    let cm = docs
        .iter()
        .find(|d| str_at(d, &["kind"]) == Some("ConfigMap"))
        .expect("config map");
    let text = cm["data"]["fluent-bit.conf"]
        .as_str()
        .expect("fluent-bit.conf");
    let sections = fluent_bit_sections(text);
    let get = |s: &Vec<(String, String)>, key: &str| -> Option<String> {
        s.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone())
    };
    let named = |kind: &str, name: &str| -> Vec<Vec<(String, String)>> {
        sections
            .iter()
            .filter(|(k, s)| k == kind && get(s, "name").as_deref() == Some(name))
            .map(|(_, s)| s.clone())
            .collect()
    };
    let tail = &named("INPUT", "tail")[0];
    assert_eq!(
        get(tail, "path").as_deref(),
        Some("/var/log/containers/*.log")
    );
    assert_eq!(named("INPUT", "systemd").len(), 1);
    assert_eq!(named("FILTER", "kubernetes").len(), 1);
    // Janus's Service, as the base renders it.
    let (_, base) = render("single-node");
    let service = base
        .iter()
        .find(|d| str_at(d, &["kind"]) == Some("Service"))
        .expect("service");
    let host = format!(
        "{}.{}.svc",
        str_at(service, &["metadata", "name"]).expect("name"),
        str_at(service, &["metadata", "namespace"]).expect("namespace")
    );
    let port = service["spec"]["ports"][0]["port"].as_u64().expect("port");
    let outputs = named("OUTPUT", "loki");
    assert_eq!(outputs.len(), 2);
    let mut label_sets = BTreeSet::new();
    for out in &outputs {
        assert_eq!(get(out, "host"), Some(host.clone()));
        assert_eq!(get(out, "port"), Some(port.to_string()));
        assert_eq!(get(out, "uri").as_deref(), Some("/loki/api/v1/push"));
        let labels: Vec<String> = get(out, "labels")
            .expect("labels")
            .split(',')
            .map(|l| l.trim().split('=').next().unwrap_or("").to_string())
            .collect();
        label_sets.insert(labels.join(","));
    }
    assert_eq!(
        label_sets,
        BTreeSet::from([
            "namespace,pod,container".to_string(),
            "node,process".to_string()
        ])
    );
    // The DaemonSet mounts the config where its args read it, and the logs it tails.
    let ds = docs
        .iter()
        .find(|d| str_at(d, &["kind"]) == Some("DaemonSet"))
        .expect("daemonset");
    let c = &ds["spec"]["template"]["spec"]["containers"][0];
    let arg = c["args"][0].as_str().expect("arg");
    let mounts: Vec<&str> = c["volumeMounts"]
        .as_sequence()
        .expect("mounts")
        .iter()
        .filter_map(|m| m["mountPath"].as_str())
        .collect();
    assert!(mounts
        .iter()
        .any(|m| arg.ends_with(&format!("{m}/fluent-bit.conf"))));
    assert!(mounts.contains(&"/var/log"));
}

/// The dashboard's queries parse as PromQL (Grafana's variables put in) and name only metrics a
/// running Janus exports; the datasources point at the Service.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_grafana_dashboard_uses_only_metrics_janus_exports() {
    let dir = deploy_dir().join("grafana");
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("janus-dashboard.json")).expect("dashboard"),
    )
    .expect("dashboard JSON");
    // A labelled family shows in the exposition once it has a child: Janus is driven through
    // each face first — an upstream (another Janus, whose own upstream is down), a tenant, a
    // rule group, pushes, log and metric queries (twice, for the cache).
    let work = support::temp_dir("deploy-dashboard");
    let upstream = support::start_janus("http://127.0.0.1:1", |_| {}).await;
    let tenants_file = work.join("tenants.yml");
    std::fs::write(
        &tenants_file,
        "tenants:\n  shop:\n    users: [alice]\n    namespaces: [shop]\n    push: true\n  ops:\n    users: [root]\n    all: true\nidentity_header:\n  name: X-Forwarded-User\n  from: [127.0.0.1]\n",
    )
    .expect("tenants");
    let tenants = janus::auth::tenants::Tenants::load(&tenants_file).expect("tenants load");
    let rules_file = work.join("rules.yml");
    std::fs::write(
        &rules_file,
        "groups:\n- name: shop\n  interval: 1s\n  rules:\n  - record: shop:errors:rate1m\n    expr: sum(rate(pod{namespace=\"shop\"} |= \"ERROR\" [1m]))\n",
    )
    .expect("rules");
    let rules = janus::rules::Settings {
        files: vec![rules_file.display().to_string()],
        evaluation_interval: std::time::Duration::from_secs(1),
        ..janus::rules::Settings::default()
    };
    let janus = support::start_janus(&upstream.url, move |c| {
        c.tenants = Some(std::sync::Arc::new(tenants));
        c.rules = rules;
    })
    .await;
    let client = reqwest::Client::new();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_nanos();
    let push = client
        .post(format!("{}/loki/api/v1/push", janus.url))
        .header("X-Forwarded-User", "alice")
        .header("content-type", "application/json")
        .body(
            serde_json::json!({"streams": [{"stream": {"namespace": "shop", "pod": "web", "container": "app"},
                "values": [[now.to_string(), "ERROR something broke"]]}]})
            .to_string(),
        )
        .send()
        .await
        .expect("push");
    assert_eq!(push.status(), 204);
    // A push Janus refuses (not JSON nor protobuf) counts as refused.
    let refused = client
        .post(format!("{}/loki/api/v1/push", janus.url))
        .header("X-Forwarded-User", "alice")
        .header("content-type", "text/plain")
        .body("not a push")
        .send()
        .await
        .expect("push");
    assert_eq!(refused.status(), 415);
    for query in ["sum(rate(up[5m]))", r#"pod{namespace="shop"}"#] {
        for _ in 0..2 {
            client
                .get(format!("{}/api/v1/query_range", janus.url))
                .header("X-Forwarded-User", "alice")
                .query(&[
                    ("query", query),
                    ("start", "1700000000"),
                    ("end", "1700003600"),
                    ("step", "60"),
                ])
                .send()
                .await
                .expect("query");
        }
    }
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    let exposition = client
        .get(format!("{}/metrics", janus.url))
        .header("X-Forwarded-User", "root")
        .send()
        .await
        .expect("scrape")
        .text()
        .await
        .expect("body");
    // Series names from the families' types: counters end in _total, histograms have buckets.
    let mut exported = BTreeSet::new();
    for line in exposition.lines() {
        let mut words = line.split_whitespace();
        if let (Some("#"), Some("TYPE"), Some(name), Some(kind)) =
            (words.next(), words.next(), words.next(), words.next())
        {
            match kind {
                "counter" => {
                    exported.insert(format!("{name}_total"));
                }
                "histogram" => {
                    for suffix in ["_bucket", "_sum", "_count"] {
                        exported.insert(format!("{name}{suffix}"));
                    }
                }
                "info" => {
                    exported.insert(format!("{name}_info"));
                }
                _ => {
                    exported.insert(name.to_string());
                }
            }
        }
    }
    assert!(
        exported.contains("janus_http_requests_total"),
        "{exported:?}"
    );
    let names = regex::Regex::new(r"janus_[a-z_]+").expect("regex");
    let mut queries = 0;
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().expect("targets") {
            let expr = target["expr"].as_str().expect("expr");
            let grafana_free = expr
                .replace("$__rate_interval", "5m")
                .replace("$__interval", "1m");
            promql_parser::parser::parse(&grafana_free).unwrap_or_else(|e| panic!("{expr}: {e}"));
            for name in names.find_iter(expr) {
                assert!(
                    exported.contains(name.as_str()),
                    "{expr}: Janus exports no {}",
                    name.as_str()
                );
            }
            queries += 1;
        }
    }
    assert!(queries >= 12, "{queries}");
    // Faces, upstream, store, scan, cache, tenants, rules: each has a panel.
    let all = serde_json::to_string(&dashboard).expect("json");
    for metric in [
        "janus_http_requests_total",
        "janus_http_request_duration_seconds_bucket",
        "janus_upstream_errors_total",
        "janus_ingest_written_bytes_total",
        "janus_store_scanned_bytes_total",
        "janus_cache_requests_total",
        "janus_tenant_requests_total",
        "janus_rule_evaluations_total",
    ] {
        assert!(all.contains(metric), "no panel shows {metric}");
    }

    let datasources: Value = serde_norway::from_str(
        &std::fs::read_to_string(dir.join("datasources.yaml")).expect("datasources"),
    )
    .expect("datasources YAML");
    let list = datasources["datasources"].as_sequence().expect("list");
    let types: BTreeSet<&str> = list.iter().filter_map(|d| d["type"].as_str()).collect();
    assert_eq!(types, BTreeSet::from(["loki", "prometheus"]));
    for d in list {
        assert_eq!(d["url"].as_str(), Some("http://janus.monitoring.svc:9099"));
    }
    let venti: Value = serde_norway::from_str(
        &std::fs::read_to_string(deploy_dir().join("venti/datasources.yaml")).expect("venti"),
    )
    .expect("venti YAML");
    let venti_types: BTreeSet<&str> = venti["datasources"]
        .as_sequence()
        .expect("list")
        .iter()
        .filter_map(|d| d["type"].as_str())
        .collect();
    assert_eq!(venti_types, BTreeSet::from(["lethe", "prometheus"]));
    let _ = std::fs::remove_dir_all(work);
}

/// The image's build stage copies every directory the binary is compiled from: the sources, and
/// whatever they embed with `include_bytes!`/`include_str!` (the query page's files).
#[test]
fn the_image_build_copies_everything_the_binary_embeds() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dockerfile = std::fs::read_to_string(root.join("Dockerfile")).expect("Dockerfile");
    let copied: Vec<String> = dockerfile
        .lines()
        .filter_map(|l| l.strip_prefix("COPY "))
        .filter(|l| !l.starts_with("--from"))
        .flat_map(|l| {
            let parts: Vec<&str> = l.split_whitespace().collect();
            parts[..parts.len().saturating_sub(1)]
                .iter()
                .map(|p| p.trim_end_matches('/').to_string())
                .collect::<Vec<_>>()
        })
        .collect();
    let mut needed = std::collections::BTreeSet::from(["src".to_string()]);
    let mut stack = vec![root.join("src")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("src dir").flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let Ok(text) = std::fs::read_to_string(&path) else {
                continue;
            };
            for macro_name in ["include_bytes!(", "include_str!("] {
                for piece in text.split(macro_name).skip(1) {
                    let mut literal = piece.trim_start().trim_start_matches("concat!(");
                    literal = literal.trim_start_matches('"');
                    let Some(end) = literal.find('"') else {
                        continue;
                    };
                    let relative = &literal[..end];
                    if relative.is_empty() || !relative.starts_with("..") {
                        continue;
                    }
                    let target = path.parent().expect("parent").join(relative);
                    let resolved = normalize(&target);
                    let inside = resolved.strip_prefix(root).expect("inside the crate");
                    let top = inside
                        .components()
                        .next()
                        .expect("a component")
                        .as_os_str()
                        .to_string_lossy()
                        .to_string();
                    needed.insert(top);
                }
            }
        }
    }
    assert!(needed.contains("assets"), "{needed:?}");
    for dir in &needed {
        assert!(
            copied.contains(dir),
            "the Dockerfile's build stage does not COPY {dir}/ (copies {copied:?})"
        );
    }
}

/// `a/b/../c` → `a/c`, without touching the disk.
fn normalize(path: &Path) -> std::path::PathBuf {
    let mut out = std::path::PathBuf::new();
    for c in path.components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other.as_os_str()),
        }
    }
    out
}
