//! What a caller asks of the model: its own module, so the pipeline and
//! the checkpoints (which record the request they belong to) both use it
//! without needing each other.

/// What to generate; sizes in pixels and frames.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerateRequest {
    pub prompt: String,
    pub negative_prompt: String,
    pub frames: usize,
    pub width: usize,
    pub height: usize,
    pub steps: usize,
    pub seed: u64,
    /// Classifier-free guidance scale; 1 disables the unconditional pass.
    pub guidance: f64,
}
