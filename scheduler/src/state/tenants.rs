//! Tenants and API keys: apply (create or replace) and delete a tenant,
//! create and revoke a key, and the checks a tenant's submit must pass.
//! Keys are stored as a hash of their secret only; revoking one removes it,
//! so every replica refuses it once the revocation is applied.

use genfleet_proto as pb;
use pb::Role;

use super::{Outcome, Rejection, State};
use crate::qos::Qos;
use crate::spec::DEFAULT_QUEUE;

/// Bounds that keep a tenant or key sane (and a peer from bloating the state).
const MAX_TENANT_QUEUES: usize = 64;
const MAX_DESCRIPTION_CHARS: usize = 256;
const SHA256_BYTES: usize = 32;

/// Why a tenant definition is refused; each names the field and the tenant.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TenantError {
    #[error("tenant name {0:?} must be 1-63 characters of a-z, 0-9, '-', '_', '.'")]
    Name(String),
    #[error("tenant {0} may submit to no queue: give at least one")]
    NoQueues(String),
    #[error("tenant {tenant} names {queues} queues; at most {MAX_TENANT_QUEUES}")]
    TooManyQueues { tenant: String, queues: usize },
    #[error("queue {queue:?} of tenant {tenant} is not a valid name")]
    QueueName { tenant: String, queue: String },
    #[error("default queue {queue} of tenant {tenant} is not one of its queues")]
    DefaultQueue { tenant: String, queue: String },
    #[error("{field} {text:?} of tenant {tenant} is not a class: interactive, standard or batch")]
    Class {
        tenant: String,
        field: &'static str,
        text: String,
    },
}

/// The class `text` names in `field` (none when empty).
fn class(text: &str, field: &'static str, tenant: &str) -> Result<Option<Qos>, TenantError> {
    if text.is_empty() {
        return Ok(None);
    }
    Qos::parse(text)
        .map(Some)
        .ok_or_else(|| TenantError::Class {
            tenant: tenant.to_string(),
            field,
            text: text.to_string(),
        })
}

/// Checks a tenant and fills its defaults (default queue: the first of its
/// queues; default class: standard; highest class: interactive); the error
/// says which field is wrong and why.
pub fn validate_tenant(mut tenant: pb::Tenant) -> Result<pb::Tenant, TenantError> {
    let name = tenant.name.clone();
    if !pb::is_valid_name(&name) {
        return Err(TenantError::Name(name));
    }
    if tenant.queues.is_empty() {
        return Err(TenantError::NoQueues(name));
    }
    if tenant.queues.len() > MAX_TENANT_QUEUES {
        return Err(TenantError::TooManyQueues {
            tenant: name,
            queues: tenant.queues.len(),
        });
    }
    if let Some(bad) = tenant.queues.iter().find(|q| !pb::is_valid_name(q)) {
        return Err(TenantError::QueueName {
            tenant: name,
            queue: bad.clone(),
        });
    }
    tenant.queues.sort();
    tenant.queues.dedup();
    if tenant.default_queue.is_empty() {
        tenant.default_queue = tenant.queues[0].clone();
    }
    if !tenant.queues.contains(&tenant.default_queue) {
        return Err(TenantError::DefaultQueue {
            tenant: name,
            queue: tenant.default_queue.clone(),
        });
    }
    let default = class(&tenant.default_qos, "default_qos", &name)?.unwrap_or(Qos::Standard);
    let max = class(&tenant.max_qos, "max_qos", &name)?.unwrap_or(Qos::Interactive);
    let default = default.min(max);
    tenant.default_qos = default.label().to_string();
    tenant.max_qos = max.label().to_string();
    Ok(tenant)
}

impl State {
    pub fn tenant(&self, name: &str) -> Option<&pb::Tenant> {
        self.tenants.get(name)
    }

    /// Tenants by name.
    pub fn tenants(&self) -> impl Iterator<Item = &pb::Tenant> {
        self.tenants.values()
    }

    pub fn key(&self, id: &str) -> Option<&pb::ApiKey> {
        self.keys.get(id)
    }

    /// Keys by id.
    pub fn keys(&self) -> impl Iterator<Item = &pb::ApiKey> {
        self.keys.values()
    }

    pub(super) fn upsert_tenant(&mut self, c: &pb::UpsertTenant) -> Result<Outcome, Rejection> {
        let tenant = c
            .tenant
            .clone()
            .ok_or(Rejection::Malformed("tenant command without a tenant"))?;
        let tenant = validate_tenant(tenant).map_err(Rejection::InvalidTenant)?;
        if let Some(missing) = tenant.queues.iter().find(|q| !self.queue_exists(q)) {
            return Err(Rejection::UnknownQueue(missing.clone()));
        }
        self.tenants.insert(tenant.name.clone(), tenant.clone());
        Ok(Outcome::Tenant(tenant))
    }

    pub(super) fn delete_tenant(&mut self, name: &str) -> Result<Outcome, Rejection> {
        if !self.tenants.contains_key(name) {
            return Err(Rejection::UnknownTenant(name.to_string()));
        }
        let keys = self.keys.values().filter(|k| k.tenant == name).count();
        if keys > 0 {
            return Err(Rejection::TenantInUse {
                tenant: name.to_string(),
                keys,
            });
        }
        self.tenants.remove(name);
        Ok(Outcome::Done)
    }

    pub(super) fn create_key(&mut self, c: &pb::CreateKey) -> Result<Outcome, Rejection> {
        let key = c
            .key
            .clone()
            .ok_or(Rejection::Malformed("key command without a key"))?;
        if !pb::is_valid_name(&key.id) {
            return Err(Rejection::Malformed("a key id must be a valid name"));
        }
        if self.keys.contains_key(&key.id) {
            return Err(Rejection::InvalidKey(format!(
                "key {} exists already",
                key.id
            )));
        }
        if key.secret_sha256.len() != SHA256_BYTES {
            return Err(Rejection::Malformed(
                "a key's hash must be 32 bytes of SHA-256",
            ));
        }
        if key.description.chars().count() > MAX_DESCRIPTION_CHARS {
            return Err(Rejection::InvalidKey(format!(
                "a key's description has at most {MAX_DESCRIPTION_CHARS} characters"
            )));
        }
        match key.role() {
            Role::Tenant if !self.tenants.contains_key(&key.tenant) => {
                return Err(Rejection::UnknownTenant(key.tenant.clone()));
            }
            Role::Admin | Role::Worker if !key.tenant.is_empty() => {
                return Err(Rejection::InvalidKey(
                    "only a tenant key names a tenant".to_string(),
                ));
            }
            Role::Worker => {
                if let Err(e) = crate::node_pattern::NodePattern::parse(&key.node) {
                    return Err(Rejection::InvalidKey(format!(
                        "a worker key names the nodes it may register (--node): {e}"
                    )));
                }
            }
            Role::Tenant | Role::Admin if !key.node.is_empty() => {
                return Err(Rejection::InvalidKey(
                    "only a worker key names a node".to_string(),
                ));
            }
            Role::Tenant | Role::Admin => {}
            Role::Replica => {
                return Err(Rejection::InvalidKey(
                    "replicas prove themselves with the cluster secret or a certificate, not a key"
                        .to_string(),
                ));
            }
            Role::Unspecified => {
                return Err(Rejection::InvalidKey(
                    "give the key a role: admin, tenant or worker".to_string(),
                ));
            }
        }
        self.keys.insert(key.id.clone(), key.clone());
        Ok(Outcome::Key(key))
    }

    pub(super) fn revoke_key(&mut self, id: &str) -> Result<Outcome, Rejection> {
        self.keys
            .remove(id)
            .map(|_| Outcome::Done)
            .ok_or_else(|| Rejection::UnknownKey(id.to_string()))
    }

    /// Whether `tenant` may submit `spec` now: a queue it was given, a
    /// class up to its highest, and room under its unfinished-job limit.
    pub(super) fn check_tenant_submit(
        &self,
        tenant: &str,
        spec: &pb::JobSpec,
    ) -> Result<(), Rejection> {
        let t = self
            .tenants
            .get(tenant)
            .ok_or_else(|| Rejection::UnknownTenant(tenant.to_string()))?;
        let refused = |why: String| Rejection::TenantLimit {
            tenant: tenant.to_string(),
            why,
        };
        if !t.queues.contains(&spec.queue) {
            let queue = if spec.queue.is_empty() {
                DEFAULT_QUEUE
            } else {
                &spec.queue
            };
            return Err(refused(format!(
                "it may not submit to queue {queue} (its queues: {})",
                t.queues.join(", ")
            )));
        }
        let asked = Qos::parse(&spec.qos).unwrap_or(Qos::Standard);
        let max = Qos::parse(&t.max_qos).unwrap_or(Qos::Interactive);
        if asked > max {
            return Err(refused(format!(
                "class {} is above its highest, {}",
                asked.label(),
                max.label()
            )));
        }
        if t.max_unfinished_jobs > 0 {
            let unfinished = self.unfinished_by_tenant.get(tenant).copied().unwrap_or(0);
            if unfinished >= t.max_unfinished_jobs as usize {
                return Err(Rejection::TenantBusy {
                    tenant: tenant.to_string(),
                    jobs: unfinished,
                });
            }
        }
        Ok(())
    }
}
