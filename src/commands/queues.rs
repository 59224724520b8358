//! `genfleet queue`: apply, list and delete the teams' queues.

use genfleet_proto as pb;
use pb::queue_service_client::QueueServiceClient;

use crate::cli::QueueCommand;
use crate::client::{first_channel, ClientConfig, ClientError};
use crate::{output, render};
use genfleet_scheduler::queue_file;

/// A queue as `-o json|yaml` prints it: its spec and the device-hours its
/// budget has used this period.
#[derive(serde::Serialize)]
struct QueueItem<'a> {
    #[serde(flatten)]
    queue: &'a pb::Queue,
    #[serde(skip_serializing_if = "Option::is_none")]
    budget_used_hours: Option<f64>,
}

pub async fn run(command: QueueCommand, client: &ClientConfig) -> anyhow::Result<()> {
    match command {
        QueueCommand::Apply(args) => {
            let (name, text) = if args.file == "-" {
                let text = std::io::read_to_string(std::io::stdin())
                    .map_err(|e| anyhow::anyhow!("cannot read queues from standard input: {e}"))?;
                ("standard input".to_string(), text)
            } else {
                let text = std::fs::read_to_string(&args.file)
                    .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", args.file))?;
                (args.file.clone(), text)
            };
            let queues = queue_file::parse(&name, &text)?;
            let mut client =
                QueueServiceClient::new(first_channel(client, &args.client.scheduler).await?);
            for queue in queues {
                let name = queue.name.clone();
                let applied = client
                    .apply(pb::ApplyQueueRequest { queue: Some(queue) })
                    .await
                    .map_err(|e| anyhow::anyhow!("queue {name}: {}", ClientError::from(e)))?
                    .into_inner();
                say!("queue {} applied", applied.name);
            }
            Ok(())
        }
        QueueCommand::List(args) => {
            let mut client =
                QueueServiceClient::new(first_channel(client, &args.client.scheduler).await?);
            let list = client
                .list(pb::ListQueuesRequest {})
                .await
                .map_err(ClientError::from)?
                .into_inner();
            let items: Vec<QueueItem> = list
                .queues
                .iter()
                .map(|queue| QueueItem {
                    queue,
                    budget_used_hours: list.budget_used_hours.get(&queue.name).copied(),
                })
                .collect();
            output::list(args.output.output, &items, |_| {
                render::queue_table(&list.queues, &list.budget_used_hours)
            })
        }
        QueueCommand::Delete(args) => {
            let mut client =
                QueueServiceClient::new(first_channel(client, &args.client.scheduler).await?);
            client
                .delete(pb::DeleteQueueRequest {
                    name: args.name.clone(),
                })
                .await
                .map_err(ClientError::from)?;
            say!("queue {} deleted", args.name);
            Ok(())
        }
    }
}
