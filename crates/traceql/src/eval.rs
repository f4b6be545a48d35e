//! Evaluation of a checked query on one trace (its OTLP resource spans, as stored).
//!
//! The semantics follow Tempo's documentation:
//! - a spanset filter keeps the spans of its input for which the expression is true; a
//!   comparison with an attribute the span does not have is false (`!= nil` tests existence);
//! - `&&` between spansets needs both sides to find spans and returns both sides' spans, `||`
//!   either; the structural operators return the right side's spans that stand in the relation
//!   to a left-side span (`>` child, `<` parent, `>>` descendant, `<<` ancestor, `~` sibling),
//!   `!`-forms those that do not, `&`-forms the spans of both sides that do;
//! - a pipeline applies each stage to every spanset the previous one produced; `by()` splits
//!   a spanset by a value, `coalesce()` merges them, a scalar filter keeps the spansets whose
//!   aggregate passes, `select()` names fields to return;
//! - values of event and link attributes, and array values, match when any element does
//!   (`!=` and `!~` when none does).
//!
//! The caller decides what the evaluator may see: [`Trace::new`] takes the spans as the caller
//! may read them (restricted attributes removed, pseudonyms masked), so a filter on a field the
//! caller may not read behaves as if the field were absent.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};

use tv_model::otlp::{AnyValue, KeyValue, ResourceSpans, ScopeSpans, Span, any_value};

use crate::ast::*;

/// A value a field expression produces.
#[derive(Clone, Debug, PartialEq)]
pub enum Value<'a> {
    Nil,
    Str(Cow<'a, str>),
    Int(i64),
    Float(f64),
    /// Nanoseconds.
    Duration(i64),
    Bool(bool),
    Status(Status),
    Kind(Kind),
    /// Several values (an array attribute, or one per event or link): matches when any does.
    List(Vec<Value<'a>>),
}

impl Value<'_> {
    fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Int(i) => Some(*i as f64),
            Value::Float(f) => Some(*f),
            Value::Duration(d) => Some(*d as f64),
            _ => None,
        }
    }

    /// The value as text for a `by()` label or a returned attribute.
    pub fn to_text(&self) -> String {
        match self {
            Value::Nil => "nil".into(),
            Value::Str(s) => s.to_string(),
            Value::Int(i) => i.to_string(),
            Value::Float(f) => f.to_string(),
            Value::Duration(d) => Literal::Duration(*d).to_string(),
            Value::Bool(b) => b.to_string(),
            Value::Status(s) => s.name().into(),
            Value::Kind(k) => k.name().into(),
            Value::List(l) => l.iter().map(Value::to_text).collect::<Vec<_>>().join(","),
        }
    }
}

fn any_value(v: &AnyValue) -> Value<'_> {
    match &v.value {
        Some(any_value::Value::StringValue(s)) => Value::Str(Cow::Borrowed(s)),
        Some(any_value::Value::IntValue(i)) => Value::Int(*i),
        Some(any_value::Value::DoubleValue(f)) => Value::Float(*f),
        Some(any_value::Value::BoolValue(b)) => Value::Bool(*b),
        Some(any_value::Value::ArrayValue(a)) => {
            Value::List(a.values.iter().map(any_value).collect())
        }
        Some(any_value::Value::BytesValue(b)) => Value::Str(Cow::Owned(hex(b))),
        Some(any_value::Value::KvlistValue(_) | any_value::Value::StringValueStrindex(_))
        | None => Value::Nil,
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// An attribute by key; a nested key-value list is reached with dots (`http.request.x` inside
/// `http` = {request = {x = ..}}).
fn attr<'a>(attrs: &'a [KeyValue], name: &str) -> Option<&'a AnyValue> {
    if let Some(kv) = attrs.iter().find(|kv| kv.key == name) {
        return kv.value.as_ref();
    }
    for kv in attrs {
        if let Some(rest) = name
            .strip_prefix(kv.key.as_str())
            .and_then(|r| r.strip_prefix('.'))
            && let Some(AnyValue {
                value: Some(any_value::Value::KvlistValue(l)),
            }) = &kv.value
        {
            return attr(&l.values, rest);
        }
    }
    None
}

/// One span of a trace, with where it stands.
pub struct SpanRef<'a> {
    pub resource: &'a ResourceSpans,
    pub scope: &'a ScopeSpans,
    pub span: &'a Span,
    pub parent: Option<usize>,
    pub children: Vec<usize>,
    /// Nested-set numbers (Tempo's nestedSetLeft/Right/Parent).
    pub left: i64,
    pub right: i64,
}

/// A trace prepared for evaluation.
pub struct Trace<'a> {
    pub spans: Vec<SpanRef<'a>>,
    pub start: u64,
    pub end: u64,
    /// The root span: the one without a parent in the trace (the earliest, if several).
    pub root: Option<usize>,
}

impl<'a> Trace<'a> {
    pub fn new(data: &'a [ResourceSpans]) -> Trace<'a> {
        let mut spans = Vec::new();
        for rs in data {
            for ss in &rs.scope_spans {
                for span in &ss.spans {
                    spans.push(SpanRef {
                        resource: rs,
                        scope: ss,
                        span,
                        parent: None,
                        children: Vec::new(),
                        left: 0,
                        right: 0,
                    });
                }
            }
        }
        let by_id: HashMap<&[u8], usize> = spans
            .iter()
            .enumerate()
            .map(|(i, s)| (s.span.span_id.as_slice(), i))
            .collect();
        for i in 0..spans.len() {
            let p = &spans[i].span.parent_span_id;
            if !p.is_empty()
                && let Some(&pi) = by_id.get(p.as_slice())
                && pi != i
            {
                spans[i].parent = Some(pi);
                spans[pi].children.push(i);
            }
        }
        let start = spans
            .iter()
            .map(|s| s.span.start_time_unix_nano)
            .min()
            .unwrap_or(0);
        let end = spans
            .iter()
            .map(|s| s.span.end_time_unix_nano)
            .max()
            .unwrap_or(0);
        let root = spans
            .iter()
            .enumerate()
            .filter(|(_, s)| s.parent.is_none())
            .min_by_key(|(_, s)| {
                (
                    !s.span.parent_span_id.is_empty(),
                    s.span.start_time_unix_nano,
                )
            })
            .map(|(i, _)| i);
        let mut t = Trace {
            spans,
            start,
            end,
            root,
        };
        t.number();
        t
    }

    /// One span alone (what a [`prefilter`] reads: it names no trace-level field).
    pub fn one(resource: &'a ResourceSpans, scope: &'a ScopeSpans, span: &'a Span) -> Trace<'a> {
        Trace {
            spans: vec![SpanRef {
                resource,
                scope,
                span,
                parent: None,
                children: Vec::new(),
                left: 1,
                right: 2,
            }],
            start: span.start_time_unix_nano,
            end: span.end_time_unix_nano,
            root: Some(0),
        }
    }

    /// Nested-set numbering, iterative (a hostile trace may be one long chain).
    fn number(&mut self) {
        let mut counter = 0i64;
        let roots: Vec<usize> = (0..self.spans.len())
            .filter(|&i| self.spans[i].parent.is_none())
            .collect();
        let mut seen = vec![false; self.spans.len()];
        for r in roots {
            let mut stack = vec![(r, false)];
            while let Some((i, done)) = stack.pop() {
                if done {
                    counter += 1;
                    self.spans[i].right = counter;
                    continue;
                }
                if seen[i] {
                    continue;
                }
                seen[i] = true;
                counter += 1;
                self.spans[i].left = counter;
                stack.push((i, true));
                for &c in self.spans[i].children.iter().rev() {
                    stack.push((c, false));
                }
            }
        }
    }

    fn is_ancestor(&self, a: usize, mut d: usize) -> bool {
        // Bounded: a cycle of parent ids cannot loop forever.
        for _ in 0..self.spans.len() {
            match self.spans[d].parent {
                Some(p) if p == a => return true,
                Some(p) => d = p,
                None => return false,
            }
        }
        false
    }
}

/// A group of spans of one trace, as a pipeline stage produces it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Spanset {
    /// Indexes into [`Trace::spans`], in trace order.
    pub spans: Vec<usize>,
    /// Values the pipeline attached (`by(...)` keys, aggregates), by their canonical text.
    pub attributes: Vec<(String, String)>,
    /// Fields `select()` asked to return.
    pub selected: Vec<Field>,
}

/// What the caller may see of the data, asked for every attribute and text the evaluator
/// reads: a hidden attribute is absent, a text reads as the caller would see it.
pub trait View {
    /// Whether attribute `key` is hidden from the caller (it then behaves as absent).
    fn hides(&self, key: &str) -> bool;
    /// `s` as the caller sees it (`None`: as stored).
    fn text(&self, s: &str) -> Option<String>;
}

/// Everything visible.
pub struct Everything;

impl View for Everything {
    fn hides(&self, _: &str) -> bool {
        false
    }
    fn text(&self, _: &str) -> Option<String> {
        None
    }
}

/// Evaluates queries on traces; compiled regular expressions are kept between traces.
pub struct Evaluator {
    regexes: HashMap<String, Option<regex::Regex>>,
    view: Box<dyn View + Send + Sync>,
}

impl Default for Evaluator {
    fn default() -> Self {
        Self::new()
    }
}

impl Evaluator {
    /// An evaluator that sees everything.
    pub fn new() -> Self {
        Self::with_view(Box::new(Everything))
    }

    /// An evaluator that sees what `view` lets it.
    pub fn with_view(view: Box<dyn View + Send + Sync>) -> Self {
        Evaluator {
            regexes: HashMap::new(),
            view,
        }
    }

    /// The spansets `q`'s pipeline finds in `t` (empty: the trace does not match).
    pub fn spansets(&mut self, q: &Query, t: &Trace<'_>) -> Vec<Spanset> {
        let all = Spanset {
            spans: (0..t.spans.len()).collect(),
            ..Default::default()
        };
        self.pipeline(&q.pipeline, t, vec![all])
    }

    fn pipeline(&mut self, p: &Pipeline, t: &Trace<'_>, mut sets: Vec<Spanset>) -> Vec<Spanset> {
        for stage in &p.0 {
            let mut next = Vec::new();
            match stage {
                Stage::Coalesce => {
                    let mut merged = Spanset::default();
                    for s in sets {
                        merged.spans.extend(s.spans);
                        merged.selected.extend(s.selected);
                    }
                    merged.spans.sort_unstable();
                    merged.spans.dedup();
                    if !merged.spans.is_empty() {
                        next.push(merged);
                    }
                }
                _ => {
                    for s in sets {
                        next.extend(self.stage(stage, t, s));
                    }
                }
            }
            sets = next;
            if sets.is_empty() {
                break;
            }
        }
        sets
    }

    fn stage(&mut self, stage: &Stage, t: &Trace<'_>, input: Spanset) -> Vec<Spanset> {
        match stage {
            Stage::Spanset(e) => {
                let found = self.spanset(e, t, &input);
                found
                    .into_iter()
                    .map(|spans| Spanset {
                        spans,
                        attributes: input.attributes.clone(),
                        selected: input.selected.clone(),
                    })
                    .collect()
            }
            Stage::Scalar(f) => {
                let l = self.scalar(&f.lhs, t, &input);
                let r = self.scalar(&f.rhs, t, &input);
                match (l, r) {
                    (Some(l), Some(r)) if compare_f64(f.op, l, r) => {
                        let mut out = input;
                        if let Scalar::Aggregate(..) = &f.lhs {
                            out.attributes.push((f.lhs.to_string(), format_number(l)));
                        }
                        vec![out]
                    }
                    _ => Vec::new(),
                }
            }
            Stage::By(fields) => {
                let Some(field) = fields.first() else {
                    return vec![input];
                };
                let key = format!("by({field})");
                let mut groups: Vec<(String, Vec<usize>)> = Vec::new();
                for &i in &input.spans {
                    let v = self.field(field, t, i);
                    if v == Value::Nil {
                        continue;
                    }
                    let text = v.to_text();
                    match groups.iter_mut().find(|(k, _)| *k == text) {
                        Some((_, g)) => g.push(i),
                        None => groups.push((text, vec![i])),
                    }
                }
                groups
                    .into_iter()
                    .map(|(v, spans)| {
                        let mut attributes = input.attributes.clone();
                        attributes.push((key.clone(), v));
                        Spanset {
                            spans,
                            attributes,
                            selected: input.selected.clone(),
                        }
                    })
                    .collect()
            }
            Stage::Select(fields) => {
                let mut out = input;
                out.selected.extend(fields.iter().cloned());
                vec![out]
            }
            Stage::Coalesce => vec![input],
        }
    }

    /// The span groups a spanset expression finds within `input`.
    fn spanset(&mut self, e: &SpansetExpr, t: &Trace<'_>, input: &Spanset) -> Vec<Vec<usize>> {
        match e {
            SpansetExpr::Filter(None) => non_empty(input.spans.clone()),
            SpansetExpr::Filter(Some(f)) => {
                let spans: Vec<usize> = input
                    .spans
                    .iter()
                    .copied()
                    .filter(|&i| self.field(f, t, i) == Value::Bool(true))
                    .collect();
                non_empty(spans)
            }
            SpansetExpr::Group(p) => self
                .pipeline(p, t, vec![input.clone()])
                .into_iter()
                .map(|s| s.spans)
                .collect(),
            SpansetExpr::Op(op, l, r) => {
                let left: Vec<usize> = flatten(self.spanset(l, t, input));
                let right: Vec<usize> = flatten(self.spanset(r, t, input));
                let out = match op {
                    SpansetOp::And => {
                        if left.is_empty() || right.is_empty() {
                            Vec::new()
                        } else {
                            union(&left, &right)
                        }
                    }
                    SpansetOp::Or => union(&left, &right),
                    _ => structural(*op, t, &left, &right),
                };
                non_empty(out)
            }
        }
    }

    fn scalar(&mut self, s: &Scalar, t: &Trace<'_>, input: &Spanset) -> Option<f64> {
        match s {
            Scalar::Static(l) => literal_value(l).as_f64(),
            Scalar::Aggregate(a, f) => self.aggregate(*a, f.as_deref(), t, &input.spans),
            Scalar::Binary(op, l, r) => {
                let (l, r) = (self.scalar(l, t, input)?, self.scalar(r, t, input)?);
                arith_f64(*op, l, r)
            }
            Scalar::Pipeline(p, a, f) => {
                let sets = self.pipeline(p, t, vec![input.clone()]);
                let spans = flatten(sets.into_iter().map(|s| s.spans).collect());
                self.aggregate(*a, f.as_deref(), t, &spans)
            }
        }
    }

    fn aggregate(
        &mut self,
        a: Aggregate,
        f: Option<&Field>,
        t: &Trace<'_>,
        spans: &[usize],
    ) -> Option<f64> {
        if a == Aggregate::Count {
            return Some(spans.len() as f64);
        }
        let f = f?;
        let values: Vec<f64> = spans
            .iter()
            .filter_map(|&i| self.field(f, t, i).as_f64())
            .collect();
        if values.is_empty() {
            return None;
        }
        Some(match a {
            Aggregate::Sum => values.iter().sum(),
            Aggregate::Avg => values.iter().sum::<f64>() / values.len() as f64,
            Aggregate::Min => values.iter().copied().fold(f64::INFINITY, f64::min),
            Aggregate::Max => values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            Aggregate::Count => unreachable!("handled above"),
        })
    }

    /// The value of `f` on span `i` of `t`.
    pub fn field<'t>(&mut self, f: &Field, t: &Trace<'t>, i: usize) -> Value<'t> {
        match f {
            Field::Static(l) => literal_value(l),
            Field::Attribute(a) => {
                if self.view.hides(&a.name) {
                    return Value::Nil;
                }
                let v = attribute(a, t, i);
                self.seen(v)
            }
            Field::Intrinsic(x) => {
                let v = intrinsic(*x, t, i);
                self.seen(v)
            }
            Field::Unary(UnaryOp::Not, e) => match self.field(e, t, i) {
                Value::Bool(b) => Value::Bool(!b),
                _ => Value::Bool(false),
            },
            Field::Unary(UnaryOp::Neg, e) => match self.field(e, t, i) {
                Value::Int(v) => v.checked_neg().map_or(Value::Nil, Value::Int),
                Value::Float(v) => Value::Float(-v),
                Value::Duration(v) => v.checked_neg().map_or(Value::Nil, Value::Duration),
                _ => Value::Nil,
            },
            Field::Binary(op, l, r) => {
                // Short circuits.
                if matches!(op, BinOp::And | BinOp::Or) {
                    let lv = self.field(l, t, i) == Value::Bool(true);
                    if *op == BinOp::And && !lv {
                        return Value::Bool(false);
                    }
                    if *op == BinOp::Or && lv {
                        return Value::Bool(true);
                    }
                    return Value::Bool(self.field(r, t, i) == Value::Bool(true));
                }
                // `x = nil`: x is absent; `x != nil`: x exists; nil against nil: false.
                let nil = |f: &Field| matches!(f, Field::Static(Literal::Nil));
                if matches!(op, BinOp::Eq | BinOp::Neq) && (nil(l) || nil(r)) {
                    if nil(l) && nil(r) {
                        return Value::Bool(false);
                    }
                    let other = if nil(l) { r } else { l };
                    let absent = self.field(other, t, i) == Value::Nil;
                    return Value::Bool(absent == (*op == BinOp::Eq));
                }
                let lv = self.field(l, t, i);
                let rv = self.field(r, t, i);
                if op.is_arithmetic() {
                    return arith(*op, &lv, &rv);
                }
                Value::Bool(self.compare(*op, &lv, &rv))
            }
        }
    }

    /// A value as the caller sees it (texts with what it may not read masked).
    fn seen<'t>(&self, v: Value<'t>) -> Value<'t> {
        match v {
            Value::Str(s) => match self.view.text(&s) {
                Some(m) => Value::Str(Cow::Owned(m)),
                None => Value::Str(s),
            },
            Value::List(items) => Value::List(items.into_iter().map(|x| self.seen(x)).collect()),
            other => other,
        }
    }

    fn regex(&mut self, pattern: &str) -> Option<&regex::Regex> {
        self.regexes
            .entry(pattern.to_owned())
            .or_insert_with(|| regex::Regex::new(&format!("^(?:{pattern})$")).ok())
            .as_ref()
    }

    fn compare(&mut self, op: BinOp, l: &Value<'_>, r: &Value<'_>) -> bool {
        // A value that is not there compares with nothing (existence is tested with the
        // literal nil, in [`Evaluator::field`]).
        if matches!(l, Value::Nil) || matches!(r, Value::Nil) {
            return false;
        }
        // Several values: any of them (none of them for the negations).
        let items = match (l, r) {
            (Value::List(items), _) => Some((items, true)),
            (_, Value::List(items)) => Some((items, false)),
            _ => None,
        };
        if let Some((items, left)) = items {
            let (op, negated) = match op {
                BinOp::Neq => (BinOp::Eq, true),
                BinOp::Nre => (BinOp::Re, true),
                other => (other, false),
            };
            let any = items.iter().any(|v| {
                if left {
                    self.compare(op, v, r)
                } else {
                    self.compare(op, l, v)
                }
            });
            return any != negated;
        }
        match (l, r) {
            (Value::Str(a), Value::Str(b)) => match op {
                BinOp::Eq => a == b,
                BinOp::Neq => a != b,
                BinOp::Gt => a > b,
                BinOp::Gte => a >= b,
                BinOp::Lt => a < b,
                BinOp::Lte => a <= b,
                BinOp::Re => self.regex(b).is_some_and(|re| re.is_match(a)),
                BinOp::Nre => self.regex(b).is_some_and(|re| !re.is_match(a)),
                _ => false,
            },
            (Value::Int(a), Value::Int(b)) => compare_ord(op, a.cmp(b)),
            (Value::Bool(a), Value::Bool(b)) => match op {
                BinOp::Eq => a == b,
                BinOp::Neq => a != b,
                _ => false,
            },
            (Value::Status(a), Value::Status(b)) => match op {
                BinOp::Eq => a == b,
                BinOp::Neq => a != b,
                _ => false,
            },
            (Value::Kind(a), Value::Kind(b)) => match op {
                BinOp::Eq => a == b,
                BinOp::Neq => a != b,
                _ => false,
            },
            _ => match (l.as_f64(), r.as_f64()) {
                (Some(a), Some(b)) => compare_f64(op, a, b),
                _ => false,
            },
        }
    }
}

fn compare_ord(op: BinOp, o: std::cmp::Ordering) -> bool {
    use std::cmp::Ordering::*;
    match op {
        BinOp::Eq => o == Equal,
        BinOp::Neq => o != Equal,
        BinOp::Gt => o == Greater,
        BinOp::Gte => o != Less,
        BinOp::Lt => o == Less,
        BinOp::Lte => o != Greater,
        _ => false,
    }
}

fn compare_f64(op: BinOp, a: f64, b: f64) -> bool {
    match a.partial_cmp(&b) {
        Some(o) => compare_ord(op, o),
        None => false,
    }
}

fn arith_f64(op: BinOp, a: f64, b: f64) -> Option<f64> {
    let v = match op {
        BinOp::Add => a + b,
        BinOp::Sub => a - b,
        BinOp::Mul => a * b,
        BinOp::Div => a / b,
        BinOp::Mod => a % b,
        BinOp::Pow => a.powf(b),
        _ => return None,
    };
    v.is_finite().then_some(v)
}

fn arith<'t>(op: BinOp, l: &Value<'_>, r: &Value<'_>) -> Value<'t> {
    match (l, r) {
        (Value::Int(a), Value::Int(b)) => {
            let v = match op {
                BinOp::Add => a.checked_add(*b),
                BinOp::Sub => a.checked_sub(*b),
                BinOp::Mul => a.checked_mul(*b),
                BinOp::Div => a.checked_div(*b),
                BinOp::Mod => a.checked_rem(*b),
                BinOp::Pow => u32::try_from(*b).ok().and_then(|e| a.checked_pow(e)),
                _ => None,
            };
            v.map_or(Value::Nil, Value::Int)
        }
        _ => match (l.as_f64(), r.as_f64()) {
            (Some(a), Some(b)) => match arith_f64(op, a, b) {
                Some(v) if matches!(l, Value::Duration(_)) || matches!(r, Value::Duration(_)) => {
                    Value::Duration(v as i64)
                }
                Some(v) => Value::Float(v),
                None => Value::Nil,
            },
            _ => Value::Nil,
        },
    }
}

fn format_number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

fn non_empty(spans: Vec<usize>) -> Vec<Vec<usize>> {
    if spans.is_empty() {
        Vec::new()
    } else {
        vec![spans]
    }
}

fn flatten(sets: Vec<Vec<usize>>) -> Vec<usize> {
    let mut out: Vec<usize> = sets.into_iter().flatten().collect();
    out.sort_unstable();
    out.dedup();
    out
}

fn union(a: &[usize], b: &[usize]) -> Vec<usize> {
    let mut out: Vec<usize> = a.iter().chain(b).copied().collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// The structural operators over span index sets of one trace.
fn structural(op: SpansetOp, t: &Trace<'_>, left: &[usize], right: &[usize]) -> Vec<usize> {
    let lset: HashSet<usize> = left.iter().copied().collect();
    let rset: HashSet<usize> = right.iter().copied().collect();
    let parent_of = |i: usize| t.spans[i].parent;
    // Does span `r` stand in the relation to some span of `others`?
    let related = |rel: SpansetOp, r: usize, others: &HashSet<usize>| -> bool {
        match rel {
            // r is a child of an `others` span
            SpansetOp::Child => parent_of(r).is_some_and(|p| others.contains(&p)),
            // r is the parent of an `others` span
            SpansetOp::Parent => t.spans[r].children.iter().any(|c| others.contains(c)),
            SpansetOp::Descendant => others.iter().any(|&a| a != r && t.is_ancestor(a, r)),
            SpansetOp::Ancestor => others.iter().any(|&d| d != r && t.is_ancestor(r, d)),
            SpansetOp::Sibling => parent_of(r)
                .is_some_and(|p| others.iter().any(|&o| o != r && parent_of(o) == Some(p))),
            _ => false,
        }
    };
    let base = |op: SpansetOp| match op {
        SpansetOp::Child | SpansetOp::NotChild | SpansetOp::UnionChild => SpansetOp::Child,
        SpansetOp::Parent | SpansetOp::NotParent | SpansetOp::UnionParent => SpansetOp::Parent,
        SpansetOp::Descendant | SpansetOp::NotDescendant | SpansetOp::UnionDescendant => {
            SpansetOp::Descendant
        }
        SpansetOp::Ancestor | SpansetOp::NotAncestor | SpansetOp::UnionAncestor => {
            SpansetOp::Ancestor
        }
        _ => SpansetOp::Sibling,
    };
    let inverse = |rel: SpansetOp| match rel {
        SpansetOp::Child => SpansetOp::Parent,
        SpansetOp::Parent => SpansetOp::Child,
        SpansetOp::Descendant => SpansetOp::Ancestor,
        SpansetOp::Ancestor => SpansetOp::Descendant,
        other => other,
    };
    let rel = base(op);
    let mut out: Vec<usize> = match op {
        SpansetOp::Child
        | SpansetOp::Parent
        | SpansetOp::Descendant
        | SpansetOp::Ancestor
        | SpansetOp::Sibling => right
            .iter()
            .copied()
            .filter(|&r| related(rel, r, &lset))
            .collect(),
        SpansetOp::NotChild
        | SpansetOp::NotParent
        | SpansetOp::NotDescendant
        | SpansetOp::NotAncestor
        | SpansetOp::NotSibling => right
            .iter()
            .copied()
            .filter(|&r| !related(rel, r, &lset))
            .collect(),
        _ => {
            // Union forms: both sides' spans that take part in the relation.
            let mut v: Vec<usize> = right
                .iter()
                .copied()
                .filter(|&r| related(rel, r, &lset))
                .collect();
            v.extend(
                left.iter()
                    .copied()
                    .filter(|&l| related(inverse(rel), l, &rset)),
            );
            v
        }
    };
    out.sort_unstable();
    out.dedup();
    out
}

pub fn literal_value(l: &Literal) -> Value<'static> {
    match l {
        Literal::String(s) => Value::Str(Cow::Owned(s.clone())),
        Literal::Int(i) => Value::Int(*i),
        Literal::Float(f) => Value::Float(*f),
        Literal::Duration(d) => Value::Duration(*d),
        Literal::Status(s) => Value::Status(*s),
        Literal::Kind(k) => Value::Kind(*k),
        Literal::Bool(b) => Value::Bool(*b),
        Literal::Nil => Value::Nil,
    }
}

fn attribute<'t>(a: &Attribute, t: &Trace<'t>, i: usize) -> Value<'t> {
    let s = if a.parent {
        match t.spans[i].parent {
            Some(p) => &t.spans[p],
            None => return Value::Nil,
        }
    } else {
        &t.spans[i]
    };
    let resource = || {
        s.resource
            .resource
            .as_ref()
            .and_then(|r| attr(&r.attributes, &a.name))
            .map(any_value)
    };
    let found = match a.scope {
        Scope::Span => attr(&s.span.attributes, &a.name).map(any_value),
        Scope::Resource => resource(),
        Scope::None => attr(&s.span.attributes, &a.name)
            .map(any_value)
            .or_else(resource),
        Scope::Instrumentation => s
            .scope
            .scope
            .as_ref()
            .and_then(|sc| attr(&sc.attributes, &a.name))
            .map(any_value),
        Scope::Event => {
            let vals: Vec<Value<'t>> = s
                .span
                .events
                .iter()
                .filter_map(|e| attr(&e.attributes, &a.name).map(any_value))
                .collect();
            (!vals.is_empty()).then_some(Value::List(vals))
        }
        Scope::Link => {
            let vals: Vec<Value<'t>> = s
                .span
                .links
                .iter()
                .filter_map(|l| attr(&l.attributes, &a.name).map(any_value))
                .collect();
            (!vals.is_empty()).then_some(Value::List(vals))
        }
    };
    found.unwrap_or(Value::Nil)
}

fn intrinsic<'t>(x: Intrinsic, t: &Trace<'t>, i: usize) -> Value<'t> {
    let s = &t.spans[i];
    let sp = s.span;
    let root = t.root.map(|r| &t.spans[r]);
    match x {
        Intrinsic::Name => Value::Str(Cow::Borrowed(&sp.name)),
        Intrinsic::Status => Value::Status(match sp.status.as_ref().map(|s| s.code) {
            Some(1) => Status::Ok,
            Some(2) => Status::Error,
            _ => Status::Unset,
        }),
        Intrinsic::StatusMessage => Value::Str(Cow::Borrowed(
            sp.status.as_ref().map(|s| s.message.as_str()).unwrap_or(""),
        )),
        Intrinsic::Kind => Value::Kind(match sp.kind {
            1 => Kind::Internal,
            2 => Kind::Server,
            3 => Kind::Client,
            4 => Kind::Producer,
            5 => Kind::Consumer,
            _ => Kind::Unspecified,
        }),
        Intrinsic::Duration => Value::Duration(
            sp.end_time_unix_nano
                .saturating_sub(sp.start_time_unix_nano) as i64,
        ),
        Intrinsic::ChildCount => Value::Int(s.children.len() as i64),
        Intrinsic::SpanId => Value::Str(Cow::Owned(hex(&sp.span_id))),
        Intrinsic::ParentId => {
            if sp.parent_span_id.is_empty() {
                Value::Nil
            } else {
                Value::Str(Cow::Owned(hex(&sp.parent_span_id)))
            }
        }
        Intrinsic::NestedSetLeft => Value::Int(s.left),
        Intrinsic::NestedSetRight => Value::Int(s.right),
        Intrinsic::NestedSetParent => Value::Int(s.parent.map(|p| t.spans[p].left).unwrap_or(-1)),
        Intrinsic::TraceDuration => Value::Duration(t.end.saturating_sub(t.start) as i64),
        Intrinsic::RootName => root.map_or(Value::Nil, |r| Value::Str(Cow::Borrowed(&r.span.name))),
        Intrinsic::RootService => root
            .and_then(|r| tv_model::service_name(r.resource.resource.as_ref()))
            .map_or(Value::Nil, |n| Value::Str(Cow::Borrowed(n))),
        Intrinsic::TraceId => Value::Str(Cow::Owned(hex(&sp.trace_id))),
        Intrinsic::EventName => list(sp.events.iter().map(|e| Value::Str(Cow::Borrowed(&e.name)))),
        Intrinsic::EventTimeSinceStart => list(sp.events.iter().map(|e| {
            Value::Duration(e.time_unix_nano.saturating_sub(sp.start_time_unix_nano) as i64)
        })),
        Intrinsic::LinkTraceId => list(
            sp.links
                .iter()
                .map(|l| Value::Str(Cow::Owned(hex(&l.trace_id)))),
        ),
        Intrinsic::LinkSpanId => list(
            sp.links
                .iter()
                .map(|l| Value::Str(Cow::Owned(hex(&l.span_id)))),
        ),
        Intrinsic::InstrumentationName => s
            .scope
            .scope
            .as_ref()
            .map_or(Value::Nil, |sc| Value::Str(Cow::Borrowed(&sc.name))),
        Intrinsic::InstrumentationVersion => s
            .scope
            .scope
            .as_ref()
            .map_or(Value::Nil, |sc| Value::Str(Cow::Borrowed(&sc.version))),
    }
}

fn list<'t>(vals: impl Iterator<Item = Value<'t>>) -> Value<'t> {
    let v: Vec<Value<'t>> = vals.collect();
    if v.is_empty() {
        Value::Nil
    } else {
        Value::List(v)
    }
}

/// A condition every span of a matching trace's result must meet one of: candidates for the
/// query are the traces with a span for which it holds (`None`: any span may do, e.g. `{ }`).
/// Sound: a trace without such a span cannot match.
pub fn prefilter(q: &Query) -> Option<Field> {
    let f = match q.pipeline.0.first()? {
        Stage::Spanset(e) => required(e)?,
        _ => return None,
    };
    // Read on one span at a time: nothing that needs the rest of the trace.
    (!needs_trace(&f)).then_some(f)
}

/// The condition of a query that selects spans one at a time (one spanset filter and nothing
/// after it, reading, like `fields`, nothing but the span, its resource and scope), or `None`
/// when the query needs whole traces. `Some(None)` is `{}`: every span. Such a query can be
/// answered span by span in the store's columns without assembling traces.
pub fn span_local<'a>(q: &'a Query, fields: &[&Field]) -> Option<Option<&'a Field>> {
    let [Stage::Spanset(SpansetExpr::Filter(f))] = q.pipeline.0.as_slice() else {
        return None;
    };
    if f.as_ref().is_some_and(needs_trace) || fields.iter().any(|x| needs_trace(x)) {
        return None;
    }
    Some(f.as_ref())
}

/// Whether `f` reads the trace around a span (its parent, children, root, extent).
fn needs_trace(f: &Field) -> bool {
    match f {
        Field::Static(_) => false,
        Field::Attribute(a) => a.parent,
        Field::Intrinsic(i) => matches!(
            i,
            Intrinsic::ChildCount
                | Intrinsic::NestedSetLeft
                | Intrinsic::NestedSetRight
                | Intrinsic::NestedSetParent
                | Intrinsic::TraceDuration
                | Intrinsic::RootName
                | Intrinsic::RootService
        ),
        Field::Binary(_, l, r) => needs_trace(l) || needs_trace(r),
        Field::Unary(_, e) => needs_trace(e),
    }
}

/// Field references a query makes (attributes and intrinsics), for returning their values.
pub fn referenced(q: &Query) -> Vec<Field> {
    fn walk(f: &Field, out: &mut Vec<Field>) {
        match f {
            Field::Attribute(_) | Field::Intrinsic(_) => {
                if !out.contains(f) {
                    out.push(f.clone());
                }
            }
            Field::Binary(_, l, r) => {
                walk(l, out);
                walk(r, out);
            }
            Field::Unary(_, e) => walk(e, out),
            Field::Static(_) => {}
        }
    }
    fn spanset(e: &SpansetExpr, out: &mut Vec<Field>) {
        match e {
            SpansetExpr::Filter(Some(f)) => walk(f, out),
            SpansetExpr::Filter(None) => {}
            SpansetExpr::Op(_, l, r) => {
                spanset(l, out);
                spanset(r, out);
            }
            SpansetExpr::Group(p) => pipeline(p, out),
        }
    }
    fn pipeline(p: &Pipeline, out: &mut Vec<Field>) {
        for s in &p.0 {
            match s {
                Stage::Spanset(e) => spanset(e, out),
                Stage::By(fs) | Stage::Select(fs) => fs.iter().for_each(|f| walk(f, out)),
                _ => {}
            }
        }
    }
    let mut out = Vec::new();
    pipeline(&q.pipeline, &mut out);
    out
}

/// What every candidate span must have by the prefilter's conjunction: span names
/// (`name = "x"`) and attributes with a string value (`span.k = "v"`).
pub fn required_equalities(q: &Query) -> (Vec<String>, Vec<(Attribute, String)>) {
    fn walk(f: &Field, names: &mut Vec<String>, attrs: &mut Vec<(Attribute, String)>) {
        match f {
            Field::Binary(BinOp::And, l, r) => {
                walk(l, names, attrs);
                walk(r, names, attrs);
            }
            Field::Binary(BinOp::Eq, l, r) => match (l.as_ref(), r.as_ref()) {
                (Field::Intrinsic(Intrinsic::Name), Field::Static(Literal::String(v)))
                | (Field::Static(Literal::String(v)), Field::Intrinsic(Intrinsic::Name)) => {
                    names.push(v.clone())
                }
                (Field::Attribute(a), Field::Static(Literal::String(v)))
                | (Field::Static(Literal::String(v)), Field::Attribute(a))
                    if !a.parent =>
                {
                    attrs.push((a.clone(), v.clone()))
                }
                _ => {}
            },
            _ => {}
        }
    }
    let (mut names, mut attrs) = (Vec::new(), Vec::new());
    if let Some(p) = prefilter(q) {
        walk(&p, &mut names, &mut attrs);
    }
    (names, attrs)
}

/// The one `resource.service.name = "x"` every match needs, if the query says so (blocks
/// without that service need not be opened).
pub fn required_service(q: &Query) -> Option<String> {
    fn conj(f: &Field) -> Option<String> {
        match f {
            Field::Binary(BinOp::Eq, l, r) => match (l.as_ref(), r.as_ref()) {
                (Field::Attribute(a), Field::Static(Literal::String(v)))
                | (Field::Static(Literal::String(v)), Field::Attribute(a))
                    if a.scope == Scope::Resource && a.name == "service.name" && !a.parent =>
                {
                    Some(v.clone())
                }
                _ => None,
            },
            Field::Binary(BinOp::And, l, r) => conj(l).or_else(|| conj(r)),
            _ => None,
        }
    }
    conj(&prefilter(q)?)
}

fn required(e: &SpansetExpr) -> Option<Field> {
    match e {
        SpansetExpr::Filter(f) => f.clone(),
        SpansetExpr::Group(p) => match p.0.first()? {
            Stage::Spanset(e) => required(e),
            _ => None,
        },
        SpansetExpr::Op(SpansetOp::Or, l, r) => {
            let (l, r) = (required(l)?, required(r)?);
            Some(Field::Binary(BinOp::Or, Box::new(l), Box::new(r)))
        }
        // Every other operator returns spans only when its right side found some (and `&&`
        // only when both did).
        SpansetExpr::Op(_, _, r) => required(r),
    }
}
