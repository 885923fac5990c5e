//! The live stream: server-sent events that keep the overview's counts and a task's
//! transitions current.
//!
//! Each browser gets a task of its own that follows the recorder's transitions. It
//! never holds a recorder lock between calls: it reads the counts through the public
//! API, at most every [`FLUSH`], when something changed. A subscriber that fell
//! behind the recorder's buffer is told so (`missed`) and the counts (and, for a
//! task's page, the task's phase) are read again, so a slow browser costs the
//! recorder nothing and still ends up right. The task ends when the browser goes
//! away (its next send fails) or within a [`TICK`] of the recorder's `close()`, so
//! that a graceful shutdown does not wait for open tabs.

use std::convert::Infallible;
use std::fmt::Write as _;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_tasks_recorder::{StateCounts, Transition};
use axum::extract::{Query, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::source::Source;
use crate::Inner;

/// How often changed counts are sent at most.
const FLUSH: Duration = Duration::from_millis(200);

/// How often the number of transitions of the last second is sent.
const TICK: Duration = Duration::from_secs(1);

/// The events a browser has not taken yet, before its task waits for it.
const BACKLOG: usize = 64;

/// The query of the stream: a task's page follows one id.
#[derive(Debug, serde::Deserialize)]
pub(crate) struct EventsQuery {
    id: Option<String>,
}

/// `GET /events`: `counts` (JSON of the counts per state) whenever they changed,
/// `rate` (transitions in the last second) every second, `missed` when the stream
/// fell behind; with `?id=`, also `phase` (the id's phase, as a JSON string) when the
/// stream starts and after it missed events, and `transition` (JSON: `from`, `to`,
/// `failure`, `progress`) for each change of that id.
pub(crate) async fn events<S: Source>(
    State(inner): State<Arc<Inner<S>>>,
    Query(query): Query<EventsQuery>,
) -> impl axum::response::IntoResponse {
    let (tx, rx) = mpsc::channel(BACKLOG);
    let only = query.id.and_then(|raw| S::Id::from_str(&raw).ok());
    tokio::spawn(follow(inner.source.clone(), only, tx));
    Sse::new(ReceiverStream::new(rx)).keep_alive(KeepAlive::default())
}

/// Sends `event` unless the browser is gone.
async fn send(tx: &mpsc::Sender<Result<Event, Infallible>>, event: Event) -> bool {
    tx.send(Ok(event)).await.is_ok()
}

async fn follow<S: Source>(
    source: S,
    only: Option<S::Id>,
    tx: mpsc::Sender<Result<Event, Infallible>>,
) {
    // Subscribed before the first read, so that no change falls between the two.
    let mut stream = source.subscribe();
    let mut dirty = true;
    let mut seen = 0u64;
    // Ticks missed while idle are not made up in a burst.
    let mut flush = tokio::time::interval(FLUSH);
    flush.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    if let Some(id) = &only {
        if !send_phase(&source, id, &tx).await {
            return;
        }
    }
    loop {
        tokio::select! {
            next = stream.next() => match next {
                None => return,
                Some(Ok(t)) => {
                    seen += 1;
                    dirty |= t.progress.is_none();
                    let shown = only.as_ref().is_some_and(|id| *id == t.id);
                    if shown && !send(&tx, Event::default().event("transition").data(transition_json(&t))).await {
                        return;
                    }
                }
                Some(Err(_missed)) => {
                    dirty = true;
                    if !send(&tx, Event::default().event("missed").data("{}")).await {
                        return;
                    }
                    if let Some(id) = &only {
                        if !send_phase(&source, id, &tx).await {
                            return;
                        }
                    }
                }
            },
            _ = flush.tick(), if dirty => {
                dirty = false;
                let event = match source.counts().await {
                    Ok(counts) => Event::default().event("counts").data(counts_json(&counts)),
                    Err(e) => Event::default().event("unavailable").data(json_string(&e.to_string())),
                };
                if !send(&tx, event).await {
                    return;
                }
            }
            _ = tick.tick() => {
                if source.is_closed() {
                    return;
                }
                let rate = Event::default().event("rate").data(seen.to_string());
                seen = 0;
                if !send(&tx, rate).await {
                    return;
                }
            }
            () = tx.closed() => return,
        }
    }
}

/// Reads the phase of `id` and sends it; `false` if the browser is gone.
async fn send_phase<S: Source>(
    source: &S,
    id: &S::Id,
    tx: &mpsc::Sender<Result<Event, Infallible>>,
) -> bool {
    let event = match source.status(id).await {
        Ok(status) => Event::default()
            .event("phase")
            .data(json_string(status.phase.as_str())),
        Err(e) => Event::default()
            .event("unavailable")
            .data(json_string(&e.to_string())),
    };
    send(tx, event).await
}

/// The counts as JSON, as the script reads them.
pub(crate) fn counts_json(c: &StateCounts) -> String {
    format!(
        r#"{{"working":{},"queued":{},"success":{},"revoking":{},"failed":{}}}"#,
        c.working, c.queued, c.success, c.revoking, c.failed
    )
}

/// A transition as JSON (without its id: the page knows it).
fn transition_json<K>(t: &Transition<K>) -> String {
    let failure = t
        .failure
        .map_or_else(|| "null".to_string(), |r| json_string(r.as_str()));
    let progress = t
        .progress
        .map_or_else(|| "null".to_string(), |p| p.to_string());
    format!(
        r#"{{"from":{},"to":{},"failure":{failure},"progress":{progress}}}"#,
        json_string(t.from.as_str()),
        json_string(t.to.as_str())
    )
}

/// `s` as a JSON string.
fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if u32::from(c) < 0x20 || c == '<' || c == '>' || c == '&' => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_strings_escape_quotes_controls_and_markup() {
        assert_eq!(json_string(r#"a"b\c"#), r#""a\"b\\c""#);
        assert_eq!(json_string("<x>\n&"), r#""\u003cx\u003e\u000a\u0026""#);
    }
}
