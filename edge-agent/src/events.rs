//! The event stream: keep it open to any replica (reconnecting with backoff
//! and full jitter, dropping a replica that stays silent for three ping
//! intervals), and apply what it carries. Full-state events are reduced to
//! changes here: a revocation is applied once, a drain order once.

use std::sync::Arc;

use crate::agent::Shared;
use crate::metric;
use crate::sse::SseEvent;
use nexrtc_wire::{DrainOrder, Event, EventError, PING_INTERVAL};

impl Shared {
    fn on_sse(&self, sse: &SseEvent) {
        match parse(sse) {
            Ok(Event::Ping) => {}
            Ok(event) => {
                (self
                    .metrics
                    .counter(metric::EVENTS, &[("event", event.name())]))
                .increment(1);
                self.status.send_modify(|s| s.events += 1);
                self.apply_event(&event);
            }
            Err(EventError::Unknown(name)) => tracing::debug!("skipping unknown event {name:?}"),
            Err(e) => {
                tracing::warn!("{e}");
                (self
                    .metrics
                    .counter(metric::APPLY_FAILURES, &[("event", "malformed")]))
                .increment(1);
            }
        }
    }

    pub(crate) fn apply_event(&self, event: &Event) {
        match event {
            Event::Secrets(s) => {
                if let Err(e) = self.apply.set_secrets(s) {
                    tracing::error!("pushed secrets refused, keeping the current ones: {e}");
                    (self
                        .metrics
                        .counter(metric::APPLY_FAILURES, &[("event", Event::SECRETS)]))
                    .increment(1);
                }
            }
            Event::Revocations(list) => {
                let changes = self
                    .revocations
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .changes(list, unix_now());
                for (username, until) in changes {
                    self.apply.revoke(&username, until);
                }
            }
            Event::Drain(order) => self.drain_ordered(Some(order)),
            _ => {}
        }
    }

    /// A drain order from the stream (`Some`, applied when it differs from the
    /// last one) or from a heartbeat answer (`None`, applied unless draining).
    pub(crate) fn drain_ordered(&self, order: Option<&DrainOrder>) {
        let mut last = self.drain.lock().unwrap_or_else(|e| e.into_inner());
        let new = match (order, last.as_ref()) {
            (None, Some(_)) => return,
            (Some(o), Some(l)) if o == l => return,
            (o, _) => o.cloned().unwrap_or_default(),
        };
        self.apply.drain(&new);
        *last = Some(new);
    }
}

/// An SSE event as an [`Event`]: its `data` is one JSON value (nothing after it), except
/// for `ping`, whose data is ignored.
pub(crate) fn parse(sse: &SseEvent) -> Result<Event, EventError<serde_json::Error>> {
    let mut data = serde_json::Deserializer::from_str(&sse.data);
    match Event::read(&sse.name, &mut data)? {
        Event::Ping => Ok(Event::Ping),
        event => match data.end() {
            Ok(()) => Ok(event),
            Err(source) => Err(EventError::Data {
                event: event.name(),
                source,
            }),
        },
    }
}

pub(crate) async fn events_loop(shared: Arc<Shared>) {
    let mut registered = shared.status.subscribe();
    if registered.wait_for(|s| s.lease.is_some()).await.is_err() {
        return;
    }
    let idle = 3 * PING_INTERVAL;
    let (region, node) = (&shared.config.region, &shared.node);
    let mut attempt = 0u32;
    let mut connected_before = false;
    loop {
        match shared.client.events(region, node).await {
            Ok(mut stream) => {
                tracing::info!(controller = %stream.controller, "event stream open");
                if connected_before {
                    shared
                        .metrics
                        .counter(metric::STREAM_RECONNECTS, &[])
                        .increment(1);
                }
                connected_before = true;
                shared.status.send_modify(|s| s.stream_connected = true);
                loop {
                    match stream.next(idle).await {
                        Ok(Some(event)) => {
                            attempt = 0;
                            shared.on_sse(&event);
                        }
                        Ok(None) => {
                            tracing::info!("event stream closed by the controller");
                            break;
                        }
                        Err(e) => {
                            tracing::warn!("event stream lost: {e}");
                            shared.client.fail_over(stream.index);
                            break;
                        }
                    }
                }
                shared.status.send_modify(|s| s.stream_connected = false);
            }
            Err(e) => tracing::debug!("event stream: {e}"),
        }
        tokio::time::sleep(shared.backoff.delay(attempt)).await;
        attempt = attempt.saturating_add(1);
    }
}

pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
