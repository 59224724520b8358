//! Shutdown on Ctrl-C or SIGTERM: the first asks for a graceful stop, a
//! second one exits at once.

use tokio::sync::watch;

/// A receiver that turns true on the first signal.
pub fn shutdown_on_signals() -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        wait_for_signal().await;
        say_err!("genfleet: shutting down (press Ctrl-C again to stop at once)");
        let _ = tx.send(true);
        wait_for_signal().await;
        say_err!("genfleet: stopping now");
        std::process::exit(130);
    });
    rx
}

/// Completes when a watch turns true: the scheduler crate's, one for every
/// server.
pub use genfleet_scheduler::stopped;

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
