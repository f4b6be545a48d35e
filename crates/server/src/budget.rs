//! Memory budgets shared by every connection: the bytes of requests being read and decoded, and
//! the bytes of responses waiting for slow readers.
//!
//! A request takes a [`Ticket`] and grows it as it reads its body, decompresses and decodes
//! (each step asks for what it is about to hold, counted before it is allocated). When the
//! budget is spent, a request waits for room: that is flow control, and the client sees a slower
//! answer. Only past a bounded wait is it refused as transient (503 + Retry-After,
//! UNAVAILABLE); a request that alone needs more than the whole budget is refused as permanent
//! (413, INVALID_ARGUMENT). Everything a ticket holds returns to the budget when it is dropped.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::error::ApiError;

/// Budgets are counted in KiB so a large budget fits a semaphore's permit count.
const UNIT: usize = 1024;

/// One budget of bytes.
#[derive(Debug)]
pub struct Budget {
    /// What the budget is for, in refusal messages ("request decoding").
    what: &'static str,
    sem: Arc<Semaphore>,
    units: usize,
    wait: Duration,
}

/// Why a ticket could not grow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// More than the whole budget: it can never fit.
    TooLarge { what: &'static str, limit: usize },
    /// The budget stayed spent for the whole bounded wait.
    Busy {
        what: &'static str,
        limit: usize,
        waited: Duration,
    },
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refused::TooLarge { what, limit } => write!(
                f,
                "request needs more memory than the {} MiB the server gives all {what} together",
                limit / (1024 * 1024)
            ),
            Refused::Busy {
                what,
                limit,
                waited,
            } => write!(
                f,
                "the server's memory for {what} ({} MiB) stayed in use for {} s; retry later",
                limit / (1024 * 1024),
                waited.as_secs()
            ),
        }
    }
}

impl std::error::Error for Refused {}

impl From<Refused> for ApiError {
    fn from(r: Refused) -> Self {
        match r {
            Refused::TooLarge { .. } => ApiError::TooLarge(r.to_string()),
            Refused::Busy { .. } => ApiError::Unavailable(r.to_string()),
        }
    }
}

impl Budget {
    /// A budget of `bytes`; a request waits at most `wait` in all for room.
    pub fn new(what: &'static str, bytes: usize, wait: Duration) -> Arc<Self> {
        let units = bytes.div_ceil(UNIT).clamp(1, Semaphore::MAX_PERMITS);
        Arc::new(Budget {
            what,
            sem: Arc::new(Semaphore::new(units)),
            units,
            wait,
        })
    }

    /// The budget in bytes.
    pub fn limit(&self) -> usize {
        self.units * UNIT
    }

    /// Bytes held by tickets now.
    pub fn in_use(&self) -> usize {
        (self.units - self.sem.available_permits()) * UNIT
    }

    /// A ticket holding `bytes` now, or `None` when the budget has no room for them (no wait).
    /// More than the whole budget is counted as the whole budget.
    pub fn try_take(self: &Arc<Self>, bytes: usize) -> Option<Ticket> {
        let units = bytes.div_ceil(UNIT).min(self.units);
        let permit = if units == 0 {
            None
        } else {
            let n = u32::try_from(units).expect("units <= MAX_PERMITS < u32::MAX");
            Some(self.sem.clone().try_acquire_many_owned(n).ok()?)
        };
        Some(Ticket(Arc::new(TicketInner {
            budget: self.clone(),
            deadline: Instant::now(),
            state: Mutex::new(Held {
                permit,
                bytes,
                refused: None,
            }),
        })))
    }

    /// A ticket holding nothing yet; its bounded wait starts now.
    pub fn ticket(self: &Arc<Self>) -> Ticket {
        Ticket(Arc::new(TicketInner {
            budget: self.clone(),
            deadline: Instant::now() + self.wait,
            state: Mutex::new(Held {
                permit: None,
                bytes: 0,
                refused: None,
            }),
        }))
    }
}

/// What one request holds of a budget. Clones share it; the last one dropped gives it back.
#[derive(Clone, Debug)]
pub struct Ticket(Arc<TicketInner>);

#[derive(Debug)]
struct TicketInner {
    budget: Arc<Budget>,
    deadline: Instant,
    state: Mutex<Held>,
}

#[derive(Debug)]
struct Held {
    permit: Option<OwnedSemaphorePermit>,
    bytes: usize,
    refused: Option<Refused>,
}

impl Ticket {
    /// Grows the ticket by `more` bytes, waiting (until the ticket's deadline) for room.
    pub fn grow(&self, more: usize) -> impl Future<Output = Result<(), Refused>> + Send + 'static {
        let inner = self.0.clone();
        async move {
            let b = &inner.budget;
            let (want, have) = {
                let st = inner.state.lock().expect("ticket lock");
                let total = st.bytes.saturating_add(more);
                let have = st.permit.as_ref().map_or(0, |p| p.num_permits());
                (total.div_ceil(UNIT), have)
            };
            let refuse = |r: Refused| {
                inner.state.lock().expect("ticket lock").refused = Some(r.clone());
                Err(r)
            };
            if want > b.units {
                return refuse(Refused::TooLarge {
                    what: b.what,
                    limit: b.limit(),
                });
            }
            let delta = want.saturating_sub(have);
            if delta > 0 {
                let n = u32::try_from(delta).expect("want <= units <= MAX_PERMITS < u32::MAX");
                let acquired =
                    tokio::time::timeout_at(inner.deadline, b.sem.clone().acquire_many_owned(n))
                        .await;
                let permit = match acquired {
                    Ok(Ok(p)) => p,
                    // The semaphore is never closed; a timeout is the budget staying spent.
                    _ => {
                        return refuse(Refused::Busy {
                            what: b.what,
                            limit: b.limit(),
                            waited: b.wait,
                        });
                    }
                };
                let mut st = inner.state.lock().expect("ticket lock");
                match &mut st.permit {
                    Some(p) => p.merge(permit),
                    None => st.permit = Some(permit),
                }
            }
            inner.state.lock().expect("ticket lock").bytes += more;
            Ok(())
        }
    }

    /// Gives `bytes` of what the ticket holds back to the budget (what was counted for a buffer
    /// that is gone).
    pub fn release(&self, bytes: usize) {
        let mut st = self.0.state.lock().expect("ticket lock");
        st.bytes = st.bytes.saturating_sub(bytes);
        let keep = st.bytes.div_ceil(UNIT);
        if let Some(p) = &mut st.permit {
            let extra = p.num_permits().saturating_sub(keep);
            if extra > 0 {
                drop(p.split(extra));
            }
        }
    }

    /// Why the ticket last failed to grow, if it did.
    pub fn refused(&self) -> Option<Refused> {
        self.0.state.lock().expect("ticket lock").refused.clone()
    }

    /// Bytes the ticket holds.
    pub fn bytes(&self) -> usize {
        self.0.state.lock().expect("ticket lock").bytes
    }
}

type Growing = Pin<Box<dyn Future<Output = Result<(), Refused>> + Send>>;

/// A request body whose every data frame is counted into a [`Ticket`] before it is handed on:
/// a client cannot make the server hold more of its body than the budget allows.
pub struct Metered<B> {
    inner: B,
    ticket: Ticket,
    pending: Option<(Frame<Bytes>, Growing)>,
}

impl<B> Metered<B> {
    pub fn new(inner: B, ticket: Ticket) -> Self {
        Metered {
            inner,
            ticket,
            pending: None,
        }
    }
}

impl<B> Body for Metered<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        loop {
            if let Some((_, growing)) = &mut this.pending {
                let res = ready!(growing.as_mut().poll(cx));
                let (frame, _) = this.pending.take().expect("pending frame");
                return Poll::Ready(Some(match res {
                    Ok(()) => Ok(frame),
                    Err(r) => Err(Box::new(r)),
                }));
            }
            match ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
                Some(Ok(frame)) => {
                    let n = frame.data_ref().map_or(0, |d| d.len());
                    if n == 0 {
                        return Poll::Ready(Some(Ok(frame)));
                    }
                    let growing = Box::pin(this.ticket.grow(n));
                    this.pending = Some((frame, growing));
                }
                Some(Err(e)) => return Poll::Ready(Some(Err(e.into()))),
                None => return Poll::Ready(None),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.pending.is_none() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn tickets_wait_for_room_and_give_it_back() {
        let b = Budget::new("test", 10 * UNIT, Duration::from_secs(5));
        let t1 = b.ticket();
        t1.grow(8 * UNIT).await.unwrap();
        assert_eq!(b.in_use(), 8 * UNIT);
        let t2 = b.ticket();
        let waiting = tokio::spawn(t2.grow(4 * UNIT));
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            !waiting.is_finished(),
            "the second ticket must wait for room"
        );
        drop(t1);
        waiting.await.unwrap().unwrap();
        assert_eq!(b.in_use(), 4 * UNIT);
        drop(t2);
        assert_eq!(b.in_use(), 0);
    }

    #[tokio::test]
    async fn more_than_the_whole_budget_is_refused_at_once() {
        let b = Budget::new("request decoding", 4 * UNIT, Duration::from_secs(60));
        let t = b.ticket();
        let r = t.grow(5 * UNIT).await.unwrap_err();
        assert!(matches!(r, Refused::TooLarge { .. }));
        assert_eq!(t.refused(), Some(r));
        assert_eq!(b.in_use(), 0);
    }

    #[tokio::test]
    async fn a_spent_budget_refuses_after_the_bounded_wait() {
        let b = Budget::new("request decoding", 4 * UNIT, Duration::from_millis(200));
        let hog = b.ticket();
        hog.grow(4 * UNIT).await.unwrap();
        let t = b.ticket();
        let r = t.grow(UNIT).await.unwrap_err();
        assert!(matches!(r, Refused::Busy { .. }), "{r:?}");
        assert!(r.to_string().contains("retry later"));
        assert!(matches!(ApiError::from(r), ApiError::Unavailable(_)));
    }

    #[tokio::test]
    async fn released_bytes_return_to_the_budget() {
        let b = Budget::new("test", 100 * UNIT, Duration::from_secs(1));
        let t = b.ticket();
        t.grow(50 * UNIT).await.unwrap();
        t.release(40 * UNIT);
        assert_eq!(b.in_use(), 10 * UNIT);
        assert_eq!(t.bytes(), 10 * UNIT);
    }

    #[tokio::test]
    async fn growth_is_counted_once_per_byte() {
        let b = Budget::new("test", 100 * UNIT, Duration::from_secs(1));
        let t = b.ticket();
        for _ in 0..10 {
            t.grow(100).await.unwrap();
        }
        assert_eq!(t.bytes(), 1000);
        assert_eq!(b.in_use(), UNIT);
    }
}
