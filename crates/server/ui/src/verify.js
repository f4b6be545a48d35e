// In-page verification of tracevault span receipts: everything is checked here, in the browser,
// with nothing but the verifier keys the user pinned; the server is not asked anything.
//
// A port of the Rust reference (crates/tlog/src): receipt.rs `verify` (same checks, same order),
// leaf.rs (record leaves), commit.rs (field hashes, span commitments, span paths), merkle.rs
// (RFC 6962 / RFC 9162 hashes and the inclusion-proof check of tlog_tiles, Go's sumdb/tlog),
// note.rs (C2SP signed-note `open`), checkpoint.rs (C2SP tlog-checkpoint body), policy.rs (both
// the Ed25519 and the ML-DSA-44 signature required unless classical-only is asked for) and
// cosig.rs (C2SP tlog-cosignature: ML-DSA-44 type 0x06 for the log, Ed25519 type 0x04 for
// witnesses). Witness cosignatures are an addition: the Rust receipt check ignores them; here the
// cosignatures of pinned witness keys are verified and reported (and can be required).
//
// Pure ES module: no Node APIs; the cryptography is @noble's (no primitive written here).

import { sha256 } from "@noble/hashes/sha2.js";
import { ed25519 } from "@noble/curves/ed25519.js";
import { ml_dsa44 } from "@noble/post-quantum/ml-dsa.js";

export const FORMAT = "tracevault-span-receipt/v1";
const PROOF_HEADER = "c2sp.org/tlog-proof@v1";

const TYPE_ED25519 = 0x01;
const TYPE_ED25519_COSIG = 0x04;
const TYPE_MLDSA44_COSIG = 0x06;
const MLDSA44_PUBLIC_KEY_LEN = 1312;
const MLDSA44_SIGNATURE_LEN = 2420;
const MAX_SIGNATURES = 100;
const U64_MAX = (1n << 64n) - 1n;
const I64_MAX = (1n << 63n) - 1n;

const ALG = {
  [TYPE_ED25519]: "Ed25519",
  [TYPE_MLDSA44_COSIG]: "ML-DSA-44",
  [TYPE_ED25519_COSIG]: "Ed25519 cosignature",
};

// ---------------------------------------------------------------------------------------------
// Bytes, text, base64

const enc = new TextEncoder();
const utf8 = (s) => enc.encode(s);

function concat(...parts) {
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Uint8Array(n);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

function u64be(v) {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, BigInt(v));
  return b;
}

function u32be(v) {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, v);
  return b;
}

function u16be(v) {
  return new Uint8Array([(v >> 8) & 0xff, v & 0xff]);
}

const readU32 = (b, at) => new DataView(b.buffer, b.byteOffset + at, 4).getUint32(0);
const readU64 = (b, at) => new DataView(b.buffer, b.byteOffset + at, 8).getBigUint64(0);

function bytesEqual(a, b) {
  if (a.length !== b.length) return false;
  let d = 0;
  for (let i = 0; i < a.length; i++) d |= a[i] ^ b[i];
  return d === 0;
}

function hexLower(b) {
  let s = "";
  for (const x of b) s += x.toString(16).padStart(2, "0");
  return s;
}

const B64_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const B64_REV = new Int16Array(128).fill(-1);
for (let i = 0; i < 64; i++) B64_REV[B64_ALPHABET.charCodeAt(i)] = i;

/**
 * Strict standard base64 (what Rust's `base64::engine::general_purpose::STANDARD` accepts):
 * padding required, no whitespace, unused trailing bits must be zero, so every byte string has
 * exactly one encoding. Returns null when `s` is not such an encoding.
 */
function b64decode(s) {
  if (typeof s !== "string" || s.length % 4 !== 0) return null;
  let pad = 0;
  if (s.endsWith("==")) pad = 2;
  else if (s.endsWith("=")) pad = 1;
  const n = s.length - pad;
  const out = new Uint8Array((s.length / 4) * 3 - pad);
  let acc = 0;
  let bits = 0;
  let o = 0;
  for (let i = 0; i < n; i++) {
    const c = s.charCodeAt(i);
    const v = c < 128 ? B64_REV[c] : -1;
    if (v < 0) return null;
    acc = ((acc << 6) | v) & 0xffff;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out[o++] = (acc >> bits) & 0xff;
    }
  }
  if (bits > 0 && (acc & ((1 << bits) - 1)) !== 0) return null;
  return out;
}

// Rust's `char::is_whitespace` is the Unicode White_Space property.
const WHITE_SPACE = /\p{White_Space}/u;
const TRIM = /^\p{White_Space}+|\p{White_Space}+$/gu;
const LONE_SURROGATE = /\p{Cs}/u;

/** Decimal without sign or leading zeros, as a u64 BigInt; null when malformed, "range" if too big. */
function parseU64(s) {
  if (s.length === 0 || (s.length > 1 && s[0] === "0") || !/^[0-9]+$/.test(s)) return null;
  const v = BigInt(s);
  return v > U64_MAX ? "range" : v;
}

/** A u64 for people and JSON: a Number when exact, else its decimal string. */
const num = (v) => (v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v.toString());

function timeText(t) {
  // t: unix seconds (BigInt).
  if (t <= 8640000000000n) {
    const d = new Date(Number(t) * 1000);
    if (!Number.isNaN(d.getTime())) return `${d.toISOString().replace(".000Z", "Z")} (unix ${t})`;
  }
  return `unix ${t}`;
}

function nanosText(ns) {
  // ns: unix nanoseconds (BigInt).
  const ms = ns / 1000000n;
  if (ms <= 8640000000000000n) {
    const d = new Date(Number(ms));
    if (!Number.isNaN(d.getTime())) return `${d.toISOString()} (unix ns ${ns})`;
  }
  return `unix ns ${ns}`;
}

// ---------------------------------------------------------------------------------------------
// Verifier keys (note.rs split_vkey, Ed25519Verifier, cosig.rs MlDsaCosigVerifier, Ed25519CosigVerifier)

/** signed-note: a key name is non-empty, without Unicode white space and without `+`. */
function isValidName(name) {
  return name.length > 0 && !WHITE_SPACE.test(name) && !name.includes("+");
}

/** signed-note: SHA-256(name || 0x0A || type || key)[:4] as a big-endian u32. */
function keyId(name, typeAndKey) {
  return readU32(sha256(concat(utf8(name), new Uint8Array([0x0a]), typeAndKey)), 0);
}

const idHex = (id) => id.toString(16).padStart(8, "0");

class KeyError extends Error {}

function splitVkey(vkey) {
  // Rust: vkey.splitn(3, '+').
  const a = vkey.indexOf("+");
  if (a < 0) throw new KeyError("missing key ID");
  const b = vkey.indexOf("+", a + 1);
  if (b < 0) throw new KeyError("missing key material");
  const name = vkey.slice(0, a);
  const hex = vkey.slice(a + 1, b);
  const b64 = vkey.slice(b + 1);
  if (!isValidName(name)) throw new KeyError("invalid key name");
  if (!/^[0-9a-fA-F]{8}$/.test(hex)) throw new KeyError("key ID must be 8 hex digits");
  const id = parseInt(hex, 16);
  const key = b64decode(b64);
  if (key === null) throw new KeyError("key material is not base64");
  if (key.length === 0) throw new KeyError("empty key material");
  if (keyId(name, key) !== id) throw new KeyError("key ID does not match the key");
  return { name, id, key };
}

/**
 * The same verifier key under the name `<name>/<node>` (logkeys.rs node_vkey): a cluster node's
 * log is signed with the cluster's keys under its own origin.
 */
function nodeKey(k, node) {
  const name = `${k.name}/${node}`;
  const typeAndKey = concat(new Uint8Array([k.typeByte]), k.publicKey);
  const id = keyId(name, typeAndKey);
  const b64 = btoa(Array.from(typeAndKey, (b) => String.fromCharCode(b)).join(""));
  return Object.freeze({ ...k, name, keyId: id, keyIdHex: idHex(id), vkey: `${name}+${idHex(id)}+${b64}` });
}

/** Parses one vkey into a verifier key object (throws KeyError with the reason). */
function parseVkey(vkey) {
  const { name, id, key } = splitVkey(vkey);
  const base = { vkey, name, keyId: id, keyIdHex: idHex(id), typeByte: key[0] };
  switch (key[0]) {
    case TYPE_ED25519:
      if (key.length !== 33) throw new KeyError("Ed25519 keys are 32 bytes");
      return Object.freeze({ ...base, type: "ed25519", role: "log", publicKey: key.slice(1) });
    case TYPE_MLDSA44_COSIG:
      if (key.length !== 1 + MLDSA44_PUBLIC_KEY_LEN)
        throw new KeyError("ML-DSA-44 public keys are 1312 bytes");
      return Object.freeze({ ...base, type: "ml-dsa-44", role: "log", publicKey: key.slice(1) });
    case TYPE_ED25519_COSIG:
      if (key.length !== 33) throw new KeyError("Ed25519 keys are 32 bytes");
      return Object.freeze({
        ...base,
        type: "ed25519-cosignature",
        role: "witness",
        publicKey: key.slice(1),
      });
    default:
      throw new KeyError(
        `key type 0x${key[0].toString(16).padStart(2, "0")} is not one this page checks (Ed25519 0x01 and ML-DSA-44 0x06 for the log, Ed25519 cosignature 0x04 for witnesses)`,
      );
  }
}

/**
 * Parses verifier keys, one C2SP vkey (`name+keyid+base64(type || key)`) per line, as printed by
 * `tracevault log keys` (the log's Ed25519 and ML-DSA-44 keys) and in a witness's
 * `witness.vkey` (an Ed25519 cosignature key). Blank lines and lines starting with `#` are
 * ignored; surrounding white space is trimmed. Throws an Error naming the line and the reason for
 * a malformed one.
 *
 * @param {string} text
 * @returns {Array<{vkey: string, name: string, keyId: number, keyIdHex: string, typeByte: number,
 *   type: "ed25519"|"ml-dsa-44"|"ed25519-cosignature", role: "log"|"witness",
 *   publicKey: Uint8Array}>}
 */
export function parseVerifierKeys(text) {
  if (typeof text !== "string") throw new Error("The verifier keys must be text, one key per line");
  const keys = [];
  const lines = text.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i].replace(TRIM, "");
    if (line === "" || line.startsWith("#")) continue;
    try {
      keys.push(parseVkey(line));
    } catch (e) {
      if (!(e instanceof KeyError)) throw e;
      const shown = line.length > 48 ? line.slice(0, 48) + "…" : line;
      throw new Error(`Line ${i + 1} ("${shown}") is not a verifier key: ${e.message}`);
    }
  }
  return keys;
}

// ---------------------------------------------------------------------------------------------
// Signature checks

function ed25519Verify(publicKey, msg, sig) {
  try {
    return ed25519.verify(sig, msg, publicKey, { zip215: false });
  } catch {
    return false;
  }
}

function mldsa44Verify(publicKey, msg, sig) {
  try {
    // Pure ML-DSA-44 with the empty context string (FIPS 204), as aws-lc-rs `ML_DSA_44` verifies.
    return ml_dsa44.verify(sig, msg, publicKey);
  } catch {
    return false;
  }
}

/** cosig.rs split_timestamp: `timestamp u64 BE || signature` of exactly 8 + len bytes. */
function splitTimestamp(sig, len) {
  if (sig.length !== 8 + len) return null;
  const t = readU64(sig, 0);
  return t <= I64_MAX ? { t, s: sig.subarray(8) } : null;
}

/** cosig.rs mldsa_message: the tlog-cosignature `cosigned_message` for ML-DSA-44. */
function mldsaMessage(cosigner, timestamp, origin, start, end, hash) {
  if (start > 0n && timestamp > 0n) return null;
  const c = utf8(cosigner);
  const o = utf8(origin);
  if (c.length === 0 || c.length > 255 || o.length === 0 || o.length > 255) return null;
  return concat(
    utf8("subtree/v1\n\0"),
    new Uint8Array([c.length]),
    c,
    u64be(timestamp),
    new Uint8Array([o.length]),
    o,
    u64be(start),
    u64be(end),
    hash,
  );
}

/** A note verifier (note.rs NoteVerifier) for a parsed key: verify(text, sigBytes) -> bool. */
function noteVerifier(k) {
  switch (k.type) {
    case "ed25519":
      return { key: k, verify: (text, sig) => ed25519Verify(k.publicKey, utf8(text), sig) };
    case "ml-dsa-44":
      return {
        key: k,
        verify(text, sig) {
          let c;
          try {
            c = parseCheckpoint(text);
          } catch {
            return false;
          }
          const ts = splitTimestamp(sig, MLDSA44_SIGNATURE_LEN);
          if (!ts) return false;
          const m = mldsaMessage(k.name, ts.t, c.origin, 0n, c.size, c.root);
          return m !== null && mldsa44Verify(k.publicKey, m, ts.s);
        },
      };
    case "ed25519-cosignature":
      return {
        key: k,
        verify(text, sig) {
          const ts = splitTimestamp(sig, 64);
          if (!ts) return false;
          try {
            parseCheckpoint(text);
          } catch {
            return false;
          }
          const m = utf8(`cosignature/v1\ntime ${ts.t}\n${text}`);
          return ed25519Verify(k.publicKey, m, ts.s);
        },
      };
    default:
      throw new Error("unknown key type");
  }
}

// ---------------------------------------------------------------------------------------------
// Signed notes (note.rs open)

class NoteError extends Error {
  constructor(kind, message, extra = {}) {
    super(message);
    this.kind = kind;
    Object.assign(this, extra);
  }
}

/**
 * note.rs `open`: parses a signed note and verifies the signatures of known keys. Unknown keys
 * are ignored, a known key's bad signature rejects the note, and at least one must verify.
 * Returns { text, sigs, unverified, lines }; throws NoteError.
 */
function openNote(s, verifiers) {
  const lines = [];
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x20 && c !== 0x0a) throw new NoteError("malformed", "malformed note", { lines });
  }
  const split = s.lastIndexOf("\n\n");
  if (split < 0) throw new NoteError("malformed", "malformed note", { lines });
  const text = s.slice(0, split + 1);
  let sigs = s.slice(split + 2);
  if (sigs === "" || !sigs.endsWith("\n")) throw new NoteError("malformed", "malformed note", { lines });
  const note = { text, sigs: [], unverified: [], lines };
  const seen = new Set();
  const seenUnverified = new Set();
  let count = 0;
  while (sigs !== "") {
    const i = sigs.indexOf("\n");
    const line = sigs.slice(0, i);
    sigs = sigs.slice(i + 1);
    if (!line.startsWith("\u2014 ")) throw new NoteError("malformed", "malformed note", { lines });
    const rest = line.slice(2);
    const sp = rest.indexOf(" ");
    const name = sp < 0 ? rest : rest.slice(0, sp);
    const b64 = sp < 0 ? "" : rest.slice(sp + 1);
    const raw = b64decode(b64);
    if (raw === null || !isValidName(name) || b64 === "" || raw.length < 5)
      throw new NoteError("malformed", "malformed note", { lines });
    count++;
    if (count > MAX_SIGNATURES) throw new NoteError("malformed", "malformed note", { lines });
    const id = readU32(raw, 0);
    const sig = { name, keyId: id, keyIdHex: idHex(id), base64: b64, bytes: raw.subarray(4) };
    lines.push(sig);
    // Verifiers::find: (name, key ID) must name at most one known key.
    let v = null;
    for (const x of verifiers) {
      if (x.key.name === name && x.key.keyId === id) {
        if (v !== null)
          throw new NoteError("ambiguous", `ambiguous key ${name}+${idHex(id)}`, { name, id, lines });
        v = x;
      }
    }
    if (v === null) {
      if (!seenUnverified.has(rest)) {
        seenUnverified.add(rest);
        note.unverified.push(sig);
      }
      continue;
    }
    const k = `${name}\n${id}`;
    if (seen.has(k)) continue;
    seen.add(k);
    if (!v.verify(text, sig.bytes))
      throw new NoteError("invalid", `invalid signature for key ${name}+${idHex(id)}`, {
        name,
        id,
        key: v.key,
        lines,
      });
    note.sigs.push({ ...sig, key: v.key });
  }
  if (note.sigs.length === 0)
    throw new NoteError("none", "note has no verifiable signatures", { lines, note });
  return note;
}

// ---------------------------------------------------------------------------------------------
// Checkpoints (checkpoint.rs) and the policy (policy.rs)

class CheckpointError extends Error {}

/** checkpoint.rs Checkpoint::parse: origin, tree size, root hash, extension lines. */
function parseCheckpoint(text) {
  const bad = (m) => new CheckpointError(m);
  if (!text.endsWith("\n")) throw bad("text must end with a newline");
  const lines = text.slice(0, -1).split("\n");
  const origin = lines[0];
  if (origin === undefined || origin === "") throw bad("empty origin");
  const sizeS = lines[1];
  if (sizeS === undefined) throw bad("missing tree size");
  const size = parseU64(sizeS);
  if (size === null) throw bad("tree size must be decimal without leading zeros");
  if (size === "range") throw bad("tree size out of range");
  const hashS = lines[2];
  if (hashS === undefined) throw bad("missing root hash");
  const root = b64decode(hashS);
  if (root === null) throw bad("root hash is not base64");
  if (root.length !== 32) throw bad("root hash must be 32 bytes");
  const extensions = lines.slice(3);
  if (extensions.some((e) => e === "")) throw bad("extension lines must be non-empty");
  return { origin, size, root, rootBase64: hashS, extensions };
}

const who = (s) => `${s.name}+${s.keyIdHex}`;
const signedBy = (lines) =>
  lines.length === 0 ? "no signatures" : `signed by: ${[...new Set(lines.map(who))].join(", ")}`;

class Failure extends Error {
  constructor(step, message) {
    super(message);
    this.step = step;
  }
}

/** policy.rs verify_checkpoint, with plain-words errors. */
function verifyCheckpoint(note, ed, pq, classicalOnly) {
  const vs = [noteVerifier(ed), noteVerifier(pq)];
  let n;
  try {
    n = openNote(note, vs);
  } catch (e) {
    if (!(e instanceof NoteError)) throw e;
    switch (e.kind) {
      case "none":
        throw new Failure(
          "checkpoint",
          `The checkpoint is not signed by any key you pinned (${signedBy(e.lines)}; you pinned ${ed.name}+${ed.keyIdHex} and ${pq.name}+${pq.keyIdHex})`,
        );
      case "invalid":
        throw new Failure(
          "checkpoint",
          `The checkpoint's ${ALG[e.key.typeByte]} signature by ${e.name}+${idHex(e.id)} does not verify: the checkpoint or its signature was altered`,
        );
      case "ambiguous":
        throw new Failure("checkpoint", `Two pinned keys are both ${e.name}+${idHex(e.id)}`);
      default:
        throw new Failure(
          "checkpoint",
          "The checkpoint is not a well-formed signed note (C2SP signed-note): its text, blank line or signature lines are malformed",
        );
    }
  }
  const sigOf = (k) => n.sigs.find((s) => s.name === k.name && s.keyId === k.keyId);
  const edSig = sigOf(ed);
  const pqSig = sigOf(pq);
  if (!edSig)
    throw new Failure(
      "checkpoint",
      `The checkpoint is missing the log's Ed25519 signature (by ${ed.name}+${ed.keyIdHex}; ${signedBy(n.lines)})`,
    );
  if (!classicalOnly && !pqSig)
    throw new Failure(
      "checkpoint",
      `The checkpoint is missing the log's ML-DSA-44 signature (by ${pq.name}+${pq.keyIdHex}; ${signedBy(n.lines)}); both the Ed25519 and the ML-DSA-44 signature are required, or an attacker could strip the post-quantum one`,
    );
  let cp;
  try {
    cp = parseCheckpoint(n.text);
  } catch (e) {
    if (!(e instanceof CheckpointError)) throw e;
    throw new Failure("checkpoint", `The checkpoint's body is malformed (C2SP tlog-checkpoint): ${e.message}`);
  }
  if (cp.origin !== ed.name)
    throw new Failure(
      "checkpoint",
      `The checkpoint is for the log ${JSON.stringify(cp.origin)}, not for the log whose keys you pinned (${JSON.stringify(ed.name)})`,
    );
  return { note: n, cp, edSig, pqSig };
}

// ---------------------------------------------------------------------------------------------
// Merkle trees (merkle.rs over tlog_tiles, RFC 9162 section 2.1)

const leafHash = (data) => sha256(concat(new Uint8Array([0x00]), data));
const nodeHash = (l, r) => sha256(concat(new Uint8Array([0x01]), l, r));

/** The largest power of two strictly less than n (n >= 2). */
function largestPow2Below(n) {
  return 1n << BigInt((n - 1n).toString(2).length - 1);
}

/** merkle.rs inclusion_proof_len. */
function inclusionProofLen(size, index) {
  let lo = 0n;
  let hi = size;
  let n = 0;
  while (hi - lo > 1n) {
    const k = largestPow2Below(hi - lo);
    if (index < lo + k) hi = lo + k;
    else lo += k;
    n++;
  }
  return n;
}

/** tlog_tiles run_record_proof (Go sumdb/tlog runRecordProof). */
function runRecordProof(p, lo, hi, n, leaf) {
  if (!(lo <= n && n < hi)) throw new Error("bad math in run_record_proof");
  if (lo + 1n === hi) {
    if (p.length !== 0) return null;
    return leaf;
  }
  if (p.length === 0) return null;
  const k = largestPow2Below(hi - lo);
  const last = p[p.length - 1];
  const rest = p.slice(0, -1);
  if (n < lo + k) {
    const th = runRecordProof(rest, lo, lo + k, n, leaf);
    return th === null ? null : nodeHash(th, last);
  }
  const th = runRecordProof(rest, lo + k, hi, n, leaf);
  return th === null ? null : nodeHash(last, th);
}

/**
 * merkle.rs verify_inclusion: `leaf` (a leaf hash) is leaf `index` of the tree of `size` leaves
 * with root `root`. Proofs of the wrong length are refused before any hashing. Returns null when
 * it holds, else { kind, message }.
 */
function verifyInclusion(proof, size, root, index, leaf) {
  if (index >= size)
    return { kind: "range", message: `index ${index} is not in a tree of size ${size}` };
  const want = inclusionProofLen(size, index);
  if (proof.length !== want)
    return {
      kind: "length",
      want,
      message: `proof has ${proof.length} hashes; a proof for these sizes has exactly ${want}`,
    };
  const th = runRecordProof(proof, 0n, size, index, leaf);
  if (th === null || !bytesEqual(th, root)) return { kind: "invalid", message: "invalid proof" };
  return null;
}

// ---------------------------------------------------------------------------------------------
// Log entries (leaf.rs)

const LEAF_LENS = { 1: 162, 2: 134, 3: 58, 4: 50, 5: 58, 6: 18, 7: 82, 8: 58 };

/** leaf.rs Leaf::parse, for what a receipt needs: the kind, and a record leaf's fields. */
function parseLeaf(b) {
  if (b.length < 2) throw new Failure("record", `The log entry is ${b.length} bytes, too short for a log entry`);
  if (b[0] !== 1)
    throw new Failure("record", `The log entry has the unknown version ${b[0]} (this page reads version 1)`);
  const want = LEAF_LENS[b[1]];
  if (want === undefined) throw new Failure("record", `The log entry has the unknown kind ${b[1]}`);
  if (b.length !== want)
    throw new Failure("record", `The log entry is ${b.length} bytes; an entry of its kind has exactly ${want}`);
  if (b[1] !== 1) return { kind: b[1] };
  let at = 2;
  const take = (n) => b.slice(at, (at += n));
  const segment = readU64(b, at);
  at += 8;
  const keyIndex = readU32(b, at);
  at += 4;
  const counter = readU64(b, at);
  at += 8;
  const received = readU64(b, at);
  at += 8;
  const bodySha256 = take(32);
  const keyCommitment = take(32);
  const spanRoot = take(32);
  const spanCount = readU32(b, at);
  at += 4;
  const policyDigest = take(32);
  return { kind: 1, segment, keyIndex, counter, received, bodySha256, keyCommitment, spanRoot, spanCount, policyDigest };
}

// ---------------------------------------------------------------------------------------------
// Span commitments (commit.rs)

const FIELD_OTHER = 0x2f;

function splitName(name) {
  for (const p of ["attributes/", "events/", "links/"]) {
    if (name.startsWith(p)) return [p, name.slice(p.length)];
  }
  return [name, ""];
}

/** commit.rs write_field_header + value: `tag || salt || name part || value`. */
function fieldHash(salt, name, value) {
  const [prefix, rest] = splitName(name);
  const fixed = (tag) => [new Uint8Array([tag]), salt];
  let head = null;
  const index = (tag) => {
    // Rust: rest.parse::<u32>() and i.to_string() == rest, so only canonical decimals.
    if (/^(0|[1-9][0-9]{0,9})$/.test(rest) && Number(rest) <= 0xffffffff) {
      head = [...fixed(tag), u32be(Number(rest))];
      return true;
    }
    return false;
  };
  const restBytes = utf8(rest);
  if (rest === "" && prefix === "resource") head = fixed(0x20);
  else if (rest === "" && prefix === "scope") head = fixed(0x21);
  else if (rest === "" && prefix === "span") head = fixed(0x22);
  else if (rest === "" && prefix === "trace_state") head = fixed(0x23);
  else if (rest === "" && prefix === "name") head = fixed(0x24);
  else if (rest === "" && prefix === "status") head = fixed(0x25);
  else if (prefix === "attributes/" && restBytes.length <= 0xffff)
    head = [...fixed(0x26), u16be(restBytes.length), restBytes];
  else if (prefix === "events/" && index(0x27)) {
    /* head set by index() */
  } else if (prefix === "links/" && index(0x28)) {
    /* head set by index() */
  } else {
    const p = utf8(prefix);
    head = [...fixed(FIELD_OTHER), u32be(p.length + restBytes.length), p, restBytes];
  }
  return sha256(concat(...head, value));
}

/** commit.rs span_commitment: SHA-256(0x11 || u32 BE count || field hashes). */
function spanCommitment(hashes) {
  return sha256(concat(new Uint8Array([0x11]), u32be(hashes.length), ...hashes));
}

// ---------------------------------------------------------------------------------------------
// Receipts (receipt.rs)

const RECEIPT_KEYS = ["format", "trace_id", "span_id", "leaf", "span_index", "span_count", "span_path", "fields", "proof"];
const FIELD_KEYS = ["name", "value", "salt", "withheld"];

/** What serde (deny_unknown_fields, exact types) accepts as a Receipt; throws Failure. */
function checkShape(r) {
  const bad = (m) => new Failure("format", `The receipt is not in the expected format: ${m}`);
  if (r === null || typeof r !== "object" || Array.isArray(r)) throw bad("it is not a JSON object");
  for (const k of Object.keys(r)) if (!RECEIPT_KEYS.includes(k)) throw bad(`unknown field ${JSON.stringify(k)}`);
  for (const k of RECEIPT_KEYS) if (!(k in r)) throw bad(`missing field ${JSON.stringify(k)}`);
  const str = (v, what) => {
    if (typeof v !== "string") throw bad(`${what} is not a string`);
    if (LONE_SURROGATE.test(v)) throw bad(`${what} is not valid Unicode text`);
  };
  for (const k of ["format", "trace_id", "span_id", "leaf", "proof"]) str(r[k], k);
  for (const k of ["span_index", "span_count"]) {
    const v = r[k];
    if (typeof v !== "number" || !Number.isInteger(v) || v < 0) throw bad(`${k} is not a whole number`);
    if (!Number.isSafeInteger(v)) throw bad(`${k} is too large`);
  }
  if (!Array.isArray(r.span_path)) throw bad("span_path is not a list");
  r.span_path.forEach((h, i) => str(h, `span_path[${i}]`));
  if (!Array.isArray(r.fields)) throw bad("fields is not a list");
  r.fields.forEach((f, i) => {
    if (f === null || typeof f !== "object" || Array.isArray(f)) throw bad(`fields[${i}] is not an object`);
    for (const k of Object.keys(f)) if (!FIELD_KEYS.includes(k)) throw bad(`fields[${i}] has the unknown field ${JSON.stringify(k)}`);
    // serde: Option<String> with a default, so null is the same as absent.
    for (const k of FIELD_KEYS) if (f[k] !== undefined && f[k] !== null) str(f[k], `fields[${i}].${k}`);
  });
}

/** receipt.rs parse_proof: the C2SP tlog-proof. */
function parseProof(text) {
  const bad = (m) => new Failure("proof", `The log proof (C2SP tlog-proof) is malformed: ${m}`);
  let rest = text;
  const line = () => {
    const i = rest.indexOf("\n");
    if (i < 0) throw bad("it ends before its checkpoint");
    const l = rest.slice(0, i);
    rest = rest.slice(i + 1);
    return l;
  };
  if (line() !== PROOF_HEADER) throw bad(`it does not start with ${PROOF_HEADER}`);
  let l = line();
  let extra = null;
  if (l.startsWith("extra ")) {
    extra = b64decode(l.slice(6));
    if (extra === null) throw bad("its extra data is not base64");
    l = line();
  }
  if (!l.startsWith("index ")) throw bad("it has no index line");
  const index = parseU64(l.slice(6));
  if (index === null) throw bad("its index is not a decimal number without leading zeros");
  if (index === "range") throw bad("its index is out of range");
  const hashes = [];
  for (;;) {
    const h = line();
    if (h === "") break;
    const b = b64decode(h);
    if (b === null || b.length !== 32) throw bad("a hash line is not a base64 SHA-256 hash");
    if (hashes.length >= 64) throw bad("it has more than 64 hashes");
    hashes.push(b);
  }
  return { extra, index, hashes, checkpoint: rest };
}

/** receipt.rs ReceiptField::to_opening. */
function toOpening(f) {
  const has = (k) => f[k] !== undefined && f[k] !== null;
  if (has("name") && has("value") && has("salt") && !has("withheld")) {
    const value = b64decode(f.value);
    if (value === null) throw new Failure("fields", `The value of the field ${f.name} is not base64`);
    const salt = b64decode(f.salt);
    if (salt === null || salt.length !== 16)
      throw new Failure("fields", `The salt of the field ${f.name} is not 16 base64 bytes`);
    return { revealed: true, name: f.name, value, valueBase64: f.value, salt };
  }
  if (!has("name") && !has("value") && !has("salt") && has("withheld")) {
    const hash = b64decode(f.withheld);
    if (hash === null || hash.length !== 32)
      throw new Failure("fields", "A withheld field's hash is not 32 base64 bytes");
    return { revealed: false, hash };
  }
  throw new Failure("fields", "A field must have either a name, value and salt (revealed), or only a hash (withheld)");
}

/** The log's key pair the way policy.rs LogKeys::from_vkeys picks it: the last of each type. */
function pickKeys(keys, opts) {
  let ed = null;
  let pq = null;
  const witnesses = [];
  for (const k of keys) {
    if (k === null || typeof k !== "object" || typeof k.type !== "string")
      throw new Failure("keys", "The pinned keys are not verifier keys (use parseVerifierKeys)");
    if (k.type === "ed25519") ed = k;
    else if (k.type === "ml-dsa-44") pq = k;
    else if (k.type === "ed25519-cosignature") witnesses.push(k);
  }
  for (const k of opts.witnessKeys ?? []) {
    if (k?.type !== "ed25519-cosignature")
      throw new Failure("keys", `${k?.vkey ?? "A witness key"} is not a witness (Ed25519 cosignature, type 0x04) key`);
    witnesses.push(k);
  }
  if (!ed || !pq) {
    const have = ed ? `only the Ed25519 key ${ed.name}+${ed.keyIdHex}` : pq ? `only the ML-DSA-44 key ${pq.name}+${pq.keyIdHex}` : "neither";
    throw new Failure(
      "keys",
      keys.length === 0 && witnesses.length === 0
        ? "No verifier keys are pinned: paste the log's two keys (tracevault log keys prints them)"
        : `You pinned ${have} of the log's keys; both the log's Ed25519 (type 0x01) and ML-DSA-44 (type 0x06) verifier keys are needed (tracevault log keys prints them)`,
    );
  }
  // The same witness key pinned twice counts once.
  const seen = new Set();
  const uniq = witnesses.filter((w) => (seen.has(w.vkey) ? false : (seen.add(w.vkey), true)));
  return { ed, pq, witnesses: uniq };
}

/**
 * Verifies a span receipt in the page, with nothing but pinned verifier keys.
 *
 * The checks and their order are receipt.rs `verify` (the `tracevault verify-receipt` CLI):
 * format, proof syntax, checkpoint signatures under the policy (both Ed25519 and ML-DSA-44 unless
 * `opts.classicalOnly`), checkpoint body and origin, the Merkle inclusion of the log entry, the
 * record leaf, the span count, the field openings, the span path to the record's span root, and
 * the committed trace and span ids. After the checkpoint, the cosignatures of pinned witness keys
 * (type 0x04 keys in `keys` or `opts.witnessKeys`) are verified; `opts.requiredWitnesses` (default
 * 0) of them must be present.
 *
 * Never throws for a bad receipt: returns ok false with `error` in plain words.
 *
 * @param {object|string} receipt one receipt (parsed JSON, or its JSON text)
 * @param {Array} keys from parseVerifierKeys
 * @param {{classicalOnly?: boolean, witnessKeys?: Array, requiredWitnesses?: number}} [opts]
 * @returns {Promise<{ok: boolean, steps: Array<{id: string, ok: boolean, text: string}>,
 *   error: string|null, facts: object}>}
 */
export async function verifyReceipt(receipt, keys, opts = {}) {
  const steps = [];
  const facts = {
    origin: null,
    treeSize: null,
    rootBase64: null,
    index: null,
    traceId: null,
    spanId: null,
    spanIndex: null,
    spanCount: null,
    receivedUnixNanos: null,
    revealed: [],
    withheld: 0,
    witnesses: [],
    unpinnedSignatures: [],
    classicalOnly: !!opts?.classicalOnly,
  };
  const step = (id, text) => steps.push({ id, ok: true, text });
  try {
    opts = opts ?? {};
    const classicalOnly = !!opts.classicalOnly;
    if (typeof keys === "string") {
      try {
        keys = parseVerifierKeys(keys);
      } catch (e) {
        throw new Failure("keys", e.message);
      }
    }
    if (!Array.isArray(keys)) throw new Failure("keys", "The pinned keys are not a list of verifier keys");
    let { ed, pq, witnesses } = pickKeys(keys, opts);
    const required = opts.requiredWitnesses ?? 0;
    if (!Number.isInteger(required) || required < 0)
      throw new Failure("keys", "requiredWitnesses must be a whole number");
    if (required > witnesses.length)
      throw new Failure(
        "keys",
        `${required} witness cosignatures are required but only ${witnesses.length} witness keys are pinned`,
      );

    let r = receipt;
    if (typeof r === "string") {
      try {
        r = JSON.parse(r);
      } catch {
        throw new Failure("format", "The receipt is not JSON");
      }
    }
    checkShape(r);
    facts.traceId = r.trace_id;
    facts.spanId = r.span_id;
    facts.spanIndex = r.span_index;
    facts.spanCount = r.span_count;
    if (r.format !== FORMAT)
      throw new Failure("format", `This is not a tracevault span receipt (format ${JSON.stringify(r.format)}; expected ${FORMAT})`);

    const proof = parseProof(r.proof);
    // A cluster node's log: its origin is `<name>/<node>` for the name of the pinned keys, which
    // verify it under that name (as `tracevault verify-receipt` does).
    const origin = proof.checkpoint.slice(0, Math.max(0, proof.checkpoint.indexOf("\n")));
    const node = origin.startsWith(`${ed.name}/`) ? origin.slice(ed.name.length + 1) : null;
    if (node !== null && pq.name === ed.name && /^[a-z0-9._-]{1,63}$/.test(node)) {
      ed = nodeKey(ed, node);
      pq = nodeKey(pq, node);
      step("keys", `The log ${origin} is the log of node ${node} of the cluster whose keys you pinned`);
    }

    // The checkpoint and the policy.
    const v = verifyCheckpoint(proof.checkpoint, ed, pq, classicalOnly);
    facts.origin = v.cp.origin;
    facts.treeSize = num(v.cp.size);
    facts.rootBase64 = v.cp.rootBase64;
    step("checkpoint-ed25519", `The checkpoint is signed by ${ed.name} with Ed25519 (key ${ed.keyIdHex}, pinned)`);
    if (v.pqSig) {
      const t = splitTimestamp(v.pqSig.bytes, MLDSA44_SIGNATURE_LEN).t;
      step("checkpoint-mldsa", `…and with ML-DSA-44 (key ${pq.keyIdHex}, pinned; signed at ${timeText(t)})`);
    } else {
      step(
        "checkpoint-mldsa",
        "It has no ML-DSA-44 signature: accepted only because classical-only verification was asked for (an attacker may have stripped the post-quantum signature)",
      );
    }
    step("checkpoint", `The checkpoint is for the log ${v.cp.origin}: tree size ${v.cp.size}, root ${v.cp.rootBase64}`);

    // Witness cosignatures (not part of the Rust receipt check).
    const pinnedW = new Set(witnesses.map((w) => `${w.name}\n${w.keyId}`));
    facts.unpinnedSignatures = v.note.unverified
      .filter((s) => !pinnedW.has(`${s.name}\n${s.keyId}`))
      .map((s) => ({ name: s.name, keyId: s.keyIdHex }));
    let cosigned = [];
    if (witnesses.length > 0) {
      try {
        cosigned = openNote(proof.checkpoint, witnesses.map(noteVerifier)).sigs;
      } catch (e) {
        if (!(e instanceof NoteError)) throw e;
        if (e.kind === "invalid")
          throw new Failure(
            "witness",
            `The cosignature of the witness ${e.name} (key ${idHex(e.id)}) does not verify: the checkpoint or the cosignature was altered`,
          );
        if (e.kind !== "none") throw new Failure("witness", e.message);
      }
    }
    for (const w of witnesses) {
      const s = cosigned.find((x) => x.name === w.name && x.keyId === w.keyId);
      const t = s ? readU64(s.bytes, 0) : null;
      facts.witnesses.push({
        name: w.name,
        keyId: w.keyIdHex,
        cosigned: !!s,
        timestamp: t === null ? null : num(t),
      });
      if (s) step("witness", `Witness ${w.name} cosigned it (key ${w.keyIdHex}, pinned; timestamp ${timeText(t)})`);
      else step("witness", `No cosignature from the witness ${w.name} (key ${w.keyIdHex}, pinned)`);
    }
    if (cosigned.length < required)
      throw new Failure(
        "witness",
        `Only ${cosigned.length} of the ${witnesses.length} pinned witnesses cosigned the checkpoint; ${required} are required`,
      );
    if (witnesses.length === 0 && facts.unpinnedSignatures.length === 0) step("witness", "No witness cosignature");
    if (facts.unpinnedSignatures.length > 0)
      step(
        "witness",
        `Not checked: ${facts.unpinnedSignatures.length === 1 ? "a signature" : `${facts.unpinnedSignatures.length} signatures`} by keys you did not pin (${facts.unpinnedSignatures.map((s) => `${s.name}+${s.keyId}`).join(", ")})`,
      );

    // The log entry and its inclusion.
    const leaf = b64decode(r.leaf);
    if (leaf === null) throw new Failure("inclusion", "The log entry (leaf) is not base64");
    facts.index = num(proof.index);
    const bad = verifyInclusion(proof.hashes, v.cp.size, v.cp.root, proof.index, leafHash(leaf));
    if (bad) {
      const what = {
        range: `The proof's index ${proof.index} is not in the checkpoint's tree of size ${v.cp.size}`,
        length: `The Merkle inclusion proof has ${proof.hashes.length} hashes; a proof for index ${proof.index} in a tree of size ${v.cp.size} has exactly ${bad.want}`,
        invalid: "The Merkle inclusion proof does not lead to the checkpoint's root",
      }[bad.kind];
      throw new Failure("inclusion", `${what}: the span is not proven to be in the log`);
    }
    step("inclusion", `The log entry is at index ${proof.index} of the tree of size ${v.cp.size} (Merkle inclusion proof, RFC 6962)`);

    const rec = parseLeaf(leaf);
    if (rec.kind !== 1) throw new Failure("record", "The log entry is not a committed record's entry");
    facts.receivedUnixNanos = rec.received.toString();
    if (r.span_count !== rec.spanCount)
      throw new Failure("record", `The receipt says the record has ${r.span_count} spans; its log entry says ${rec.spanCount}`);
    step(
      "record",
      `The entry commits a record of ${rec.spanCount} span${rec.spanCount === 1 ? "" : "s"}, received at ${nanosText(rec.received)}`,
    );

    const openings = r.fields.map(toOpening);
    const path = r.span_path.map((h) => {
      const b = b64decode(h);
      if (b === null || b.length !== 32) throw new Failure("span", "A span path hash is not 32 base64 bytes");
      return b;
    });
    const c = spanCommitment(openings.map((o) => (o.revealed ? fieldHash(o.salt, o.name, o.value) : o.hash)));
    const sbad = verifyInclusion(path, BigInt(r.span_count), rec.spanRoot, BigInt(r.span_index), leafHash(c));
    if (sbad) {
      const what = {
        range: `span ${r.span_index} is not in a record of ${r.span_count} spans`,
        length: `the span path has ${path.length} hashes; a path to span ${r.span_index} of ${r.span_count} has exactly ${sbad.want}`,
        invalid: "they and the span path do not lead to the record's span root",
      }[sbad.kind];
      throw new Failure(
        "span",
        `The span's fields do not hash to span ${r.span_index} of the record: ${what}. A field, a salt or the span path was altered`,
      );
    }
    let withheld = 0;
    const revealed = [];
    for (const o of openings) {
      if (o.revealed) revealed.push(o);
      else withheld++;
    }
    facts.revealed = revealed.map((o) => ({ name: o.name, valueBase64: o.valueBase64 }));
    facts.withheld = withheld;
    step(
      "span",
      `The span's fields hash to span ${r.span_index} of ${r.span_count} of the record (${revealed.length} revealed, ${withheld} withheld)`,
    );

    // The ids shown for people must be the committed ones (the `span` field starts with them).
    const sf = revealed.find((o) => o.name === "span");
    if (!sf) throw new Failure("ids", "The receipt withholds the span field, which holds the trace and span ids");
    if (sf.value.length < 24) throw new Failure("ids", "The span field is too short to hold the trace and span ids");
    if (hexLower(sf.value.subarray(0, 16)) !== r.trace_id || hexLower(sf.value.subarray(16, 24)) !== r.span_id)
      throw new Failure(
        "ids",
        `The trace id ${r.trace_id} and span id ${r.span_id} are not the committed ones (committed: trace ${hexLower(sf.value.subarray(0, 16))}, span ${hexLower(sf.value.subarray(16, 24))})`,
      );
    step("ids", `The trace and span ids are the committed ones (trace ${r.trace_id}, span ${r.span_id})`);
    return { ok: true, steps, error: null, facts };
  } catch (e) {
    const error =
      e instanceof Failure
        ? e.message
        : `The receipt could not be checked: ${e && e.message ? e.message : String(e)}`;
    steps.push({ id: e instanceof Failure ? e.step : "error", ok: false, text: error });
    return { ok: false, steps, error, facts };
  }
}

/** Internals, exported for tests only. */
export const _internal = {
  b64decode,
  keyId,
  parseCheckpoint,
  openNote,
  noteVerifier,
  parseVkey,
  nodeKey,
  mldsaMessage,
  verifyInclusion,
  inclusionProofLen,
  leafHash,
  nodeHash,
  fieldHash,
  spanCommitment,
  parseProof,
};
