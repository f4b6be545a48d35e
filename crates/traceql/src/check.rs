//! Validation: what parses but means nothing. A spanset filter must be a condition (a
//! boolean, or an attribute whose value may be one); operands of a comparison must be of
//! comparable types (numbers and durations compare with each other, an attribute with
//! anything); `=~` needs a string pattern; arithmetic needs numbers; an aggregate, `by()` and
//! the metrics functions need a value that varies per span, not a constant.

use crate::ast::quote;
use crate::ast::*;
use crate::error::Error;

/// Checks a parsed query. The tree keeps no positions: every message names the offending
/// expression in its canonical form.
pub fn check(q: &Query) -> Result<(), Error> {
    let c = Checker;
    c.pipeline(&q.pipeline)?;
    if let Some(m) = &q.metrics {
        c.metrics(m)?;
    }
    // Hints are advice: an unknown one is ignored, as Tempo does.
    Ok(())
}

fn invalid(msg: String) -> Error {
    Error::invalid(msg)
}

struct Checker;

impl Checker {
    fn pipeline(&self, p: &Pipeline) -> Result<(), Error> {
        for s in &p.0 {
            match s {
                Stage::Spanset(e) => self.spanset(e)?,
                Stage::Scalar(f) => self.scalar_filter(f)?,
                Stage::By(fs) => {
                    for f in fs {
                        self.varying(f, "by()")?;
                        self.field(f)?;
                    }
                }
                Stage::Select(fs) => {
                    for f in fs {
                        self.varying(f, "select()")?;
                        self.field(f)?;
                    }
                }
                Stage::Coalesce => {}
            }
        }
        Ok(())
    }

    fn spanset(&self, e: &SpansetExpr) -> Result<(), Error> {
        match e {
            SpansetExpr::Filter(None) => Ok(()),
            SpansetExpr::Filter(Some(f)) => {
                let t = self.field(f)?;
                if matches!(t, Type::Bool | Type::Any) {
                    Ok(())
                } else {
                    Err(invalid(format!(
                        "a spanset filter must be a condition, but {{ {f} }} is a {}",
                        t.name()
                    )))
                }
            }
            SpansetExpr::Op(_, l, r) => {
                self.spanset(l)?;
                self.spanset(r)
            }
            SpansetExpr::Group(p) => self.pipeline(p),
        }
    }

    /// `f` must vary per span: an attribute or an intrinsic somewhere in it.
    fn varying(&self, f: &Field, what: &str) -> Result<(), Error> {
        fn has_field(f: &Field) -> bool {
            match f {
                Field::Static(_) => false,
                Field::Attribute(_) | Field::Intrinsic(_) => true,
                Field::Binary(_, l, r) => has_field(l) || has_field(r),
                Field::Unary(_, e) => has_field(e),
            }
        }
        if has_field(f) {
            Ok(())
        } else {
            Err(invalid(format!(
                "{what} needs an attribute or an intrinsic, not the constant {f}"
            )))
        }
    }

    fn scalar_filter(&self, f: &ScalarFilter) -> Result<(), Error> {
        let l = self.scalar(&f.lhs)?;
        let r = self.scalar(&f.rhs)?;
        // What is evaluated: one aggregate compared with one number.
        let simple = matches!(f.lhs, Scalar::Aggregate(..)) && matches!(f.rhs, Scalar::Static(_));
        if matches!(f.op, BinOp::Re | BinOp::Nre) {
            return Err(invalid(format!(
                "{} compares strings; aggregates are numbers",
                f.op.symbol()
            )));
        }
        if !(l.is_numeric() && r.is_numeric()) {
            return Err(invalid(format!(
                "cannot compare {} with {} in {f}",
                l.name(),
                r.name()
            )));
        }
        if !simple {
            return Err(Error::Unsupported {
                what: format!(
                    "a scalar filter other than an aggregate compared with a number ({f})"
                ),
            });
        }
        Ok(())
    }

    fn scalar(&self, s: &Scalar) -> Result<Type, Error> {
        match s {
            Scalar::Static(l) => {
                let t = literal_type(l);
                if !t.is_numeric() {
                    return Err(invalid(format!(
                        "a scalar filter compares numbers, not the {} {l}",
                        t.name()
                    )));
                }
                Ok(t)
            }
            Scalar::Aggregate(Aggregate::Count, _) => Ok(Type::Int),
            Scalar::Aggregate(a, Some(f)) => {
                self.varying(f, &format!("{}()", a.name()))?;
                let t = self.field(f)?;
                if !t.is_numeric() {
                    return Err(invalid(format!(
                        "{}() needs a number or a duration, not a {}",
                        a.name(),
                        t.name()
                    )));
                }
                Ok(if t == Type::Any { Type::Float } else { t })
            }
            Scalar::Aggregate(a, None) => Err(invalid(format!("{}() needs a value", a.name()))),
            Scalar::Pipeline(p, a, f) => {
                self.pipeline(p)?;
                self.scalar(&Scalar::Aggregate(*a, f.clone()))
            }
            Scalar::Binary(op, l, r) => {
                let (lt, rt) = (self.scalar(l)?, self.scalar(r)?);
                if !op.is_arithmetic() {
                    return Err(invalid(format!("{} is not arithmetic", op.symbol())));
                }
                if !(lt.is_numeric() && rt.is_numeric()) {
                    return Err(invalid(format!(
                        "cannot compute {} {} {}",
                        lt.name(),
                        op.symbol(),
                        rt.name()
                    )));
                }
                Ok(Type::Float)
            }
        }
    }

    /// The type of a field expression, or why it has none.
    fn field(&self, f: &Field) -> Result<Type, Error> {
        match f {
            Field::Static(l) => Ok(literal_type(l)),
            Field::Attribute(a) if a.parent => Err(Error::Unsupported {
                what: format!("the parent scope ({a})"),
            }),
            Field::Attribute(_) => Ok(Type::Any),
            Field::Intrinsic(i) => Ok(i.value_type()),
            Field::Unary(UnaryOp::Not, e) => {
                let t = self.field(e)?;
                if matches!(t, Type::Bool | Type::Any) {
                    Ok(Type::Bool)
                } else {
                    Err(invalid(format!(
                        "'!' needs a condition, not the {} {e}",
                        t.name()
                    )))
                }
            }
            Field::Unary(UnaryOp::Neg, e) => {
                let t = self.field(e)?;
                if t.is_numeric() {
                    Ok(t)
                } else {
                    Err(invalid(format!(
                        "'-' needs a number, not the {} {e}",
                        t.name()
                    )))
                }
            }
            Field::Binary(op, l, r) => {
                let (lt, rt) = (self.field(l)?, self.field(r)?);
                let mismatch = || {
                    invalid(format!(
                        "cannot apply {} to {} and {} in {f}",
                        op.symbol(),
                        lt.name(),
                        rt.name()
                    ))
                };
                // Operands of one type (numbers and durations mix), an attribute (its type is
                // known per span) or nil.
                let matching = lt == rt
                    || lt == Type::Any
                    || rt == Type::Any
                    || lt == Type::Nil
                    || rt == Type::Nil
                    || (lt.is_numeric() && rt.is_numeric());
                if !(matching && allows(lt, *op) && allows(rt, *op)) {
                    return Err(mismatch());
                }
                if matches!(op, BinOp::Re | BinOp::Nre)
                    && let Field::Static(Literal::String(p)) = r.as_ref()
                    && let Err(e) = regex::Regex::new(p)
                {
                    return Err(invalid(format!(
                        "{} is not a regular expression: {}",
                        quote(p),
                        e.to_string().lines().last().unwrap_or("")
                    )));
                }
                Ok(if op.is_arithmetic() {
                    // The left operand's type, or the right one's when the left is an attribute.
                    if lt == Type::Any { rt } else { lt }
                } else {
                    Type::Bool
                })
            }
        }
    }

    fn metrics(&self, m: &Metrics) -> Result<(), Error> {
        let name = |f: &MetricsFn| match f {
            MetricsFn::MinOverTime(_) => "min_over_time",
            MetricsFn::MaxOverTime(_) => "max_over_time",
            MetricsFn::AvgOverTime(_) => "avg_over_time",
            MetricsFn::SumOverTime(_) => "sum_over_time",
            MetricsFn::QuantileOverTime(..) => "quantile_over_time",
            MetricsFn::HistogramOverTime(_) => "histogram_over_time",
            _ => "",
        };
        match &m.function {
            MetricsFn::Rate | MetricsFn::CountOverTime => {}
            MetricsFn::MinOverTime(f)
            | MetricsFn::MaxOverTime(f)
            | MetricsFn::AvgOverTime(f)
            | MetricsFn::SumOverTime(f)
            | MetricsFn::HistogramOverTime(f)
            | MetricsFn::QuantileOverTime(f, _) => {
                let what = format!("{}()", name(&m.function));
                self.varying(f, &what)?;
                let t = self.field(f)?;
                if !t.is_numeric() {
                    return Err(invalid(format!(
                        "{what} needs a number or a duration, not a {}",
                        t.name()
                    )));
                }
                if let MetricsFn::QuantileOverTime(_, qs) = &m.function
                    && let Some(q) = qs.iter().find(|q| !(0.0..=1.0).contains(*q))
                {
                    return Err(invalid(format!("a quantile is between 0 and 1, not {q}")));
                }
            }
            MetricsFn::Compare(s, args) => {
                self.spanset(s)?;
                if let Some(&n) = args.first()
                    && n <= 0
                {
                    return Err(invalid(format!(
                        "compare's top N is greater than 0, not {n}"
                    )));
                }
                if let [_, start, end] = args[..]
                    && !((start == 0 && end == 0) || (start > 0 && end > start))
                {
                    return Err(invalid(format!(
                        "compare's start and end are both 0, or end after start ({start}, {end})"
                    )));
                }
            }
        }
        for f in &m.by {
            self.field(f)?;
        }
        // One label is the bucket's for quantiles and histograms.
        let max_by = match m.function {
            MetricsFn::QuantileOverTime(..) | MetricsFn::HistogramOverTime(_) => 4,
            _ => 5,
        };
        if m.by.len() > max_by {
            return Err(Error::Unsupported {
                what: format!("grouping metrics by more than {max_by} values"),
            });
        }
        if let Some((_, k)) = m.second
            && k <= 0
        {
            return Err(invalid(format!(
                "topk/bottomk take a number of series greater than 0, not {k}"
            )));
        }
        Ok(())
    }
}

pub fn literal_type(l: &Literal) -> Type {
    match l {
        Literal::String(_) => Type::String,
        Literal::Int(_) => Type::Int,
        Literal::Float(_) => Type::Float,
        Literal::Duration(_) => Type::Duration,
        Literal::Status(_) => Type::Status,
        Literal::Kind(_) => Type::Kind,
        Literal::Bool(_) => Type::Bool,
        Literal::Nil => Type::Nil,
    }
}

/// Whether values of type `t` take operator `op` (an attribute takes every operator).
fn allows(t: Type, op: BinOp) -> bool {
    use BinOp::*;
    match t {
        Type::Any => true,
        Type::Bool => matches!(op, And | Or | Eq | Neq),
        Type::Int | Type::Float | Type::Duration => !matches!(op, And | Or | Re | Nre),
        Type::String => matches!(op, Eq | Neq | Re | Nre | Gt | Gte | Lt | Lte),
        Type::Nil | Type::Status | Type::Kind => matches!(op, Eq | Neq),
    }
}
