//! The tenant API: tenants and keys (an admin's), and WhoAmI (anyone's).
//! A key's secret is made here, returned once, and stored as a hash.

use std::sync::Arc;

use genfleet_proto as pb;
use pb::tenant_service_client::TenantServiceClient;
use pb::tenant_service_server::TenantService;
use tonic::{Request, Response, Status};

use super::route::{forward_to_leader, Router};
use crate::auth::{self, Principal};
use crate::raft::RaftHandle;
use crate::state::{validate_tenant, Outcome};

pub struct TenantApi {
    raft: RaftHandle,
    router: Arc<Router>,
    /// Whether calls must carry keys (WhoAmI says so).
    enforced: bool,
}

impl TenantApi {
    pub fn new(raft: RaftHandle, router: Arc<Router>, enforced: bool) -> Self {
        Self {
            raft,
            router,
            enforced,
        }
    }

    async fn propose(&self, kind: pb::command::Kind) -> Result<Outcome, Status> {
        super::propose(&self.raft, &self.router, kind).await
    }

    async fn readable(&self) -> Result<(), Status> {
        super::readable(&self.raft, &self.router).await
    }
}

/// Admins only; everything here but WhoAmI.
fn admin<T>(request: &Request<T>) -> Result<(), Status> {
    auth::caller(request)?.require_admin()
}

fn unexpected(what: &str, outcome: Outcome) -> Status {
    Status::internal(format!("{what} applied with outcome {outcome:?}"))
}

#[tonic::async_trait]
impl TenantService for TenantApi {
    async fn apply(
        &self,
        request: Request<pb::ApplyTenantRequest>,
    ) -> Result<Response<pb::Tenant>, Status> {
        admin(&request)?;
        forward_to_leader!(self.router, request, TenantServiceClient::apply);
        let tenant = request
            .into_inner()
            .tenant
            .ok_or_else(|| Status::invalid_argument("the request has no tenant"))?;
        // Checked here for a prompt answer, and again at apply.
        let tenant =
            validate_tenant(tenant).map_err(|e| Status::invalid_argument(e.to_string()))?;
        let upsert = pb::UpsertTenant {
            tenant: Some(tenant),
        };
        match self
            .propose(pb::command::Kind::UpsertTenant(upsert))
            .await?
        {
            Outcome::Tenant(tenant) => Ok(Response::new(tenant)),
            other => Err(unexpected("tenant apply", other)),
        }
    }

    async fn list(
        &self,
        request: Request<pb::ListTenantsRequest>,
    ) -> Result<Response<pb::ListTenantsResponse>, Status> {
        admin(&request)?;
        forward_to_leader!(self.router, request, TenantServiceClient::list);
        self.readable().await?;
        let tenants = self.raft.read(|state| state.tenants().cloned().collect());
        Ok(Response::new(pb::ListTenantsResponse { tenants }))
    }

    async fn delete(
        &self,
        request: Request<pb::DeleteTenantRequest>,
    ) -> Result<Response<pb::DeleteTenantResponse>, Status> {
        admin(&request)?;
        forward_to_leader!(self.router, request, TenantServiceClient::delete);
        let name = request.into_inner().name;
        self.propose(pb::command::Kind::DeleteTenant(pb::DeleteTenant { name }))
            .await?;
        Ok(Response::new(pb::DeleteTenantResponse {}))
    }

    async fn create_key(
        &self,
        request: Request<pb::CreateKeyRequest>,
    ) -> Result<Response<pb::CreateKeyResponse>, Status> {
        admin(&request)?;
        forward_to_leader!(self.router, request, TenantServiceClient::create_key);
        let request = request.into_inner();
        let (id, secret) = auth::generate_key();
        let key = pb::ApiKey {
            id,
            role: request.role,
            tenant: request.tenant,
            secret_sha256: auth::sha256(&secret),
            created_at_ms: crate::clock::unix_ms(),
            description: request.description,
            node: request.node,
        };
        let create = pb::CreateKey { key: Some(key) };
        match self.propose(pb::command::Kind::CreateKey(create)).await? {
            Outcome::Key(key) => Ok(Response::new(pb::CreateKeyResponse {
                key: Some(pb::ApiKey {
                    secret_sha256: Vec::new(),
                    ..key
                }),
                secret,
            })),
            other => Err(unexpected("key create", other)),
        }
    }

    async fn list_keys(
        &self,
        request: Request<pb::ListKeysRequest>,
    ) -> Result<Response<pb::ListKeysResponse>, Status> {
        admin(&request)?;
        forward_to_leader!(self.router, request, TenantServiceClient::list_keys);
        let tenant = request.into_inner().tenant;
        self.readable().await?;
        let keys = self.raft.read(|state| {
            state
                .keys()
                .filter(|k| tenant.is_empty() || k.tenant == tenant)
                .map(|k| pb::ApiKey {
                    // The hash stays in the state: a listing never needs it.
                    secret_sha256: Vec::new(),
                    ..k.clone()
                })
                .collect()
        });
        Ok(Response::new(pb::ListKeysResponse { keys }))
    }

    async fn revoke_key(
        &self,
        request: Request<pb::RevokeKeyRequest>,
    ) -> Result<Response<pb::RevokeKeyResponse>, Status> {
        admin(&request)?;
        forward_to_leader!(self.router, request, TenantServiceClient::revoke_key);
        let id = request.into_inner().id;
        self.propose(pb::command::Kind::RevokeKey(pb::RevokeKey { id }))
            .await?;
        Ok(Response::new(pb::RevokeKeyResponse {}))
    }

    async fn who_am_i(
        &self,
        request: Request<pb::WhoAmIRequest>,
    ) -> Result<Response<pb::WhoAmIResponse>, Status> {
        let caller = auth::caller(&request)?;
        let (role, tenant) = match caller.principal {
            Principal::Admin => (pb::Role::Admin, String::new()),
            Principal::Tenant(t) => (pb::Role::Tenant, t),
            Principal::Worker(_) => (pb::Role::Worker, String::new()),
            Principal::Replica(_) => (pb::Role::Replica, String::new()),
        };
        Ok(Response::new(pb::WhoAmIResponse {
            role: role as i32,
            tenant,
            key_id: caller.key_id,
            enforced: self.enforced,
        }))
    }
}
