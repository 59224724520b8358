//! Where a request is served: here, if this replica is the leader, or at the
//! leader, to which a follower forwards it (once: a forwarded request that
//! meets another follower is refused, so leadership churn cannot loop it).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tonic::metadata::MetadataMap;
use tonic::transport::{Channel, ClientTlsConfig};
use tonic::{Request, Status};

use super::propose_status;
use crate::raft::transport::AddressBook;
use crate::raft::{ProposeError, RaftHandle};

const FORWARDED: &str = "genfleet-forwarded";
/// Metadata naming the leader's address on refusals, so clients can follow.
pub const LEADER_ADDRESS: &str = "genfleet-leader";

pub enum Route {
    Here,
    /// A channel to the leader.
    Leader(Channel),
}

pub struct Router {
    raft: RaftHandle,
    book: AddressBook,
    channels: Mutex<HashMap<String, Channel>>,
    /// How this replica dials the leader when the cluster uses TLS.
    tls: Option<ClientTlsConfig>,
}

impl Router {
    pub fn new(raft: RaftHandle, book: AddressBook, tls: Option<ClientTlsConfig>) -> Self {
        Self {
            raft,
            book,
            channels: Mutex::default(),
            tls,
        }
    }

    pub fn book(&self) -> &AddressBook {
        &self.book
    }

    /// Where `metadata`'s request should be served; waits out an election.
    pub async fn route(&self, metadata: &MetadataMap) -> Result<Route, Status> {
        match self.raft.ready_leader().await {
            Ok(()) => Ok(Route::Here),
            Err(ProposeError::NotLeader {
                leader: Some(leader),
            }) => {
                if metadata.contains_key(FORWARDED) {
                    return Err(Status::unavailable(format!(
                        "replica {} got a forwarded request but replica {leader} leads now; retry",
                        self.raft.id()
                    )));
                }
                let address = self.book.address(leader).ok_or_else(|| {
                    Status::unavailable(format!(
                        "replica {leader} leads but its address is unknown here"
                    ))
                })?;
                Ok(Route::Leader(self.channel(&address)?))
            }
            Err(e) => Err(self.refusal(&e)),
        }
    }

    /// A refusal that names the leader's address when one is known.
    pub fn refusal(&self, e: &ProposeError) -> Status {
        let mut status = propose_status(e);
        if let ProposeError::NotLeader {
            leader: Some(leader),
        } = e
        {
            if let Some(address) = self.book.address(*leader) {
                if let Ok(value) = address.parse() {
                    status.metadata_mut().insert(LEADER_ADDRESS, value);
                }
            }
        }
        status
    }

    fn channel(&self, address: &str) -> Result<Channel, Status> {
        let mut channels = self.channels.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(channel) = channels.get(address) {
            return Ok(channel.clone());
        }
        let channel = genfleet_proto::tls::endpoint(address, self.tls.as_ref())
            .map_err(|e| Status::internal(format!("leader address: {e}")))?
            .connect_timeout(Duration::from_secs(1))
            .connect_lazy();
        channels.insert(address.to_string(), channel.clone());
        Ok(channel)
    }
}

/// `request` as one to forward to the leader: its key goes along (the
/// leader checks it again), nothing else of its metadata does.
pub fn forwarded<T>(request: Request<T>) -> Request<T> {
    let key = request.metadata().get(crate::auth::AUTHORIZATION).cloned();
    let mut forwarded = Request::new(request.into_inner());
    let metadata = forwarded.metadata_mut();
    metadata.insert(FORWARDED, tonic::metadata::MetadataValue::from_static("1"));
    if let Some(key) = key {
        metadata.insert(crate::auth::AUTHORIZATION, key);
    }
    forwarded
}

/// Serves the handler's `request` at the leader when this replica follows:
/// forwards it with `Client::method` and returns the leader's answer from
/// the enclosing handler. Where this replica leads it does nothing, and the
/// handler goes on to serve the request itself.
macro_rules! forward_to_leader {
    ($router:expr, $request:ident, $client:ident :: $method:ident) => {
        if let $crate::api::route::Route::Leader(channel) =
            $router.route($request.metadata()).await?
        {
            return $client::new(channel)
                .$method($crate::api::route::forwarded($request))
                .await;
        }
    };
}
pub(crate) use forward_to_leader;
