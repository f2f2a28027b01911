//! Alert labels and annotations in Prometheus's template language: Go's `text/template` (the
//! `gotmpl` crate, a faithful port) with the data and functions Prometheus gives — `$labels`,
//! `$value`, `$externalLabels`, `$externalURL`, `humanize*`, `query`, `first`, `label`,
//! `value`, `reReplaceAll`, `match`, `title`, … A template that fails renders as Prometheus's
//! `<error expanding template: …>`; what one may cost is bounded (its output, its `range`
//! iterations, its nesting, the samples a `query` returns).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::sync::Arc;

use gotmpl::{MissingKey, Template, TemplateError, Value};

/// The most bytes one rendered template may make.
pub const MAX_OUTPUT_BYTES: usize = 64 * 1024;

/// The most `range` iterations one rendering may take.
const MAX_RANGE_ITERATIONS: u64 = 100_000;

/// The most samples a template's `query` returns.
pub const MAX_QUERY_SAMPLES: usize = 1_000;

/// The most `query` calls one rendering may make: each is an instant query, and a `range`
/// around one would otherwise run 100,000 of them while the group waits.
pub const MAX_QUERIES_PER_RENDERING: usize = 100;

/// The names Prometheus binds before every template.
const PREAMBLE: &str = "{{$labels := .Labels}}{{$externalLabels := .ExternalLabels}}{{$externalURL := .ExternalURL}}{{$value := .Value}}";

/// Runs a template's `query`: an instant query at the evaluation time, its samples.
pub type QueryFn =
    dyn Fn(&str) -> Result<Vec<(BTreeMap<String, String>, f64)>, String> + Send + Sync;

/// A parsed template.
#[derive(Clone)]
pub struct RuleTemplate(Arc<Template>);

impl std::fmt::Debug for RuleTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RuleTemplate")
    }
}

/// What a rendering sees.
pub struct Data<'a> {
    pub labels: &'a BTreeMap<String, String>,
    pub value: f64,
    pub external_labels: &'a BTreeMap<String, String>,
    pub external_url: &'a str,
}

thread_local! {
    /// The `query` function and external URL of the rendering running on this thread: the
    /// template's functions are registered once, at parse time, and read this when called.
    static RENDERING: RefCell<Option<(Option<Arc<QueryFn>>, String)>> = const { RefCell::new(None) };
    /// `query` calls the rendering running on this thread may still make.
    static QUERIES_LEFT: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

impl RuleTemplate {
    pub fn parse(text: &str) -> Result<RuleTemplate, String> {
        let template = functions(bounded_builtins(Template::new("__alert")))
            .missing_key(MissingKey::ZeroValue)
            .max_range_iters(MAX_RANGE_ITERATIONS)
            .parse(&format!("{PREAMBLE}{text}"))
            .map_err(|e| e.to_string())?;
        // Go refuses an unknown function or variable when it parses; gotmpl when it runs: a
        // trial run with empty data finds them now, not when the alert fires.
        match template.execute_fmt(&mut Bounded(String::new()), &Value::Nil) {
            Err(
                e @ (TemplateError::UndefinedFunction(_) | TemplateError::UndefinedVariable(_)),
            ) => Err(e.to_string()),
            _ => Ok(RuleTemplate(Arc::new(template))),
        }
    }

    /// Renders with `data`; a failure is the text Prometheus shows for it.
    pub fn render(&self, data: &Data<'_>, query: Option<Arc<QueryFn>>) -> String {
        let value = to_value(data);
        RENDERING.with(|r| *r.borrow_mut() = Some((query, data.external_url.to_string())));
        QUERIES_LEFT.with(|q| q.set(MAX_QUERIES_PER_RENDERING));
        let mut out = Bounded(String::new());
        let done = self.0.execute_fmt(&mut out, &value);
        RENDERING.with(|r| *r.borrow_mut() = None);
        match done {
            // Go prints a missing map key under missingkey=zero as the zero string.
            Ok(()) => out.0.replace("<no value>", ""),
            Err(TemplateError::Exec(e)) if e.contains("fmt") => {
                format!("<error expanding template: output larger than {MAX_OUTPUT_BYTES} bytes>")
            }
            Err(e) => format!("<error expanding template: {e}>"),
        }
    }
}

/// A writer that refuses to grow beyond [`MAX_OUTPUT_BYTES`].
struct Bounded(String);

impl std::fmt::Write for Bounded {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        if self.0.len() + s.len() > MAX_OUTPUT_BYTES {
            return Err(std::fmt::Error);
        }
        self.0.push_str(s);
        Ok(())
    }
}

fn labels_value(labels: &BTreeMap<String, String>) -> Value {
    let map: BTreeMap<String, Value> = labels
        .iter()
        .map(|(k, v)| (k.clone(), Value::from(v.as_str())))
        .collect();
    Value::from(map)
}

fn to_value(data: &Data<'_>) -> Value {
    let mut map = BTreeMap::new();
    map.insert("Labels".to_string(), labels_value(data.labels));
    map.insert(
        "ExternalLabels".to_string(),
        labels_value(data.external_labels),
    );
    map.insert("ExternalURL".to_string(), Value::from(data.external_url));
    map.insert("Value".to_string(), Value::Float(data.value));
    Value::from(map)
}

fn sample_value(labels: &BTreeMap<String, String>, value: f64) -> Value {
    let mut map = BTreeMap::new();
    map.insert("Labels".to_string(), labels_value(labels));
    map.insert("Value".to_string(), Value::Float(value));
    Value::from(map)
}

fn fail(message: impl Into<String>) -> TemplateError {
    TemplateError::Exec(message.into())
}

fn number(v: Option<&Value>) -> Result<f64, TemplateError> {
    match v {
        Some(Value::Float(f)) => Ok(*f),
        Some(Value::Int(i)) => Ok(*i as f64),
        Some(Value::Uint(u)) => Ok(*u as f64),
        Some(Value::String(s)) => s
            .trim()
            .parse()
            .map_err(|_| fail(format!("can't convert {s:?} to float"))),
        Some(other) => Err(fail(format!("can't convert {other} to float"))),
        None => Err(fail("missing argument")),
    }
}

fn text(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) => s.to_string(),
        Some(Value::Nil) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

fn field<'v>(sample: &'v Value, name: &str) -> Option<&'v Value> {
    match sample {
        Value::Map(m) => m.get(name),
        _ => None,
    }
}

fn regex(pattern: &str) -> Result<regex::Regex, TemplateError> {
    regex::RegexBuilder::new(pattern)
        .size_limit(1 << 20)
        .build()
        .map_err(|e| fail(format!("bad regex {pattern:?}: {e}")))
}

/// Registers Prometheus's template functions.
fn functions(t: Template) -> Template {
    t.func("humanize", |a| {
        Ok(Value::from(humanize(number(a.first())?)))
    })
    .func("humanize1024", |a| {
        Ok(Value::from(humanize_1024(number(a.first())?)))
    })
    .func("humanizeDuration", |a| {
        Ok(Value::from(humanize_duration(number(a.first())?)))
    })
    .func("humanizePercentage", |a| {
        Ok(Value::from(format!(
            "{}%",
            go_g4(number(a.first())? * 100.0)
        )))
    })
    .func("humanizeTimestamp", |a| {
        Ok(Value::from(humanize_timestamp(number(a.first())?)))
    })
    .func("toUpper", |a| {
        Ok(Value::from(text(a.first()).to_uppercase()))
    })
    .func("toLower", |a| {
        Ok(Value::from(text(a.first()).to_lowercase()))
    })
    .func("title", |a| Ok(Value::from(title(&text(a.first())))))
    .func("safeHtml", |a| Ok(Value::from(text(a.first()))))
    .func("stripPort", |a| {
        Ok(Value::from(strip_port(&text(a.first()))))
    })
    .func("stripDomain", |a| {
        let host = text(a.first());
        let (name, port) = match host.rsplit_once(':') {
            Some((h, p)) if p.chars().all(|c| c.is_ascii_digit()) => {
                (h.to_string(), format!(":{p}"))
            }
            _ => (host.clone(), String::new()),
        };
        if name.parse::<std::net::IpAddr>().is_ok() {
            return Ok(Value::from(host));
        }
        Ok(Value::from(format!(
            "{}{port}",
            name.split('.').next().unwrap_or("")
        )))
    })
    .func("match", |a| {
        Ok(Value::Bool(
            regex(&text(a.first()))?.is_match(&text(a.get(1))),
        ))
    })
    .func("reReplaceAll", |a| {
        let re = regex(&text(a.first()))?;
        let replaced = replace_bounded(&re, &text(a.get(1)), &text(a.get(2))).ok_or_else(|| {
            fail(format!(
                "reReplaceAll would make a value larger than {MAX_VALUE_BYTES} bytes"
            ))
        })?;
        Ok(Value::from(replaced))
    })
    .func("args", |a| {
        // A map can hold itself many times over (`$m := args $m $m`); printing it costs
        // every copy.
        if weight_of_all(a) > MAX_VALUE_BYTES {
            return Err(fail(format!(
                "args would make a value larger than {MAX_VALUE_BYTES} bytes"
            )));
        }
        // And nest itself deeply, one level a `range` step (`$m = args $m`): everything that
        // walks or drops such a value recurses once a level, and 100,000 levels overflowed
        // the stack.
        if a.iter()
            .any(|v| nested_deeper_than(v, MAX_ARGS_NESTING - 1))
        {
            return Err(fail(format!(
                "args would nest maps more than {MAX_ARGS_NESTING} deep"
            )));
        }
        let map: BTreeMap<String, Value> = a
            .iter()
            .enumerate()
            .map(|(i, v)| (format!("arg{i}"), v.clone()))
            .collect();
        Ok(Value::from(map))
    })
    .func("parseDuration", |a| {
        let d = crate::time::duration::parse(&text(a.first())).map_err(|e| fail(e.to_string()))?;
        Ok(Value::Float(d.as_secs_f64()))
    })
    .func("externalURL", |_| {
        Ok(Value::from(
            RENDERING
                .with(|r| r.borrow().as_ref().map(|(_, u)| u.clone()))
                .unwrap_or_default(),
        ))
    })
    .func("pathPrefix", |_| {
        let url = RENDERING
            .with(|r| r.borrow().as_ref().map(|(_, u)| u.clone()))
            .unwrap_or_default();
        Ok(Value::from(
            reqwest::Url::parse(&url)
                .map(|u| u.path().trim_end_matches('/').to_string())
                .unwrap_or_default(),
        ))
    })
    .func("query", |a| {
        let q = text(a.first());
        let query = RENDERING.with(|r| r.borrow().as_ref().and_then(|(q, _)| q.clone()));
        let Some(query) = query else {
            return Err(fail("query is not available here"));
        };
        let left = QUERIES_LEFT.with(|l| l.get());
        if left == 0 {
            return Err(fail(format!(
                "a template may run at most {MAX_QUERIES_PER_RENDERING} queries"
            )));
        }
        QUERIES_LEFT.with(|l| l.set(left - 1));
        let samples = query(&q).map_err(|e| fail(format!("error executing query: {e}")))?;
        if samples.len() > MAX_QUERY_SAMPLES {
            return Err(fail(format!(
                "query {q:?} returned {} samples, more than {MAX_QUERY_SAMPLES}",
                samples.len()
            )));
        }
        Ok(Value::from(
            samples
                .iter()
                .map(|(l, v)| sample_value(l, *v))
                .collect::<Vec<_>>(),
        ))
    })
    .func("first", |a| match a.first() {
        Some(Value::List(l)) if !l.is_empty() => Ok(l[0].clone()),
        _ => Err(fail("first() called on vector with no elements")),
    })
    .func("label", |a| {
        let name = text(a.first());
        let value = a
            .get(1)
            .and_then(|s| field(s, "Labels"))
            .and_then(|l| field(l, &name))
            .cloned();
        Ok(value.unwrap_or_else(|| Value::from("")))
    })
    .func("value", |a| {
        Ok(a.first()
            .and_then(|s| field(s, "Value"))
            .cloned()
            .unwrap_or(Value::Float(0.0)))
    })
    .func("strvalue", |a| {
        Ok(a.first()
            .and_then(|s| field(s, "Labels"))
            .and_then(|l| field(l, "__value__"))
            .cloned()
            .unwrap_or_else(|| Value::from("")))
    })
    .func("sortByLabel", |a| {
        let name = text(a.first());
        let Some(Value::List(list)) = a.get(1) else {
            return Err(fail("sortByLabel needs a label name and a query result"));
        };
        let mut items: Vec<Value> = list.to_vec();
        let key = |s: &Value| text(field(s, "Labels").and_then(|l| field(l, &name)));
        items.sort_by_key(key);
        Ok(Value::from(items))
    })
}

/// The largest value one template function may make. Output is cut at [`MAX_OUTPUT_BYTES`], so
/// only an intermediate can be larger — and an intermediate can double with every step
/// (`{{ $b := print $a $a }}`): forty such steps asked for a terabyte, and a 2 KB rule file
/// aborted Janus when it loaded.
const MAX_VALUE_BYTES: usize = 4 * MAX_OUTPUT_BYTES;

/// The deepest `args` may nest maps (query results are three levels deep).
const MAX_ARGS_NESTING: usize = 32;

/// Whether `v` holds lists or maps more than `limit` levels down (looking no deeper).
fn nested_deeper_than(v: &Value, limit: usize) -> bool {
    let children: Box<dyn Iterator<Item = &Value>> = match v {
        Value::List(items) => Box::new(items.iter()),
        Value::Map(m) => Box::new(m.values()),
        _ => return false,
    };
    if limit == 0 {
        return true;
    }
    children
        .into_iter()
        .any(|c| nested_deeper_than(c, limit - 1))
}

/// What a value weighs when printed, counted up to `budget` and no further: `args` can nest a
/// map in itself many times over, and printing it costs every path through it.
fn weight(v: &Value, budget: usize) -> usize {
    match v {
        Value::String(s) => s.len(),
        Value::List(items) => {
            let mut total = 2;
            for item in items.iter() {
                total += 1 + weight(item, budget.saturating_sub(total));
                if total > budget {
                    break;
                }
            }
            total
        }
        Value::Map(m) => {
            let mut total = 5;
            for (k, item) in m.iter() {
                total += 2 + k.len() + weight(item, budget.saturating_sub(total));
                if total > budget {
                    break;
                }
            }
            total
        }
        // Numbers, booleans, nil, functions.
        _ => 24,
    }
}

fn weight_of_all(args: &[Value]) -> usize {
    let mut total = 0;
    for a in args {
        total += 1 + weight(a, MAX_VALUE_BYTES.saturating_sub(total));
        if total > MAX_VALUE_BYTES {
            break;
        }
    }
    total
}

/// The most a `printf` format can add to its arguments: its own text, and each verb's width and
/// precision (Go pads to them; gotmpl stops them at 65,535).
fn printf_growth(format: &str) -> usize {
    let bytes = format.as_bytes();
    let mut total = format.len();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'%' {
            i += 1;
            continue;
        }
        i += 1;
        while i < bytes.len() && b"+-# 0".contains(&bytes[i]) {
            i += 1;
        }
        let number = |i: &mut usize| -> usize {
            if *i < bytes.len() && bytes[*i] == b'*' {
                *i += 1;
                return usize::from(u16::MAX);
            }
            let start = *i;
            while *i < bytes.len() && bytes[*i].is_ascii_digit() {
                *i += 1;
            }
            format[start..*i]
                .parse::<usize>()
                .map_or(usize::from(u16::MAX), |n| n.min(usize::from(u16::MAX)))
        };
        total = total.saturating_add(number(&mut i));
        if i < bytes.len() && bytes[i] == b'.' {
            i += 1;
            total = total.saturating_add(number(&mut i));
        }
        total = total.saturating_add(32);
    }
    total
}

thread_local! {
    /// Go's own builtins, called through a template of one action per name and arity: the ones
    /// [`bounded_builtins`] replaces check the size first, then let the original do the work.
    static ORIGINALS: RefCell<BTreeMap<(&'static str, usize), Arc<Template>>> =
        const { RefCell::new(BTreeMap::new()) };
}

/// Calls gotmpl's builtin `name` with `args`.
fn original(name: &'static str, args: &[Value]) -> Result<Value, TemplateError> {
    let template = ORIGINALS.with(|o| -> Result<Arc<Template>, TemplateError> {
        let mut o = o.borrow_mut();
        if let Some(t) = o.get(&(name, args.len())) {
            return Ok(Arc::clone(t));
        }
        let operands: String = (0..args.len()).map(|i| format!(" (index . {i})")).collect();
        let t = Arc::new(Template::new(name).parse(&format!("{{{{{name}{operands}}}}}"))?);
        o.insert((name, args.len()), Arc::clone(&t));
        Ok(t)
    })?;
    // The arguments were weighed by the caller: what this makes is bounded.
    Ok(Value::from(
        template.execute_to_string(&Value::from(args.to_vec()))?,
    ))
}

/// A builtin that first weighs the most it could make (`most`), then lets Go's do the work.
fn guarded(
    name: &'static str,
    most: fn(&[Value]) -> usize,
) -> impl Fn(&[Value]) -> Result<Value, TemplateError> + Send + Sync + 'static {
    move |a| {
        if most(a) > MAX_VALUE_BYTES {
            return Err(fail(format!(
                "{name} would make a value larger than {MAX_VALUE_BYTES} bytes"
            )));
        }
        original(name, a)
    }
}

/// Go's string-making builtins, refusing to make a value over [`MAX_VALUE_BYTES`].
fn bounded_builtins(t: Template) -> Template {
    let printed: fn(&[Value]) -> usize = weight_of_all;
    let formatted: fn(&[Value]) -> usize = |a| {
        let growth = match a.first() {
            Some(Value::String(f)) => printf_growth(f),
            _ => 0,
        };
        weight_of_all(a).saturating_add(growth)
    };
    // Escaping makes at most six bytes of one (`'` → `\u0027`).
    let escaped: fn(&[Value]) -> usize = |a| weight_of_all(a).saturating_mul(6);
    t.func("print", guarded("print", printed))
        .func("println", guarded("println", printed))
        .func("printf", guarded("printf", formatted))
        .func("html", guarded("html", escaped))
        .func("js", guarded("js", escaped))
        .func("urlquery", guarded("urlquery", escaped))
}

/// `reReplaceAll`'s work, refusing to make a value over [`MAX_VALUE_BYTES`]: each expansion is
/// weighed before it is written (a replacement of many `$0`s over a long text multiplies).
fn replace_bounded(re: &regex::Regex, replacement: &str, text: &str) -> Option<String> {
    struct Budgeted<'r> {
        replacement: &'r str,
        dollars: usize,
        over: bool,
    }
    impl regex::Replacer for Budgeted<'_> {
        fn replace_append(&mut self, caps: &regex::Captures<'_>, dst: &mut String) {
            let matched = caps.get(0).map_or(0, |m| m.len());
            let most = self
                .replacement
                .len()
                .saturating_add(self.dollars.saturating_mul(matched));
            if self.over || dst.len().saturating_add(most) > MAX_VALUE_BYTES {
                self.over = true;
                return;
            }
            caps.expand(self.replacement, dst);
        }
    }
    let mut replacer = Budgeted {
        replacement,
        dollars: replacement.matches('$').count(),
        over: false,
    };
    let out = re
        .replace_all(text, regex::Replacer::by_ref(&mut replacer))
        .into_owned();
    (!replacer.over && out.len() <= MAX_VALUE_BYTES).then_some(out)
}

/// How Go prints NaN and the infinities, whatever the verb.
fn go_special(v: f64) -> Option<String> {
    if v.is_nan() {
        Some("NaN".into())
    } else if v.is_infinite() {
        Some(if v > 0.0 { "+Inf" } else { "-Inf" }.into())
    } else {
        None
    }
}

/// A mantissa and exponent as Go writes them: `1.5e+03`, `2e-07`.
fn go_exponent_form(mantissa: &str, exp: i32) -> String {
    let sign = if exp < 0 { '-' } else { '+' };
    format!("{mantissa}e{sign}{:02}", exp.abs())
}

fn split_exponent(text: &str) -> (&str, i32) {
    let (mantissa, exp) = text.split_once('e').unwrap_or((text, "0"));
    (mantissa, exp.parse().unwrap_or(0))
}

/// Go's `strconv.FormatFloat(v, 'e', -1, 64)`: how Prometheus writes an alert's value.
pub fn go_exponent(v: f64) -> String {
    if let Some(s) = go_special(v) {
        return s;
    }
    let text = format!("{v:e}");
    let (mantissa, exp) = split_exponent(&text);
    go_exponent_form(mantissa, exp)
}

/// Go's `%.4g`.
pub fn go_g4(v: f64) -> String {
    if let Some(s) = go_special(v) {
        return s;
    }
    if v == 0.0 {
        return "0".into();
    }
    let e = format!("{v:.3e}");
    let (mantissa, exp) = split_exponent(&e);
    let trim = |s: &str| {
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            s.to_string()
        }
    };
    if !(-4..4).contains(&exp) {
        go_exponent_form(&trim(mantissa), exp)
    } else {
        let decimals = usize::try_from(3 - exp).unwrap_or(0);
        trim(&format!("{v:.decimals$}"))
    }
}

fn humanize(mut v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return go_g4(v);
    }
    let mut prefix = "";
    if v.abs() >= 1.0 {
        for p in ["k", "M", "G", "T", "P", "E", "Z", "Y"] {
            if v.abs() < 1000.0 {
                break;
            }
            prefix = p;
            v /= 1000.0;
        }
    } else {
        for p in ["m", "u", "n", "p", "f", "a", "z", "y"] {
            if v.abs() >= 1.0 {
                break;
            }
            prefix = p;
            v *= 1000.0;
        }
    }
    format!("{}{prefix}", go_g4(v))
}

fn humanize_1024(mut v: f64) -> String {
    if v.abs() <= 1.0 || !v.is_finite() {
        return go_g4(v);
    }
    let mut prefix = "";
    for p in ["ki", "Mi", "Gi", "Ti", "Pi", "Ei", "Zi", "Yi"] {
        if v.abs() < 1024.0 {
            break;
        }
        prefix = p;
        v /= 1024.0;
    }
    format!("{}{prefix}", go_g4(v))
}

fn humanize_duration(mut v: f64) -> String {
    if !v.is_finite() {
        return go_g4(v);
    }
    if v == 0.0 {
        return "0s".into();
    }
    if v.abs() >= 1.0 {
        let sign = if v < 0.0 { "-" } else { "" };
        v = v.abs();
        let d = v as i64;
        let (s, m, h, days) = (d % 60, (d / 60) % 60, (d / 3600) % 24, d / 86400);
        if days != 0 {
            return format!("{sign}{days}d {h}h {m}m {s}s");
        }
        if h != 0 {
            return format!("{sign}{h}h {m}m {s}s");
        }
        if m != 0 {
            return format!("{sign}{m}m {s}s");
        }
        return format!("{sign}{}s", go_g4(v));
    }
    let mut prefix = "";
    for p in ["m", "u", "n", "p", "f", "a", "z", "y"] {
        if v.abs() >= 1.0 {
            break;
        }
        prefix = p;
        v *= 1000.0;
    }
    format!("{}{prefix}s", go_g4(v))
}

/// Go's `time.Time.String()` of a Unix time, in UTC.
fn humanize_timestamp(v: f64) -> String {
    if !v.is_finite() {
        return go_g4(v);
    }
    let secs = v.floor();
    let nanos = ((v - secs) * 1e9).round() as u32;
    match chrono::DateTime::from_timestamp(secs as i64, nanos.min(999_999_999)) {
        Some(t) => {
            let frac = if nanos == 0 {
                String::new()
            } else {
                format!(".{nanos:09}").trim_end_matches('0').to_string()
            };
            format!("{}{frac} +0000 UTC", t.format("%Y-%m-%d %H:%M:%S"))
        }
        None => go_g4(v),
    }
}

fn title(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut at_start = true;
    for c in s.chars() {
        if at_start && c.is_alphabetic() {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        at_start = !c.is_alphanumeric() && c != '\'';
    }
    out
}

fn strip_port(host: &str) -> String {
    if let Ok(addr) = host.parse::<std::net::SocketAddr>() {
        return addr.ip().to_string();
    }
    match host.rsplit_once(':') {
        Some((h, p)) if p.chars().all(|c| c.is_ascii_digit()) && !h.contains(':') => h.to_string(),
        _ => host.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(text: &str, labels: &[(&str, &str)], value: f64) -> String {
        let labels: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let external = BTreeMap::from([("cluster".to_string(), "east".to_string())]);
        let t = RuleTemplate::parse(text).unwrap();
        let query: Arc<QueryFn> = Arc::new(|q: &str| {
            Ok(vec![(
                BTreeMap::from([("instance".to_string(), format!("{q}-a"))]),
                2.5,
            )])
        });
        t.render(
            &Data {
                labels: &labels,
                value,
                external_labels: &external,
                external_url: "http://janus:9099/prefix",
            },
            Some(query),
        )
    }

    #[test]
    fn prometheus_data_and_functions() {
        assert_eq!(
            render(
                "{{ $labels.namespace }} has {{ $value }}",
                &[("namespace", "shop")],
                7.0
            ),
            "shop has 7"
        );
        assert_eq!(render("[{{ $labels.missing }}]", &[], 1.0), "[]");
        assert_eq!(
            render("{{ $externalLabels.cluster }} {{ $externalURL }}", &[], 1.0),
            "east http://janus:9099/prefix"
        );
        assert_eq!(render("{{ humanize $value }}", &[], 1234567.0), "1.235M");
        assert_eq!(render("{{ humanize $value }}", &[], 0.00123), "1.23m");
        assert_eq!(render("{{ humanize1024 $value }}", &[], 2048.0), "2ki");
        assert_eq!(
            render("{{ humanizeDuration $value }}", &[], 93784.0),
            "1d 2h 3m 4s"
        );
        assert_eq!(render("{{ humanizeDuration $value }}", &[], 0.25), "250ms");
        assert_eq!(
            render("{{ humanizePercentage $value }}", &[], 0.1234),
            "12.34%"
        );
        assert_eq!(
            render("{{ humanizeTimestamp $value }}", &[], 1727190001.0),
            "2024-09-24 15:00:01 +0000 UTC"
        );
        assert_eq!(
            render("{{ printf \"%.2f\" $value }}", &[], 1.0 / 3.0),
            "0.33"
        );
        assert_eq!(
            render(
                "{{ $labels.pod | toUpper }} {{ title \"hello world\" }}",
                &[("pod", "web-1")],
                0.0
            ),
            "WEB-1 Hello World"
        );
        assert_eq!(
            render(
                "{{ reReplaceAll \"-([0-9]+)\" \"#$1\" $labels.pod }}",
                &[("pod", "web-12")],
                0.0
            ),
            "web#12"
        );
        assert_eq!(render("{{ with query \"up\" }}{{ . | first | label \"instance\" }}={{ . | first | value }}{{ end }}", &[], 0.0), "up-a=2.5");
        assert_eq!(
            render(
                "{{ range query \"x\" }}{{ .Labels.instance }} {{ .Value }}{{ end }}",
                &[],
                0.0
            ),
            "x-a 2.5"
        );
        assert_eq!(
            render(
                "{{ stripPort \"host:9090\" }} {{ match \"^a\" \"abc\" }}",
                &[],
                0.0
            ),
            "host true"
        );
    }

    #[test]
    fn failures_and_costs_are_bounded() {
        assert!(RuleTemplate::parse("{{ nosuch }}")
            .unwrap_err()
            .contains("nosuch"));
        assert!(
            render("{{ humanize \"abc\" }}", &[], 0.0).starts_with("<error expanding template: ")
        );
        let huge = render(
            "{{ range $i := 100000 }}{{ range $j := 100000 }}x{{ end }}{{ end }}",
            &[],
            0.0,
        );
        assert!(
            huge.starts_with("<error expanding template"),
            "{}",
            &huge[..huge.len().min(80)]
        );
        // Values that double, pad, escape, expand or nest stop at the value bound, quickly,
        // where they used to allocate until the process died.
        let doubling: String = (0..40)
            .map(|i| format!("{{{{ $v{} := print $v{i} $v{i} }}}}", i + 1))
            .collect();
        for (template, function) in [
            (format!("{{{{ $v0 := \"xxxxxxxxxxxxxxxx\" }}}}{doubling}{{{{ len $v40 }}}}"), "print"),
            (doubling.replace("print", "println").replace("{{ $v1", "{{ $v0 := \"x\" }}{{ $v1"), "println"),
            ("{{ $a := printf \"%65535d\" 1 }}{{ $b := printf \"%s%s%s%s%s\" $a $a $a $a $a }}{{ len $b }}".to_string(), "printf"),
            ("{{ printf \"%65535d%65535d%65535d%65535d%65535d\" 1 2 3 4 5 | len }}".to_string(), "printf"),
            ("{{ $a := printf \"%60000s\" \"<\" }}{{ html $a | len }}".to_string(), "html"),
            ("{{ $a := printf \"%60000s\" \"x\" }}{{ reReplaceAll \".\" \"$0$0$0$0$0$0$0$0\" $a | len }}".to_string(), "reReplaceAll"),
            ((0..30).fold("{{ $m0 := args 1 2 }}".to_string(), |t, i| format!("{t}{{{{ $m{} := args $m{i} $m{i} }}}}", i + 1)) + "{{ $m30 }}", "args"),
            ("{{ $m := args 1 }}{{ range $i := 100000 }}{{ $m = args $m }}{{ end }}{{ len $m }}".to_string(), "nest maps more than 32 deep"),
        ] {
            let out = render(&template, &[], 0.0);
            assert!(
                out.starts_with("<error expanding template: ") && out.contains(function),
                "{function}: {}",
                &out[..out.len().min(120)]
            );
        }
        // A hundred queries a rendering; the next is refused.
        let counted = render(
            "{{ range $i := 100 }}{{ with query \"up\" }}{{ end }}{{ end }}done",
            &[],
            0.0,
        );
        assert_eq!(counted, "done");
        let refused = render(
            "{{ range $i := 101 }}{{ with query \"up\" }}{{ end }}{{ end }}done",
            &[],
            0.0,
        );
        assert!(refused.contains("at most 100 queries"), "{refused}");
        // Under the bound they work as Go's do.
        assert_eq!(render("{{ print 1 2 \"a\" \"b\" }}", &[], 0.0), "1 2ab");
        assert_eq!(render("{{ println 1 \"a\" }}", &[], 0.0), "1 a\n");
        assert_eq!(
            render(
                "{{ printf \"%5.1f|%-4s|%x\" 3.14159 \"ab\" 255 }}",
                &[],
                0.0
            ),
            "  3.1|ab  |ff"
        );
        assert_eq!(
            render(
                "{{ html \"<a&b>\" }} {{ js \"it's\" }} {{ urlquery \"a b\" }}",
                &[],
                0.0
            ),
            "&lt;a&amp;b&gt; it\\'s a+b"
        );
        assert_eq!(
            render("{{ reReplaceAll \"(a)\" \"[$1]\" \"banana\" }}", &[], 0.0),
            "b[a]n[a]n[a]"
        );
        assert_eq!(go_g4(12345.0), "1.234e+04");
        assert_eq!(go_g4(0.00001234), "1.234e-05");
        assert_eq!(go_g4(0.5), "0.5");
        assert_eq!(go_exponent(1.0), "1e+00");
        assert_eq!(go_exponent(1234.0), "1.234e+03");
        assert_eq!(go_exponent(0.5), "5e-01");
        assert_eq!(go_exponent(-2.5e-10), "-2.5e-10");
        assert_eq!(go_exponent(f64::INFINITY), "+Inf");
    }
}
