//! From a pushed stream's labels to a store target: a pod log (`namespace`, `pod`, `container`)
//! or a node log (`node`, `process`), under the label names collectors actually use.
//!
//! Label values become a directory name and bracket fields of every line, so anything that could
//! escape the directory or break the line format is refused, with the stream named.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::decode::describe;
use crate::logql::LogKind;

/// Which pushed label names feed each store label, first match wins. Configurable in the
/// config file (`ingest.labels`); these defaults cover Kubernetes collectors (Fluent Bit,
/// Promtail, Alloy, Vector, OpenTelemetry).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LabelMapping {
    pub namespace: Vec<String>,
    pub pod: Vec<String>,
    pub container: Vec<String>,
    pub node: Vec<String>,
    pub process: Vec<String>,
}

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

impl Default for LabelMapping {
    fn default() -> Self {
        LabelMapping {
            namespace: names(&[
                "namespace",
                "namespace_name",
                "k8s_namespace_name",
                "kubernetes_namespace_name",
                "k8s.namespace.name",
            ]),
            pod: names(&[
                "pod",
                "pod_name",
                "k8s_pod_name",
                "kubernetes_pod_name",
                "k8s.pod.name",
            ]),
            container: names(&[
                "container",
                "container_name",
                "k8s_container_name",
                "kubernetes_container_name",
                "k8s.container.name",
            ]),
            node: names(&[
                "node",
                "node_name",
                "k8s_node_name",
                "kubernetes_host",
                "host",
                "hostname",
                "host.name",
            ]),
            process: names(&[
                "process",
                "unit",
                "systemd_unit",
                "_systemd_unit",
                "syslog_identifier",
                "service_name",
                "job",
            ]),
        }
    }
}

/// Where a stream's lines go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub kind: LogKind,
    /// Label values in [`LogKind::labels`] order; the first is the directory.
    pub values: Vec<String>,
}

fn first<'a>(labels: &'a BTreeMap<String, String>, candidates: &[String]) -> Option<&'a str> {
    candidates
        .iter()
        .find_map(|c| labels.get(c).map(String::as_str))
}

impl LabelMapping {
    /// Maps a stream, or says why it cannot be stored.
    pub fn target(&self, labels: &BTreeMap<String, String>) -> Result<Target, String> {
        let pod = (
            first(labels, &self.namespace),
            first(labels, &self.pod),
            first(labels, &self.container),
        );
        let node = (first(labels, &self.node), first(labels, &self.process));
        let (kind, values, names): (LogKind, Vec<&str>, &[&str]) = match (pod, node) {
            ((Some(ns), Some(p), Some(c)), _) => (LogKind::Pod, vec![ns, p, c], &["namespace", "pod", "container"]),
            (_, (Some(n), Some(p))) => (LogKind::Node, vec![n, p], &["node", "process"]),
            _ => {
                return Err(format!(
                    "stream {} maps to neither a pod log (namespace, pod, container) nor a node log (node, process); see ingest.labels",
                    describe(labels)
                ))
            }
        };
        for (value, name) in values.iter().zip(names) {
            check_value(name, value, *name == names[0])
                .map_err(|why| format!("stream {}: {name} {value:?} {why}", describe(labels)))?;
        }
        Ok(Target {
            kind,
            values: values.into_iter().map(str::to_string).collect(),
        })
    }
}

/// A value that will be a directory name (`is_target`) and a bracket field.
fn check_value(_name: &str, value: &str, is_target: bool) -> Result<(), &'static str> {
    if value.is_empty() {
        return Err("is empty");
    }
    if value.len() > 253 {
        return Err("is longer than 253 bytes");
    }
    if value == "." || value == ".." {
        return Err("is not a usable name");
    }
    if is_target && value.starts_with('.') {
        return Err("starts with '.' (hidden directories are not read)");
    }
    if let Some(c) = value
        .chars()
        .find(|c| matches!(c, '/' | '|' | ']' | '[') || c.is_control())
    {
        let _ = c;
        return Err("contains '/', '|', '[', ']' or a control character");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn collectors_label_names_map() {
        let m = LabelMapping::default();
        let t = m
            .target(&labels(&[
                ("namespace_name", "shop"),
                ("pod_name", "web-1"),
                ("container_name", "nginx"),
                ("host", "n1"),
            ]))
            .unwrap();
        assert_eq!(
            (t.kind, t.values),
            (
                LogKind::Pod,
                vec!["shop".into(), "web-1".into(), "nginx".into()]
            )
        );
        let t = m
            .target(&labels(&[("hostname", "n1"), ("unit", "kubelet.service")]))
            .unwrap();
        assert_eq!(
            (t.kind, t.values),
            (LogKind::Node, vec!["n1".into(), "kubelet.service".into()])
        );
        assert!(m
            .target(&labels(&[("app", "x")]))
            .unwrap_err()
            .contains("maps to neither"));
    }

    #[test]
    fn values_that_would_escape_or_break_lines_are_refused() {
        let m = LabelMapping::default();
        for bad in [
            "",
            ".",
            "..",
            "../etc",
            "a/b",
            "a|b",
            "a]b",
            "a\nb",
            "a\0b",
            ".hidden",
            &"x".repeat(254),
        ] {
            let e = m.target(&labels(&[
                ("namespace", bad),
                ("pod", "p"),
                ("container", "c"),
            ]));
            assert!(e.is_err(), "{bad:?}");
        }
        let e = m
            .target(&labels(&[
                ("namespace", "ns"),
                ("pod", "p|q"),
                ("container", "c"),
            ]))
            .unwrap_err();
        assert!(e.contains("pod \"p|q\""), "{e}");
    }
}
