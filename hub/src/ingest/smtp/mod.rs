//! SMTP intake: the listener senders mail documents to (`session` per connection, the
//! mail-to-submission rules in `mail`, command parsing in `command`; AUTH passwords are checked
//! by `crate::password`). Mail the hub writes (letters, notices) is built by `clients::compose`
//! and sent through the relay client in `clients::relay`.

pub mod command;
pub mod mail;
mod session;

use crate::hub::Hub;
use crate::shutdown::Shutdown;
use std::sync::Arc;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

/// What every session of a listener shares.
pub(crate) struct Shared {
    pub hub: Arc<Hub>,
    pub tls: Option<tokio_rustls::TlsAcceptor>,
}

/// Accepts SMTP connections on `listener` until `shutdown` fires.
pub fn spawn(
    hub: Arc<Hub>,
    listener: TcpListener,
    mut shutdown: Shutdown,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let cfg = &hub.config.smtp;
    let tls = match (&cfg.tls_cert, &cfg.tls_key) {
        (Some(c), Some(k)) => Some(tokio_rustls::TlsAcceptor::from(
            crate::ingest::tls::server_config(c, k, None)?,
        )),
        _ => None,
    };
    for u in &cfg.users {
        if u.password_sha256.is_some() {
            tracing::warn!(
                user = %u.username,
                "smtp.users: password_sha256 (unsalted SHA-256) is deprecated and will not be \
                 accepted by the next release; replace it with password_hash from \
                 `edthub hash-password`"
            );
        }
    }
    let limit = Arc::new(Semaphore::new(cfg.max_connections.max(1)));
    let shared = Arc::new(Shared { hub, tls });
    Ok(tokio::spawn(async move {
        loop {
            let (tcp, peer) = tokio::select! {
                _ = shutdown.wait() => break,
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(error = %e, "smtp accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            let _ = tcp.set_nodelay(true);
            let shared = shared.clone();
            match limit.clone().try_acquire_owned() {
                Ok(permit) => {
                    tokio::spawn(async move {
                        connection(&shared, tcp, peer.to_string()).await;
                        drop(permit);
                    });
                }
                Err(_) => {
                    metrics::counter!("edthub_smtp_connections_refused_total").increment(1);
                    tokio::spawn(async move {
                        use tokio::io::AsyncWriteExt;
                        let mut tcp = tcp;
                        let _ = tcp
                            .write_all(b"421 4.7.0 Too many connections; try again later\r\n")
                            .await;
                        let _ = tcp.shutdown().await;
                    });
                }
            }
        }
    }))
}

async fn connection(shared: &Shared, tcp: TcpStream, peer: String) {
    let cfg = &shared.hub.config.smtp;
    let deadline =
        tokio::time::Instant::now() + std::time::Duration::from_secs(cfg.session_timeout_secs);
    let mut state = session::State::new(peer, deadline);
    let plain = match session::run(shared, &mut state, tcp, true).await {
        Ok(session::Next::StartTls(tcp)) => tcp,
        Ok(session::Next::Close) => return,
        Err(e) => {
            tracing::debug!(peer = %state.peer, error = %e, "smtp connection ended");
            return;
        }
    };
    let Some(acceptor) = shared.tls.clone() else {
        return;
    };
    let handshake = tokio::time::timeout_at(deadline, acceptor.accept(plain)).await;
    let tls = match handshake {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::warn!(peer = %state.peer, error = %e, "smtp TLS handshake failed");
            return;
        }
        Err(_) => return,
    };
    state.restart_in_tls();
    if let Err(e) = session::run(shared, &mut state, tls, false).await {
        tracing::debug!(peer = %state.peer, error = %e, "smtp connection ended");
    }
}
