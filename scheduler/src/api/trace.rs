//! `ExportTrace`: the cluster's own workload (the jobs the state holds and
//! the history of those retention removed) for `genfleet trace export`.
//! Admin only, as all of ClusterService: it shows every tenant's work.

use genfleet_proto as pb;
use tonic::{Response, Status};

use super::route::Router;
use crate::raft::RaftHandle;

/// Records per streamed message: about 80 bytes each on the wire, so a
/// chunk stays far below gRPC's default 4 MiB message limit.
const CHUNK: usize = 4096;

pub type TraceStream = tokio_stream::Iter<std::vec::IntoIter<Result<pb::ExportTraceChunk, Status>>>;

/// The records `request` asks for, oldest arrival first, in chunks.
pub(super) async fn export(
    raft: &RaftHandle,
    router: &Router,
    request: pb::ExportTraceRequest,
) -> Result<Response<TraceStream>, Status> {
    if let (Some(since), Some(until)) = (request.since_ms, request.until_ms) {
        if since >= until {
            return Err(Status::invalid_argument(format!(
                "since ({since} ms) is not before until ({until} ms): the range is empty"
            )));
        }
    }
    // Any replica answers, once the leader confirms its state is current.
    super::readable(raft, router).await?;
    // Only the compact copy is made under the state's lock: the protobuf
    // records (three strings each) and the sort are built outside it.
    let records = raft.read(|state| state.trace(request.since_ms, request.until_ms));
    let chunks = tokio::task::spawn_blocking(move || {
        let mut records = records;
        records.sort_by_key(|r| r.arrival_ms);
        let mut chunks = Vec::new();
        let mut records = records.iter().map(|r| r.to_proto());
        loop {
            let chunk: Vec<_> = records.by_ref().take(CHUNK).collect();
            if chunk.is_empty() {
                return chunks;
            }
            chunks.push(Ok(pb::ExportTraceChunk { records: chunk }));
        }
    })
    .await
    .map_err(|e| Status::internal(format!("sorting the trace: {e}")))?;
    Ok(Response::new(tokio_stream::iter(chunks)))
}
