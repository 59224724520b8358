//! Raft messages between replicas over gRPC: one long-lived client stream
//! per peer, fed by a queue the raft thread fills without blocking. Messages
//! waiting in the queue when a batch goes out travel together.

use std::collections::{BTreeMap, HashMap};
use std::sync::{mpsc as std_mpsc, Arc, RwLock};
use std::time::Duration;

use genfleet_proto as pb;
use pb::raft_transport_client::RaftTransportClient;
use protobuf::Message as _;
use raft::eraftpb::{Message, MessageType};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::ClientTlsConfig;

use super::replica::{Feedback, Transport};
use crate::state::State;

/// Messages queued for one peer before new ones are dropped (raft resends).
const QUEUE: usize = 8192;
/// Most messages and bytes in one batch.
const BATCH_MESSAGES: usize = 1024;
const BATCH_BYTES: usize = 4 * 1024 * 1024;
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
const RETRY_AFTER: Duration = Duration::from_millis(200);

/// Addresses of the replicas: the configured ones, then those recorded by
/// membership changes.
#[derive(Clone)]
pub struct AddressBook {
    configured: BTreeMap<u64, String>,
    state: Arc<RwLock<State>>,
}

impl AddressBook {
    pub fn new(configured: BTreeMap<u64, String>, state: Arc<RwLock<State>>) -> Self {
        Self { configured, state }
    }

    pub fn address(&self, id: u64) -> Option<String> {
        self.configured.get(&id).cloned().or_else(|| {
            let state = self.state.read().unwrap_or_else(|e| e.into_inner());
            state.members().get(&id).cloned()
        })
    }

    /// Every known replica: id -> address.
    pub fn all(&self) -> BTreeMap<u64, String> {
        let state = self.state.read().unwrap_or_else(|e| e.into_inner());
        let mut all: BTreeMap<u64, String> = state.members().clone();
        all.extend(self.configured.clone());
        all
    }
}

struct Link {
    address: String,
    queue: mpsc::Sender<Message>,
}

pub struct PeerTransport {
    id: u64,
    book: AddressBook,
    links: HashMap<u64, Link>,
    runtime: tokio::runtime::Handle,
    /// Mutual TLS with the peers, when the cluster uses TLS.
    tls: Option<ClientTlsConfig>,
    /// This replica's credential (from the cluster secret), sent on every
    /// stream so the peer knows who speaks before it reads a message.
    credential: Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>,
    feedback_tx: std_mpsc::Sender<Feedback>,
    feedback_rx: std_mpsc::Receiver<Feedback>,
}

impl PeerTransport {
    /// A transport for replica `id`; its link tasks run on `runtime`.
    pub fn new(
        id: u64,
        book: AddressBook,
        runtime: tokio::runtime::Handle,
        tls: Option<ClientTlsConfig>,
        credential: Option<&str>,
    ) -> Self {
        let (feedback_tx, feedback_rx) = std_mpsc::channel();
        // A credential is hex and ASCII: one that is not is sent as none,
        // and the peer says so.
        let credential = credential.and_then(|c| format!("Bearer {c}").parse().ok());
        Self {
            id,
            book,
            links: HashMap::new(),
            runtime,
            tls,
            credential,
            feedback_tx,
            feedback_rx,
        }
    }

    /// The queue to `to`, (re)starting its link if the address is new.
    fn link(&mut self, to: u64) -> Option<&mpsc::Sender<Message>> {
        let address = self.book.address(to)?;
        let stale = self
            .links
            .get(&to)
            .is_none_or(|l| l.address != address || l.queue.is_closed());
        if stale {
            let (queue, rx) = mpsc::channel(QUEUE);
            let peer = Peer {
                id: to,
                address: address.clone(),
                tls: self.tls.clone(),
                credential: self.credential.clone(),
            };
            let task = run_link(self.id, peer, rx, self.feedback_tx.clone());
            self.runtime.spawn(task);
            self.links.insert(to, Link { address, queue });
        }
        self.links.get(&to).map(|l| &l.queue)
    }
}

impl Transport for PeerTransport {
    fn send(&mut self, messages: Vec<Message>) {
        for message in messages {
            let to = message.to;
            let is_snapshot = message.get_msg_type() == MessageType::MsgSnapshot;
            let queued = match self.link(to) {
                Some(queue) => queue.try_send(message).is_ok(),
                None => {
                    tracing::debug!(to, "no address for raft peer");
                    false
                }
            };
            if !queued {
                let _ = self.feedback_tx.send(Feedback::Unreachable(to));
                if is_snapshot {
                    let _ = self.feedback_tx.send(Feedback::Snapshot {
                        to,
                        delivered: false,
                    });
                }
            }
        }
    }

    fn feedback(&mut self) -> Vec<Feedback> {
        self.feedback_rx.try_iter().collect()
    }
}

/// Keeps a stream to one peer and sends what is queued for it, in batches.
/// A replica to send to, and how to reach it.
struct Peer {
    id: u64,
    address: String,
    tls: Option<ClientTlsConfig>,
    credential: Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>,
}

async fn run_link(
    from: u64,
    peer: Peer,
    mut queue: mpsc::Receiver<Message>,
    feedback: std_mpsc::Sender<Feedback>,
) {
    let (to, address) = (peer.id, peer.address.clone());
    let mut waiting: Option<Message> = None;
    loop {
        let first = match waiting.take() {
            Some(m) => m,
            None => match queue.recv().await {
                Some(m) => m,
                None => return, // the transport dropped this link
            },
        };
        let client = match connect(&address, peer.tls.as_ref()).await {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(to, %address, error = %e, "raft peer unreachable");
                report_lost(to, &first, &feedback);
                // Drop what piled up: raft resends once the peer answers again.
                while let Ok(m) = queue.try_recv() {
                    report_lost(to, &m, &feedback);
                }
                tokio::time::sleep(RETRY_AFTER).await;
                continue;
            }
        };
        let (batches, rx) = mpsc::channel::<pb::RaftBatch>(16);
        let mut request = tonic::Request::new(ReceiverStream::new(rx));
        if let Some(credential) = &peer.credential {
            request
                .metadata_mut()
                .insert(crate::auth::AUTHORIZATION, credential.clone());
        }
        let mut call = Box::pin(async move {
            let mut client = client;
            client.send(request).await
        });
        let mut next = Some(first);
        loop {
            if let Some(first) = next.take() {
                let (batch, snapshots) = fill_batch(from, first, &mut queue);
                // Raft waits for news of every snapshot it sends: without
                // it the peer's progress stays paused for good.
                let sent = batches.send(batch).await.is_ok();
                for _ in 0..snapshots {
                    let _ = feedback.send(Feedback::Snapshot {
                        to,
                        delivered: sent,
                    });
                }
                if !sent {
                    break;
                }
            }
            tokio::select! {
                m = queue.recv() => match m {
                    Some(m) => next = Some(m),
                    None => return,
                },
                result = &mut call => {
                    if let Err(status) = result {
                        tracing::debug!(to, %address, error = %status, "raft stream to peer ended");
                    }
                    break;
                }
            }
        }
        let _ = feedback.send(Feedback::Unreachable(to));
        waiting = next;
    }
}

async fn connect(
    address: &str,
    tls: Option<&ClientTlsConfig>,
) -> Result<RaftTransportClient<tonic::transport::Channel>, String> {
    let endpoint = genfleet_proto::tls::endpoint(address, tls)
        .map_err(|e| e.to_string())?
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(5))
        .keep_alive_timeout(Duration::from_secs(5));
    let channel = endpoint.connect().await.map_err(|e| e.to_string())?;
    Ok(RaftTransportClient::new(channel).max_encoding_message_size(usize::MAX))
}

/// `first` and whatever else is queued, up to the batch limits; also the
/// number of snapshot messages in it.
fn fill_batch(
    from: u64,
    first: Message,
    queue: &mut mpsc::Receiver<Message>,
) -> (pb::RaftBatch, usize) {
    let mut messages = Vec::new();
    let mut bytes = 0;
    let mut snapshots = 0;
    let mut next = Some(first);
    while let Some(m) = next.take() {
        if m.get_msg_type() == MessageType::MsgSnapshot {
            snapshots += 1;
        }
        match m.write_to_bytes() {
            Ok(encoded) => {
                bytes += encoded.len();
                messages.push(encoded);
            }
            Err(e) => tracing::error!(error = %e, "cannot encode a raft message"),
        }
        if messages.len() < BATCH_MESSAGES && bytes < BATCH_BYTES {
            next = queue.try_recv().ok();
        }
    }
    (pb::RaftBatch { from, messages }, snapshots)
}

fn report_lost(to: u64, message: &Message, feedback: &std_mpsc::Sender<Feedback>) {
    if message.get_msg_type() == MessageType::MsgSnapshot {
        let _ = feedback.send(Feedback::Snapshot {
            to,
            delivered: false,
        });
    }
}
