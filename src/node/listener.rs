//! Every shard binds the Kafka listener with SO_REUSEPORT, so the kernel
//! spreads client connections across shards.

use std::rc::Rc;

use glommio::net::TcpListener;

use super::broker::Broker;
use crate::kafka;

pub async fn serve(broker: Rc<Broker>) -> anyhow::Result<()> {
    let listener = TcpListener::bind(broker.config.listen)
        .map_err(|e| anyhow::anyhow!("binding the Kafka listener on {}: {e}", broker.config.listen))?;
    let max = broker.config.limits.max_connections_per_shard;
    loop {
        let stream = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(shard = %broker.me(), error = %e, "accept failed");
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
        glommio::spawn_local(async move {
            kafka::connection::serve(b.clone(), stream).await;
            b.connections.set(b.connections.get() - 1);
        })
        .detach();
    }
}
