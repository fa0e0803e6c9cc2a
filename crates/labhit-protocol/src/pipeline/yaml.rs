//! A small YAML loader that keeps positions and refuses what a pipeline file must not have.
//!
//! `saphyr-parser` turns text into events with spans; this module builds a tree of [`Node`]s
//! from them and enforces the input limits: file size, nesting depth and the total number of
//! nodes after alias expansion (so a "billion laughs" file stops early). Duplicate mapping
//! keys are reported with both places and the later entry is dropped. Scalars are resolved
//! with the YAML 1.2 core schema (`yes` is a string, `1` an integer, `~` null).

use std::collections::HashMap;

use saphyr_parser::{Event, Parser, ScalarStyle, ScanError};

use crate::diagnostic::{Diagnostic, Position, Rule, Span};

/// Limits applied to untrusted pipeline files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest accepted file, in bytes.
    pub max_bytes: usize,
    /// Deepest accepted nesting of mappings and sequences.
    pub max_depth: usize,
    /// Most nodes the document may have once aliases are expanded.
    pub max_nodes: usize,
}

impl Default for Limits {
    /// 16 MiB, 64 levels, 2,000,000 nodes: far above any real pipeline.
    fn default() -> Self {
        Self {
            max_bytes: 16 << 20,
            max_depth: 64,
            max_nodes: 2_000_000,
        }
    }
}

/// A resolved scalar.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Scalar {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    Str(String),
}

impl Scalar {
    /// A key that tells scalars apart for duplicate detection (`1` and `"1"` differ).
    fn identity(&self) -> String {
        match self {
            Scalar::Null => "n".into(),
            Scalar::Bool(b) => format!("b{b}"),
            Scalar::Int(i) => format!("i{i}"),
            Scalar::UInt(u) => format!("i{u}"),
            Scalar::Float(f) => format!("f{f}"),
            Scalar::Str(s) => format!("s{s}"),
        }
    }
}

/// Finds duplicate scalar keys of one mapping: a linear scan while the mapping is small, a
/// hash index once it grows (the `stages` mapping of a large pipeline).
#[derive(Default)]
struct KeyIndex {
    index: Option<HashMap<String, Span>>,
}

impl KeyIndex {
    const SCAN_LIMIT: usize = 16;

    /// Records `key` (about to be pushed after `pairs`); returns the span of an earlier equal
    /// key instead when there is one.
    fn insert(&mut self, key: &Scalar, span: Span, pairs: &[(Node, Node)]) -> Option<Span> {
        if self.index.is_none() && pairs.len() >= Self::SCAN_LIMIT {
            let mut index = HashMap::with_capacity(pairs.len() * 2);
            for (k, _) in pairs {
                if let NodeValue::Scalar(s) = &k.value {
                    index.entry(s.identity()).or_insert(k.span);
                }
            }
            self.index = Some(index);
        }
        match &mut self.index {
            None => pairs
                .iter()
                .find(|(k, _)| matches!(&k.value, NodeValue::Scalar(s) if s == key))
                .map(|(k, _)| k.span),
            Some(index) => match index.entry(key.identity()) {
                std::collections::hash_map::Entry::Occupied(e) => Some(*e.get()),
                std::collections::hash_map::Entry::Vacant(e) => {
                    e.insert(span);
                    None
                }
            },
        }
    }
}

/// A node of the document tree.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum NodeValue {
    Scalar(Scalar),
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

/// A node and where it is.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Node {
    pub(crate) span: Span,
    pub(crate) value: NodeValue,
}

impl Node {
    /// The string value, when this node is a string scalar.
    pub(crate) fn as_str(&self) -> Option<&str> {
        match &self.value {
            NodeValue::Scalar(Scalar::Str(s)) => Some(s),
            _ => None,
        }
    }

    /// The number of nodes in this subtree.
    fn size(&self) -> usize {
        match &self.value {
            NodeValue::Scalar(_) => 1,
            NodeValue::Seq(items) => 1 + items.iter().map(Node::size).sum::<usize>(),
            NodeValue::Map(pairs) => {
                1 + pairs
                    .iter()
                    .map(|(k, v)| k.size() + v.size())
                    .sum::<usize>()
            }
        }
    }
}

/// Loads `source` into a tree. Returns `None` for the tree when the text cannot be loaded at
/// all (syntax error, limit exceeded); problems found while loading are appended to `diags`.
/// An empty document gives `Some(None)`-like behaviour: `Ok(None)` tree with no diagnostics.
pub(crate) fn load(
    source: &[u8],
    limits: &Limits,
    diags: &mut Vec<Diagnostic>,
) -> Option<Option<Node>> {
    if source.len() > limits.max_bytes {
        diags.push(Diagnostic::error(
            Rule::InputLimit,
            Span::file_start(),
            format!(
                "file is {} bytes, more than the limit of {} bytes",
                source.len(),
                limits.max_bytes
            ),
        ));
        return None;
    }
    let text = match std::str::from_utf8(source) {
        Ok(text) => text,
        Err(err) => {
            // The bytes before the first invalid one are valid UTF-8 by construction.
            let prefix = std::str::from_utf8(&source[..err.valid_up_to()]).unwrap_or_default();
            let at = Position::after(prefix);
            diags.push(
                Diagnostic::error(
                    Rule::Syntax,
                    Span::point(at),
                    format!(
                        "file is not valid UTF-8 (invalid byte at offset {})",
                        err.valid_up_to()
                    ),
                )
                .with_help("save the file as UTF-8"),
            );
            return None;
        }
    };
    let mut loader = Loader {
        events: Parser::new_from_str(text),
        eof: Position::after(text),
        limits: *limits,
        nodes: 0,
        anchors: HashMap::new(),
        diags,
    };
    match loader.stream() {
        Ok(root) => Some(root),
        Err(diag) => {
            loader.diags.push(*diag);
            None
        }
    }
}

fn to_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

fn position(marker: saphyr_parser::Marker) -> Position {
    Position::new(to_u32(marker.line()), to_u32(marker.col() + 1))
}

fn span(s: saphyr_parser::Span) -> Span {
    Span::new(position(s.start), position(s.end))
}

type Fatal = Box<Diagnostic>;

struct Loader<'a, 'd> {
    events: Parser<'a, saphyr_parser::StrInput<'a>>,
    /// The position just past the last character: no span reaches beyond it.
    eof: Position,
    limits: Limits,
    nodes: usize,
    anchors: HashMap<usize, Node>,
    diags: &'d mut Vec<Diagnostic>,
}

impl<'a> Loader<'a, '_> {
    fn next(&mut self) -> Result<(Event<'a>, Span), Fatal> {
        match self.events.next_event() {
            Some(Ok((event, s))) => {
                let s = span(s);
                Ok((event, Span::new(s.start.min(self.eof), s.end.min(self.eof))))
            }
            Some(Err(err)) => Err(Box::new(scan_error(&err, self.eof))),
            None => Err(Box::new(Diagnostic::error(
                Rule::Syntax,
                Span::file_start(),
                "unexpected end of YAML input",
            ))),
        }
    }

    fn stream(&mut self) -> Result<Option<Node>, Fatal> {
        let mut root = None;
        let mut documents = 0;
        loop {
            let (event, at) = self.next()?;
            match event {
                Event::StreamStart | Event::DocumentEnd | Event::Nothing => {}
                Event::StreamEnd => return Ok(root),
                Event::DocumentStart(_) => {
                    documents += 1;
                    if documents > 1 {
                        return Err(Box::new(
                            Diagnostic::error(
                                Rule::Syntax,
                                at,
                                "a pipeline file holds exactly one YAML document, found a second",
                            )
                            .with_help("remove the `---` separator and everything after it"),
                        ));
                    }
                }
                other => {
                    let node = self.node(other, at, 0)?;
                    root = Some(node);
                }
            }
        }
    }

    fn count(&mut self, n: usize, at: Span) -> Result<(), Fatal> {
        self.nodes = self.nodes.saturating_add(n);
        if self.nodes > self.limits.max_nodes {
            return Err(Box::new(
                Diagnostic::error(
                    Rule::InputLimit,
                    at,
                    format!(
                        "document has more than {} nodes once aliases are expanded",
                        self.limits.max_nodes
                    ),
                )
                .with_help("avoid anchors that expand into huge trees"),
            ));
        }
        Ok(())
    }

    fn node(&mut self, event: Event<'a>, at: Span, depth: usize) -> Result<Node, Fatal> {
        let (node, anchor) = match event {
            Event::Alias(id) => {
                let Some(target) = self.anchors.get(&id).cloned() else {
                    return Err(Box::new(Diagnostic::error(
                        Rule::Syntax,
                        at,
                        "alias to an unknown anchor",
                    )));
                };
                self.count(target.size(), at)?;
                // The alias takes the place of the alias, not of the anchored node.
                return Ok(Node {
                    span: at,
                    value: target.value,
                });
            }
            Event::Scalar(text, style, anchor, tag) => {
                self.count(1, at)?;
                let scalar = resolve(&text, style, tag.as_deref(), at)?;
                (
                    Node {
                        span: at,
                        value: NodeValue::Scalar(scalar),
                    },
                    anchor,
                )
            }
            Event::SequenceStart(anchor, _) => {
                self.count(1, at)?;
                self.check_depth(depth, at)?;
                let mut items = Vec::new();
                let end = loop {
                    let (event, event_at) = self.next()?;
                    if event == Event::SequenceEnd {
                        break event_at;
                    }
                    items.push(self.node(event, event_at, depth + 1)?);
                };
                (
                    Node {
                        span: Span::new(at.start, end.end.max(at.end)),
                        value: NodeValue::Seq(items),
                    },
                    anchor,
                )
            }
            Event::MappingStart(anchor, _) => {
                self.count(1, at)?;
                self.check_depth(depth, at)?;
                let mut pairs: Vec<(Node, Node)> = Vec::new();
                let mut keys = KeyIndex::default();
                let end = loop {
                    let (event, event_at) = self.next()?;
                    if event == Event::MappingEnd {
                        break event_at;
                    }
                    let key = self.node(event, event_at, depth + 1)?;
                    let (event, event_at) = self.next()?;
                    let value = self.node(event, event_at, depth + 1)?;
                    if let NodeValue::Scalar(scalar) = &key.value
                        && let Some(first) = keys.insert(scalar, key.span, &pairs)
                    {
                        let shown = key
                            .as_str()
                            .map_or_else(|| format!("{scalar:?}"), str::to_owned);
                        self.diags.push(
                            Diagnostic::error(
                                Rule::DuplicateKey,
                                key.span,
                                format!("duplicate key `{shown}` in this mapping"),
                            )
                            .with_related(first, "first defined here")
                            .with_help("remove one of the two entries"),
                        );
                        continue;
                    }
                    pairs.push((key, value));
                };
                (
                    Node {
                        span: Span::new(at.start, end.end.max(at.end)),
                        value: NodeValue::Map(pairs),
                    },
                    anchor,
                )
            }
            other => {
                return Err(Box::new(Diagnostic::error(
                    Rule::Syntax,
                    at,
                    format!("unexpected YAML event {other:?}"),
                )));
            }
        };
        if anchor != 0 {
            self.anchors.insert(anchor, node.clone());
        }
        Ok(node)
    }

    fn check_depth(&self, depth: usize, at: Span) -> Result<(), Fatal> {
        if depth >= self.limits.max_depth {
            return Err(Box::new(Diagnostic::error(
                Rule::InputLimit,
                at,
                format!("nesting deeper than {} levels", self.limits.max_depth),
            )));
        }
        Ok(())
    }
}

fn scan_error(err: &ScanError, eof: Position) -> Diagnostic {
    let at = position(*err.marker()).min(eof);
    Diagnostic::error(
        Rule::Syntax,
        Span::point(at),
        format!("invalid YAML: {}", err.info()),
    )
}

/// Resolves a scalar with the YAML 1.2 core schema. Quoted and block scalars are strings.
fn resolve(
    text: &str,
    style: ScalarStyle,
    tag: Option<&saphyr_parser::Tag>,
    at: Span,
) -> Result<Scalar, Fatal> {
    if let Some(tag) = tag {
        let core = tag.handle == "tag:yaml.org,2002:" || tag.handle == "!!";
        let resolved = match (core, tag.suffix.as_str()) {
            (true, "str") => Some(Scalar::Str(text.to_owned())),
            (true, "null" | "bool" | "int" | "float") => {
                let plain = resolve_plain(text);
                let fits = matches!(
                    (tag.suffix.as_str(), &plain),
                    ("null", Scalar::Null)
                        | ("bool", Scalar::Bool(_))
                        | ("int", Scalar::Int(_) | Scalar::UInt(_))
                        | ("float", Scalar::Float(_) | Scalar::Int(_) | Scalar::UInt(_))
                );
                fits.then_some(plain)
            }
            _ => None,
        };
        return resolved.ok_or_else(|| {
            Box::new(Diagnostic::error(
                Rule::Syntax,
                at,
                format!(
                    "unsupported YAML tag `{}{}` on `{text}`",
                    tag.handle, tag.suffix
                ),
            ))
        });
    }
    Ok(match style {
        ScalarStyle::Plain => resolve_plain(text),
        _ => Scalar::Str(text.to_owned()),
    })
}

fn resolve_plain(text: &str) -> Scalar {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Scalar::Null,
        "true" | "True" | "TRUE" => return Scalar::Bool(true),
        "false" | "False" | "FALSE" => return Scalar::Bool(false),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => {
            return Scalar::Float(f64::INFINITY);
        }
        "-.inf" | "-.Inf" | "-.INF" => return Scalar::Float(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => return Scalar::Float(f64::NAN),
        _ => {}
    }
    if let Some(hex) = text.strip_prefix("0x")
        && !hex.is_empty()
        && hex.bytes().all(|b| b.is_ascii_hexdigit())
        && let Ok(u) = u64::from_str_radix(hex, 16)
    {
        return integer(u);
    }
    if let Some(oct) = text.strip_prefix("0o")
        && !oct.is_empty()
        && oct.bytes().all(|b| (b'0'..=b'7').contains(&b))
        && let Ok(u) = u64::from_str_radix(oct, 8)
    {
        return integer(u);
    }
    let unsigned = text.strip_prefix(['-', '+']).unwrap_or(text);
    if !unsigned.is_empty() && unsigned.bytes().all(|b| b.is_ascii_digit()) {
        if let Ok(i) = text.parse::<i64>() {
            return Scalar::Int(i);
        }
        if !text.starts_with('-')
            && let Ok(u) = unsigned.parse::<u64>()
        {
            return Scalar::UInt(u);
        }
        if let Ok(f) = text.parse::<f64>() {
            return Scalar::Float(f);
        }
    }
    if is_core_float(unsigned)
        && let Ok(f) = text.parse::<f64>()
    {
        return Scalar::Float(f);
    }
    Scalar::Str(text.to_owned())
}

fn integer(u: u64) -> Scalar {
    i64::try_from(u).map_or(Scalar::UInt(u), Scalar::Int)
}

/// `(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?`, the core schema float without its sign.
fn is_core_float(s: &str) -> bool {
    let (mantissa, exponent) = match s.find(['e', 'E']) {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    let digits = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
    let mantissa_ok = match mantissa.split_once('.') {
        Some(("", frac)) => digits(frac),
        Some((int, frac)) => digits(int) && (frac.is_empty() || digits(frac)),
        None => digits(mantissa),
    };
    let exponent_ok = exponent.is_none_or(|e| digits(e.strip_prefix(['-', '+']).unwrap_or(e)));
    mantissa_ok && exponent_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_ok(text: &str) -> Node {
        let mut diags = Vec::new();
        let node = load(text.as_bytes(), &Limits::default(), &mut diags)
            .flatten()
            .expect("loads");
        assert!(diags.is_empty(), "{diags:?}");
        node
    }

    fn load_err(text: &[u8], limits: &Limits) -> Vec<Diagnostic> {
        let mut diags = Vec::new();
        assert!(load(text, limits, &mut diags).is_none());
        diags
    }

    #[test]
    fn core_schema_scalars() {
        for (text, want) in [
            ("1", Scalar::Int(1)),
            ("-7", Scalar::Int(-7)),
            ("0x1f", Scalar::Int(31)),
            ("0o17", Scalar::Int(15)),
            ("18446744073709551615", Scalar::UInt(u64::MAX)),
            ("1.5", Scalar::Float(1.5)),
            ("1e3", Scalar::Float(1000.0)),
            ("yes", Scalar::Str("yes".into())),
            ("~", Scalar::Null),
            ("True", Scalar::Bool(true)),
            ("1.2.3", Scalar::Str("1.2.3".into())),
            ("500m", Scalar::Str("500m".into())),
        ] {
            assert_eq!(resolve_plain(text), want, "{text}");
        }
        let quoted = load_ok("a: \"1\"\n");
        let NodeValue::Map(pairs) = quoted.value else {
            panic!()
        };
        assert_eq!(pairs[0].1.value, NodeValue::Scalar(Scalar::Str("1".into())));
    }

    #[test]
    fn spans_are_one_based() {
        let node = load_ok("a:\n  b: c\n");
        let NodeValue::Map(pairs) = node.value else {
            panic!()
        };
        let NodeValue::Map(inner) = &pairs[0].1.value else {
            panic!()
        };
        assert_eq!(inner[0].0.span.start, Position::new(2, 3));
        assert_eq!(inner[0].1.span.start, Position::new(2, 6));
    }

    #[test]
    fn duplicate_keys_name_both_places() {
        let mut diags = Vec::new();
        let node = load(b"a: 1\nb: 2\na: 3\n", &Limits::default(), &mut diags)
            .flatten()
            .unwrap();
        assert_eq!(diags.len(), 1);
        assert_eq!(diags[0].rule, Rule::DuplicateKey);
        assert_eq!(diags[0].span.start, Position::new(3, 1));
        assert_eq!(diags[0].related[0].span.start, Position::new(1, 1));
        let NodeValue::Map(pairs) = node.value else {
            panic!()
        };
        assert_eq!(pairs.len(), 2, "the duplicate is dropped");
    }

    #[test]
    fn limits() {
        let limits = Limits {
            max_bytes: 10,
            ..Limits::default()
        };
        assert_eq!(
            load_err(b"a: 0123456789", &limits)[0].rule,
            Rule::InputLimit
        );
        let deep = "[".repeat(100) + &"]".repeat(100);
        assert_eq!(
            load_err(deep.as_bytes(), &Limits::default())[0].rule,
            Rule::InputLimit
        );
        let laughs = "a: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n\
                      c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n\
                      e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]\n\
                      g: [*f, *f, *f, *f, *f, *f, *f, *f, *f, *f]\n";
        assert_eq!(
            load_err(laughs.as_bytes(), &Limits::default())[0].rule,
            Rule::InputLimit
        );
    }

    #[test]
    fn bad_input() {
        let d = load_err(b"a: 1\n\xff: 2\n", &Limits::default());
        assert_eq!(
            (d[0].rule, d[0].span.start),
            (Rule::Syntax, Position::new(2, 1))
        );
        let d = load_err(b"a: [1, 2\n", &Limits::default());
        assert_eq!(d[0].rule, Rule::Syntax);
        let d = load_err(b"a: 1\n---\nb: 2\n", &Limits::default());
        assert_eq!(d[0].rule, Rule::Syntax);
        let d = load_err(b"a: !custom 1\n", &Limits::default());
        assert_eq!(d[0].rule, Rule::Syntax);
    }

    #[test]
    fn aliases_expand() {
        let node = load_ok("a: &x {k: v}\nb: *x\n");
        let NodeValue::Map(pairs) = node.value else {
            panic!()
        };
        assert_eq!(pairs[0].1.value, pairs[1].1.value);
    }

    #[test]
    fn empty_document() {
        let mut diags = Vec::new();
        assert_eq!(
            load(b"# nothing\n", &Limits::default(), &mut diags),
            Some(None)
        );
    }
}
