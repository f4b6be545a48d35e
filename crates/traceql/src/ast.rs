//! The parsed form of a query, and its canonical text ([`std::fmt::Display`]): every binary
//! expression in parentheses, so that printing and parsing again gives the same tree.

use std::fmt;

/// A whole query: a pipeline, maybe ending in a metrics function, with optional hints.
#[derive(Clone, Debug, PartialEq)]
pub struct Query {
    pub pipeline: Pipeline,
    /// A metrics function ends the pipeline (`| rate() by (resource.service.name)`).
    pub metrics: Option<Metrics>,
    /// `with (key = value, ...)`.
    pub hints: Vec<(String, Literal)>,
}

/// Stages joined by `|`, each reading the spansets the previous one produced.
#[derive(Clone, Debug, PartialEq)]
pub struct Pipeline(pub Vec<Stage>);

#[derive(Clone, Debug, PartialEq)]
pub enum Stage {
    Spanset(SpansetExpr),
    /// `count() > 2`, `avg(duration) > 1s`: keeps the spansets whose aggregate passes.
    Scalar(ScalarFilter),
    /// `by(resource.service.name)`: regroups spans into spansets by the value.
    By(Vec<Field>),
    /// `coalesce()`: merges the spansets of a trace into one.
    Coalesce,
    /// `select(span.http.url, duration)`: adds these fields to the returned spans.
    Select(Vec<Field>),
}

/// Spansets combined: filters, spanset operators and parenthesized pipelines.
#[derive(Clone, Debug, PartialEq)]
pub enum SpansetExpr {
    /// `{ expr }`; `None` for `{}` (every span).
    Filter(Option<Field>),
    Op(SpansetOp, Box<SpansetExpr>, Box<SpansetExpr>),
    /// `( a | b )`: a pipeline as an operand.
    Group(Box<Pipeline>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpansetOp {
    And,
    Or,
    Child,
    Descendant,
    Parent,
    Ancestor,
    Sibling,
    NotChild,
    NotDescendant,
    NotParent,
    NotAncestor,
    NotSibling,
    UnionChild,
    UnionDescendant,
    UnionParent,
    UnionAncestor,
    UnionSibling,
}

impl SpansetOp {
    pub fn symbol(self) -> &'static str {
        use SpansetOp::*;
        match self {
            And => "&&",
            Or => "||",
            Child => ">",
            Descendant => ">>",
            Parent => "<",
            Ancestor => "<<",
            Sibling => "~",
            NotChild => "!>",
            NotDescendant => "!>>",
            NotParent => "!<",
            NotAncestor => "!<<",
            NotSibling => "!~",
            UnionChild => "&>",
            UnionDescendant => "&>>",
            UnionParent => "&<",
            UnionAncestor => "&<<",
            UnionSibling => "&~",
        }
    }

    /// `&&` and `||` bind least; the structural operators bind tighter.
    pub fn is_structural(self) -> bool {
        !matches!(self, SpansetOp::And | SpansetOp::Or)
    }
}

/// `lhs op rhs` over aggregates and constants.
#[derive(Clone, Debug, PartialEq)]
pub struct ScalarFilter {
    pub op: BinOp,
    pub lhs: Scalar,
    pub rhs: Scalar,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Scalar {
    Static(Literal),
    Aggregate(Aggregate, Option<Box<Field>>),
    Binary(BinOp, Box<Scalar>, Box<Scalar>),
    /// `({ ... } | count())`: an aggregate of a whole pipeline's result.
    Pipeline(Box<Pipeline>, Aggregate, Option<Box<Field>>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Aggregate {
    Count,
    Avg,
    Min,
    Max,
    Sum,
}

impl Aggregate {
    pub fn name(self) -> &'static str {
        match self {
            Aggregate::Count => "count",
            Aggregate::Avg => "avg",
            Aggregate::Min => "min",
            Aggregate::Max => "max",
            Aggregate::Sum => "sum",
        }
    }
}

/// A value computed per span.
#[derive(Clone, Debug, PartialEq)]
pub enum Field {
    Static(Literal),
    Attribute(Attribute),
    Intrinsic(Intrinsic),
    Binary(BinOp, Box<Field>, Box<Field>),
    Unary(UnaryOp, Box<Field>),
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Attribute {
    pub scope: Scope,
    /// `parent.`: the value on the span's parent.
    pub parent: bool,
    pub name: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scope {
    /// `.name`: span first, then resource.
    None,
    Span,
    Resource,
    Event,
    Link,
    Instrumentation,
}

impl Scope {
    pub fn prefix(self) -> &'static str {
        match self {
            Scope::None => "",
            Scope::Span => "span",
            Scope::Resource => "resource",
            Scope::Event => "event",
            Scope::Link => "link",
            Scope::Instrumentation => "instrumentation",
        }
    }

    pub fn from_prefix(s: &str) -> Option<Scope> {
        Some(match s {
            "" => Scope::None,
            "span" => Scope::Span,
            "resource" => Scope::Resource,
            "event" => Scope::Event,
            "link" => Scope::Link,
            "instrumentation" => Scope::Instrumentation,
            _ => return None,
        })
    }
}

/// Intrinsics: what every span has, named alone (`duration`) or with their scope
/// (`span:duration`, `trace:rootService`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Intrinsic {
    // span
    Name,
    Status,
    StatusMessage,
    Kind,
    Duration,
    ChildCount,
    SpanId,
    ParentId,
    NestedSetLeft,
    NestedSetRight,
    NestedSetParent,
    // trace
    TraceDuration,
    RootName,
    RootService,
    TraceId,
    // event
    EventName,
    EventTimeSinceStart,
    // link
    LinkTraceId,
    LinkSpanId,
    // instrumentation
    InstrumentationName,
    InstrumentationVersion,
}

/// Every intrinsic's unscoped name (if it has one) and scoped name.
pub const INTRINSICS: &[(Intrinsic, Option<&str>, &str, &str)] = &[
    (Intrinsic::Name, Some("name"), "span", "name"),
    (Intrinsic::Status, Some("status"), "span", "status"),
    (
        Intrinsic::StatusMessage,
        Some("statusMessage"),
        "span",
        "statusMessage",
    ),
    (Intrinsic::Kind, Some("kind"), "span", "kind"),
    (Intrinsic::Duration, Some("duration"), "span", "duration"),
    (
        Intrinsic::ChildCount,
        Some("childCount"),
        "span",
        "childCount",
    ),
    (Intrinsic::SpanId, None, "span", "id"),
    (Intrinsic::ParentId, None, "span", "parentID"),
    (
        Intrinsic::NestedSetLeft,
        Some("nestedSetLeft"),
        "span",
        "nestedSetLeft",
    ),
    (
        Intrinsic::NestedSetRight,
        Some("nestedSetRight"),
        "span",
        "nestedSetRight",
    ),
    (
        Intrinsic::NestedSetParent,
        Some("nestedSetParent"),
        "span",
        "nestedSetParent",
    ),
    (
        Intrinsic::TraceDuration,
        Some("traceDuration"),
        "trace",
        "duration",
    ),
    (Intrinsic::RootName, Some("rootName"), "trace", "rootName"),
    (
        Intrinsic::RootService,
        Some("rootServiceName"),
        "trace",
        "rootService",
    ),
    (Intrinsic::TraceId, None, "trace", "id"),
    (Intrinsic::EventName, None, "event", "name"),
    (
        Intrinsic::EventTimeSinceStart,
        None,
        "event",
        "timeSinceStart",
    ),
    (Intrinsic::LinkTraceId, None, "link", "traceID"),
    (Intrinsic::LinkSpanId, None, "link", "spanID"),
    (
        Intrinsic::InstrumentationName,
        None,
        "instrumentation",
        "name",
    ),
    (
        Intrinsic::InstrumentationVersion,
        None,
        "instrumentation",
        "version",
    ),
];

impl Intrinsic {
    pub fn unscoped(name: &str) -> Option<Intrinsic> {
        INTRINSICS
            .iter()
            .find(|(_, u, _, _)| *u == Some(name))
            .map(|(i, ..)| *i)
    }

    pub fn scoped(scope: &str, name: &str) -> Option<Intrinsic> {
        INTRINSICS
            .iter()
            .find(|(_, _, s, n)| *s == scope && *n == name)
            .map(|(i, ..)| *i)
    }

    /// The scoped form, which every intrinsic has.
    pub fn scoped_name(self) -> (&'static str, &'static str) {
        INTRINSICS
            .iter()
            .find(|(i, ..)| *i == self)
            .map(|(_, _, s, n)| (*s, *n))
            .expect("every intrinsic is listed")
    }

    pub fn value_type(self) -> Type {
        use Intrinsic::*;
        match self {
            Name
            | StatusMessage
            | SpanId
            | ParentId
            | RootName
            | RootService
            | TraceId
            | EventName
            | LinkTraceId
            | LinkSpanId
            | InstrumentationName
            | InstrumentationVersion => Type::String,
            Status => Type::Status,
            Kind => Type::Kind,
            Duration | TraceDuration | EventTimeSinceStart => Type::Duration,
            ChildCount | NestedSetLeft | NestedSetRight | NestedSetParent => Type::Int,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Literal {
    String(String),
    Int(i64),
    Float(f64),
    /// Nanoseconds.
    Duration(i64),
    Status(Status),
    Kind(Kind),
    Bool(bool),
    Nil,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Status {
    Unset,
    Ok,
    Error,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    Unspecified,
    Internal,
    Server,
    Client,
    Producer,
    Consumer,
}

impl Status {
    pub fn name(self) -> &'static str {
        match self {
            Status::Unset => "unset",
            Status::Ok => "ok",
            Status::Error => "error",
        }
    }
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Unspecified => "unspecified",
            Kind::Internal => "internal",
            Kind::Server => "server",
            Kind::Client => "client",
            Kind::Producer => "producer",
            Kind::Consumer => "consumer",
        }
    }
}

/// The static type of a value; attributes are [`Type::Any`] until a span supplies them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Type {
    Any,
    String,
    Int,
    Float,
    Duration,
    Status,
    Kind,
    Bool,
    Nil,
}

impl Type {
    pub fn is_numeric(self) -> bool {
        matches!(self, Type::Int | Type::Float | Type::Duration | Type::Any)
    }

    pub fn name(self) -> &'static str {
        match self {
            Type::Any => "attribute",
            Type::String => "string",
            Type::Int => "int",
            Type::Float => "float",
            Type::Duration => "duration",
            Type::Status => "status",
            Type::Kind => "kind",
            Type::Bool => "boolean",
            Type::Nil => "nil",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinOp {
    Eq,
    Neq,
    Gt,
    Gte,
    Lt,
    Lte,
    Re,
    Nre,
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Pow,
    And,
    Or,
}

impl BinOp {
    pub fn symbol(self) -> &'static str {
        use BinOp::*;
        match self {
            Eq => "=",
            Neq => "!=",
            Gt => ">",
            Gte => ">=",
            Lt => "<",
            Lte => "<=",
            Re => "=~",
            Nre => "!~",
            Add => "+",
            Sub => "-",
            Mul => "*",
            Div => "/",
            Mod => "%",
            Pow => "^",
            And => "&&",
            Or => "||",
        }
    }

    pub fn is_comparison(self) -> bool {
        use BinOp::*;
        matches!(self, Eq | Neq | Gt | Gte | Lt | Lte | Re | Nre)
    }

    pub fn is_arithmetic(self) -> bool {
        use BinOp::*;
        matches!(self, Add | Sub | Mul | Div | Mod | Pow)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnaryOp {
    Not,
    Neg,
}

/// Metrics over the spans a pipeline selects.
#[derive(Clone, Debug, PartialEq)]
pub struct Metrics {
    pub function: MetricsFn,
    pub by: Vec<Field>,
    /// `| topk(5)` / `| bottomk(5)`.
    pub second: Option<(SecondStage, i64)>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum MetricsFn {
    Rate,
    CountOverTime,
    MinOverTime(Field),
    MaxOverTime(Field),
    AvgOverTime(Field),
    SumOverTime(Field),
    QuantileOverTime(Field, Vec<f64>),
    HistogramOverTime(Field),
    /// `compare({ selection }, topN?, start?, end?)`.
    Compare(Box<SpansetExpr>, Vec<i64>),
}

impl MetricsFn {
    /// The field whose values the function aggregates (`None`: it counts spans).
    pub fn field(&self) -> Option<&Field> {
        match self {
            MetricsFn::MinOverTime(f)
            | MetricsFn::MaxOverTime(f)
            | MetricsFn::AvgOverTime(f)
            | MetricsFn::SumOverTime(f)
            | MetricsFn::HistogramOverTime(f)
            | MetricsFn::QuantileOverTime(f, _) => Some(f),
            MetricsFn::Rate | MetricsFn::CountOverTime | MetricsFn::Compare(..) => None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SecondStage {
    TopK,
    BottomK,
}

// ---------------------------------------------------------------------------------------------
// Printing

/// A string as a TraceQL double-quoted literal.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Whether an attribute name can be written without quotes.
fn plain_name(n: &str) -> bool {
    !n.is_empty()
        && !n.starts_with('"')
        && !n.chars().any(|c| {
            c.is_whitespace()
                || c.is_control()
                || matches!(
                    c,
                    '{' | '}'
                        | '('
                        | ')'
                        | '='
                        | '~'
                        | '!'
                        | '<'
                        | '>'
                        | '&'
                        | '|'
                        | '^'
                        | ','
                        | '"'
                )
        })
}

impl fmt::Display for Query {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.pipeline)?;
        if let Some(m) = &self.metrics {
            write!(f, " | {m}")?;
        }
        if !self.hints.is_empty() {
            write!(f, " with (")?;
            for (i, (k, v)) in self.hints.iter().enumerate() {
                if i > 0 {
                    write!(f, ", ")?;
                }
                write!(f, "{k}={v}")?;
            }
            write!(f, ")")?;
        }
        Ok(())
    }
}

impl fmt::Display for Pipeline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, s) in self.0.iter().enumerate() {
            if i > 0 {
                write!(f, " | ")?;
            }
            write!(f, "{s}")?;
        }
        Ok(())
    }
}

fn list(f: &mut fmt::Formatter<'_>, fields: &[Field]) -> fmt::Result {
    for (i, x) in fields.iter().enumerate() {
        if i > 0 {
            write!(f, ", ")?;
        }
        write!(f, "{x}")?;
    }
    Ok(())
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Stage::Spanset(s) => write!(f, "{s}"),
            Stage::Scalar(s) => write!(f, "{s}"),
            Stage::By(fs) => {
                write!(f, "by(")?;
                list(f, fs)?;
                write!(f, ")")
            }
            Stage::Coalesce => write!(f, "coalesce()"),
            Stage::Select(fs) => {
                write!(f, "select(")?;
                list(f, fs)?;
                write!(f, ")")
            }
        }
    }
}

impl fmt::Display for SpansetExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SpansetExpr::Filter(None) => write!(f, "{{ }}"),
            SpansetExpr::Filter(Some(e)) => write!(f, "{{ {e} }}"),
            SpansetExpr::Op(op, l, r) => write!(f, "({l}) {} ({r})", op.symbol()),
            SpansetExpr::Group(p) => write!(f, "({p})"),
        }
    }
}

impl fmt::Display for ScalarFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {}", self.lhs, self.op.symbol(), self.rhs)
    }
}

impl fmt::Display for Scalar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scalar::Static(l) => write!(f, "{l}"),
            Scalar::Aggregate(a, None) => write!(f, "{}()", a.name()),
            Scalar::Aggregate(a, Some(e)) => write!(f, "{}({e})", a.name()),
            Scalar::Binary(op, l, r) => write!(f, "({l} {} {r})", op.symbol()),
            Scalar::Pipeline(p, a, None) => write!(f, "({p} | {}())", a.name()),
            Scalar::Pipeline(p, a, Some(e)) => write!(f, "({p} | {}({e}))", a.name()),
        }
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Field::Static(l) => write!(f, "{l}"),
            Field::Attribute(a) => write!(f, "{a}"),
            Field::Intrinsic(i) => {
                let (s, n) = i.scoped_name();
                write!(f, "{s}:{n}")
            }
            Field::Binary(op, l, r) => write!(f, "({l} {} {r})", op.symbol()),
            // Wrapped whole: a prefix reaches over `*` (`-a * b` is `-(a * b)`).
            Field::Unary(UnaryOp::Not, e) => write!(f, "(!({e}))"),
            Field::Unary(UnaryOp::Neg, e) => write!(f, "(-({e}))"),
        }
    }
}

impl fmt::Display for Attribute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `parent.` then the scope and its dot, or (unscoped) the name directly; an unscoped
        // name that would read as a scope (`parent."span.x"`) is quoted.
        let reads_as_scope = self.parent
            && self.scope == Scope::None
            && crate::lexer::SCOPES.iter().any(|s| {
                self.name
                    .strip_prefix(s)
                    .is_some_and(|r| r.starts_with('.'))
            });
        if self.parent {
            write!(f, "parent")?;
            if self.scope != Scope::None {
                write!(f, ".{}", self.scope.prefix())?;
            }
        } else if self.scope != Scope::None {
            write!(f, "{}", self.scope.prefix())?;
        }
        if plain_name(&self.name) && !reads_as_scope {
            write!(f, ".{}", self.name)
        } else {
            write!(f, ".{}", quote(&self.name))
        }
    }
}

impl fmt::Display for Literal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Literal::String(s) => write!(f, "{}", quote(s)),
            Literal::Int(i) => write!(f, "{i}"),
            Literal::Float(x) => {
                let s = format!("{x:?}");
                write!(f, "{s}")
            }
            Literal::Duration(ns) => {
                // The largest unit that holds it exactly.
                const UNITS: &[(i64, &str)] = &[
                    (3_600_000_000_000, "h"),
                    (60_000_000_000, "m"),
                    (1_000_000_000, "s"),
                    (1_000_000, "ms"),
                    (1_000, "us"),
                ];
                let (n, u) = UNITS
                    .iter()
                    .find(|(d, _)| *ns != 0 && ns % d == 0)
                    .map(|(d, u)| (ns / d, *u))
                    .unwrap_or((*ns, "ns"));
                write!(f, "{n}{u}")
            }
            Literal::Status(s) => write!(f, "{}", s.name()),
            Literal::Kind(k) => write!(f, "{}", k.name()),
            Literal::Bool(b) => write!(f, "{b}"),
            Literal::Nil => write!(f, "nil"),
        }
    }
}

impl fmt::Display for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.function {
            MetricsFn::Rate => write!(f, "rate()")?,
            MetricsFn::CountOverTime => write!(f, "count_over_time()")?,
            MetricsFn::MinOverTime(e) => write!(f, "min_over_time({e})")?,
            MetricsFn::MaxOverTime(e) => write!(f, "max_over_time({e})")?,
            MetricsFn::AvgOverTime(e) => write!(f, "avg_over_time({e})")?,
            MetricsFn::SumOverTime(e) => write!(f, "sum_over_time({e})")?,
            MetricsFn::HistogramOverTime(e) => write!(f, "histogram_over_time({e})")?,
            MetricsFn::QuantileOverTime(e, qs) => {
                write!(f, "quantile_over_time({e}")?;
                for q in qs {
                    write!(f, ", {q:?}")?;
                }
                write!(f, ")")?;
            }
            MetricsFn::Compare(s, args) => {
                write!(f, "compare({s}")?;
                for a in args {
                    write!(f, ", {a}")?;
                }
                write!(f, ")")?;
            }
        }
        if !self.by.is_empty() {
            write!(f, " by (")?;
            list(f, &self.by)?;
            write!(f, ")")?;
        }
        if let Some((s, n)) = self.second {
            let name = match s {
                SecondStage::TopK => "topk",
                SecondStage::BottomK => "bottomk",
            };
            write!(f, " | {name}({n})")?;
        }
        Ok(())
    }
}
