//! A recursive-descent parser over the lexer's tokens.
//!
//! Precedence, loosest first, as the TraceQL documentation describes the language:
//!
//! | level | spanset expressions | field expressions |
//! |---|---|---|
//! | 1 | `&&` `\|\|` (left) | `&&` `\|\|` (left) |
//! | 2 | `>` `>>` `<` `<<` `~` and their `!`/`&` forms (left) | comparisons `= != > >= < <= =~ !~` (left) |
//! | 3 | | `+ -` (left) |
//! | 4 | | `* / %` (left) |
//! | 5 | | `^` (right) |
//! | 6 | | unary `!` and `-` |
//!
//! A pipeline stage that starts with `(` is first read as a spanset expression (a group); if
//! that fails it is read again as a scalar filter (`(count() + 1) > 2`).

use crate::ast::*;
use crate::error::{Error, Pos};
use crate::lexer::{Lexer, Tok};

/// Deepest nesting of parentheses, braces and operators accepted (a query is text a person
/// writes; this keeps a hostile one from exhausting the stack).
pub const MAX_DEPTH: usize = 64;

pub struct Parser {
    toks: Vec<(Tok, Pos)>,
    i: usize,
    depth: usize,
    /// Parsing an aggregate's argument (`min(...)`): the bare `parent` is no TraceQL there.
    in_aggregate: bool,
}

type R<T> = Result<T, Error>;

impl Parser {
    pub fn new(src: &str) -> R<Parser> {
        Ok(Parser {
            toks: Lexer::new(src).tokens()?,
            i: 0,
            depth: 0,
            in_aggregate: false,
        })
    }

    fn peek(&self) -> &Tok {
        &self.toks[self.i].0
    }

    fn peek_at(&self, n: usize) -> &Tok {
        &self.toks[(self.i + n).min(self.toks.len() - 1)].0
    }

    fn pos(&self) -> Pos {
        self.toks[self.i].1
    }

    fn bump(&mut self) -> Tok {
        let t = self.toks[self.i].0.clone();
        if self.i + 1 < self.toks.len() {
            self.i += 1;
        }
        t
    }

    fn eat(&mut self, t: &Tok) -> bool {
        if self.peek() == t {
            self.bump();
            true
        } else {
            false
        }
    }

    fn is_ident(&self, word: &str) -> bool {
        matches!(self.peek(), Tok::Ident(w) if w == word)
    }

    fn expected(&self, what: &str) -> Error {
        let after = if self.i == 0 {
            String::new()
        } else {
            format!(" after {}", self.toks[self.i - 1].0.describe())
        };
        Error::parse(
            self.pos(),
            format!("expected {what}{after}, found {}", self.peek().describe()),
        )
    }

    fn expect(&mut self, t: &Tok, what: &str) -> R<()> {
        if self.eat(t) {
            Ok(())
        } else {
            Err(self.expected(what))
        }
    }

    fn enter(&mut self) -> R<()> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(Error::parse(
                self.pos(),
                format!("query nests deeper than {MAX_DEPTH} levels"),
            ));
        }
        Ok(())
    }

    fn leave(&mut self) {
        self.depth -= 1;
    }

    // -----------------------------------------------------------------------------------------
    // Query and pipeline

    pub fn query(&mut self) -> R<Query> {
        if *self.peek() == Tok::Eof {
            return Err(self.expected("a query such as { } or { status = error }"));
        }
        let mut stages = Vec::new();
        let mut metrics = None;
        loop {
            if let Some(m) = self.metrics()? {
                if stages.is_empty() {
                    return Err(Error::parse(
                        self.pos(),
                        "a metrics function needs a spanset before it ({ } | rate())",
                    ));
                }
                metrics = Some(m);
                break;
            }
            stages.push(self.stage(stages.is_empty())?);
            if !self.eat(&Tok::Pipe) {
                break;
            }
        }
        let hints = self.hints()?;
        if *self.peek() != Tok::Eof {
            return Err(self.expected(if metrics.is_some() {
                "the end of the query"
            } else {
                "'|', a spanset operator or the end of the query"
            }));
        }
        Ok(Query {
            pipeline: Pipeline(stages),
            metrics,
            hints,
        })
    }

    /// `with (name = value, ...)`, any number of times.
    fn hints(&mut self) -> R<Vec<(String, Literal)>> {
        let mut out = Vec::new();
        while self.is_ident("with") {
            self.bump();
            self.expect(&Tok::LParen, "'(' after with")?;
            loop {
                let k = match self.peek() {
                    Tok::Ident(k) if !is_keyword(k) => k.clone(),
                    _ => return Err(self.expected("a hint name")),
                };
                self.bump();
                self.expect(&Tok::Eq, "'=' after a hint name")?;
                let v = match self.literal()? {
                    Some(Literal::Nil) | None => {
                        return Err(self.expected("a value for the hint"));
                    }
                    Some(l) => l,
                };
                out.push((k, v));
                if !self.eat(&Tok::Comma) {
                    break;
                }
            }
            self.expect(&Tok::RParen, "')' closing the hints")?;
        }
        Ok(out)
    }

    /// One pipeline stage (`first`: the pipeline's first).
    fn stage(&mut self, first: bool) -> R<Stage> {
        if let Tok::Ident(w) = self.peek().clone()
            && *self.peek_at(1) == Tok::LParen
        {
            match w.as_str() {
                "by" => {
                    self.bump();
                    self.bump();
                    let e = self.field()?;
                    self.expect(&Tok::RParen, "')': by() groups by one expression")?;
                    return Ok(Stage::By(vec![e]));
                }
                "select" => {
                    self.bump();
                    return Ok(Stage::Select(self.attribute_list("select")?));
                }
                "coalesce" if first => {
                    return Err(Error::parse(
                        self.pos(),
                        "coalesce() merges what a pipeline found: it cannot start one",
                    ));
                }
                "coalesce" => {
                    self.bump();
                    self.bump();
                    self.expect(&Tok::RParen, "')': coalesce takes no arguments")?;
                    return Ok(Stage::Coalesce);
                }
                "count" | "avg" | "min" | "max" | "sum" => {
                    return Ok(Stage::Scalar(self.scalar_filter()?));
                }
                _ => {}
            }
        }
        match self.peek() {
            Tok::LBrace => Ok(Stage::Spanset(self.spanset_expr()?)),
            Tok::LParen => {
                let save = (self.i, self.depth);
                match self.spanset_expr() {
                    Ok(s) => Ok(Stage::Spanset(s)),
                    Err(e) => {
                        (self.i, self.depth) = save;
                        match self.scalar_filter() {
                            Ok(f) => Ok(Stage::Scalar(f)),
                            // A whole query may compare the aggregates of pipelines:
                            // `({ .a } | count()) > ({ .b } | count())`.
                            Err(_) if first => {
                                (self.i, self.depth) = save;
                                self.pipeline_scalar_filter()
                                    .map(Stage::Scalar)
                                    .map_err(|_| e)
                            }
                            Err(_) => Err(e),
                        }
                    }
                }
            }
            Tok::Int(_) | Tok::Float(_) | Tok::Duration(_) | Tok::Sub => {
                Ok(Stage::Scalar(self.scalar_filter()?))
            }
            _ => Err(self.expected("a spanset filter '{'")),
        }
    }

    /// `( attribute, ... )`: attributes and intrinsics, no expressions.
    fn attribute_list(&mut self, what: &str) -> R<Vec<Field>> {
        self.expect(&Tok::LParen, "'('")?;
        let mut out = vec![self.attribute_field(what)?];
        while self.eat(&Tok::Comma) {
            out.push(self.attribute_field(what)?);
        }
        self.expect(&Tok::RParen, &format!("')' closing {what}(...)"))?;
        Ok(out)
    }

    /// An attribute or an intrinsic (what select(), a metrics function and its by() take).
    fn attribute_field(&mut self, what: &str) -> R<Field> {
        match self.peek() {
            Tok::Attr { .. } | Tok::ScopedIntrinsic(..) => self.field_atom(),
            Tok::Ident(w) if Intrinsic::unscoped(w).is_some() => self.field_atom(),
            _ => Err(self.expected(&format!("an attribute or an intrinsic in {what}(...)"))),
        }
    }

    // -----------------------------------------------------------------------------------------
    // Spanset expressions

    fn spanset_expr(&mut self) -> R<SpansetExpr> {
        self.enter()?;
        let mut lhs = self.spanset_structural()?;
        loop {
            let op = match self.peek() {
                Tok::And => SpansetOp::And,
                Tok::Or => SpansetOp::Or,
                _ => break,
            };
            self.bump();
            let rhs = self.spanset_structural()?;
            lhs = SpansetExpr::Op(op, Box::new(lhs), Box::new(rhs));
        }
        self.leave();
        Ok(lhs)
    }

    fn spanset_structural(&mut self) -> R<SpansetExpr> {
        let mut lhs = self.spanset_term()?;
        loop {
            let op = match self.peek() {
                Tok::Gt => SpansetOp::Child,
                Tok::Desc => SpansetOp::Descendant,
                Tok::Lt => SpansetOp::Parent,
                Tok::Ance => SpansetOp::Ancestor,
                Tok::Tilde => SpansetOp::Sibling,
                Tok::NotChild => SpansetOp::NotChild,
                Tok::NotDesc => SpansetOp::NotDescendant,
                Tok::NotParent => SpansetOp::NotParent,
                Tok::NotAnce => SpansetOp::NotAncestor,
                Tok::Nre => SpansetOp::NotSibling,
                Tok::UnionChild => SpansetOp::UnionChild,
                Tok::UnionDesc => SpansetOp::UnionDescendant,
                Tok::UnionParent => SpansetOp::UnionParent,
                Tok::UnionAnce => SpansetOp::UnionAncestor,
                Tok::UnionSibling => SpansetOp::UnionSibling,
                _ => break,
            };
            self.bump();
            let rhs = self.spanset_term()?;
            lhs = SpansetExpr::Op(op, Box::new(lhs), Box::new(rhs));
        }
        Ok(lhs)
    }

    fn spanset_term(&mut self) -> R<SpansetExpr> {
        match self.peek() {
            Tok::LBrace => {
                self.bump();
                if self.eat(&Tok::RBrace) {
                    return Ok(SpansetExpr::Filter(None));
                }
                let e = self.field()?;
                self.expect(&Tok::RBrace, "'}' closing the spanset filter")?;
                Ok(SpansetExpr::Filter(Some(e)))
            }
            Tok::LParen => {
                self.enter()?;
                self.bump();
                // A group is a pipeline: `({ a } | count() > 1) && { b }`.
                let mut stages = vec![self.stage(true)?];
                while self.eat(&Tok::Pipe) {
                    stages.push(self.stage(false)?);
                }
                self.expect(&Tok::RParen, "')' closing the group")?;
                self.leave();
                Ok(match stages.len() {
                    1 => match stages.pop() {
                        Some(Stage::Spanset(s)) => s,
                        Some(other) => SpansetExpr::Group(Box::new(Pipeline(vec![other]))),
                        None => unreachable!("one stage"),
                    },
                    _ => SpansetExpr::Group(Box::new(Pipeline(stages))),
                })
            }
            _ => Err(self.expected("a spanset filter '{'")),
        }
    }

    // -----------------------------------------------------------------------------------------
    // Scalar filters

    fn scalar_filter(&mut self) -> R<ScalarFilter> {
        let lhs = self.scalar(0)?;
        let op = match self.comparison_op() {
            Some(op) if !matches!(op, BinOp::Re | BinOp::Nre) => op,
            _ => {
                if self.i > 0 {
                    self.i -= usize::from(matches!(self.toks[self.i - 1].0, Tok::Re | Tok::Nre));
                }
                return Err(self.expected("a comparison operator (= != < <= > >=)"));
            }
        };
        let rhs = self.scalar(0)?;
        Ok(ScalarFilter { op, lhs, rhs })
    }

    /// `(pipeline | aggregate)` terms joined by arithmetic, compared with another such
    /// expression or a number.
    fn pipeline_scalar_filter(&mut self) -> R<ScalarFilter> {
        let lhs = self.pipeline_scalar()?;
        let op = match self.comparison_op() {
            Some(op) if !matches!(op, BinOp::Re | BinOp::Nre) => op,
            _ => return Err(self.expected("a comparison operator (= != < <= > >=)")),
        };
        let rhs = match self.peek() {
            Tok::LParen => self.pipeline_scalar()?,
            _ => self.scalar_atom()?,
        };
        if matches!(rhs, Scalar::Aggregate(..)) {
            return Err(self.expected("a number or a (pipeline | aggregate)"));
        }
        Ok(ScalarFilter { op, lhs, rhs })
    }

    fn pipeline_scalar(&mut self) -> R<Scalar> {
        self.enter()?;
        let mut lhs = self.pipeline_scalar_term()?;
        loop {
            let op = match self.peek() {
                Tok::Add => BinOp::Add,
                Tok::Sub => BinOp::Sub,
                Tok::Mul => BinOp::Mul,
                Tok::Div => BinOp::Div,
                Tok::Mod => BinOp::Mod,
                Tok::Pow => BinOp::Pow,
                _ => break,
            };
            self.bump();
            let rhs = self.pipeline_scalar_term()?;
            lhs = Scalar::Binary(op, Box::new(lhs), Box::new(rhs));
        }
        self.leave();
        Ok(lhs)
    }

    /// `( pipeline | aggregate )`, or such a term in parentheses.
    fn pipeline_scalar_term(&mut self) -> R<Scalar> {
        self.expect(&Tok::LParen, "'('")?;
        if *self.peek() == Tok::LParen {
            let s = self.pipeline_scalar()?;
            self.expect(&Tok::RParen, "')'")?;
            return Ok(s);
        }
        let mut stages = vec![self.stage(true)?];
        loop {
            self.expect(&Tok::Pipe, "'|' and an aggregate")?;
            if let Tok::Ident(w) = self.peek().clone()
                && *self.peek_at(1) == Tok::LParen
                && let Some(Scalar::Aggregate(a, f)) = self.aggregate(&w)?
            {
                self.expect(&Tok::RParen, "')' closing (pipeline | aggregate)")?;
                return Ok(Scalar::Pipeline(Box::new(Pipeline(stages)), a, f));
            }
            stages.push(self.stage(false)?);
        }
    }

    /// The aggregate named `w` at the cursor (consumed), or `None`.
    fn aggregate(&mut self, w: &str) -> R<Option<Scalar>> {
        let a = match w {
            "count" => Aggregate::Count,
            "avg" => Aggregate::Avg,
            "min" => Aggregate::Min,
            "max" => Aggregate::Max,
            "sum" => Aggregate::Sum,
            _ => return Ok(None),
        };
        self.bump();
        self.bump();
        if a == Aggregate::Count {
            self.expect(&Tok::RParen, "')': count() takes no arguments")?;
            return Ok(Some(Scalar::Aggregate(a, None)));
        }
        self.in_aggregate = true;
        let e = self.field();
        self.in_aggregate = false;
        let e = e?;
        self.expect(&Tok::RParen, &format!("')' closing {}(...)", a.name()))?;
        Ok(Some(Scalar::Aggregate(a, Some(Box::new(e)))))
    }

    fn comparison_op(&mut self) -> Option<BinOp> {
        let op = match self.peek() {
            Tok::Eq => BinOp::Eq,
            Tok::Neq => BinOp::Neq,
            Tok::Gt => BinOp::Gt,
            Tok::Gte => BinOp::Gte,
            Tok::Lt => BinOp::Lt,
            Tok::Lte => BinOp::Lte,
            Tok::Re => BinOp::Re,
            Tok::Nre => BinOp::Nre,
            _ => return None,
        };
        self.bump();
        Some(op)
    }

    /// Arithmetic over aggregates and numbers (`min_level` 0: `+ -`, 1: `* / %`, 2: `^`).
    fn scalar(&mut self, min_level: u8) -> R<Scalar> {
        self.enter()?;
        let mut lhs = self.scalar_atom()?;
        loop {
            let (op, level) = match self.peek() {
                Tok::Add => (BinOp::Add, 0),
                Tok::Sub => (BinOp::Sub, 0),
                Tok::Mul => (BinOp::Mul, 1),
                Tok::Div => (BinOp::Div, 1),
                Tok::Mod => (BinOp::Mod, 1),
                Tok::Pow => (BinOp::Pow, 2),
                _ => break,
            };
            if level < min_level {
                break;
            }
            self.bump();
            // `^` is right-associative.
            let next = if op == BinOp::Pow { level } else { level + 1 };
            let rhs = self.scalar(next)?;
            lhs = Scalar::Binary(op, Box::new(lhs), Box::new(rhs));
        }
        self.leave();
        Ok(lhs)
    }

    fn scalar_atom(&mut self) -> R<Scalar> {
        if let Tok::Ident(w) = self.peek().clone()
            && *self.peek_at(1) == Tok::LParen
            && let Some(a) = self.aggregate(&w)?
        {
            return Ok(a);
        }
        if self.eat(&Tok::LParen) {
            let s = self.scalar(0)?;
            self.expect(&Tok::RParen, "')'")?;
            return Ok(s);
        }
        if *self.peek() == Tok::Sub {
            self.bump();
            return match self.bump() {
                Tok::Int(i) => Ok(Scalar::Static(Literal::Int(-i))),
                Tok::Float(x) => Ok(Scalar::Static(Literal::Float(-x))),
                Tok::Duration(d) => Ok(Scalar::Static(Literal::Duration(-d))),
                _ => {
                    self.i -= 1;
                    Err(self.expected("a number after '-'"))
                }
            };
        }
        match self.peek() {
            Tok::Int(_) | Tok::Float(_) | Tok::Duration(_) => match self.literal()? {
                Some(l) => Ok(Scalar::Static(l)),
                None => unreachable!("a number is a literal"),
            },
            _ => Err(self.expected("an aggregate such as count() or avg(duration), or a number")),
        }
    }

    // -----------------------------------------------------------------------------------------
    // Field expressions

    pub fn field(&mut self) -> R<Field> {
        self.enter()?;
        let r = self.field_level(0);
        self.leave();
        r
    }

    /// Levels: 0 `&& ||`, 1 comparisons, 2 `+ -`, 3 `* / %`, 4 `^` (the prefix `!` and `-`
    /// sit between 2 and 3).
    fn field_level(&mut self, min_level: u8) -> R<Field> {
        let mut lhs = self.field_unary()?;
        loop {
            let (op, level) = match self.peek() {
                Tok::And => (BinOp::And, 0),
                Tok::Or => (BinOp::Or, 0),
                Tok::Eq => (BinOp::Eq, 1),
                Tok::Neq => (BinOp::Neq, 1),
                Tok::Gt => (BinOp::Gt, 1),
                Tok::Gte => (BinOp::Gte, 1),
                Tok::Lt => (BinOp::Lt, 1),
                Tok::Lte => (BinOp::Lte, 1),
                Tok::Re => (BinOp::Re, 1),
                Tok::Nre => (BinOp::Nre, 1),
                Tok::Add => (BinOp::Add, 2),
                Tok::Sub => (BinOp::Sub, 2),
                Tok::Mul => (BinOp::Mul, 3),
                Tok::Div => (BinOp::Div, 3),
                Tok::Mod => (BinOp::Mod, 3),
                Tok::Pow => (BinOp::Pow, 4),
                _ => break,
            };
            if level < min_level {
                break;
            }
            self.bump();
            let next = if op == BinOp::Pow { level } else { level + 1 };
            self.enter()?;
            let rhs = self.field_level(next);
            self.leave();
            lhs = Field::Binary(op, Box::new(lhs), Box::new(rhs?));
        }
        Ok(lhs)
    }

    /// An operand, maybe behind prefix operators. A prefix applies to what binds tighter than
    /// `+ -`: `!.a = 2` is `(!.a) = 2`, `-.a * 2` is `-(.a * 2)`, `-.a + 1` is `(-.a) + 1`.
    fn field_unary(&mut self) -> R<Field> {
        let op = match self.peek() {
            Tok::Not => UnaryOp::Not,
            Tok::Sub => UnaryOp::Neg,
            _ => return self.field_atom(),
        };
        self.bump();
        self.enter()?;
        let e = self.field_level(3);
        self.leave();
        Ok(Field::Unary(op, Box::new(e?)))
    }

    fn field_atom(&mut self) -> R<Field> {
        match self.peek().clone() {
            Tok::LParen => {
                self.bump();
                let e = self.field()?;
                self.expect(&Tok::RParen, "')'")?;
                Ok(e)
            }
            Tok::Attr {
                scope,
                parent,
                name,
            } => {
                self.bump();
                let scope = Scope::from_prefix(&scope).expect("the lexer knows only these scopes");
                Ok(Field::Attribute(Attribute {
                    scope,
                    parent,
                    name,
                }))
            }
            Tok::ScopedIntrinsic(s, n) => {
                let pos = self.pos();
                self.bump();
                Intrinsic::scoped(&s, &n)
                    .map(Field::Intrinsic)
                    .ok_or_else(|| Error::parse(pos, format!("'{s}:{n}' is not an intrinsic")))
            }
            Tok::Ident(w) => {
                if let Some(i) = Intrinsic::unscoped(&w) {
                    self.bump();
                    return Ok(Field::Intrinsic(i));
                }
                // `parent` alone is the parent span as a value: valid TraceQL that this server
                // does not run (an aggregate over it is not TraceQL at all).
                if w == "parent" && !self.in_aggregate {
                    return Err(Error::Unsupported {
                        what: "the parent span as a value (parent)".into(),
                    });
                }
                if w == "nil" {
                    let after_eq =
                        self.i > 0 && matches!(self.toks[self.i - 1].0, Tok::Eq | Tok::Neq);
                    let before_eq = matches!(self.peek_at(1), Tok::Eq | Tok::Neq);
                    if !(after_eq || before_eq) {
                        return Err(Error::parse(
                            self.pos(),
                            "nil is only compared with = or != (span.x != nil: the attribute exists)",
                        ));
                    }
                }
                match self.literal()? {
                    Some(l) => Ok(Field::Static(l)),
                    None => Err(Error::parse(
                        self.pos(),
                        format!(
                            "unknown word '{w}': an attribute needs a scope or a leading dot (span.{w}, .{w}); strings are quoted"
                        ),
                    )),
                }
            }
            _ => match self.literal()? {
                Some(l) => Ok(Field::Static(l)),
                None => Err(self.expected("a value, an attribute or an intrinsic")),
            },
        }
    }

    /// A literal at the cursor (consumed), or `None` (nothing consumed).
    fn literal(&mut self) -> R<Option<Literal>> {
        let l = match self.peek() {
            Tok::Str(s) => Literal::String(s.clone()),
            Tok::Int(i) => Literal::Int(*i),
            Tok::Float(x) => Literal::Float(*x),
            Tok::Duration(d) => Literal::Duration(*d),
            Tok::Ident(w) => match w.as_str() {
                "true" => Literal::Bool(true),
                "false" => Literal::Bool(false),
                "nil" => Literal::Nil,
                "ok" => Literal::Status(Status::Ok),
                "error" => Literal::Status(Status::Error),
                "unset" => Literal::Status(Status::Unset),
                "unspecified" => Literal::Kind(Kind::Unspecified),
                "internal" => Literal::Kind(Kind::Internal),
                "server" => Literal::Kind(Kind::Server),
                "client" => Literal::Kind(Kind::Client),
                "producer" => Literal::Kind(Kind::Producer),
                "consumer" => Literal::Kind(Kind::Consumer),
                _ => return Ok(None),
            },
            _ => return Ok(None),
        };
        self.bump();
        Ok(Some(l))
    }

    // -----------------------------------------------------------------------------------------
    // Metrics

    /// A metrics function at the cursor, with its `by(...)` and second stage; `None` when the
    /// cursor is not at one (nothing consumed).
    fn metrics(&mut self) -> R<Option<Metrics>> {
        let Tok::Ident(w) = self.peek().clone() else {
            return Ok(None);
        };
        if *self.peek_at(1) != Tok::LParen {
            return Ok(None);
        }
        let name_pos = self.pos();
        let function = match w.as_str() {
            "rate" | "count_over_time" => {
                self.bump();
                self.bump();
                self.expect(&Tok::RParen, &format!("')': {w}() takes no arguments"))?;
                if w == "rate" {
                    MetricsFn::Rate
                } else {
                    MetricsFn::CountOverTime
                }
            }
            "min_over_time"
            | "max_over_time"
            | "avg_over_time"
            | "sum_over_time"
            | "histogram_over_time" => {
                self.bump();
                self.bump();
                let e = self.attribute_field(&w)?;
                self.expect(&Tok::RParen, &format!("')' closing {w}(...)"))?;
                match w.as_str() {
                    "min_over_time" => MetricsFn::MinOverTime(e),
                    "max_over_time" => MetricsFn::MaxOverTime(e),
                    "avg_over_time" => MetricsFn::AvgOverTime(e),
                    "sum_over_time" => MetricsFn::SumOverTime(e),
                    _ => MetricsFn::HistogramOverTime(e),
                }
            }
            "quantile_over_time" => {
                self.bump();
                self.bump();
                let e = self.attribute_field("quantile_over_time")?;
                let mut qs = Vec::new();
                while self.eat(&Tok::Comma) {
                    match self.bump() {
                        Tok::Float(x) => qs.push(x),
                        Tok::Int(i) => qs.push(i as f64),
                        _ => {
                            self.i -= 1;
                            return Err(self.expected("a quantile between 0 and 1"));
                        }
                    }
                }
                if qs.is_empty() {
                    return Err(Error::parse(
                        name_pos,
                        "quantile_over_time needs at least one quantile: quantile_over_time(duration, 0.9)",
                    ));
                }
                self.expect(&Tok::RParen, "')' closing quantile_over_time(...)")?;
                MetricsFn::QuantileOverTime(e, qs)
            }
            "compare" => {
                self.bump();
                self.bump();
                if *self.peek() != Tok::LBrace {
                    return Err(self.expected("a spanset filter '{' in compare(...)"));
                }
                let s = self.spanset_term()?;
                let mut args = Vec::new();
                while self.eat(&Tok::Comma) {
                    match self.bump() {
                        Tok::Int(i) => args.push(i),
                        _ => {
                            self.i -= 1;
                            return Err(self.expected("an integer argument of compare"));
                        }
                    }
                }
                if args.len() == 2 || args.len() > 3 {
                    return Err(Error::parse(
                        name_pos,
                        "compare takes a filter, a top N, then start and end together: 1, 2 or 4 arguments",
                    ));
                }
                self.expect(&Tok::RParen, "')' closing compare(...)")?;
                MetricsFn::Compare(Box::new(s), args)
            }
            _ => return Ok(None),
        };
        let mut by = Vec::new();
        if self.is_ident("by") {
            self.bump();
            by = self.attribute_list("by")?;
        }
        let mut second = None;
        if *self.peek() == Tok::Pipe
            && let Tok::Ident(w) = self.peek_at(1).clone()
            && (w == "topk" || w == "bottomk")
        {
            self.bump();
            self.bump();
            self.expect(&Tok::LParen, &format!("'(' after {w}"))?;
            let n = match self.bump() {
                Tok::Int(n) => n,
                _ => {
                    self.i -= 1;
                    return Err(self.expected(&format!("an integer in {w}(...)")));
                }
            };
            self.expect(&Tok::RParen, &format!("')' closing {w}(...)"))?;
            second = Some((
                if w == "topk" {
                    SecondStage::TopK
                } else {
                    SecondStage::BottomK
                },
                n,
            ));
        }
        Ok(Some(Metrics {
            function,
            by,
            second,
        }))
    }
}

/// Words the language reserves (a hint cannot be named by one).
fn is_keyword(w: &str) -> bool {
    const KEYWORDS: &[&str] = &[
        "true",
        "false",
        "nil",
        "ok",
        "error",
        "unset",
        "unspecified",
        "internal",
        "server",
        "client",
        "producer",
        "consumer",
        "duration",
        "childCount",
        "name",
        "status",
        "statusMessage",
        "kind",
        "rootName",
        "rootServiceName",
        "rootService",
        "traceDuration",
        "nestedSetLeft",
        "nestedSetRight",
        "nestedSetParent",
        "id",
        "traceID",
        "spanID",
        "parentID",
        "timeSinceStart",
        "version",
        "parent",
        "count",
        "avg",
        "max",
        "min",
        "sum",
        "by",
        "coalesce",
        "select",
        "rate",
        "count_over_time",
        "min_over_time",
        "max_over_time",
        "avg_over_time",
        "sum_over_time",
        "quantile_over_time",
        "histogram_over_time",
        "compare",
        "topk",
        "bottomk",
        "with",
    ];
    KEYWORDS.contains(&w)
}
