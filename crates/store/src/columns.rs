//! Columnar encoding of a block chunk (see [`Chunk`]): spans in, columns out, and back, exactly.
//!
//! Rows must arrive sorted by trace id (then start time); runs of one trace id store the id once.
//! Decoding can skip rows: only rows accepted by the filter are materialized as `Span`s, the others
//! just advance the column cursors.

use std::collections::HashMap;

use prost::Message;
use tv_model::otlp::{AnyValue, KeyValue, Span, any_value::Value};

use crate::StoreError;
use crate::format::{Chunk, ValueColumn};

/// One span of a chunk with where it belongs.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub trace_id: [u8; 16],
    pub resource: u32,
    pub scope: u32,
    /// The committed record (position in the block index's record list) the span came from.
    pub record: u32,
    pub span: Span,
}

const VAL_STRING: u32 = 0;
const VAL_INT: u32 = 1;
const VAL_OTHER: u32 = 2;
const VAL_NONE: u32 = 3;

/// Builds the columns of `rows` (sorted by trace id); `resources` and `scopes` are the chunk's
/// tables the rows' indexes point into.
pub fn encode(rows: Vec<Row>, resources: Vec<Vec<u8>>, scopes: Vec<Vec<u8>>) -> Chunk {
    let mut c = Chunk {
        resources,
        scopes,
        ..Default::default()
    };
    let mut names: HashMap<String, u32> = HashMap::new();
    let mut keys: HashMap<String, u32> = HashMap::new();
    // Parents are referenced by row wherever they sit in the chunk (a parent may sort after its
    // child when it started later); only parents outside the chunk are stored raw.
    let mut row_of_span: HashMap<[u8; 8], u32> = HashMap::with_capacity(rows.len());
    for (i, r) in rows.iter().enumerate() {
        if let Ok(sid) = <[u8; 8]>::try_from(r.span.span_id.as_slice()) {
            row_of_span.entry(sid).or_insert(i as u32);
        }
    }
    let mut prev_start = 0u64;
    for mut r in rows {
        let s = &mut r.span;
        if c.trace_ids.len() >= 16 && c.trace_ids[c.trace_ids.len() - 16..] == r.trace_id {
            *c.trace_runs.last_mut().expect("a run exists") += 1;
        } else {
            c.trace_ids.extend_from_slice(&r.trace_id);
            c.trace_runs.push(1);
        }
        c.resource.push(r.resource);
        c.scope.push(r.scope);
        c.record.push(r.record);
        let sid: [u8; 8] = s.span_id.as_slice().try_into().unwrap_or([0; 8]);
        c.span_ids.extend_from_slice(&sid);
        if s.parent_span_id.is_empty() {
            c.parent.push(0);
        } else if let Some(row) = <[u8; 8]>::try_from(s.parent_span_id.as_slice())
            .ok()
            .and_then(|p| row_of_span.get(&p))
        {
            c.parent.push(row + 2);
        } else {
            c.parent.push(1);
            let mut p = [0u8; 8];
            let n = s.parent_span_id.len().min(8);
            p[..n].copy_from_slice(&s.parent_span_id[..n]);
            c.parent_raw.extend_from_slice(&p);
        }
        c.start_delta
            .push(s.start_time_unix_nano.wrapping_sub(prev_start) as i64);
        prev_start = s.start_time_unix_nano;
        c.duration
            .push(s.end_time_unix_nano.wrapping_sub(s.start_time_unix_nano));
        let next_name = names.len() as u32;
        let n = *names
            .entry(std::mem::take(&mut s.name))
            .or_insert(next_name);
        c.name.push(n);
        c.kind.push(s.kind);
        c.attr_count.push(s.attributes.len() as u32);
        for kv in std::mem::take(&mut s.attributes) {
            let next_key = keys.len() as u32;
            let k = *keys.entry(kv.key).or_insert(next_key);
            if k as usize == c.columns.len() {
                c.columns.push(ValueColumn::default());
            }
            c.attr_key.push(k);
            let col = &mut c.columns[k as usize];
            match kv.value {
                None => col.kind.push(VAL_NONE),
                Some(AnyValue {
                    value: Some(Value::StringValue(x)),
                }) => {
                    col.kind.push(VAL_STRING);
                    col.str_lens.push(x.len() as u32);
                    col.str_data.extend_from_slice(x.as_bytes());
                }
                Some(AnyValue {
                    value: Some(Value::IntValue(x)),
                }) => {
                    col.kind.push(VAL_INT);
                    col.ints.push(x);
                }
                Some(other) => {
                    col.kind.push(VAL_OTHER);
                    col.others.push(other.encode_to_vec());
                }
            }
        }
        // What is left: status, events, links, trace state, flags, dropped counts.
        s.trace_id.clear();
        s.span_id.clear();
        s.parent_span_id.clear();
        s.kind = 0;
        s.start_time_unix_nano = 0;
        s.end_time_unix_nano = 0;
        c.rest.push(s.encode_to_vec());
    }
    let mut n: Vec<(String, u32)> = names.into_iter().collect();
    n.sort_by_key(|(_, i)| *i);
    c.names = n.into_iter().map(|(s, _)| s).collect();
    let mut k: Vec<(String, u32)> = keys.into_iter().collect();
    k.sort_by_key(|(_, i)| *i);
    c.keys = k.into_iter().map(|(s, _)| s).collect();
    c
}

fn bad(what: &str) -> StoreError {
    StoreError::Decode(format!("chunk column {what} is inconsistent"))
}

/// Rebuilds the rows of `c` whose trace id passes `keep`.
pub fn decode(c: &Chunk, keep: impl FnMut(&[u8; 16]) -> bool) -> Result<Vec<Row>, StoreError> {
    decode_with(c, keep, &|_| true)
}

/// Rebuilds the rows of `c` whose trace id passes `keep`, with only the span attributes whose
/// key passes `key` (the others are skipped in their columns, never materialized).
pub fn decode_with(
    c: &Chunk,
    mut keep: impl FnMut(&[u8; 16]) -> bool,
    key: &dyn Fn(&str) -> bool,
) -> Result<Vec<Row>, StoreError> {
    let n = c.resource.len();
    let same = [
        c.scope.len(),
        c.parent.len(),
        c.start_delta.len(),
        c.duration.len(),
        c.name.len(),
        c.kind.len(),
        c.attr_count.len(),
        c.rest.len(),
        c.record.len(),
    ];
    if same.iter().any(|&l| l != n)
        || c.span_ids.len() != n * 8
        || c.trace_ids.len() != c.trace_runs.len() * 16
        || c.trace_runs.iter().map(|&r| r as usize).sum::<usize>() != n
        || c.columns.len() != c.keys.len()
    {
        return Err(bad("lengths"));
    }
    let mut out = Vec::new();
    let mut run = 0usize;
    let mut left_in_run = c.trace_runs.first().copied().unwrap_or(0);
    let mut start = 0u64;
    let mut attr_pos = 0usize;
    let mut raw_parent = 0usize;
    // Per-column cursors: (kind, string, int, other, string byte offset).
    let mut cur = vec![(0usize, 0usize, 0usize, 0usize, 0usize); c.columns.len()];
    let key_wanted: Vec<bool> = c.keys.iter().map(|k| key(k)).collect();
    for i in 0..n {
        while left_in_run == 0 {
            run += 1;
            left_in_run = *c.trace_runs.get(run).ok_or_else(|| bad("trace runs"))?;
        }
        left_in_run -= 1;
        let tid: [u8; 16] = c.trace_ids[run * 16..run * 16 + 16]
            .try_into()
            .expect("16 bytes");
        start = start.wrapping_add(c.start_delta[i] as u64);
        let parent_code = c.parent[i];
        let parent = match parent_code {
            0 => Vec::new(),
            1 => {
                let p = c
                    .parent_raw
                    .get(raw_parent * 8..raw_parent * 8 + 8)
                    .ok_or_else(|| bad("parent_raw"))?
                    .to_vec();
                raw_parent += 1;
                p
            }
            k => {
                let r = (k - 2) as usize;
                if r >= n {
                    return Err(bad("parent"));
                }
                c.span_ids[r * 8..r * 8 + 8].to_vec()
            }
        };
        let nattr = c.attr_count[i] as usize;
        let keys = c
            .attr_key
            .get(attr_pos..attr_pos + nattr)
            .ok_or_else(|| bad("attr_key"))?;
        attr_pos += nattr;
        let row_wanted = keep(&tid);
        let mut attributes = Vec::with_capacity(if row_wanted { nattr } else { 0 });
        for &k in keys {
            let col = c.columns.get(k as usize).ok_or_else(|| bad("key"))?;
            let cu = &mut cur[k as usize];
            let wanted = row_wanted && key_wanted[k as usize];
            let kind = *col.kind.get(cu.0).ok_or_else(|| bad("value kind"))?;
            cu.0 += 1;
            let value = match kind {
                VAL_STRING => {
                    let len =
                        *col.str_lens
                            .get(cu.1)
                            .ok_or_else(|| bad("string lengths"))? as usize;
                    cu.1 += 1;
                    let at = cu.4;
                    cu.4 += len;
                    if wanted {
                        let bytes = col
                            .str_data
                            .get(at..at + len)
                            .ok_or_else(|| bad("strings"))?;
                        let v = std::str::from_utf8(bytes).map_err(|_| bad("strings (UTF-8)"))?;
                        Some(Some(AnyValue {
                            value: Some(Value::StringValue(v.to_owned())),
                        }))
                    } else {
                        None
                    }
                }
                VAL_INT => {
                    let v = *col.ints.get(cu.2).ok_or_else(|| bad("ints"))?;
                    cu.2 += 1;
                    wanted.then_some(Some(AnyValue {
                        value: Some(Value::IntValue(v)),
                    }))
                }
                VAL_OTHER => {
                    let v = col.others.get(cu.3).ok_or_else(|| bad("others"))?;
                    cu.3 += 1;
                    if wanted {
                        Some(Some(
                            AnyValue::decode(v.as_slice()).map_err(|_| bad("others"))?,
                        ))
                    } else {
                        None
                    }
                }
                VAL_NONE => wanted.then_some(None),
                _ => return Err(bad("value kind")),
            };
            if let Some(value) = value {
                attributes.push(KeyValue {
                    key: c.keys[k as usize].clone(),
                    value,
                    ..Default::default()
                });
            }
        }
        if !row_wanted {
            continue;
        }
        let mut span = Span::decode(c.rest[i].as_slice()).map_err(|_| bad("rest"))?;
        span.trace_id = tid.to_vec();
        span.span_id = c.span_ids[i * 8..i * 8 + 8].to_vec();
        span.parent_span_id = parent;
        span.name = c
            .names
            .get(c.name[i] as usize)
            .ok_or_else(|| bad("name"))?
            .clone();
        span.kind = c.kind[i];
        span.start_time_unix_nano = start;
        span.end_time_unix_nano = start.wrapping_add(c.duration[i]);
        span.attributes = attributes;
        out.push(Row {
            trace_id: tid,
            resource: c.resource[i],
            scope: c.scope[i],
            record: c.record[i],
            span,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use tv_model::otlp::{ArrayValue, Status, span::Event};

    fn value() -> impl Strategy<Value = Option<AnyValue>> {
        prop_oneof![
            Just(None),
            ".{0,12}".prop_map(|s| Some(AnyValue {
                value: Some(Value::StringValue(s))
            })),
            any::<i64>().prop_map(|i| Some(AnyValue {
                value: Some(Value::IntValue(i))
            })),
            any::<bool>().prop_map(|b| Some(AnyValue {
                value: Some(Value::BoolValue(b))
            })),
            any::<f64>()
                .prop_filter("NaN never equals itself", |f| !f.is_nan())
                .prop_map(|f| Some(AnyValue {
                    value: Some(Value::DoubleValue(f))
                })),
            proptest::collection::vec(any::<i64>(), 0..3).prop_map(|v| Some(AnyValue {
                value: Some(Value::ArrayValue(ArrayValue {
                    values: v
                        .into_iter()
                        .map(|i| AnyValue {
                            value: Some(Value::IntValue(i))
                        })
                        .collect()
                }))
            })),
            Just(Some(AnyValue { value: None })),
        ]
    }

    fn span() -> impl Strategy<Value = (u8, Span)> {
        (
            0u8..4,
            any::<[u8; 8]>(),
            0u8..3,
            any::<u64>(),
            any::<u64>(),
            "[a-c]{0,3}",
            proptest::collection::vec(("[k-m]{1,2}", value()), 0..6),
            any::<bool>(),
        )
            .prop_map(
                |(t, sid, parent_kind, start, dur, name, attrs, with_event)| {
                    let parent = match parent_kind {
                        0 => vec![],
                        1 => vec![9; 8],
                        _ => vec![t + 1; 8],
                    };
                    (
                        t,
                        Span {
                            trace_id: vec![t + 1; 16],
                            span_id: sid.to_vec(),
                            parent_span_id: parent,
                            name,
                            kind: (start % 6) as i32,
                            start_time_unix_nano: start,
                            end_time_unix_nano: start.wrapping_add(dur % 1_000_000),
                            attributes: attrs
                                .into_iter()
                                .map(|(k, v)| KeyValue {
                                    key: k,
                                    value: v,
                                    ..Default::default()
                                })
                                .collect(),
                            events: if with_event {
                                vec![Event {
                                    name: "e".into(),
                                    time_unix_nano: 5,
                                    ..Default::default()
                                }]
                            } else {
                                vec![]
                            },
                            status: Some(Status {
                                code: 2,
                                message: "boom".into(),
                            }),
                            flags: 0x100,
                            ..Default::default()
                        },
                    )
                },
            )
    }

    proptest! {
        #[test]
        fn columns_roundtrip_exactly(mut spans in proptest::collection::vec(span(), 0..40)) {
            spans.sort_by_key(|(t, s)| (*t, s.start_time_unix_nano));
            let rows: Vec<Row> = spans
                .iter()
                .enumerate()
                .map(|(i, (t, s))| Row { trace_id: [t + 1; 16], resource: (i % 3) as u32, scope: (i % 2) as u32, record: (i % 4) as u32, span: s.clone() })
                .collect();
            let chunk = encode(rows.clone(), vec![vec![1], vec![2], vec![3]], vec![vec![4], vec![5]]);
            let bytes = chunk.encode_to_vec();
            let back = Chunk::decode(bytes.as_slice()).unwrap();
            prop_assert_eq!(&decode(&back, |_| true).unwrap(), &rows);
            // As block format 3 stores it: every field and column compressed apart, merged back.
            let mut z = zstd::bulk::Compressor::new(3).unwrap();
            let packed = crate::block::pack_chunk(chunk.clone(), &mut z).unwrap();
            prop_assert_eq!(&crate::block::unpack_chunk(&packed).unwrap(), &chunk);
            // Filtered decoding returns exactly the matching rows.
            let want: Vec<Row> = rows.iter().filter(|r| r.trace_id[0] == 2).cloned().collect();
            prop_assert_eq!(decode(&back, |t| t[0] == 2).unwrap(), want);
            // Decoding some keys only: the same rows, with only those attributes, in order.
            let keyed: Vec<Row> = rows
                .iter()
                .cloned()
                .map(|mut r| {
                    r.span.attributes.retain(|kv| kv.key == "k" || kv.key == "lm");
                    r
                })
                .collect();
            let only = |k: &str| k == "k" || k == "lm";
            prop_assert_eq!(decode_with(&back, |_| true, &only).unwrap(), keyed);
        }
    }

    /// One row of trace 1 holding `span`.
    fn one_row(span: Span) -> Vec<Row> {
        vec![Row {
            trace_id: [1; 16],
            resource: 0,
            scope: 0,
            record: 0,
            span,
        }]
    }

    /// A stored chunk whose parts are damaged (a reader must not trust what it decrypts) is an
    /// error, not a panic.
    #[test]
    fn damaged_chunk_parts_are_an_error() {
        use crate::format::ChunkParts;
        let rows = one_row(Span {
            span_id: vec![1; 8],
            name: "GET /".into(),
            attributes: vec![KeyValue {
                key: "user.id".into(),
                value: Some(AnyValue {
                    value: Some(Value::StringValue("hmac:0123".into())),
                }),
                ..Default::default()
            }],
            ..Default::default()
        });
        let chunk = encode(rows, vec![vec![1]], vec![vec![2]]);
        let mut z = zstd::bulk::Compressor::new(3).unwrap();
        let packed = crate::block::pack_chunk(chunk.clone(), &mut z).unwrap();
        let parts = ChunkParts::decode(packed.as_slice()).unwrap();
        assert!(parts.parts.len() > 3, "{} parts", parts.parts.len());
        // A frame cut short.
        let mut cut = parts.clone();
        let n = cut.parts[2].len();
        cut.parts[2].truncate(n / 2);
        let e = crate::block::unpack_chunk(&cut.encode_to_vec()).unwrap_err();
        assert_eq!(e, "chunk part does not decompress");
        // A part that decompresses to something that is not a chunk.
        let mut junk = parts.clone();
        junk.parts[1] = zstd::bulk::compress(&[0xff; 9], 3).unwrap();
        let e = crate::block::unpack_chunk(&junk.encode_to_vec()).unwrap_err();
        assert_eq!(e, "chunk part does not decode");
        // Not parts at all.
        assert!(crate::block::unpack_chunk(&[0xff, 0xff, 0xff]).is_err());
        // The undamaged parts give the chunk back.
        assert_eq!(
            crate::block::unpack_chunk(&parts.encode_to_vec()).unwrap(),
            chunk
        );
    }

    #[test]
    fn inconsistent_columns_are_an_error_not_a_panic() {
        let rows = one_row(Span {
            span_id: vec![1; 8],
            attributes: vec![KeyValue {
                key: "a".into(),
                value: None,
                ..Default::default()
            }],
            ..Default::default()
        });
        let good = encode(rows, vec![vec![]], vec![vec![]]);
        let mut c = good.clone();
        c.trace_runs = vec![2];
        assert!(decode(&c, |_| true).is_err());
        let mut c = good.clone();
        c.parent = vec![7];
        assert!(decode(&c, |_| true).is_err());
        let mut c = good.clone();
        c.columns[0].kind = vec![];
        assert!(decode(&c, |_| true).is_err());
        let mut c = good;
        c.attr_key = vec![];
        assert!(decode(&c, |_| true).is_err());
    }
}
