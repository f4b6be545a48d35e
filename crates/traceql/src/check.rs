//! Validation: what parses but means nothing. A spanset filter must be a condition (a
//! boolean, or an attribute whose value may be one); operands of a comparison must be of
//! comparable types (numbers and durations compare with each other, an attribute with
//! anything); `=~` needs a string pattern; arithmetic needs numbers; an aggregate, `by()` and
//! the metrics functions need a value that varies per span, not a constant.

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
    for (k, v) in &q.hints {
        if !matches!(
            v,
            Literal::Bool(_) | Literal::Int(_) | Literal::Float(_) | Literal::Duration(_)
        ) {
            return Err(invalid(format!(
                "hint {k} must be a boolean, a number or a duration, not {v}"
            )));
        }
    }
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
        if !has_aggregate(&f.lhs) && !has_aggregate(&f.rhs) {
            return Err(invalid(format!(
                "a scalar filter compares an aggregate (count(), avg(...)): {f} has none"
            )));
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
                match op {
                    BinOp::And | BinOp::Or => {
                        if matches!(lt, Type::Bool | Type::Any)
                            && matches!(rt, Type::Bool | Type::Any)
                        {
                            Ok(Type::Bool)
                        } else {
                            Err(mismatch())
                        }
                    }
                    BinOp::Re | BinOp::Nre => {
                        if matches!(lt, Type::String | Type::Any)
                            && matches!(rt, Type::String | Type::Any)
                        {
                            Ok(Type::Bool)
                        } else {
                            Err(mismatch())
                        }
                    }
                    BinOp::Eq | BinOp::Neq => {
                        if comparable(lt, rt) || lt == Type::Nil || rt == Type::Nil {
                            Ok(Type::Bool)
                        } else {
                            Err(mismatch())
                        }
                    }
                    BinOp::Gt | BinOp::Gte | BinOp::Lt | BinOp::Lte => {
                        // Numbers and strings have an order; statuses, kinds and booleans not.
                        let ordered = |t: Type| t.is_numeric() || t == Type::String;
                        if comparable(lt, rt) && ordered(lt) && ordered(rt) {
                            Ok(Type::Bool)
                        } else {
                            Err(mismatch())
                        }
                    }
                    _ => {
                        if lt.is_numeric() && rt.is_numeric() {
                            Ok(match (lt, rt) {
                                (Type::Int, Type::Int) => Type::Int,
                                (Type::Duration, _) | (_, Type::Duration) => Type::Duration,
                                (Type::Any, _) | (_, Type::Any) => Type::Any,
                                _ => Type::Float,
                            })
                        } else {
                            Err(mismatch())
                        }
                    }
                }
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
                if args.len() > 3 {
                    return Err(invalid(
                        "compare takes a spanset and at most three integers (top N, start, end)"
                            .into(),
                    ));
                }
            }
        }
        for f in &m.by {
            self.varying(f, "by()")?;
            self.field(f)?;
        }
        Ok(())
    }
}

fn has_aggregate(s: &Scalar) -> bool {
    match s {
        Scalar::Static(_) => false,
        Scalar::Aggregate(..) => true,
        Scalar::Binary(_, l, r) => has_aggregate(l) || has_aggregate(r),
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

/// Whether values of these types can be compared: the same type, two numbers (durations
/// included), or an attribute (its type is known only per span).
fn comparable(a: Type, b: Type) -> bool {
    a == b || a == Type::Any || b == Type::Any || (a.is_numeric() && b.is_numeric())
}
