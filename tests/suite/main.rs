//! genfleet's integration tests, in one binary: real `genfleet` processes
//! and in-process clusters on loopback, real files and real network. One
//! binary links the whole tree once, where one per file linked it 31
//! times (CI's disk and time); each file is a module, and `common` holds
//! what they share.

mod artifact_store;
mod backup;
mod bad_input;
mod chaos;
mod closed_output;
mod common;
mod completion;
mod deploy_manifests;
mod devices;
mod docs;
mod e2e;
mod exposure_warnings;
mod full_disk;
mod fuzz;
mod grpc_health;
mod history_checker;
mod kubernetes;
mod local_cluster;
mod model_sample;
mod monitoring;
mod nodes;
mod openai_api;
mod plan;
mod plan_cli;
mod plan_live;
mod preemption;
mod previews;
mod queues;
mod quota_guarantee;
mod replication;
mod restart;
mod retention;
mod simulated;
mod statefulset;
mod tenants;
mod tls;
mod trace_export;
mod trust;
mod upgrade;
mod vocabulary_note;
mod worker_lifecycle;
