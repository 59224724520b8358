//! `genfleet node`: list the worker nodes, cordon and uncordon them.

use genfleet_proto as pb;
use pb::node_service_client::NodeServiceClient;

use crate::cli::{NodeCommand, NodeNameArgs};
use crate::client::{first_channel, ClientConfig, ClientError};
use crate::output;
use crate::render;

pub async fn run(command: NodeCommand, client: &ClientConfig) -> anyhow::Result<()> {
    match command {
        NodeCommand::List(args) => {
            let mut client =
                NodeServiceClient::new(first_channel(client, &args.client.scheduler).await?);
            let nodes = client
                .list(pb::ListNodesRequest {})
                .await
                .map_err(ClientError::from)?
                .into_inner()
                .nodes;
            output::list(args.output.output, &nodes, |wide| {
                render::node_table(&nodes, wide)
            })
        }
        NodeCommand::Cordon(args) => cordon(args, true, client).await,
        NodeCommand::Uncordon(args) => cordon(args, false, client).await,
    }
}

async fn cordon(args: NodeNameArgs, cordoned: bool, client: &ClientConfig) -> anyhow::Result<()> {
    let mut client = NodeServiceClient::new(first_channel(client, &args.client.scheduler).await?);
    let node = client
        .cordon(pb::CordonNodeRequest {
            node: args.name,
            cordoned,
        })
        .await
        .map_err(ClientError::from)?
        .into_inner();
    let running = node.jobs.len();
    if args.output.output.structured() {
        return output::object(args.output.output, &node, String::new);
    }
    if cordoned {
        say!(
            "node {} cordoned: it takes no new work ({running} running jobs finish there)",
            node.name
        );
    } else {
        say!("node {} uncordoned", node.name);
    }
    Ok(())
}
