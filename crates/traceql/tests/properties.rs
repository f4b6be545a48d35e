//! Properties of the parser: printing a parsed query and parsing the text again gives the same
//! tree (for generated trees and for text), and no input makes it panic.

use proptest::prelude::*;
use tv_traceql::*;

fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z][a-z0-9_]{0,8}(\\.[a-z][a-z0-9_-]{0,6}){0,2}",
        // Names that need quotes.
        "[a-z]{1,4} [a-z(){}=]{1,4}",
    ]
}

fn attribute() -> impl Strategy<Value = Attribute> {
    (
        prop_oneof![
            Just(Scope::None),
            Just(Scope::Span),
            Just(Scope::Resource),
            Just(Scope::Event),
            Just(Scope::Link),
            Just(Scope::Instrumentation),
        ],
        any::<bool>(),
        name(),
    )
        .prop_map(|(scope, parent, name)| Attribute {
            scope,
            parent,
            name,
        })
}

fn literal() -> impl Strategy<Value = Literal> {
    prop_oneof![
        "[ -~\\n\\t\u{e9}\u{4e2d}]{0,12}".prop_map(Literal::String),
        (0i64..=i64::MAX).prop_map(Literal::Int),
        (0.0f64..1e12).prop_map(Literal::Float),
        (0i64..=10_000_000_000_000).prop_map(Literal::Duration),
        prop_oneof![Just(Status::Ok), Just(Status::Error), Just(Status::Unset)]
            .prop_map(Literal::Status),
        prop_oneof![
            Just(Kind::Server),
            Just(Kind::Client),
            Just(Kind::Internal),
            Just(Kind::Producer),
            Just(Kind::Consumer),
            Just(Kind::Unspecified)
        ]
        .prop_map(Literal::Kind),
        any::<bool>().prop_map(Literal::Bool),
    ]
}

fn intrinsic() -> impl Strategy<Value = Intrinsic> {
    (0..INTRINSICS.len()).prop_map(|i| INTRINSICS[i].0)
}

fn binop() -> impl Strategy<Value = BinOp> {
    use BinOp::*;
    prop_oneof![
        Just(Eq),
        Just(Neq),
        Just(Gt),
        Just(Gte),
        Just(Lt),
        Just(Lte),
        Just(Re),
        Just(Nre),
        Just(Add),
        Just(Sub),
        Just(Mul),
        Just(Div),
        Just(Mod),
        Just(Pow),
        Just(And),
        Just(Or),
    ]
}

fn field() -> impl Strategy<Value = Field> {
    let leaf = prop_oneof![
        literal().prop_map(Field::Static),
        attribute().prop_map(Field::Attribute),
        intrinsic().prop_map(Field::Intrinsic),
    ];
    leaf.prop_recursive(4, 24, 2, |inner| {
        prop_oneof![
            (binop(), inner.clone(), inner.clone()).prop_map(|(op, l, r)| Field::Binary(
                op,
                Box::new(l),
                Box::new(r)
            )),
            (
                prop_oneof![Just(UnaryOp::Not), Just(UnaryOp::Neg)],
                inner.clone()
            )
                .prop_map(|(op, e)| Field::Unary(op, Box::new(e))),
            // nil stands only beside = and != (`span.x != nil`).
            (
                prop_oneof![Just(BinOp::Eq), Just(BinOp::Neq)],
                inner,
                any::<bool>()
            )
                .prop_map(|(op, e, left)| {
                    let nil = Box::new(Field::Static(Literal::Nil));
                    if left {
                        Field::Binary(op, nil, Box::new(e))
                    } else {
                        Field::Binary(op, Box::new(e), nil)
                    }
                }),
        ]
    })
}

fn spanset_op() -> impl Strategy<Value = SpansetOp> {
    use SpansetOp::*;
    prop_oneof![
        Just(And),
        Just(Or),
        Just(Child),
        Just(Descendant),
        Just(Parent),
        Just(Ancestor),
        Just(Sibling),
        Just(NotChild),
        Just(NotDescendant),
        Just(NotParent),
        Just(NotAncestor),
        Just(NotSibling),
        Just(UnionChild),
        Just(UnionDescendant),
        Just(UnionParent),
        Just(UnionAncestor),
        Just(UnionSibling),
    ]
}

fn spanset() -> impl Strategy<Value = SpansetExpr> {
    let leaf = prop_oneof![
        Just(SpansetExpr::Filter(None)),
        field().prop_map(|f| SpansetExpr::Filter(Some(f))),
    ];
    leaf.prop_recursive(3, 12, 2, |inner| {
        (spanset_op(), inner.clone(), inner)
            .prop_map(|(op, l, r)| SpansetExpr::Op(op, Box::new(l), Box::new(r)))
    })
}

fn scalar() -> impl Strategy<Value = Scalar> {
    prop_oneof![
        Just(Scalar::Aggregate(Aggregate::Count, None)),
        (
            prop_oneof![
                Just(Aggregate::Avg),
                Just(Aggregate::Min),
                Just(Aggregate::Max),
                Just(Aggregate::Sum)
            ],
            field()
        )
            .prop_map(|(a, f)| Scalar::Aggregate(a, Some(Box::new(f)))),
        (0i64..1000).prop_map(|i| Scalar::Static(Literal::Int(i))),
        (0i64..10_000_000_000).prop_map(|d| Scalar::Static(Literal::Duration(d))),
    ]
}

fn stage() -> impl Strategy<Value = Stage> {
    prop_oneof![
        4 => spanset().prop_map(Stage::Spanset),
        1 => (
            prop_oneof![
                Just(BinOp::Eq),
                Just(BinOp::Neq),
                Just(BinOp::Gt),
                Just(BinOp::Gte),
                Just(BinOp::Lt),
                Just(BinOp::Lte)
            ],
            scalar(),
            scalar()
        )
            .prop_map(|(op, lhs, rhs)| Stage::Scalar(ScalarFilter { op, lhs, rhs })),
        1 => field().prop_map(|f| Stage::By(vec![f])),
        1 => prop::collection::vec(
            prop_oneof![
                attribute().prop_map(Field::Attribute),
                intrinsic().prop_map(Field::Intrinsic)
            ],
            1..3
        )
        .prop_map(Stage::Select),
        1 => Just(Stage::Coalesce),
    ]
}

fn query() -> impl Strategy<Value = Query> {
    (
        spanset(),
        prop::collection::vec(stage(), 0..3),
        prop::option::of(prop_oneof![
            Just(MetricsFn::Rate),
            Just(MetricsFn::CountOverTime),
            attribute().prop_map(|a| MetricsFn::AvgOverTime(Field::Attribute(a))),
            (attribute(), prop::collection::vec(0.0f64..=1.0, 1..3))
                .prop_map(|(a, qs)| MetricsFn::QuantileOverTime(Field::Attribute(a), qs)),
        ]),
        prop::collection::vec(attribute().prop_map(Field::Attribute), 0..2),
    )
        .prop_map(|(first, rest, m, by)| {
            let mut stages = vec![Stage::Spanset(first)];
            stages.extend(rest);
            Query {
                pipeline: Pipeline(stages),
                metrics: m.map(|function| Metrics {
                    function,
                    by,
                    second: None,
                }),
                hints: Vec::new(),
            }
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn a_printed_tree_parses_back_to_itself(q in query()) {
        let text = q.to_string();
        let back = parse_only(&text).map_err(|e| TestCaseError::fail(format!("{text}: {e}")))?;
        prop_assert_eq!(back, q, "{}", text);
    }

    #[test]
    fn parsing_printed_text_is_stable(q in query()) {
        // Text → tree → text → tree: the second tree is the first.
        let text = q.to_string();
        let once = parse_only(&text).unwrap();
        let twice = parse_only(&once.to_string()).unwrap();
        prop_assert_eq!(once, twice);
    }

    #[test]
    fn no_input_panics(s in "\\PC{0,80}") {
        let _ = parse(&s);
    }

    #[test]
    fn no_token_soup_panics(toks in prop::collection::vec(prop_oneof![
        Just("{"), Just("}"), Just("("), Just(")"), Just("|"), Just("&&"), Just("||"), Just(">"),
        Just(">>"), Just("!~"), Just("&>>"), Just("="), Just("=~"), Just("!"), Just("-"), Just("^"),
        Just("span.a"), Just(".b"), Just("duration"), Just("count()"), Just("avg("), Just("by("),
        Just("select("), Just("rate()"), Just("1"), Just("1.5"), Just("10ms"), Just("\"x\""),
        Just("error"), Just("nil"), Just(","), Just("with"), Just("trace:id"), Just("quantile_over_time("),
    ], 0..24)) {
        let _ = parse(&toks.join(" "));
    }
}

#[test]
fn deep_nesting_is_refused_not_overflowed() {
    let deep = format!("{{ {}true{} }}", "(".repeat(5000), ")".repeat(5000));
    let e = parse(&deep).unwrap_err();
    assert!(e.to_string().contains("deeper than"), "{e}");
    let deep = format!("{{ {}true }}", "!".repeat(5000));
    assert!(parse(&deep).is_err());
    // A long flat chain is not nesting: it parses.
    let long = vec!["{ .a = 1 }"; 1000].join(" && ");
    assert!(parse(&long).is_ok());
    let too_long = vec!["{ .a = 1 }"; 2000].join(" && ");
    assert!(
        parse(&too_long)
            .unwrap_err()
            .to_string()
            .contains("longer than")
    );
}
