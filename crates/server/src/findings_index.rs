//! The findings index: what `GET /api/findings` answers from, instead of reading the trace of
//! every finding (a finding lives in the trace it is about, which may be large).
//!
//! The store stays the record: findings are sealed spans committed with their batch (see
//! [`crate::detection`]). The index holds the findings the server committed since it started,
//! added after each commit succeeded, and those stored earlier, read from the store once per
//! tenant on the tenant's first findings query (the seal decides what is a finding, as before).
//! Both additions are keyed by (event time, uid), so a finding added twice is held once.
//!
//! Memory is bounded: a tenant holds at most [`FindingsIndex::cap`] findings; past that the
//! oldest leave the index, and a page that reaches back past them is answered from the store.
//! Findings older than the tenant's retention period leave the index with their blocks; an
//! erased tenant's entry is dropped.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tv_detect::finding::Finding;
use tv_model::TenantId;

/// Findings one tenant keeps in memory by default (about 1–2 KB each).
pub const DEFAULT_CAP: usize = 100_000;

/// A page of findings, newest first.
#[derive(Debug, Default)]
pub struct Page {
    /// Matching findings, newest first (then by uid), at most `limit + 1` (one more than a page
    /// says that another follows).
    pub findings: Vec<Arc<Finding>>,
}

/// What a page asks for: findings with `start <= time <= end`, older than `before` (the
/// cursor: time, then uid), that `keep` accepts.
pub struct PageQuery<'a> {
    pub start: u64,
    pub end: u64,
    pub before: Option<(u64, &'a str)>,
    pub limit: usize,
    pub keep: &'a mut dyn FnMut(&Finding) -> bool,
}

#[derive(Default)]
struct Tenant {
    /// Read from the store (once; later findings are added as they are committed).
    loaded: bool,
    entries: BTreeMap<(u64, String), Arc<Finding>>,
    /// The index holds every finding at or after this time (0: all): older ones left it when
    /// the tenant passed the cap.
    complete_from: u64,
    /// Other nodes' blocks whose findings were read (by key commitment; see [`FindingsIndex::catch_up`]).
    peer_blocks: std::collections::HashSet<[u8; 32]>,
}

/// The findings of each tenant, by (event time, uid).
pub struct FindingsIndex {
    tenants: Mutex<HashMap<TenantId, Arc<Mutex<Tenant>>>>,
    /// Serializes the first read of a tenant's findings from the store.
    loading: Mutex<()>,
    cap: usize,
}

impl Default for FindingsIndex {
    fn default() -> Self {
        Self::new(DEFAULT_CAP)
    }
}

impl FindingsIndex {
    pub fn new(cap: usize) -> Self {
        FindingsIndex {
            tenants: Mutex::default(),
            loading: Mutex::default(),
            cap: cap.max(1),
        }
    }

    /// Findings one tenant keeps in memory.
    pub fn cap(&self) -> usize {
        self.cap
    }

    fn tenant(&self, tenant: &TenantId) -> Arc<Mutex<Tenant>> {
        self.tenants
            .lock()
            .expect("findings index lock")
            .entry(tenant.clone())
            .or_default()
            .clone()
    }

    /// Adds findings the store has just committed for `tenant`.
    pub fn add(&self, tenant: &TenantId, findings: impl IntoIterator<Item = Finding>) {
        let t = self.tenant(tenant);
        let mut t = t.lock().expect("findings index tenant lock");
        for f in findings {
            insert(&mut t, f, self.cap);
        }
    }

    /// Whether the tenant's stored findings were read into the index.
    pub fn is_loaded(&self, tenant: &TenantId) -> bool {
        self.tenant(tenant)
            .lock()
            .expect("findings index tenant lock")
            .loaded
    }

    /// Reads the tenant's stored findings into the index, once: `read` returns every finding
    /// the store holds for the tenant, including those of `peer_blocks` (other nodes' blocks as
    /// listed before the read; later ones are read by [`Self::catch_up`]). Findings committed
    /// meanwhile are added by [`Self::add`] and held once.
    pub fn load<E>(
        &self,
        tenant: &TenantId,
        peer_blocks: &[([u8; 32], u64)],
        read: impl FnOnce() -> Result<Vec<Finding>, E>,
    ) -> Result<(), E> {
        let _one = self.loading.lock().expect("findings index loading lock");
        if self.is_loaded(tenant) {
            return Ok(());
        }
        let stored = read()?;
        let t = self.tenant(tenant);
        let mut t = t.lock().expect("findings index tenant lock");
        for f in stored {
            insert(&mut t, f, self.cap);
        }
        t.loaded = true;
        t.peer_blocks = peer_blocks.iter().map(|(k, _)| *k).collect();
        Ok(())
    }

    /// Reads the findings of other nodes' blocks this index has not read (a cluster: their
    /// findings were committed there, not added here). `blocks` are the peers' blocks of the
    /// tenant as the store last listed them: (key commitment, earliest start); `read(since)`
    /// returns the stored findings from `since` on. Findings already held are held once.
    pub fn catch_up<E>(
        &self,
        tenant: &TenantId,
        blocks: &[([u8; 32], u64)],
        read: impl FnOnce(u64) -> Result<Vec<Finding>, E>,
    ) -> Result<(), E> {
        let _one = self.loading.lock().expect("findings index loading lock");
        let t = self.tenant(tenant);
        let since = {
            let t = t.lock().expect("findings index tenant lock");
            blocks
                .iter()
                .filter(|(k, _)| !t.peer_blocks.contains(k))
                .map(|(_, start)| *start)
                .min()
        };
        let Some(since) = since else {
            return Ok(());
        };
        let stored = read(since)?;
        let mut t = t.lock().expect("findings index tenant lock");
        for f in stored {
            insert(&mut t, f, self.cap);
        }
        t.peer_blocks = blocks.iter().map(|(k, _)| *k).collect();
        Ok(())
    }

    /// Drops the tenant's findings (the tenant was erased).
    pub fn forget(&self, tenant: &TenantId) {
        self.tenants
            .lock()
            .expect("findings index lock")
            .remove(tenant);
    }

    /// A page of the tenant's findings, or `None` when the page reaches back past what the index
    /// holds (the caller reads it from the store). Findings past `retention` (from `now`) leave
    /// the index first.
    pub fn page(
        &self,
        tenant: &TenantId,
        q: PageQuery<'_>,
        retention: Option<Duration>,
        now: u64,
    ) -> Option<Page> {
        let t = self.tenant(tenant);
        let mut t = t.lock().expect("findings index tenant lock");
        if let Some(keep) = retention {
            let cutoff = now.saturating_sub(keep.as_nanos() as u64);
            t.entries = t.entries.split_off(&(cutoff, String::new()));
        }
        let mut out = Vec::new();
        let mut take = |f: &Arc<Finding>, out: &mut Vec<Arc<Finding>>| {
            if (q.keep)(f) {
                out.push(f.clone());
            }
            out.len() > q.limit
        };
        // Newest first, and by ascending uid within one time. First the cursor's own time: the
        // uids after it.
        if let Some((time, uid)) = q.before
            && (q.start..=q.end).contains(&time)
        {
            let after = (Bound::Excluded((time, uid.to_owned())), Bound::Unbounded);
            for (_, f) in t
                .entries
                .range(after)
                .take_while(|((t2, _), _)| *t2 == time)
            {
                if take(f, &mut out) {
                    return Some(Page { findings: out });
                }
            }
        }
        // Then older times (before the cursor's, at most `end`).
        let below = match q.before {
            Some((time, _)) => Bound::Excluded((time.min(q.end.saturating_add(1)), String::new())),
            None => match q.end.checked_add(1) {
                Some(e) => Bound::Excluded((e, String::new())),
                None => Bound::Unbounded,
            },
        };
        let from = Bound::Included((q.start, String::new()));
        let in_range = match (&from, &below) {
            (Bound::Included(a), Bound::Excluded(b)) => a < b,
            _ => true,
        };
        if in_range {
            let mut times = t.entries.range((from, below)).rev().peekable();
            while let Some(((time, _), _)) = times.peek() {
                let time = *time;
                let mut same: Vec<&Arc<Finding>> = Vec::new();
                while let Some(((t2, _), f)) = times.peek() {
                    if *t2 != time {
                        break;
                    }
                    same.push(f);
                    times.next();
                }
                for f in same.into_iter().rev() {
                    if take(f, &mut out) {
                        return Some(Page { findings: out });
                    }
                }
            }
        }
        // Short of a full page: complete only if nothing older left the index.
        (t.complete_from == 0 || q.start >= t.complete_from).then_some(Page { findings: out })
    }
}

fn insert(t: &mut Tenant, f: Finding, cap: usize) {
    if f.time_unix_nano < t.complete_from {
        return;
    }
    t.entries
        .insert((f.time_unix_nano, f.uid.clone()), Arc::new(f));
    while t.entries.len() > cap {
        if let Some(((time, _), _)) = t.entries.pop_first() {
            t.complete_from = t.complete_from.max(time.saturating_add(1));
            // What is left at that time is incomplete too.
            while t
                .entries
                .first_key_value()
                .is_some_and(|((t2, _), _)| *t2 == time)
            {
                t.entries.pop_first();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finding(time: u64, uid: &str, rule: &str) -> Finding {
        serde_json::from_value(serde_json::json!({
            "uid": uid, "group": "g", "stage": "signature", "analytic_uid": rule,
            "title": "t", "message": "m", "severity": "high", "tenant": "acme",
            "time_unix_nano": time, "detected_unix_nano": time,
        }))
        .expect("a finding")
    }

    fn uids(p: &Page) -> Vec<&str> {
        p.findings.iter().map(|f| f.uid.as_str()).collect()
    }

    fn page<'a>(
        ix: &FindingsIndex,
        before: Option<(u64, &'a str)>,
        limit: usize,
        keep: &'a mut dyn FnMut(&Finding) -> bool,
    ) -> Option<Page> {
        page_of(ix, "acme", before, limit, keep, None)
    }

    /// A page of `tenant`'s findings at t = 5 s under `retention`.
    fn page_of<'a>(
        ix: &FindingsIndex,
        tenant: &str,
        before: Option<(u64, &'a str)>,
        limit: usize,
        keep: &'a mut dyn FnMut(&Finding) -> bool,
        retention: Option<Duration>,
    ) -> Option<Page> {
        let q = PageQuery {
            start: 0,
            end: u64::MAX,
            before,
            limit,
            keep,
        };
        ix.page(
            &TenantId::parse(tenant).unwrap(),
            q,
            retention,
            5_000_000_000,
        )
    }

    #[test]
    fn pages_are_newest_first_then_by_uid_and_a_cursor_continues_after_its_finding() {
        let ix = FindingsIndex::new(100);
        let acme = TenantId::parse("acme").unwrap();
        ix.add(
            &acme,
            [
                finding(10, "b", "r1"),
                finding(30, "a", "r1"),
                finding(20, "c", "r2"),
                finding(20, "a", "r1"),
                // Added twice (a retried commit, then the store read): held once.
                finding(10, "b", "r1"),
            ],
        );
        let mut all = |_: &Finding| true;
        let p = page(&ix, None, 10, &mut all).unwrap();
        assert_eq!(uids(&p), ["a", "a", "c", "b"]);
        assert_eq!(p.findings[1].time_unix_nano, 20);
        // Limit 2 returns one more (another page follows); the next starts after (20, "a").
        let p = page(&ix, None, 2, &mut all).unwrap();
        assert_eq!(uids(&p), ["a", "a", "c"]);
        let p = page(&ix, Some((20, "a")), 2, &mut all).unwrap();
        assert_eq!(uids(&p), ["c", "b"]);
        // Filters apply before the page is cut.
        let mut r1 = |f: &Finding| f.analytic_uid == "r1";
        let p = page(&ix, Some((30, "a")), 5, &mut r1).unwrap();
        assert_eq!(uids(&p), ["a", "b"]);
        // Another tenant sees none of them.
        let p = page_of(&ix, "globex", None, 10, &mut all, None).unwrap();
        assert!(p.findings.is_empty());
    }

    #[test]
    fn past_the_cap_older_pages_come_from_the_store_and_retention_drops_old_findings() {
        let ix = FindingsIndex::new(3);
        let acme = TenantId::parse("acme").unwrap();
        ix.add(&acme, (1..=5).map(|i| finding(i * 10, "u", "r")));
        let mut all = |_: &Finding| true;
        // The newest three are held: a page they fill is answered...
        let p = page(&ix, None, 2, &mut all).unwrap();
        assert_eq!(p.findings.len(), 3);
        // ...one that reaches past them is not (the caller reads the store).
        assert!(page(&ix, Some((40, "u")), 2, &mut all).is_none());
        // A finding older than what the index holds is not added back.
        ix.add(&acme, [finding(5, "old", "r")]);
        assert!(page(&ix, None, 10, &mut all).is_none());

        let ix = FindingsIndex::new(100);
        ix.add(&acme, (1..=5).map(|i| finding(i * 1_000_000_000, "u", "r")));
        // Retention of 2 s at t = 5 s: findings before 3 s are gone.
        let retention = Some(Duration::from_secs(2));
        let p = page_of(&ix, "acme", None, 10, &mut all, retention).unwrap();
        let times: Vec<u64> = p
            .findings
            .iter()
            .map(|f| f.time_unix_nano / 1_000_000_000)
            .collect();
        assert_eq!(times, [5, 4, 3]);
    }
}
