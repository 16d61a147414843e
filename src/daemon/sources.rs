//! The configured servers' sockets and names: resolution in the background
//! (a slow DNS never stalls the engine), never two slots on one address,
//! and sending what the engine asks for.

use crate::clock;
use crate::core::source::{SourceId, SourceReport};
use crate::core::stamps::SentStamps;
use crate::core::time::{Nanos, Steady};
use crate::net::{canonical, Incoming, Slot};
use crate::state::SourceView;
use std::net::SocketAddr;
use tokio::sync::mpsc;

/// A resolution result for one slot.
pub type Resolved = (usize, std::io::Result<Vec<SocketAddr>>);

/// Every configured server.
pub struct Sources {
    slots: Vec<Slot>,
    tx: mpsc::Sender<Incoming>,
    resolved_tx: mpsc::Sender<Resolved>,
}

impl Sources {
    /// The servers `names`, forwarding datagrams to `tx`; resolutions come
    /// back on the returned receiver. A slot marked in `nts` names an NTS
    /// key-exchange server: its NTP address comes from the key exchange
    /// ([`Sources::resolved`] once it is done), never from resolving its
    /// name.
    pub fn new(
        names: &[String],
        nts: &[bool],
        kernel_timestamps: bool,
        tx: mpsc::Sender<Incoming>,
    ) -> (Sources, mpsc::Receiver<Resolved>) {
        let (resolved_tx, resolved_rx) = mpsc::channel(64);
        let s = Sources {
            slots: names
                .iter()
                .enumerate()
                .map(|(i, n)| {
                    let mut slot = Slot::new(n.clone(), kernel_timestamps);
                    slot.nts = nts.get(i).copied().unwrap_or(false);
                    slot
                })
                .collect(),
            tx,
            resolved_tx,
        };
        (s, resolved_rx)
    }

    /// The slot of a datagram, if it is from its current socket.
    pub fn current(&self, msg: &Incoming) -> Option<&Slot> {
        self.slots
            .get(msg.slot)
            .filter(|s| s.generation == msg.generation)
    }

    /// Start resolving every slot (or only those unreachable and not tried
    /// in the last minute) in background tasks.
    pub fn resolve_all(&mut self, reports: &[SourceReport], only_unreachable: bool) {
        let now = clock::raw();
        let mut literal = Vec::new();
        for (i, slot) in self.slots.iter_mut().enumerate() {
            if slot.resolving || slot.nts {
                continue;
            }
            if only_unreachable {
                let reachable = reports.get(i).is_some_and(|r| r.reach != 0);
                let recent = slot
                    .resolved_at
                    .is_some_and(|t| now.since(t) < Nanos::from_secs(60));
                if reachable || recent {
                    continue;
                }
            }
            slot.resolved_at = Some(now);
            if let Ok(addr) = slot.name.parse::<SocketAddr>() {
                literal.push((i, vec![addr])); // no lookup needed: connect now
                continue;
            }
            slot.resolving = true;
            let name = slot.name.clone();
            let tx = self.resolved_tx.clone();
            tokio::spawn(async move {
                let r = crate::net::resolve(&name).await;
                let _ = tx.send((i, r)).await;
            });
        }
        for (i, addrs) in literal {
            self.resolved(i, Ok(addrs));
        }
    }

    /// A slot's name resolved to `r`: attach it to the first address no
    /// other slot holds. One server in two slots would count twice toward
    /// the f tolerated faults (an overlapping liar in two slots outvotes
    /// the honest ones), so a name whose every address is taken stays
    /// unresolved, and says so.
    pub fn resolved(&mut self, i: usize, r: std::io::Result<Vec<SocketAddr>>) {
        let tx = self.tx.clone();
        let held: Vec<(SocketAddr, String)> = self
            .slots
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .filter_map(|(_, s)| Some((canonical(s.address?), s.name.clone())))
            .collect();
        let Some(slot) = self.slots.get_mut(i) else {
            return;
        };
        slot.resolving = false;
        let r = r.and_then(|addrs| {
            let free = |a: &SocketAddr| !held.iter().any(|(h, _)| *h == canonical(*a));
            // Keep the current address if it is still among the answers.
            let pick = addrs
                .iter()
                .find(|a| Some(**a) == slot.address && free(a))
                .or_else(|| addrs.iter().find(|a| free(a)))
                .copied();
            match pick {
                Some(a) => Ok(a),
                None => {
                    let others: Vec<&str> = held
                        .iter()
                        .filter(|(h, _)| addrs.iter().any(|a| canonical(*a) == *h))
                        .map(|(_, n)| n.as_str())
                        .collect();
                    let others = others.join(", ");
                    if slot.duplicate_of.as_deref() != Some(others.as_str()) {
                        tracing::warn!(
                            "source {}: every address it resolves to ({addrs:?}) is already used by {others}: not using it (one server in two slots would count twice toward the fault tolerance)",
                            slot.name
                        );
                    }
                    slot.detach();
                    slot.duplicate_of = Some(others);
                    Err(std::io::Error::new(
                        std::io::ErrorKind::AddrInUse,
                        "duplicate of another source",
                    ))
                }
            }
        });
        match r.and_then(|addr| slot.attach(addr, i, tx)) {
            Ok(()) => {
                if slot.failures > 0 {
                    tracing::info!("source {}: resolved to {:?}", slot.name, slot.address);
                }
                slot.failures = 0;
            }
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {}
            Err(e) => {
                if slot.failures == 0 {
                    tracing::warn!(
                        "source {}: {e} (retrying every minute while unreachable)",
                        slot.name
                    );
                } else {
                    tracing::debug!("source {}: {e}", slot.name);
                }
                slot.failures += 1;
            }
        }
    }

    /// Send `packet` to `source`; the stamps read around `send()`, or
    /// `None` when it could not be sent.
    pub fn send(
        &mut self,
        source: SourceId,
        packet: &[u8],
        clock_sets: Option<u64>,
    ) -> Option<SentStamps> {
        self.slots.get_mut(source.0)?.send(packet, clock_sets)
    }

    /// The slot's address, if attached.
    pub fn address(&self, i: usize) -> Option<SocketAddr> {
        self.slots.get(i).and_then(|s| s.address)
    }

    /// The slot's name, for logs.
    pub fn name(&self, i: usize) -> &str {
        self.slots.get(i).map_or("?", |s| s.name.as_str())
    }

    /// What operators see of each source.
    pub fn views(&self, reports: &[SourceReport]) -> Vec<SourceView> {
        reports
            .iter()
            .zip(&self.slots)
            .map(|(report, s)| SourceView {
                name: s.name.clone(),
                address: s.address,
                duplicate_of: s.duplicate_of.clone(),
                report: *report,
            })
            .collect()
    }
}

/// Instants in a `Steady` for a tokio sleep until `w` (at most 1 s).
pub fn until(w: Option<Steady>) -> std::time::Duration {
    w.map_or(std::time::Duration::from_secs(1), |w| {
        std::time::Duration::from_nanos(w.since(clock::raw()).0.clamp(0, 1_000_000_000) as u64)
    })
}
