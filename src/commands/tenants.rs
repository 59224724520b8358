//! `genfleet tenant`, `genfleet key` and `genfleet whoami`.

use genfleet_proto as pb;
use pb::tenant_service_client::TenantServiceClient;

use crate::cli::{ClientArgs, KeyCommand, ListArgs, TenantCommand};
use crate::client::{first_channel, ClientConfig, ClientError, SchedulerChannel};
use crate::{output, render};

async fn connect(
    config: &ClientConfig,
    client: &ClientArgs,
) -> anyhow::Result<TenantServiceClient<SchedulerChannel>> {
    Ok(TenantServiceClient::new(
        first_channel(config, &client.scheduler).await?,
    ))
}

fn role(text: &str) -> anyhow::Result<pb::Role> {
    match text {
        "admin" => Ok(pb::Role::Admin),
        "tenant" => Ok(pb::Role::Tenant),
        "worker" => Ok(pb::Role::Worker),
        other => anyhow::bail!("--role {other:?}: give admin, tenant or worker"),
    }
}

fn role_label(role: pb::Role) -> &'static str {
    match role {
        pb::Role::Admin => "admin",
        pb::Role::Tenant => "tenant",
        pb::Role::Worker => "worker",
        pb::Role::Replica => "replica",
        pb::Role::Unspecified => "-",
    }
}

pub async fn run_tenant(command: TenantCommand, config: &ClientConfig) -> anyhow::Result<()> {
    match command {
        TenantCommand::Apply(args) => {
            let tenant = pb::Tenant {
                name: args.name,
                queues: args.queues,
                default_queue: args.default_queue.unwrap_or_default(),
                default_qos: args.default_qos.unwrap_or_default(),
                max_qos: args.max_qos.unwrap_or_default(),
                max_unfinished_jobs: args.max_unfinished_jobs.unwrap_or(0),
            };
            let applied = connect(config, &args.client)
                .await?
                .apply(pb::ApplyTenantRequest {
                    tenant: Some(tenant),
                })
                .await
                .map_err(ClientError::from)?
                .into_inner();
            say!("tenant {} applied", applied.name);
        }
        TenantCommand::List(args) => {
            let list = connect(config, &args.client)
                .await?
                .list(pb::ListTenantsRequest {})
                .await
                .map_err(ClientError::from)?
                .into_inner();
            output::list(args.output.output, &list.tenants, |_| {
                tenant_table(&list.tenants)
            })?;
        }
        TenantCommand::Delete(args) => {
            connect(config, &args.client)
                .await?
                .delete(pb::DeleteTenantRequest {
                    name: args.name.clone(),
                })
                .await
                .map_err(ClientError::from)?;
            say!("tenant {} deleted", args.name);
        }
    }
    Ok(())
}

pub async fn run_key(command: KeyCommand, config: &ClientConfig) -> anyhow::Result<()> {
    match command {
        KeyCommand::Create(args) => {
            let role = role(&args.role)?;
            if role == pb::Role::Worker && args.node.is_none() {
                anyhow::bail!(
                    "a worker key names the nodes it may register: give --node NAME, --node 'PREFIX*' or --node '*'"
                );
            }
            let request = pb::CreateKeyRequest {
                role: role as i32,
                tenant: args.tenant.unwrap_or_default(),
                description: args.description,
                node: args.node.unwrap_or_default(),
            };
            let created = connect(config, &args.client)
                .await?
                .create_key(request)
                .await
                .map_err(ClientError::from)?
                .into_inner();
            let id = created
                .key
                .as_ref()
                .map(|k| k.id.clone())
                .unwrap_or_default();
            // The secret on stdout alone (or the key and its secret as an
            // object), so that scripts can capture it.
            output::object(args.output.output, &created, || created.secret.clone())?;
            say_err!("key {id} created; its secret is shown once, above: keep it now");
        }
        KeyCommand::List(args) => {
            let list = connect(config, &args.client)
                .await?
                .list_keys(pb::ListKeysRequest {
                    tenant: args.tenant.unwrap_or_default(),
                })
                .await
                .map_err(ClientError::from)?
                .into_inner();
            output::list(args.output.output, &list.keys, |_| key_table(&list.keys))?;
        }
        KeyCommand::Revoke(args) => {
            connect(config, &args.client)
                .await?
                .revoke_key(pb::RevokeKeyRequest {
                    id: args.id.clone(),
                })
                .await
                .map_err(ClientError::from)?;
            say!("key {} revoked", args.id);
        }
    }
    Ok(())
}

pub async fn whoami(args: ListArgs, config: &ClientConfig) -> anyhow::Result<()> {
    let format = args.output.output;
    let me = connect(config, &args.client)
        .await?
        .who_am_i(pb::WhoAmIRequest {})
        .await
        .map_err(ClientError::from)?
        .into_inner();
    if format.structured() {
        return output::object(format, &me, String::new);
    }
    if !me.enforced {
        say!("admin (this cluster checks no API keys)");
        return Ok(());
    }
    let key = if me.key_id.is_empty() {
        "the bootstrap admin key".to_string()
    } else {
        format!("key {}", me.key_id)
    };
    match me.role() {
        pb::Role::Tenant => say!("tenant {} ({key})", me.tenant),
        role => say!("{} ({key})", role_label(role)),
    }
    Ok(())
}

fn tenant_table(tenants: &[pb::Tenant]) -> String {
    let rows: Vec<[String; 6]> = tenants
        .iter()
        .map(|t| {
            let limit = match t.max_unfinished_jobs {
                0 => "-".to_string(),
                n => n.to_string(),
            };
            [
                t.name.clone(),
                t.queues.join(","),
                t.default_queue.clone(),
                t.default_qos.clone(),
                t.max_qos.clone(),
                limit,
            ]
        })
        .collect();
    let header = [
        "NAME",
        "QUEUES",
        "DEFAULT QUEUE",
        "DEFAULT QOS",
        "MAX QOS",
        "MAX UNFINISHED",
    ];
    render::table(header, &rows)
}

fn key_table(keys: &[pb::ApiKey]) -> String {
    let rows: Vec<[String; 5]> = keys
        .iter()
        .map(|k| {
            let created = humantime::format_rfc3339_seconds(
                std::time::UNIX_EPOCH
                    + std::time::Duration::from_millis(k.created_at_ms.max(0) as u64),
            );
            let tenant = match (k.tenant.as_str(), k.node.as_str()) {
                ("", "") => "-".to_string(),
                ("", nodes) => format!("nodes {nodes}"),
                (tenant, _) => tenant.to_string(),
            };
            [
                k.id.clone(),
                role_label(k.role()).to_string(),
                tenant,
                created.to_string(),
                k.description.clone(),
            ]
        })
        .collect();
    render::table(["ID", "ROLE", "TENANT", "CREATED", "DESCRIPTION"], &rows)
}
