//! Every shard binds each Kafka listener with SO_REUSEPORT, so the kernel
//! spreads client connections across shards. A connection remembers the
//! listener it came in on: its security protocol decides whether it speaks
//! TLS and must authenticate, and Metadata answers with that listener's
//! addresses.

use std::rc::Rc;

use futures_rustls::TlsAcceptor;
use glommio::net::TcpListener;

use super::broker::Broker;
use crate::config::ListenerConfig;
use crate::kafka;

pub async fn serve(broker: Rc<Broker>) -> anyhow::Result<()> {
    let listeners = broker.config.listeners()?;
    // This shard's own TLS config (its certificate reloads on its own).
    let tls = match listeners.iter().any(|l| l.protocol.tls()) {
        true => Some(TlsAcceptor::from(crate::security::tls::server_config(
            &broker.config.ssl,
        )?)),
        false => None,
    };
    let mut bound = Vec::new();
    for l in listeners {
        let socket = TcpListener::bind(l.bind)
            .map_err(|e| anyhow::anyhow!("binding the Kafka listener {} on {}: {e}", l.name, l.bind))?;
        let acceptor = if l.protocol.tls() { tls.clone() } else { None };
        bound.push((socket, Rc::new(l), acceptor));
    }
    // Each accept loop runs until the shard stops taking connections; the
    // tasks are cancelled when this future is dropped.
    let mut loops: Vec<_> = bound
        .into_iter()
        .map(|(socket, l, tls)| glommio::spawn_local(accept(broker.clone(), socket, l, tls)))
        .collect();
    match loops.pop() {
        Some(last) => {
            last.await;
            Ok(())
        }
        None => anyhow::bail!("no Kafka listener configured"),
    }
}

async fn accept(broker: Rc<Broker>, listener: TcpListener, config: Rc<ListenerConfig>, tls: Option<TlsAcceptor>) {
    let max = broker.config.limits.max_connections_per_shard;
    loop {
        let stream = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(shard = %broker.me(), listener = %config.name, error = %e, "accept failed");
                glommio::timer::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        if broker.connections.get() >= max {
            tracing::warn!(shard = %broker.me(), limit = max,
                "refusing connection: limits.max_connections_per_shard reached");
            drop(stream);
            continue;
        }
        broker.connections.set(broker.connections.get() + 1);
        broker
            .metrics
            .connections_accepted
            .set(broker.metrics.connections_accepted.get() + 1);
        let b = broker.clone();
        let (l, tls) = (config.clone(), tls.clone());
        glommio::spawn_local(async move {
            kafka::connection::serve(b.clone(), stream, l, tls).await;
            b.connections.set(b.connections.get() - 1);
        })
        .detach();
    }
}
