//! Completing what a resuming reader (SSE with `Last-Event-ID`, a long-poll) missed: the
//! document's actor answers from memory; what memory no longer holds is read from the
//! stored log here, off the actor; and when compaction has folded that part of the log
//! away, the reader gets the whole state instead.

use bytes::Bytes;

use crate::hub::command::{ApiError, Catchup, Command};
use crate::state::AppState;

/// `catchup` with its gap (if any) filled from the store, or replaced by the whole state.
pub async fn complete(state: &AppState, name: &str, catchup: Catchup) -> Result<Catchup, ApiError> {
    let Some(since) = catchup.log_after else {
        return Ok(catchup);
    };
    // The log must reach the first held update (or, with none held, the last update).
    let upto = catchup
        .updates
        .first()
        .map_or(catchup.last_seq + 1, |(seq, _)| *seq);
    if let Ok(Some(entries)) = state.registry.store().log_after(name, since).await {
        // `log_after` starts at `since + 1` without gaps.
        let mut updates: Vec<(u64, Bytes)> = entries
            .into_iter()
            .filter(|e| e.seq < upto)
            .map(|e| (e.seq, e.update))
            .collect();
        if updates.last().map_or(since, |(seq, _)| *seq) + 1 == upto {
            updates.extend(catchup.updates);
            return Ok(Catchup {
                updates,
                log_after: None,
                ..catchup
            });
        }
    }
    let whole = state
        .registry
        .request(name, |reply| Command::State { reply })
        .await?;
    Ok(Catchup {
        updates: Vec::new(),
        log_after: None,
        state: Some(whole),
        last_seq: catchup.last_seq,
    })
}

/// The highest sequence number a completed catch-up brings the reader to.
pub fn reached(catchup: &Catchup) -> u64 {
    let state = catchup.state.as_ref().map_or(0, |(seq, _)| *seq);
    let updates = catchup.updates.last().map_or(0, |(seq, _)| *seq);
    state.max(updates).max(catchup.last_seq)
}
