//! Quality-of-service classes: what a job's `qos` names. Shared by the
//! spec's checks, the tenants' limits and the scheduling policy.

/// Quality-of-service class; the order of the variants is their rank.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Qos {
    /// Fills idle capacity, never preempts, is preempted first.
    Batch,
    /// Reclaims its queue's nominal quota from borrowers.
    Standard,
    /// Someone waits in a chat: may preempt batch and borrowed work.
    Interactive,
}

impl Qos {
    pub const ALL: [Qos; 3] = [Qos::Batch, Qos::Standard, Qos::Interactive];

    pub fn label(self) -> &'static str {
        match self {
            Qos::Batch => "batch",
            Qos::Standard => "standard",
            Qos::Interactive => "interactive",
        }
    }

    pub fn parse(text: &str) -> Option<Qos> {
        Qos::ALL.into_iter().find(|q| q.label() == text)
    }

    /// One class up (ageing), interactive stays interactive.
    pub fn promoted(self) -> Qos {
        match self {
            Qos::Batch => Qos::Standard,
            Qos::Standard | Qos::Interactive => Qos::Interactive,
        }
    }
}
