// Tests of the in-page receipt verifier (src/verify.js) against real receipts.
//
//   node tests/verify_receipts.mjs RECEIPTS_JSON VKEYS_TXT [WITNESS_VKEYS_TXT] [--full]
//
// RECEIPTS_JSON is what GET /api/traces/{id}/receipt returns ({"receipts": [...]}), VKEYS_TXT
// the output of `tracevault log keys`, WITNESS_VKEYS_TXT a witness's witness.vkey (then every
// receipt must carry that witness's cosignature). Asserts that every receipt verifies; that any
// one-character change of the leaf, proof, field values, salts, names, withheld hashes, span path
// and ids fails (many positions; --full for every position of every receipt); that the key
// policy holds (both log keys needed, both signatures required unless classicalOnly); and the
// Rust unit-test vectors of note.rs, cosig.rs, checkpoint.rs, merkle (RFC 9162) and commit.rs.
// With TRACEVAULT_BIN set to the built CLI, a sample of the same receipts and mutations is also
// checked with `tracevault verify-receipt`, which must give the same verdicts.
// Exits 1 with messages on any failure; prints a one-line summary.

import { readFileSync, writeFileSync, mkdtempSync, rmSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { spawnSync } from "node:child_process";
import { sha256 } from "@noble/hashes/sha2.js";
import { ed25519 } from "@noble/curves/ed25519.js";
import { ml_dsa44 } from "@noble/post-quantum/ml-dsa.js";
import { parseVerifierKeys, verifyReceipt, _internal as I } from "../src/verify.js";

const argv = process.argv.slice(2);
const full = argv.includes("--full");
const [receiptsPath, vkeysPath, witnessPath] = argv.filter((a) => !a.startsWith("--"));
if (!receiptsPath || !vkeysPath) {
  console.error("usage: node tests/verify_receipts.mjs RECEIPTS_JSON VKEYS_TXT [WITNESS_VKEYS_TXT] [--full]");
  process.exit(2);
}

let checks = 0;
const failures = [];
function check(cond, msg) {
  checks++;
  if (!cond) {
    failures.push(msg);
    if (failures.length >= 25) finish();
  }
}
function finish() {
  if (failures.length > 0) {
    for (const f of failures) console.error("FAIL " + f);
    console.error(`verify_receipts: ${failures.length} of ${checks} checks failed`);
    process.exit(1);
  }
}

const B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const b64 = (u8) => Buffer.from(u8).toString("base64");
const unb64 = (s) => new Uint8Array(Buffer.from(s, "base64"));
const hex = (u8) => Buffer.from(u8).toString("hex");
const unhex = (s) => new Uint8Array(Buffer.from(s, "hex"));
const utf8 = (s) => new TextEncoder().encode(s);
const clone = (x) => JSON.parse(JSON.stringify(x));
const u64be = (v) => {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, BigInt(v));
  return b;
};
const cat = (...a) => {
  const o = new Uint8Array(a.reduce((n, x) => n + x.length, 0));
  let i = 0;
  for (const x of a) o.set(x, i), (i += x.length);
  return o;
};

/** Another character in place of s[i]: the next base64 letter, the next digit, or something else. */
function flipChar(s, i) {
  const c = s[i];
  let d;
  const k = B64.indexOf(c);
  if (c === "=") d = "A";
  else if (/[0-9]/.test(c)) d = String((+c + 1) % 10);
  else if (k >= 0) d = B64[(k + 1) % 64];
  else if (c === "\n") d = " ";
  else if (c === " ") d = "_";
  else if (c.charCodeAt(0) > 127) d = "-";
  else d = c === "x" ? "y" : "x";
  return s.slice(0, i) + d + s.slice(i + 1);
}

/** `count` positions spread over a string of `len` characters, shifted by `seed`. */
function spread(len, count, seed = 0) {
  const out = new Set();
  for (let j = 0; j < Math.min(count, len); j++) out.add((Math.floor((j * len) / count) + seed * 7) % len);
  return [...out].sort((a, b) => a - b);
}

/** Positions 0, stride, 2 stride... (offset start), always including the last. */
function positions(len, stride, start = 0) {
  const out = [];
  for (let i = start % Math.max(stride, 1); i < len; i += stride) out.push(i);
  if (len > 0 && out[out.length - 1] !== len - 1) out.push(len - 1);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Inputs

const file = JSON.parse(readFileSync(receiptsPath, "utf8"));
const receipts = file.receipts;
check(Array.isArray(receipts) && receipts.length > 0, `${receiptsPath} holds no receipts`);
finish();
const vkeysText = readFileSync(vkeysPath, "utf8");
const keys = parseVerifierKeys(vkeysText);
const edKey = keys.find((k) => k.type === "ed25519");
const pqKey = keys.find((k) => k.type === "ml-dsa-44");
check(edKey && pqKey && keys.length === 2, `${vkeysPath} must hold the log's Ed25519 and ML-DSA-44 keys`);
finish();
const witnessKeys = witnessPath ? parseVerifierKeys(readFileSync(witnessPath, "utf8")) : [];
check(
  witnessKeys.every((k) => k.type === "ed25519-cosignature"),
  `${witnessPath} must hold witness (type 0x04) keys`,
);
const wopts = witnessKeys.length ? { witnessKeys, requiredWitnesses: witnessKeys.length } : {};

const tag = (r, i) => `receipt ${i} (span ${r.span_id})`;

// ---------------------------------------------------------------------------------------------
// 1. Every receipt verifies, and reports what it proves.

for (const [i, r] of receipts.entries()) {
  const res = await verifyReceipt(r, keys, wopts);
  check(res.ok && res.error === null, `${tag(r, i)} does not verify: ${res.error}`);
  if (!res.ok) continue;
  const ids = res.steps.map((s) => s.id);
  for (const id of ["checkpoint-ed25519", "checkpoint-mldsa", "checkpoint", "inclusion", "record", "span", "ids"])
    check(ids.includes(id), `${tag(r, i)}: no ${id} step`);
  check(res.steps.every((s) => s.ok && typeof s.text === "string" && s.text.length > 0), `${tag(r, i)}: a step is not ok`);
  // A cluster node's receipt: its log's origin is `<name>/<node>`, verified with the pinned
  // cluster keys under that name.
  const node = res.facts.origin?.startsWith(`${edKey.name}/`) ? res.facts.origin.slice(edKey.name.length + 1) : null;
  const [ek, pk] = node ? [I.nodeKey(edKey, node), I.nodeKey(pqKey, node)] : [edKey, pqKey];
  const stepText = (id) => res.steps.find((s) => s.id === id)?.text ?? "";
  if (node) check(ids.includes("keys"), `${tag(r, i)}: no step naming the cluster node`);
  check(stepText("checkpoint-ed25519").includes(`with Ed25519 (key ${ek.keyIdHex}, pinned)`), `${tag(r, i)}: Ed25519 step text`);
  check(stepText("checkpoint-mldsa").includes(`ML-DSA-44 (key ${pk.keyIdHex}, pinned`), `${tag(r, i)}: ML-DSA-44 step text`);
  const proofLines = r.proof.split("\n");
  check(res.facts.index === Number(proofLines[1].slice(6)), `${tag(r, i)}: facts.index`);
  check(res.facts.origin === ek.name, `${tag(r, i)}: facts.origin`);
  const cpLines = r.proof.slice(r.proof.indexOf("\n\n") + 2).split("\n");
  check(res.facts.treeSize === Number(cpLines[1]), `${tag(r, i)}: facts.treeSize`);
  const revealed = r.fields.filter((f) => f.name != null);
  check(
    JSON.stringify(res.facts.revealed) === JSON.stringify(revealed.map((f) => ({ name: f.name, valueBase64: f.value }))),
    `${tag(r, i)}: facts.revealed`,
  );
  check(res.facts.withheld === r.fields.length - revealed.length, `${tag(r, i)}: facts.withheld`);
  if (witnessKeys.length) {
    for (const w of witnessKeys) {
      const f = res.facts.witnesses.find((x) => x.name === w.name && x.keyId === w.keyIdHex);
      check(f && f.cosigned && Number.isInteger(f.timestamp) && f.timestamp > 0, `${tag(r, i)}: witness ${w.name} not reported as cosigned`);
      check(
        res.steps.some((s) => s.id === "witness" && s.text.startsWith(`Witness ${w.name} cosigned it`) && s.text.includes("timestamp")),
        `${tag(r, i)}: no "Witness ${w.name} cosigned it" step`,
      );
    }
  } else {
    check(res.steps.some((s) => s.id === "witness"), `${tag(r, i)}: no witness step`);
  }
  // The JSON text is accepted too.
  const again = await verifyReceipt(JSON.stringify(r), keys, wopts);
  check(again.ok, `${tag(r, i)} does not verify from its JSON text`);
}
finish();

// Without the witness keys pinned, a witnessed receipt still verifies and says the cosignature
// was not checked.
if (witnessKeys.length) {
  const res = await verifyReceipt(receipts[0], keys);
  check(res.ok, "a witnessed receipt does not verify without its witness key");
  check(res.steps.some((s) => s.text.startsWith("Not checked:") && s.text.includes(witnessKeys[0].name)), "the unpinned witness cosignature is not reported");
}

// ---------------------------------------------------------------------------------------------
// 2. One-character changes fail.

/** Where the signature lines of keys that are not checked sit in a proof (their changes may pass). */
function uncheckedRanges(proof, checkedKeys) {
  const out = [];
  const start = proof.lastIndexOf("\n\n") + 2;
  let at = start;
  for (const line of proof.slice(start).split("\n")) {
    const m = /^\u2014 (\S+) (\S+)$/.exec(line);
    if (m) {
      const raw = unb64(m[2]);
      const id = raw.length >= 4 ? new DataView(raw.buffer, raw.byteOffset).getUint32(0) : -1;
      if (!checkedKeys.some((k) => k.name === m[1] && k.keyId === id)) out.push([at, at + line.length]);
    }
    at += line.length + 1;
  }
  return out;
}

let mutations = 0;
let skipped = 0;
const cliSample = [];
const exhaustive = new Set([0, receipts.length - 1]);
const withheldAt = receipts.findIndex((r) => r.fields.some((f) => f.withheld != null));
if (withheldAt >= 0) exhaustive.add(withheldAt);

async function mustFail(r, what, opts = wopts) {
  mutations++;
  const res = await verifyReceipt(r, keys, opts);
  check(!res.ok && typeof res.error === "string" && res.error.length > 0, `${what} still verifies`);
  check(res.steps.length > 0 && res.steps[res.steps.length - 1].ok === false, `${what}: the last step is not the failure`);
  return res;
}

for (const [ri, r0] of receipts.entries()) {
  const all = full || exhaustive.has(ri);
  const t = tag(r0, ri);
  const sample = (what, r) => {
    if (cliSample.length < 400 && (mutations % (all ? 17 : 5) === 0)) cliSample.push({ what, r, ok: false });
  };

  // leaf
  for (const p of all ? positions(r0.leaf.length, 1) : spread(r0.leaf.length, 4, ri)) {
    const r = clone(r0);
    r.leaf = flipChar(r.leaf, p);
    sample(`${t} leaf[${p}]`, r);
    await mustFail(r, `${t} with leaf[${p}] changed`);
  }
  // proof
  const cliSkip = uncheckedRanges(r0.proof, keys);
  const skip = witnessKeys.length ? [] : cliSkip;
  for (const p of all ? positions(r0.proof.length, 7, ri) : spread(r0.proof.length, 24, ri)) {
    if (skip.some(([a, b]) => p >= a && p < b)) {
      skipped++;
      continue;
    }
    const r = clone(r0);
    r.proof = flipChar(r.proof, p);
    // The CLI checks no witness cosignature: compare with it only outside those lines.
    if (!cliSkip.some(([a, b]) => p >= a && p < b)) sample(`${t} proof[${p}]`, r);
    const res = await mustFail(r, `${t} with proof[${p}] (${JSON.stringify(r0.proof[p])}) changed`);
    void res;
  }
  // fields
  for (const [fi, f] of r0.fields.entries()) {
    const fields = [];
    if (f.name != null) {
      fields.push(["value", all ? 0 : 1], ["salt", all ? 0 : 1], ["name", all ? 0 : fi % 3 === 0 ? 1 : -1]);
    } else {
      fields.push(["withheld", all ? 0 : 2]);
    }
    for (const [k, stride] of fields) {
      if (stride < 0) continue;
      for (const p of stride === 0 ? positions(f[k].length, 1) : spread(f[k].length, stride, ri + fi)) {
        const r = clone(r0);
        r.fields[fi][k] = flipChar(f[k], p);
        sample(`${t} fields[${fi}].${k}[${p}]`, r);
        await mustFail(r, `${t} with fields[${fi}] (${f.name ?? "withheld"}).${k}[${p}] changed`);
      }
    }
    if (f.name != null && f.value === "") {
      const r = clone(r0);
      r.fields[fi].value = "AA==";
      await mustFail(r, `${t} with the empty fields[${fi}].value made non-empty`);
    }
  }
  // span path
  for (const [hi, h] of r0.span_path.entries()) {
    for (const p of all ? positions(h.length, 1) : spread(h.length, 1, ri + hi)) {
      const r = clone(r0);
      r.span_path[hi] = flipChar(h, p);
      sample(`${t} span_path[${hi}][${p}]`, r);
      await mustFail(r, `${t} with span_path[${hi}][${p}] changed`);
    }
  }
  // ids and format
  for (const k of ["trace_id", "span_id", "format"]) {
    for (const p of all ? positions(r0[k].length, 1) : spread(r0[k].length, 2, ri)) {
      const r = clone(r0);
      r[k] = flipChar(r0[k], p);
      sample(`${t} ${k}[${p}]`, r);
      await mustFail(r, `${t} with ${k}[${p}] changed`);
    }
  }
  {
    const r = clone(r0);
    r.trace_id = r0.trace_id.toUpperCase();
    if (r.trace_id !== r0.trace_id) await mustFail(r, `${t} with the trace id in upper case`);
  }
  // numbers and structure
  const structural = [
    ["span_index + 1", (r) => (r.span_index += 1)],
    ["span_count + 1", (r) => (r.span_count += 1)],
    ["span_count - 1", (r) => (r.span_count -= 1)],
    ["span_index as text", (r) => (r.span_index = String(r.span_index))],
    ["a field dropped", (r) => r.fields.pop()],
    ["two fields swapped", (r) => ([r.fields[0], r.fields[1]] = [r.fields[1], r.fields[0]])],
    ["a span path hash dropped", (r) => r.span_path.pop()],
    ["a span path hash added", (r) => r.span_path.push(r.span_path[0] ?? b64(new Uint8Array(32)))],
    ["an unknown key", (r) => (r.extra = 1)],
    ["a field with value and withheld", (r) => (r.fields[0].withheld = b64(new Uint8Array(32)))],
    ["a field with an unknown key", (r) => (r.fields[0].note = "x")],
    ["the span field withheld", (r) => {
      const i = r.fields.findIndex((f) => f.name === "span");
      r.fields[i] = { withheld: b64(new Uint8Array(32)) };
    }],
    ["a proof hash dropped", (r) => (r.proof = r.proof.replace(/\nindex (\d+)\n[^\n]+\n/, "\nindex $1\n"))],
    ["the proof's index + 1", (r) => (r.proof = r.proof.replace(/\nindex (\d+)\n/, (_, n) => `\nindex ${+n + 1}\n`))],
    ["the proof's index with a leading zero", (r) => (r.proof = r.proof.replace(/\nindex (\d+)\n/, "\nindex 0$1\n"))],
    ["the ML-DSA-44 line stripped", (r) => (r.proof = r.proof.split("\n").filter((l) => l.length < 1000).join("\n"))],
    // (A cluster node's line is signed under `<name>/<node>`.)
    ["the Ed25519 line stripped", (r) => (r.proof = r.proof.replace(new RegExp(`\u2014 ${edKey.name.replace(/[/.]/g, "\\$&")}(?:/[a-z0-9._-]+)? [A-Za-z0-9+/]{91}=\n`), ""))],
    ["a trailing line after the signatures", (r) => (r.proof += "trailing garbage\n")],
    ["not an object", () => null],
  ];
  for (const [what, f] of structural) {
    let r = clone(r0);
    const out = f(r);
    if (out === null) r = null;
    else if (JSON.stringify(r) === JSON.stringify(r0)) {
      check(what === "a proof hash dropped" || what === "a span path hash dropped", `${t}: the change "${what}" changed nothing`);
      continue;
    }
    await mustFail(r, `${t} with ${what}`);
  }
  // Numbers and structure stay the same for a receipt of a different span: the whole receipt
  // of another span with this span's ids must fail too.
  const other = receipts.find((x) => x.span_id !== r0.span_id);
  if (other) {
    const r = clone(other);
    r.span_id = r0.span_id;
    r.trace_id = r0.trace_id;
    if (JSON.stringify(r) !== JSON.stringify(r0)) await mustFail(r, `${t}: another span's receipt with these ids`);
  }
}
finish();

// The ML-DSA-44 line stripped passes only when classical-only verification is asked for.
{
  const r = clone(receipts[0]);
  r.proof = r.proof.split("\n").filter((l) => l.length < 1000).join("\n");
  const res = await verifyReceipt(r, keys, wopts);
  check(/missing the log's ML-DSA-44 signature/.test(res.error ?? ""), `stripped ML-DSA-44 line: wrong error ${res.error}`);
  const c = await verifyReceipt(r, keys, { ...wopts, classicalOnly: true });
  check(c.ok && c.steps.some((s) => s.id === "checkpoint-mldsa" && /classical-only/.test(s.text)), `stripped ML-DSA-44 line with classicalOnly: ${c.error}`);
  check((await verifyReceipt(receipts[0], keys, { ...wopts, classicalOnly: true })).ok, "classicalOnly refuses a receipt with both signatures");
}

// ---------------------------------------------------------------------------------------------
// 3. The keys.

{
  const r = receipts[0];
  const onlyEd = await verifyReceipt(r, [edKey], wopts);
  check(!onlyEd.ok && /both the log's Ed25519 \(type 0x01\) and ML-DSA-44 \(type 0x06\)/.test(onlyEd.error), `only the Ed25519 key: ${onlyEd.error}`);
  const onlyPq = await verifyReceipt(r, [pqKey], wopts);
  check(!onlyPq.ok && /both the log's Ed25519 \(type 0x01\) and ML-DSA-44 \(type 0x06\)/.test(onlyPq.error), `only the ML-DSA-44 key: ${onlyPq.error}`);
  const onlyEdClassical = await verifyReceipt(r, [edKey], { ...wopts, classicalOnly: true });
  check(!onlyEdClassical.ok, "only the Ed25519 key with classicalOnly verifies (the Rust CLI needs both keys)");
  const none = await verifyReceipt(r, [], {});
  check(!none.ok && /No verifier keys/.test(none.error), `empty key list: ${none.error}`);
  const noneText = await verifyReceipt(r, parseVerifierKeys("# nothing\n\n"), {});
  check(!noneText.ok, "keys parsed from comments only verify");
  check(!(await verifyReceipt(r, null)).ok, "null keys verify");
  check(!(await verifyReceipt(r, [{ type: "ed25519" }, "x"])).ok, "garbage keys verify");
  // Keys as text; order does not matter; comments and blank lines are ignored.
  const lines = vkeysText.trim().split("\n");
  const reversed = `# the log's keys\n\n  ${lines.reverse().join("\n\n")}  \n`;
  check((await verifyReceipt(r, reversed, wopts)).ok, "the keys as text (reversed, with comments) do not verify");
  // An unpinned pair: the keys of another log. (The receipt's signer: the pinned key, or for a
  // cluster node's receipt the same key under `<name>/<node>`.)
  const cpText = r.proof.slice(r.proof.indexOf("\n\n") + 2);
  const cpOrigin = cpText.slice(0, cpText.indexOf("\n"));
  const signer = cpOrigin.startsWith(`${edKey.name}/`) ? I.nodeKey(edKey, cpOrigin.slice(edKey.name.length + 1)) : edKey;
  const other = genLog(edKey.name);
  const wrong = await verifyReceipt(r, parseVerifierKeys(`${other.edVkey}\n${other.pqVkey}`), {});
  check(
    !wrong.ok && wrong.error.startsWith("The checkpoint is not signed by any key you pinned (signed by: ") && wrong.error.includes(`${signer.name}+${signer.keyIdHex}`),
    `another log's keys: ${wrong.error}`,
  );
  // The right Ed25519 key with another ML-DSA-44 key: the policy names the missing signature.
  const mixed = await verifyReceipt(r, parseVerifierKeys(`${edKey.vkey}\n${other.pqVkey}`), {});
  check(!mixed.ok && /missing the log's ML-DSA-44 signature/.test(mixed.error), `mixed keys: ${mixed.error}`);
  check((await verifyReceipt(r, parseVerifierKeys(`${edKey.vkey}\n${other.pqVkey}`), { classicalOnly: true })).ok, "mixed keys with classicalOnly");
  const mixed2 = await verifyReceipt(r, parseVerifierKeys(`${other.edVkey}\n${pqKey.vkey}`), {});
  check(!mixed2.ok && /missing the log's Ed25519 signature/.test(mixed2.error), `other Ed25519 key: ${mixed2.error}`);
  // A pinned witness that did not cosign.
  const w = genWitness("witness.example/absent");
  const absent = await verifyReceipt(r, keys, { witnessKeys: [w.key] });
  check(absent.ok && absent.steps.some((s) => s.text.startsWith("No cosignature from the witness witness.example/absent")), `absent witness: ${absent.error}`);
  const absentReq = await verifyReceipt(r, keys, { witnessKeys: [w.key], requiredWitnesses: 1 });
  check(!absentReq.ok && /required/.test(absentReq.error), `absent required witness: ${absentReq.error}`);
  check(!(await verifyReceipt(r, keys, { requiredWitnesses: 1 })).ok, "a required witness without witness keys");
}

// parseVerifierKeys: malformed lines are refused with the line number.
{
  const bad = [
    ["not a key", /Line 1 .*missing key ID/],
    [`${edKey.vkey}\nfoo+12345678`, /Line 2 .*missing key material/],
    [edKey.vkey.replace(/\+[0-9a-f]{8}\+/, "+00000000+"), /key ID does not match/],
    [edKey.vkey + "AAAA", /Ed25519 keys are 32 bytes|key ID does not match/],
    [edKey.vkey.slice(0, -1), /not base64|key ID/],
    ["rekor.sigstore.dev+12345678+THIS_IS_NOT_BASE64!", /not base64/],
    ["bad name+12345678+AQ==", /invalid key name/],
    ["x+1234567+AQ==", /8 hex digits/],
  ];
  for (const [text, want] of bad) {
    let msg = null;
    try {
      parseVerifierKeys(text);
    } catch (e) {
      msg = e.message;
    }
    check(msg !== null && want.test(msg), `parseVerifierKeys(${JSON.stringify(text.slice(0, 40))}) gave ${msg}`);
  }
  // note.rs: every proper prefix and every single-byte change of a good key is refused.
  const VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
  check(parseVerifierKeys(VKEY)[0].keyIdHex === "c74f20a3", "PeterNeumann key");
  for (let i = 0; i < VKEY.length; i++) {
    for (const s of [VKEY.slice(0, i), VKEY.slice(0, i) + String.fromCharCode(VKEY.charCodeAt(i) + 1) + VKEY.slice(i + 1)]) {
      let threw = false;
      try {
        parseVerifierKeys(s);
      } catch {
        threw = true;
      }
      check(threw || s.trim() === "", `vkey ${JSON.stringify(s)} accepted`);
    }
  }
  check(I.parseVkey("TEST+7997405c+AQcC+FTVKf0jlTdHDY3rbevmnKxxPjigCXlVtGe6RIr6").name === "TEST", "a vkey whose base64 holds '+'");
}

// ---------------------------------------------------------------------------------------------
// 4. The policy and cosignatures on checkpoints signed here with generated keys.

function vkeyOf(name, typeAndKey) {
  const id = sha256(cat(utf8(name), new Uint8Array([10]), typeAndKey)).slice(0, 4);
  return { line: `${name}+${hex(id)}+${b64(typeAndKey)}`, id };
}
function genLog(name) {
  const edSk = ed25519.utils.randomSecretKey();
  const edPk = ed25519.getPublicKey(edSk);
  const pq = ml_dsa44.keygen();
  const e = vkeyOf(name, cat(new Uint8Array([1]), edPk));
  const p = vkeyOf(name, cat(new Uint8Array([6]), pq.publicKey));
  return {
    name,
    edVkey: e.line,
    pqVkey: p.line,
    keys: parseVerifierKeys(`${e.line}\n${p.line}`),
    edLine: (text) => `\u2014 ${name} ${b64(cat(e.id, ed25519.sign(utf8(text), edSk)))}\n`,
    pqLine(text, t = 1796615000n) {
      const [origin, size, root] = text.split("\n");
      const n = utf8(name);
      const o = utf8(origin);
      const m = cat(utf8("subtree/v1\n\0"), new Uint8Array([n.length]), n, u64be(t), new Uint8Array([o.length]), o, u64be(0), u64be(BigInt(size)), unb64(root));
      return `\u2014 ${name} ${b64(cat(p.id, u64be(t), ml_dsa44.sign(m, pq.secretKey)))}\n`;
    },
  };
}
function genWitness(name) {
  const sk = ed25519.utils.randomSecretKey();
  const v = vkeyOf(name, cat(new Uint8Array([4]), ed25519.getPublicKey(sk)));
  return {
    key: parseVerifierKeys(v.line)[0],
    line: (text, t, tWritten = t) =>
      `\u2014 ${name} ${b64(cat(v.id, u64be(tWritten), ed25519.sign(utf8(`cosignature/v1\ntime ${t}\n${text}`), sk)))}\n`,
  };
}

{
  const r0 = receipts[0];
  const head = r0.proof.slice(0, r0.proof.indexOf("\n\n") + 2); // header, index, hashes, blank line
  const text = r0.proof.slice(head.length, r0.proof.indexOf("\n\n", head.length) + 1);
  const origin = text.split("\n")[0];
  const log = genLog(origin);
  const withNote = (sigLines, body = text) => ({ ...clone(r0), proof: head + body + "\n" + sigLines });
  const ed = log.edLine(text);
  const pq = log.pqLine(text);
  const w = genWitness("witness.example/w9");
  const T = 1727964367n;
  const cases = [
    ["both signatures", ed + pq, {}, true],
    ["both signatures, ML-DSA-44 first", pq + ed, {}, true],
    ["the Ed25519 line twice", ed + ed + pq, {}, true],
    ["Ed25519 only", ed, {}, /missing the log's ML-DSA-44 signature/],
    ["Ed25519 only, classical-only", ed, { classicalOnly: true }, true],
    ["ML-DSA-44 only", pq, {}, /missing the log's Ed25519 signature/],
    ["ML-DSA-44 only, classical-only", pq, { classicalOnly: true }, /missing the log's Ed25519 signature/],
    ["a bad Ed25519 signature", ed.replace(/.{6}\n$/, (s) => (s[0] === "A" ? "B" : "A") + s.slice(1)) + pq, {}, /Ed25519 signature by .* does not verify/],
    ["an ML-DSA-44 timestamp past i64", log.pqLine(text, 1n << 63n) + ed, {}, /ML-DSA-44 signature by .* does not verify/],
    ["an ML-DSA-44 signature over another size", log.pqLine(text.replace(/\n\d+\n/, "\n999\n")) + ed, {}, /ML-DSA-44 signature by .* does not verify/],
    ["101 signature lines", ed.repeat(100) + pq, {}, /not a well-formed signed note/],
    ["an unknown key's line", ed + pq + "\u2014 someone.example/x AAAAAAAAAA==\n", {}, true],
    ["an unknown key's malformed line", ed + pq + "\u2014 someone.example/x AAAA\n", {}, /not a well-formed signed note/],
    ["a witness cosignature, pinned", ed + pq + w.line(text, T), { witnessKeys: [w.key], requiredWitnesses: 1 }, true],
    ["a witness cosignature, not pinned", ed + pq + w.line(text, T), {}, true],
    ["a witness cosignature with another timestamp", ed + pq + w.line(text, T, T + 1n), { witnessKeys: [w.key] }, /cosignature of the witness witness.example\/w9 .* does not verify/],
    ["a witness cosignature over another checkpoint", ed + pq + w.line(text.replace(/\n\d+\n/, "\n999\n"), T), { witnessKeys: [w.key] }, /does not verify/],
  ];
  for (const [what, sigs, opts, want] of cases) {
    const res = await verifyReceipt(withNote(sigs), log.keys, opts);
    if (want === true) check(res.ok, `generated keys, ${what}: ${res.error}`);
    else check(!res.ok && want.test(res.error), `generated keys, ${what}: got ${res.error}`);
  }
  {
    const res = await verifyReceipt(withNote(ed + pq + w.line(text, T)), log.keys, { witnessKeys: [w.key] });
    const f = res.facts.witnesses[0];
    check(f && f.cosigned && f.timestamp === Number(T), `witness timestamp fact: ${JSON.stringify(f)}`);
    check(res.steps.some((s) => s.text === `Witness witness.example/w9 cosigned it (key ${w.key.keyIdHex}, pinned; timestamp 2024-10-03T14:06:07Z (unix ${T}))`), "witness step text");
  }
  // An extension line in the checkpoint is allowed (and covered by the signatures).
  const ext = text + "Extendo\n";
  check((await verifyReceipt(withNote(log.edLine(ext) + log.pqLine(ext), ext), log.keys)).ok, "a checkpoint with an extension line");
  const emptyExt = text + "\n";
  const r = await verifyReceipt(withNote(log.edLine(emptyExt) + log.pqLine(text), emptyExt), log.keys);
  check(!r.ok, "a checkpoint with an empty extension line");
  // Keys named for another origin: the signatures verify, the origin does not match.
  const other = genLog("other.example/log");
  const o = await verifyReceipt(withNote(other.edLine(text) + other.pqLine(text)), other.keys);
  check(!o.ok && /is for the log "tracevault\//.test(o.error) && /other\.example\/log/.test(o.error), `another origin: ${o.error}`);
}

// ---------------------------------------------------------------------------------------------
// 5. The Rust unit-test vectors.

{
  // note.rs (golang.org/x/mod/sumdb/note).
  const VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
  const ENOCH = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop";
  const TEXT = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n";
  const PETER = "\u2014 PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";
  const ENOCH_SIG = "\u2014 EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ=\n";
  const v = (k) => I.noteVerifier(I.parseVkey(k));
  const open = (msg, vs) => {
    try {
      return I.openNote(msg, vs);
    } catch (e) {
      return { error: e.message };
    }
  };
  const msg = `${TEXT}\n${PETER}${ENOCH_SIG}`;
  let n = open(msg, [v(VKEY)]);
  check(n.text === TEXT && n.sigs.length === 1 && n.unverified[0]?.name === "EnochRoot", "note: Peter verifies, Enoch unverified");
  check(open(msg, [v(VKEY), v(ENOCH)]).sigs?.length === 2, "note: both verify");
  check(open(msg, []).error === "note has no verifiable signatures", "note: no verifiers");
  check(open(`${TEXT}\n${ENOCH_SIG}`, [v(ENOCH), v(VKEY), v(ENOCH)]).error === "ambiguous key EnochRoot+af0cfe78", "note: ambiguous");
  check(!open(`${TEXT}\n${PETER}`, [v(ENOCH), v(VKEY), v(ENOCH)]).error, "note: ambiguity only for the keys used");
  check(open(`${TEXT}\n${PETER.repeat(101)}`, [v(VKEY)]).error === "malformed note", "note: 101 lines");
  check(open(`${TEXT}\n${PETER.slice(0, 60)}ABCD${PETER.slice(60)}`, [v(VKEY)]).error === "invalid signature for key PeterNeumann+c74f20a3", "note: tampered");
  n = open(`${TEXT}\n${PETER}${PETER}${ENOCH_SIG}${ENOCH_SIG}${ENOCH_SIG.slice(0, 60)}ABCD${ENOCH_SIG.slice(60)}`, [v(VKEY)]);
  check(n.sigs?.length === 1 && n.unverified?.length === 2, "note: duplicates");
  for (const bad of [
    TEXT,
    `${TEXT}\n`,
    `${TEXT}\n${PETER.slice(0, -1)}`,
    `\x01${TEXT}\n${PETER}`,
    `${TEXT}\n\u2014 Bad Name x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=`,
    `${TEXT}\n${PETER}Unexpected line.\n`,
  ])
    check(open(bad, [v(VKEY)]).error === "malformed note", `note: malformed ${JSON.stringify(bad.slice(-30))}`);
  const spec = open(
    "This is an example message.\n\n\u2014 example.com/foo Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=\n",
    [v("example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k")],
  );
  check(spec.text === "This is an example message.\n", "signed-note spec example");

  // cosig.rs: the Torchwood ML-DSA-44 subtree vector and the Ed25519 cosignature timestamp.
  const td = new URL("../../../tlog/testdata/", import.meta.url);
  if (existsSync(new URL("mldsa44-subtree-vkey.txt", td))) {
    const k = I.parseVkey(readFileSync(new URL("mldsa44-subtree-vkey.txt", td), "utf8").trim());
    check(k.keyIdHex === "7118e8f9" && k.type === "ml-dsa-44", "torchwood key");
    const line = readFileSync(new URL("mldsa44-subtree-sig.txt", td), "utf8").trim();
    const raw = unb64(line.split(" ").pop());
    const root = unb64("E7ERCtFloiK1fdb+B6/dLG0pM1nmIR0ETKBSauCjtVw=");
    const m = I.mldsaMessage("witness.example/w1", 0n, "example.com/log", 8n, 13n, root);
    check(
      hex(m) === "737562747265652f76310a00127769746e6573732e6578616d706c652f773100000000000000000f6578616d706c652e636f6d2f6c6f670000000000000008000000000000000d13b1110ad165a222b57dd6fe07afdd2c6d293359e6211d044ca0526ae0a3b55c",
      "ML-DSA-44 cosigned_message bytes",
    );
    check(ml_dsa44.verify(raw.slice(12), m, k.publicKey), "torchwood ML-DSA-44 subtree signature (pure, empty context)");
    const m2 = I.mldsaMessage("witness.example/w1", 0n, "example.com/log", 8n, 14n, root);
    check(!ml_dsa44.verify(raw.slice(12), m2, k.publicKey), "torchwood: another statement fails");
    check(I.mldsaMessage("w", 5n, "o", 1n, 2n, new Uint8Array(32)) === null, "start > 0 needs timestamp 0");
    check(I.mldsaMessage("w", 0n, "t".repeat(256), 0n, 2n, new Uint8Array(32)) === null, "origin over 255 bytes");
  }
  const ts = unb64("ZGhGuQAAAABm/qTPeyKXD+R2rzyQsxPiP8mXum7qq/iF0u4vanlqJyocWODBt97w9uL+8qT7S5gxEHWWOworDcFiEBYJXORmnFBOBA==");
  check(new DataView(ts.buffer).getBigUint64(4) === 1727964367n, "cosignature timestamp vector");

  // checkpoint.rs.
  const cp = I.parseCheckpoint("example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n");
  check(cp.origin === "example.com/behind-the-sofa" && cp.size === 20852163n, "checkpoint spec example");
  check(I.parseCheckpoint("test\n123\nf+7CoKgXKE/tNys9TTXcr/ad6U/K3xvznmzew9y6SP0=\nExtendo\n").extensions[0] === "Extendo", "checkpoint extension");
  const h = "CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=";
  for (const bad of [`o\n1\n${h}`, `\n1\n${h}\n`, `o\n01\n${h}\n`, `o\n-1\n${h}\n`, `o\n1\n${h}x\n`, "o\n1\nAAAA\n", `o\n1\n${h}\n\n`, "o\n1\n", `o\n99999999999999999999\n${h}\n`]) {
    let threw = false;
    try {
      I.parseCheckpoint(bad);
    } catch {
      threw = true;
    }
    check(threw, `checkpoint ${JSON.stringify(bad)} accepted`);
  }
  check(I.parseCheckpoint(`o\n0\n${h}\n`).size === 0n, "checkpoint of size 0");
  check(I.parseCheckpoint(`o\n18446744073709551615\n${h}\n`).size === 18446744073709551615n, "checkpoint of size u64::MAX");

  // receipt.rs tlog-proof parsing.
  const note = "example.com/fancylog\n109482\nsFodV/vSp5O8n9a8QpW6PRY97tfOSW5bsc2Xl/EQi08=\n\n\u2014 example.com/fancylog hI2DJw==\n";
  const proofText = `c2sp.org/tlog-proof@v1\nindex 73894\n${b64(new Uint8Array(32).fill(1))}\n${b64(new Uint8Array(32).fill(2))}\n\n${note}`;
  const p = I.parseProof(proofText);
  check(p.index === 73894n && p.hashes.length === 2 && p.checkpoint === note && p.extra === null, "tlog-proof parses");
  check(new TextDecoder().decode(I.parseProof(proofText.replace("index", "extra YWdl\nindex")).extra) === "age", "tlog-proof extra line");
  for (const bad of [
    proofText.replace("tlog-proof@v1", "tlog-proof@v2"),
    proofText.replace("index 73894", "index 073894"),
    proofText.replace("index 73894", "index -1"),
    proofText.replace("index 73894\n", ""),
    "c2sp.org/tlog-proof@v1\nindex 1\nnot base64!\n\n",
    "c2sp.org/tlog-proof@v1\nindex 1\n",
    `c2sp.org/tlog-proof@v1\nindex 1\n${`${b64(new Uint8Array(32))}\n`.repeat(65)}\n`,
    "c2sp.org/tlog-proof@v1\nindex 18446744073709551616\n\n",
  ]) {
    let threw = false;
    try {
      I.parseProof(bad);
    } catch {
      threw = true;
    }
    check(threw, `tlog-proof ${JSON.stringify(bad.slice(0, 50))} accepted`);
  }

  // Strict base64, as Rust's STANDARD engine.
  check(I.b64decode("AA==")?.length === 1 && I.b64decode("AAA=")?.length === 2 && I.b64decode("")?.length === 0, "base64: canonical forms");
  for (const bad of ["AB==", "AAB=", "AA=", "A===", "====", " AA=", "AA==\n", "A-==", "AA=A", "AAAAA"])
    check(I.b64decode(bad) === null, `base64 ${JSON.stringify(bad)} accepted`);

  // merkle.rs: RFC 9162 known answers (transparency-dev/merkle) and a reference tree.
  const leaves = ["", "00", "10", "2021", "3031", "40414243", "5051525354555657", "606162636465666768696a6b6c6d6e6f"].map(unhex);
  const ROOTS = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
  ];
  check(hex(I.leafHash(leaves[1])) === "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7", "leaf hash vector");
  const cases = [
    [0, 1, []],
    [0, 8, ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7", "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e", "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]],
    [5, 8, ["bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b", "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0", "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]],
    [2, 3, ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]],
    [1, 5, ["6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d", "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e", "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"]],
  ];
  for (const [index, size, proofHex] of cases) {
    const proof = proofHex.map(unhex);
    const leaf = I.leafHash(leaves[index]);
    const root = unhex(ROOTS[size]);
    const [bi, bs] = [BigInt(index), BigInt(size)];
    check(I.verifyInclusion(proof, bs, root, bi, leaf) === null, `RFC 9162 inclusion ${index}/${size}`);
    check(I.verifyInclusion(proof, bs, root, bi ^ 2n, leaf) !== null, `RFC 9162 ${index}/${size}: other index`);
    check(I.verifyInclusion(proof, bs * 2n, root, bi, leaf) !== null, `RFC 9162 ${index}/${size}: other size`);
    check(I.verifyInclusion(proof, bs, root, bi, I.leafHash(utf8("wrong"))) !== null, `RFC 9162 ${index}/${size}: other leaf`);
    check(I.verifyInclusion(proof, bs, unhex(ROOTS[0]), bi, leaf) !== null, `RFC 9162 ${index}/${size}: other root`);
    check(I.verifyInclusion([...proof, root], bs, root, bi, leaf)?.kind === "length", `RFC 9162 ${index}/${size}: longer proof`);
  }
  check(I.verifyInclusion([], 0n, unhex(ROOTS[0]), 0n, I.leafHash(leaves[0]))?.kind === "range", "inclusion in an empty tree");
  // A reference tree (RFC 9162 2.1.1 MTH and 2.1.3.1 PATH, written out here): every proof
  // verifies, and every one-bit change of it fails.
  const mth = (ls) => {
    if (ls.length === 1) return I.leafHash(ls[0]);
    let k = 1;
    while (k * 2 < ls.length) k *= 2;
    return I.nodeHash(mth(ls.slice(0, k)), mth(ls.slice(k)));
  };
  const path = (m, ls) => {
    if (ls.length === 1) return [];
    let k = 1;
    while (k * 2 < ls.length) k *= 2;
    return m < k ? [...path(m, ls.slice(0, k)), mth(ls.slice(k))] : [...path(m - k, ls.slice(k)), mth(ls.slice(0, k))];
  };
  const data = Array.from({ length: 40 }, (_, i) => utf8(`leaf ${i}`));
  for (let n = 1; n <= 40; n++) {
    const ls = data.slice(0, n);
    const root = mth(ls);
    for (let m = 0; m < n; m++) {
      const p = path(m, ls);
      check(I.inclusionProofLen(BigInt(n), BigInt(m)) === p.length, `proof length ${m}/${n}`);
      check(I.verifyInclusion(p, BigInt(n), root, BigInt(m), I.leafHash(ls[m])) === null, `reference proof ${m}/${n}`);
      if (p.length > 0) {
        const bad = p.map((x) => x.slice());
        bad[(m * 7) % bad.length][(m + n) % 32] ^= 1;
        check(I.verifyInclusion(bad, BigInt(n), root, BigInt(m), I.leafHash(ls[m])) !== null, `altered reference proof ${m}/${n}`);
      }
      if (n > 1) check(I.verifyInclusion(p, BigInt(n), root, BigInt((m + 1) % n), I.leafHash(ls[m])) !== null, `proof ${m}/${n} for another index`);
    }
  }

  // commit.rs: the name/value boundary and the field kinds are unambiguous.
  const s = new Uint8Array(16);
  const fh = (name, v) => hex(I.fieldHash(s, name, utf8(v)));
  check(fh("ab", "c") !== fh("a", "bc"), "field hash: name/value boundary");
  check(fh("attributes/ab", "c") !== fh("attributes/a", "bc"), "field hash: attribute key/value boundary");
  check(fh("name", "x") !== fh("status", "x"), "field hash: kinds");
  check(fh("events/1", "x") !== fh("links/1", "x"), "field hash: events and links");
  check(fh("events/01", "x") !== fh("events/1", "x") && fh("events/+1", "x") !== fh("events/1", "x"), "field hash: non-canonical indexes");
  // The documented layout, byte for byte.
  check(fh("attributes/k", "v") === hex(sha256(cat(new Uint8Array([0x26]), s, new Uint8Array([0, 1]), utf8("kv")))), "field hash: attribute layout");
  check(fh("events/3", "v") === hex(sha256(cat(new Uint8Array([0x27]), s, new Uint8Array([0, 0, 0, 3]), utf8("v")))), "field hash: event layout");
  check(fh("kind", "v") === hex(sha256(cat(new Uint8Array([0x2f]), s, new Uint8Array([0, 0, 0, 4]), utf8("kindv")))), "field hash: other layout");
  check(fh("span", "v") === hex(sha256(cat(new Uint8Array([0x22]), s, utf8("v")))), "field hash: span layout");
}

// ---------------------------------------------------------------------------------------------
// 6. Optionally: the same verdicts from the Rust CLI.

let cliRuns = 0;
const bin = process.env.TRACEVAULT_BIN;
if (bin) {
  const dir = mkdtempSync(join(tmpdir(), "tv-verify-"));
  const cliOk = (r, vk = keys) => {
    const f = join(dir, "r.json");
    writeFileSync(f, JSON.stringify(r));
    const p = spawnSync(bin, ["verify-receipt", f, ...vk.flatMap((k) => ["--vkey", k.vkey])], { encoding: "utf8" });
    cliRuns++;
    return p.status === 0;
  };
  for (const [i, r] of receipts.entries()) check(cliOk(r), `CLI: ${tag(r, i)} does not verify`);
  for (const s of cliSample) check(cliOk(s.r) === false, `CLI accepts ${s.what}, which the page refuses`);
  // Changes inside cosignature lines of keys that are not pinned: whatever the CLI says, the
  // page must say the same (the log's keys only).
  const r0 = receipts[0];
  for (const [a, b] of uncheckedRanges(r0.proof, keys)) {
    for (const p of positions(b - a, 11)) {
      const r = clone(r0);
      r.proof = flipChar(r.proof, a + p);
      const page = (await verifyReceipt(r, keys)).ok;
      check(cliOk(r) === page, `CLI and page disagree on an unpinned cosignature changed at ${a + p} (page: ${page})`);
    }
  }
  rmSync(dir, { recursive: true, force: true });
}

finish();
console.log(
  `verify_receipts: ok: ${checks} checks; ${receipts.length} receipts verified${witnessKeys.length ? ` with ${witnessKeys.length} witness cosignature${witnessKeys.length > 1 ? "s" : ""}` : ""}, ${mutations} one-change variants refused` +
    `${skipped ? ` (${skipped} positions in unpinned cosignature lines skipped)` : ""}${bin ? `, ${cliRuns} verdicts matched by the CLI` : ""}${full ? " (--full)" : ""}`,
);
