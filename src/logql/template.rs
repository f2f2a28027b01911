//! The Go template subset Loki documents for `| line_format` and `| label_format`:
//! `{{.label}}`, string and number literals, `{{ if … }}{{ else }}{{ end }}`, pipes
//! (`{{ .path | lower | trunc 20 }}`), parenthesised calls, `{{-`/`-}}` trimming, `__line__`
//! and `__timestamp__`, and Loki's string, comparison and arithmetic functions. Functions outside
//! the list are refused when the query is parsed, by name.
//!
//! Every cost a template can drive is bounded: its nesting depth, and the size of any value it
//! makes (`repeat`, `indent`, padding), beyond which the line keeps its text and gets
//! `__error__="TemplateFormatErr"` as Loki marks a template that fails.

/// What `__error__` says when a template cannot be rendered (Loki's words).
pub const TEMPLATE_ERROR: &str = "TemplateFormatErr";

/// The largest value a template may make, in bytes.
pub const MAX_VALUE_BYTES: usize = 64 * 1024;

/// The deepest `if`/parenthesis nesting a template may have.
const MAX_NESTING: usize = 32;

/// A parsed template.
#[derive(Debug, Clone)]
pub struct Template {
    nodes: Vec<Node>,
}

#[derive(Debug, Clone)]
enum Node {
    Text(String),
    Action(Pipe),
    If {
        cond: Pipe,
        then: Vec<Node>,
        otherwise: Vec<Node>,
    },
}

/// `cmd | cmd | …`: each command's value is the last argument of the next.
#[derive(Debug, Clone)]
struct Pipe(Vec<Command>);

#[derive(Debug, Clone)]
enum Command {
    Operand(Operand),
    Call(&'static str, Vec<Operand>),
}

#[derive(Debug, Clone)]
enum Operand {
    Label(String),
    Text(String),
    Number(f64),
    Line,
    Timestamp,
    Sub(Box<Pipe>),
}

/// A value while rendering.
#[derive(Debug, Clone)]
enum Value {
    Text(String),
    Number(f64),
    Bool(bool),
}

impl Value {
    fn text(&self) -> String {
        match self {
            Value::Text(s) => s.clone(),
            Value::Number(n) => format_number(*n),
            Value::Bool(b) => b.to_string(),
        }
    }

    fn number(&self) -> Result<f64, String> {
        match self {
            Value::Number(n) => Ok(*n),
            Value::Text(s) => s
                .trim()
                .parse()
                .map_err(|_| format!("{s:?} is not a number")),
            Value::Bool(_) => Err("a boolean is not a number".into()),
        }
    }

    fn truthy(&self) -> bool {
        match self {
            Value::Text(s) => !s.is_empty(),
            Value::Number(n) => *n != 0.0,
            Value::Bool(b) => *b,
        }
    }
}

fn format_number(n: f64) -> String {
    if n.fract() == 0.0 && n.abs() < 1e15 {
        format!("{}", n as i64)
    } else {
        format!("{n}")
    }
}

/// The functions, with how many arguments each takes (the piped value counts as the last).
const FUNCTIONS: &[(&str, usize, usize)] = &[
    ("ToLower", 1, 1),
    ("ToUpper", 1, 1),
    ("lower", 1, 1),
    ("upper", 1, 1),
    ("title", 1, 1),
    ("Title", 1, 1),
    ("TrimSpace", 1, 1),
    ("trim", 1, 1),
    ("Trim", 2, 2),
    ("TrimLeft", 2, 2),
    ("TrimRight", 2, 2),
    ("TrimPrefix", 2, 2),
    ("TrimSuffix", 2, 2),
    ("trimAll", 2, 2),
    ("trimPrefix", 2, 2),
    ("trimSuffix", 2, 2),
    ("Replace", 4, 4),
    ("replace", 3, 3),
    ("trunc", 2, 2),
    ("substr", 3, 3),
    ("repeat", 2, 2),
    ("indent", 2, 2),
    ("nindent", 2, 2),
    ("alignLeft", 2, 2),
    ("alignRight", 2, 2),
    ("contains", 2, 2),
    ("hasPrefix", 2, 2),
    ("hasSuffix", 2, 2),
    ("default", 1, 2),
    ("len", 1, 1),
    ("eq", 2, 2),
    ("ne", 2, 2),
    ("lt", 2, 2),
    ("le", 2, 2),
    ("gt", 2, 2),
    ("ge", 2, 2),
    ("and", 2, 2),
    ("or", 2, 2),
    ("not", 1, 1),
    ("add", 2, 2),
    ("sub", 2, 2),
    ("mul", 2, 2),
    ("div", 2, 2),
    ("mod", 2, 2),
    ("addf", 2, 2),
    ("subf", 2, 2),
    ("mulf", 2, 2),
    ("divf", 2, 2),
    ("max", 2, 2),
    ("min", 2, 2),
    ("ceil", 1, 1),
    ("floor", 1, 1),
    ("round", 2, 2),
    ("unixEpoch", 1, 1),
    ("unixEpochMillis", 1, 1),
    ("unixEpochNanos", 1, 1),
];

/// What a template reads while rendering one line.
pub struct Scope<'a> {
    /// A label's value (extracted or the stream's), `""` when it has none.
    pub label: &'a dyn Fn(&str) -> String,
    pub line: &'a [u8],
    /// The line's time, in nanoseconds since the epoch.
    pub timestamp: i64,
}

impl Template {
    /// Parses `text`; the error names what is wrong (an unknown function, an unclosed action).
    pub fn parse(text: &str) -> Result<Template, String> {
        let mut pieces = split(text)?.into_iter();
        let (nodes, end) = parse_nodes(&mut pieces, 0)?;
        match end {
            None => Ok(Template { nodes }),
            Some(word) => Err(format!("unexpected {{{{{word}}}}}")),
        }
    }

    /// The label names the template reads.
    pub fn labels(&self, out: &mut Vec<String>) {
        fn pipe(p: &Pipe, out: &mut Vec<String>) {
            for c in &p.0 {
                let operands: &[Operand] = match c {
                    Command::Operand(o) => std::slice::from_ref(o),
                    Command::Call(_, args) => args,
                };
                for o in operands {
                    match o {
                        Operand::Label(n) => out.push(n.clone()),
                        Operand::Sub(p) => pipe(p, out),
                        _ => {}
                    }
                }
            }
        }
        fn nodes(ns: &[Node], out: &mut Vec<String>) {
            for n in ns {
                match n {
                    Node::Text(_) => {}
                    Node::Action(p) => pipe(p, out),
                    Node::If {
                        cond,
                        then,
                        otherwise,
                    } => {
                        pipe(cond, out);
                        nodes(then, out);
                        nodes(otherwise, out);
                    }
                }
            }
        }
        nodes(&self.nodes, out)
    }

    /// Renders the template; `Err` when a function fails or a value grows past its bound.
    pub fn render(&self, scope: &Scope<'_>) -> Result<String, String> {
        let mut out = String::new();
        render_nodes(&self.nodes, scope, &mut out)?;
        Ok(out)
    }
}

fn render_nodes(nodes: &[Node], scope: &Scope<'_>, out: &mut String) -> Result<(), String> {
    for node in nodes {
        match node {
            Node::Text(t) => out.push_str(t),
            Node::Action(p) => out.push_str(&eval_pipe(p, scope)?.text()),
            Node::If {
                cond,
                then,
                otherwise,
            } => {
                let branch = if eval_pipe(cond, scope)?.truthy() {
                    then
                } else {
                    otherwise
                };
                render_nodes(branch, scope, out)?;
            }
        }
        if out.len() > MAX_VALUE_BYTES {
            return Err(format!("the line grew past {MAX_VALUE_BYTES} bytes"));
        }
    }
    Ok(())
}

/// A piece of template source: text, or an action's words.
enum Piece {
    Text(String),
    Action(Vec<Word>),
}

#[derive(Debug, Clone, PartialEq)]
enum Word {
    Bare(String),
    Quoted(String),
    Bar,
    Open,
    Close,
}

/// Splits the source into text and actions, honouring `{{-` and `-}}`.
fn split(text: &str) -> Result<Vec<Piece>, String> {
    let mut pieces = Vec::new();
    let mut rest = text;
    let mut trim_next = false;
    while let Some(open) = rest.find("{{") {
        let mut before = &rest[..open];
        if trim_next {
            before = before.trim_start();
        }
        let mut body = &rest[open + 2..];
        if let Some(b) = body.strip_prefix('-') {
            if b.starts_with(char::is_whitespace) {
                before = before.trim_end();
                body = b;
            }
        }
        if !before.is_empty() {
            pieces.push(Piece::Text(before.to_string()));
        }
        let (words, used) = action_words(body)?;
        let mut after = &body[used..];
        trim_next = false;
        if let Some(a) = after.strip_prefix('-') {
            trim_next = true;
            after = a;
        }
        rest = after
            .strip_prefix("}}")
            .ok_or_else(|| "unclosed action: a {{ without }}".to_string())?;
        pieces.push(Piece::Action(words));
    }
    let tail = if trim_next { rest.trim_start() } else { rest };
    if !tail.is_empty() {
        pieces.push(Piece::Text(tail.to_string()));
    }
    Ok(pieces)
}

/// The words of one action, and the bytes read up to its `}}` (or ` -}}`).
fn action_words(body: &str) -> Result<(Vec<Word>, usize), String> {
    let bytes = body.as_bytes();
    let mut words = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if body[i..].starts_with("}}") || body[i..].starts_with("-}}") && i > 0 {
            return Ok((words, i));
        }
        match c {
            b' ' | b'\t' | b'\n' | b'\r' => i += 1,
            b'|' => {
                words.push(Word::Bar);
                i += 1
            }
            b'(' => {
                words.push(Word::Open);
                i += 1
            }
            b')' => {
                words.push(Word::Close);
                i += 1
            }
            b'"' | b'`' => {
                let mut j = i + 1;
                while j < bytes.len() && bytes[j] != c {
                    if c == b'"' && bytes[j] == b'\\' {
                        j += 1;
                    }
                    j += 1;
                }
                if j >= bytes.len() {
                    return Err("unterminated string in template".into());
                }
                let literal = &body[i..=j];
                let value = if c == b'`' {
                    literal[1..literal.len() - 1].to_string()
                } else {
                    serde_json::from_str::<String>(literal)
                        .map_err(|_| format!("bad string {literal} in template"))?
                };
                words.push(Word::Quoted(value));
                i = j + 1;
            }
            _ => {
                let start = i;
                while i < bytes.len()
                    && !matches!(
                        bytes[i],
                        b' ' | b'\t' | b'\n' | b'\r' | b'|' | b'(' | b')' | b'"' | b'`'
                    )
                    && !body[i..].starts_with("}}")
                {
                    i += 1;
                }
                words.push(Word::Bare(body[start..i].to_string()));
            }
        }
    }
    Err("unclosed action: a {{ without }}".into())
}

/// Nodes until `{{else}}`/`{{end}}` or the end; returns which keyword stopped it.
fn parse_nodes(
    pieces: &mut impl Iterator<Item = Piece>,
    depth: usize,
) -> Result<(Vec<Node>, Option<String>), String> {
    if depth > MAX_NESTING {
        return Err(format!(
            "template nested more than {MAX_NESTING} levels deep"
        ));
    }
    let mut nodes = Vec::new();
    while let Some(piece) = pieces.next() {
        let words = match piece {
            Piece::Text(t) => {
                nodes.push(Node::Text(t));
                continue;
            }
            Piece::Action(words) => words,
        };
        match words.first() {
            Some(Word::Bare(w)) if w == "end" || w == "else" => {
                return Ok((nodes, Some(w.clone())));
            }
            Some(Word::Bare(w)) if w == "if" => {
                let cond = parse_pipe(&words[1..], depth + 1)?;
                let (then, end) = parse_nodes(pieces, depth + 1)?;
                let otherwise = match end.as_deref() {
                    Some("end") => Vec::new(),
                    Some("else") => match parse_nodes(pieces, depth + 1)? {
                        (otherwise, Some(e)) if e == "end" => otherwise,
                        _ => return Err("{{else}} without {{end}}".into()),
                    },
                    _ => return Err("{{if}} without {{end}}".into()),
                };
                nodes.push(Node::If {
                    cond,
                    then,
                    otherwise,
                });
            }
            Some(Word::Bare(w))
                if matches!(
                    w.as_str(),
                    "range" | "with" | "define" | "template" | "block"
                ) =>
            {
                return Err(format!("{{{{{w}}}}} is not supported in templates"));
            }
            _ => nodes.push(Node::Action(parse_pipe(&words, depth)?)),
        }
    }
    Ok((nodes, None))
}

fn parse_pipe(words: &[Word], depth: usize) -> Result<Pipe, String> {
    if depth > MAX_NESTING {
        return Err(format!(
            "template nested more than {MAX_NESTING} levels deep"
        ));
    }
    if words.is_empty() {
        return Err("empty action in template".into());
    }
    let mut commands = Vec::new();
    let mut start = 0;
    let mut level = 0usize;
    for (i, w) in words.iter().enumerate() {
        match w {
            Word::Open => level += 1,
            Word::Close => level = level.checked_sub(1).ok_or("unmatched ) in template")?,
            Word::Bar if level == 0 => {
                commands.push(parse_command(
                    &words[start..i],
                    depth,
                    !commands.is_empty(),
                )?);
                start = i + 1;
            }
            _ => {}
        }
    }
    if level != 0 {
        return Err("unclosed ( in template".into());
    }
    commands.push(parse_command(&words[start..], depth, !commands.is_empty())?);
    Ok(Pipe(commands))
}

fn parse_command(words: &[Word], depth: usize, piped: bool) -> Result<Command, String> {
    let mut operands = Vec::new();
    let mut i = 0;
    while i < words.len() {
        match &words[i] {
            Word::Open => {
                let mut level = 0;
                let mut j = i;
                loop {
                    match words.get(j) {
                        Some(Word::Open) => level += 1,
                        Some(Word::Close) => {
                            level -= 1;
                            if level == 0 {
                                break;
                            }
                        }
                        Some(_) => {}
                        None => return Err("unclosed ( in template".into()),
                    }
                    j += 1;
                }
                operands.push(Operand::Sub(Box::new(parse_pipe(
                    &words[i + 1..j],
                    depth + 1,
                )?)));
                i = j + 1;
                continue;
            }
            Word::Quoted(s) => operands.push(Operand::Text(s.clone())),
            Word::Bare(w) => operands.push(bare_operand(w)?),
            Word::Bar | Word::Close => return Err("unexpected | or ) in template".into()),
        }
        i += 1;
    }
    let Some(Word::Bare(first)) = words.first() else {
        return match operands.len() {
            1 if !piped => Ok(Command::Operand(operands.remove(0))),
            0 => Err("empty command in template".into()),
            _ => Err("a value cannot take arguments in a template".into()),
        };
    };
    if let Some(&(name, min, max)) = FUNCTIONS.iter().find(|(n, _, _)| n == first) {
        let given = operands.len() - 1 + usize::from(piped);
        if given < min || given > max {
            return Err(format!(
                "{name} takes {} argument{}, given {given}",
                if min == max {
                    min.to_string()
                } else {
                    format!("{min} or {max}")
                },
                if max == 1 { "" } else { "s" }
            ));
        }
        operands.remove(0);
        return Ok(Command::Call(name, operands));
    }
    if operands.len() == 1 && !piped {
        return Ok(Command::Operand(operands.remove(0)));
    }
    Err(format!("function {first:?} not defined in templates"))
}

fn bare_operand(word: &str) -> Result<Operand, String> {
    if let Some(name) = word.strip_prefix('.') {
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(format!("bad label reference {word:?} in template"));
        }
        return Ok(Operand::Label(name.to_string()));
    }
    match word {
        "__line__" => return Ok(Operand::Line),
        "__timestamp__" => return Ok(Operand::Timestamp),
        "true" | "false" => return Ok(Operand::Text(word.to_string())),
        _ => {}
    }
    if let Ok(n) = word.parse::<f64>() {
        return Ok(Operand::Number(n));
    }
    // A function name: checked by the caller.
    if FUNCTIONS.iter().any(|(n, _, _)| *n == word) {
        return Ok(Operand::Text(word.to_string()));
    }
    Err(format!("function {word:?} not defined in templates"))
}

fn eval_pipe(pipe: &Pipe, scope: &Scope<'_>) -> Result<Value, String> {
    let mut carried: Option<Value> = None;
    for command in &pipe.0 {
        let value = match command {
            Command::Operand(o) => eval_operand(o, scope)?,
            Command::Call(name, args) => {
                let mut values = args
                    .iter()
                    .map(|a| eval_operand(a, scope))
                    .collect::<Result<Vec<_>, _>>()?;
                values.extend(carried.take());
                call(name, &values)?
            }
        };
        if let Value::Text(t) = &value {
            if t.len() > MAX_VALUE_BYTES {
                return Err(format!("a value grew past {MAX_VALUE_BYTES} bytes"));
            }
        }
        carried = Some(value);
    }
    carried.ok_or_else(|| "empty pipeline".to_string())
}

fn eval_operand(o: &Operand, scope: &Scope<'_>) -> Result<Value, String> {
    Ok(match o {
        Operand::Label(n) => Value::Text((scope.label)(n)),
        Operand::Text(t) => Value::Text(t.clone()),
        Operand::Number(n) => Value::Number(*n),
        Operand::Line => Value::Text(String::from_utf8_lossy(scope.line).into_owned()),
        Operand::Timestamp => Value::Number(scope.timestamp as f64 / 1e9),
        Operand::Sub(p) => eval_pipe(p, scope)?,
    })
}

/// A count argument (`repeat`, `indent`, …) that cannot make a value past the bound.
fn count(v: &Value, unit: usize) -> Result<usize, String> {
    let n = v.number()?;
    if !(0.0..=(MAX_VALUE_BYTES / unit.max(1)) as f64).contains(&n) {
        return Err(format!("count {n} out of range"));
    }
    Ok(n as usize)
}

fn call(name: &str, a: &[Value]) -> Result<Value, String> {
    let s = |i: usize| a[i].text();
    let n = |i: usize| a[i].number();
    let text = |t: String| Ok(Value::Text(t));
    let num = |x: f64| Ok(Value::Number(x));
    let bool_ = |b: bool| Ok(Value::Bool(b));
    let int = |i: usize| -> Result<i64, String> { Ok(n(i)?.trunc() as i64) };
    match name {
        "ToLower" | "lower" => text(s(0).to_lowercase()),
        "ToUpper" | "upper" => text(s(0).to_uppercase()),
        "title" | "Title" => text(title(&s(0))),
        "TrimSpace" | "trim" => text(s(0).trim().to_string()),
        "Trim" => text(s(0).trim_matches(|c| s(1).contains(c)).to_string()),
        "TrimLeft" => text(s(0).trim_start_matches(|c| s(1).contains(c)).to_string()),
        "TrimRight" => text(s(0).trim_end_matches(|c| s(1).contains(c)).to_string()),
        "TrimPrefix" => text(
            s(0).strip_prefix(s(1).as_str())
                .map_or_else(|| s(0), str::to_string),
        ),
        "TrimSuffix" => text(
            s(0).strip_suffix(s(1).as_str())
                .map_or_else(|| s(0), str::to_string),
        ),
        "trimAll" => text(s(1).trim_matches(|c| s(0).contains(c)).to_string()),
        "trimPrefix" => text(
            s(1).strip_prefix(s(0).as_str())
                .map_or_else(|| s(1), str::to_string),
        ),
        "trimSuffix" => text(
            s(1).strip_suffix(s(0).as_str())
                .map_or_else(|| s(1), str::to_string),
        ),
        "Replace" => {
            let limit = int(3)?;
            let (src, old, new) = (s(0), s(1), s(2));
            bounded(if limit < 0 {
                src.replace(&old, &new)
            } else {
                src.replacen(&old, &new, limit as usize)
            })
        }
        "replace" => bounded(s(2).replace(&s(0), &s(1))),
        "trunc" => {
            let (k, src) = (int(0)?, s(1));
            let chars: Vec<char> = src.chars().collect();
            let len = chars.len() as i64;
            text(if k >= 0 {
                chars[..k.min(len) as usize].iter().collect()
            } else {
                chars[(len + k).max(0) as usize..].iter().collect()
            })
        }
        "substr" => {
            let (from, to, src) = (int(0)?, int(1)?, s(2));
            let chars: Vec<char> = src.chars().collect();
            let len = chars.len() as i64;
            let from = from.clamp(0, len) as usize;
            let to = if to < 0 { len } else { to.min(len) } as usize;
            text(if from <= to {
                chars[from..to].iter().collect()
            } else {
                String::new()
            })
        }
        "repeat" => {
            let src = s(1);
            text(src.repeat(count(&a[0], src.len())?))
        }
        "indent" | "nindent" => {
            let pad = " ".repeat(count(&a[0], 1)?);
            let body = s(1)
                .split('\n')
                .map(|l| format!("{pad}{l}"))
                .collect::<Vec<_>>()
                .join("\n");
            bounded(if name == "nindent" {
                format!("\n{body}")
            } else {
                body
            })
        }
        "alignLeft" | "alignRight" => {
            let width = count(&a[0], 1)?;
            let src: Vec<char> = s(1).chars().collect();
            let mut out: String = src.iter().take(width).collect();
            let pad = " ".repeat(width.saturating_sub(src.len()));
            if name == "alignLeft" {
                out.push_str(&pad);
            } else {
                out.insert_str(0, &pad);
            }
            text(out)
        }
        "contains" => bool_(s(1).contains(&s(0))),
        "hasPrefix" => bool_(s(1).starts_with(&s(0))),
        "hasSuffix" => bool_(s(1).ends_with(&s(0))),
        "default" => Ok(match a {
            [_, given] if given.truthy() => given.clone(),
            [d, ..] => d.clone(),
            [] => Value::Text(String::new()),
        }),
        "len" => num(s(0).chars().count() as f64),
        "eq" | "ne" | "lt" | "le" | "gt" | "ge" => {
            let ordering = match (a[0].number(), a[1].number()) {
                (Ok(x), Ok(y)) if !matches!((&a[0], &a[1]), (Value::Text(_), Value::Text(_))) => {
                    x.partial_cmp(&y)
                }
                _ => Some(s(0).cmp(&s(1))),
            };
            use std::cmp::Ordering::*;
            bool_(match (name, ordering) {
                ("eq", o) => o == Some(Equal),
                ("ne", o) => o != Some(Equal),
                ("lt", o) => o == Some(Less),
                ("le", o) => matches!(o, Some(Less | Equal)),
                ("gt", o) => o == Some(Greater),
                (_, o) => matches!(o, Some(Greater | Equal)),
            })
        }
        "and" => Ok(if a[0].truthy() {
            a[1].clone()
        } else {
            a[0].clone()
        }),
        "or" => Ok(if a[0].truthy() {
            a[0].clone()
        } else {
            a[1].clone()
        }),
        "not" => bool_(!a[0].truthy()),
        "add" => num((int(0)? as f64) + int(1)? as f64),
        "sub" => num((int(0)? as f64) - int(1)? as f64),
        "mul" => num((int(0)? as f64) * int(1)? as f64),
        "div" | "mod" => {
            let (x, y) = (int(0)?, int(1)?);
            if y == 0 {
                return Err("integer divide by zero".into());
            }
            num(if name == "div" {
                x.wrapping_div(y)
            } else {
                x.wrapping_rem(y)
            } as f64)
        }
        "addf" => num(n(0)? + n(1)?),
        "subf" => num(n(0)? - n(1)?),
        "mulf" => num(n(0)? * n(1)?),
        "divf" => num(n(0)? / n(1)?),
        "max" => num(n(0)?.max(n(1)?)),
        "min" => num(n(0)?.min(n(1)?)),
        "ceil" => num(n(0)?.ceil()),
        "floor" => num(n(0)?.floor()),
        "round" => {
            let scale = 10f64.powi(int(1)?.clamp(0, 15) as i32);
            num((n(0)? * scale).round() / scale)
        }
        "unixEpoch" => num(n(0)?.floor()),
        "unixEpochMillis" => num((n(0)? * 1e3).floor()),
        "unixEpochNanos" => num((n(0)? * 1e9).floor()),
        other => Err(format!("function {other:?} not defined")),
    }
}

fn bounded(t: String) -> Result<Value, String> {
    if t.len() > MAX_VALUE_BYTES {
        return Err(format!("a value grew past {MAX_VALUE_BYTES} bytes"));
    }
    Ok(Value::Text(t))
}

fn title(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut start = true;
    for c in s.chars() {
        if start && c.is_alphabetic() {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        start = !c.is_alphanumeric();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(t: &str, labels: &[(&str, &str)], line: &str) -> Result<String, String> {
        let get = |name: &str| {
            labels
                .iter()
                .find(|(k, _)| *k == name)
                .map_or(String::new(), |(_, v)| v.to_string())
        };
        Template::parse(t)?.render(&Scope {
            label: &get,
            line: line.as_bytes(),
            timestamp: 1_700_000_000_500_000_000,
        })
    }

    #[test]
    fn renders_loki_documented_forms() {
        let l = [("level", "warn"), ("path", "/api/v1/Push"), ("n", "7")];
        assert_eq!(
            render("{{.level}}: {{.path}}", &l, "").unwrap(),
            "warn: /api/v1/Push"
        );
        assert_eq!(
            render("{{ .path | lower | trunc 7 }}", &l, "").unwrap(),
            "/api/v1"
        );
        assert_eq!(render("{{ ToUpper .level }}", &l, "").unwrap(), "WARN");
        assert_eq!(
            render(r#"{{ Replace .path "/" "_" -1 }}"#, &l, "").unwrap(),
            "_api_v1_Push"
        );
        assert_eq!(
            render(r#"{{ .path | replace "/" "." }}"#, &l, "").unwrap(),
            ".api.v1.Push"
        );
        assert_eq!(
            render(r#"{{ .missing | default "none" }}"#, &l, "").unwrap(),
            "none"
        );
        assert_eq!(
            render(r#"{{ if eq .level "warn" }}W{{ else }}-{{ end }}"#, &l, "").unwrap(),
            "W"
        );
        assert_eq!(
            render(r#"{{ if .missing }}y{{ else }}n{{ end }}"#, &l, "").unwrap(),
            "n"
        );
        assert_eq!(
            render("{{ add .n 3 }} {{ divf .n 2 }}", &l, "").unwrap(),
            "10 3.5"
        );
        assert_eq!(render("[{{- .level -}} ]", &l, "").unwrap(), "[warn]");
        assert_eq!(render("{{ __line__ | upper }}", &l, "abc").unwrap(), "ABC");
        assert_eq!(
            render("{{ unixEpoch __timestamp__ }}", &l, "").unwrap(),
            "1700000000"
        );
        assert_eq!(render("{{ substr 1 4 .path }}", &l, "").unwrap(), "api");
        assert_eq!(
            render("{{ (printf) }}", &l, "").unwrap_err(),
            "function \"printf\" not defined in templates"
        );
    }

    #[test]
    fn refuses_and_bounds() {
        for bad in [
            "{{ .a ",
            "{{ if .a }}x",
            "{{ end }}",
            "{{ nosuch .a }}",
            "{{ range .a }}{{ end }}",
            "{{ trunc .a }}",
        ] {
            assert!(Template::parse(bad).is_err(), "{bad}");
        }
        let deep = "{{ if .a }}".repeat(40) + &"{{ end }}".repeat(40);
        assert!(Template::parse(&deep).is_err());
        assert!(render("{{ repeat 100000 \"ab\" }}", &[], "").is_err());
        assert!(render(
            "{{ .a | repeat 100 | repeat 100 | repeat 100 }}",
            &[("a", "x")],
            ""
        )
        .is_err());
        assert!(render("{{ div 1 0 }}", &[], "").is_err());
    }
}
