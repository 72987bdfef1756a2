//! What global creates for its zones beside what operators write: the builtin CA of every Mesh
//! (so proxies in all zones chain to one root), and the public halves of its token signing keys
//! (so zones verify dataplane, ingress and egress tokens global mints, without being able to
//! mint any). KDS carries both to every zone; the private signing keys stay here.

use chrono::Utc;
use serde_json::Value;
use tokio::sync::{broadcast, watch};

use atoll_core::kinds::mesh::MeshDoc;
use atoll_core::{Kind, ResourceKey};
use atoll_cp::mesh_ca::ensure_builtin_cas;
use atoll_cp::tokens::{
    PUBLIC_KEY_SECRET, SIGNING_KEY_SECRET, ZONE_PUBLIC_KEY_SECRET, ZONE_SIGNING_KEY_SECRET,
    publish_public_key, withdraw_public_key,
};
use atoll_store::{ChangeEvent, ChangeOp, ListFilter, SharedStore};

/// Ensures the builtin CAs of one Mesh.
async fn mesh_cas(store: &SharedStore, mesh: &str) {
    let resource = match store.get(&ResourceKey::global(Kind::Mesh, mesh)).await {
        Ok(Some(r)) => r,
        Ok(None) => return,
        Err(e) => {
            tracing::warn!(%mesh, error = %e, "cannot read the mesh to create its CA");
            return;
        }
    };
    let doc: MeshDoc = match serde_json::from_value(Value::Object(resource.spec)) {
        Ok(d) => d,
        Err(e) => {
            tracing::warn!(%mesh, error = %e, "unreadable mesh; no CA created");
            return;
        }
    };
    if let Err(e) = ensure_builtin_cas(store.as_ref(), mesh, &doc, Utc::now()).await {
        tracing::error!(%mesh, error = %e, "cannot create the mesh's builtin CA; zones cannot issue certificates for it");
    }
}

async fn publish(store: &SharedStore, signing: &ResourceKey, public_name: &str) {
    match publish_public_key(store.as_ref(), signing, public_name).await {
        Ok(true) => {
            tracing::info!(key = %signing, "published a token verification key to the zones")
        }
        Ok(false) => {}
        Err(e) => {
            tracing::error!(key = %signing, error = %e, "cannot publish a token verification key; zones cannot verify tokens it signs")
        }
    }
}

async fn withdraw(store: &SharedStore, signing: &ResourceKey, public_name: &str) {
    match withdraw_public_key(store.as_ref(), signing, public_name).await {
        Ok(true) => {
            tracing::info!(key = %signing, "signing key deleted: withdrew its verification key from the zones")
        }
        Ok(false) => {}
        Err(e) => {
            tracing::error!(key = %signing, error = %e, "cannot withdraw the verification key of a deleted signing key")
        }
    }
}

/// Handles one store change.
async fn on_change(store: &SharedStore, event: &ChangeEvent) {
    let key = &event.key;
    if event.op == ChangeOp::Deleted {
        match key.kind {
            Kind::Secret if key.name == SIGNING_KEY_SECRET => {
                withdraw(store, key, PUBLIC_KEY_SECRET).await;
            }
            Kind::GlobalSecret if key.name == ZONE_SIGNING_KEY_SECRET => {
                withdraw(store, key, ZONE_PUBLIC_KEY_SECRET).await;
            }
            _ => {}
        }
        return;
    }
    match key.kind {
        Kind::Mesh => mesh_cas(store, &key.name).await,
        Kind::Secret if key.name == SIGNING_KEY_SECRET => {
            publish(store, key, PUBLIC_KEY_SECRET).await;
        }
        Kind::GlobalSecret if key.name == ZONE_SIGNING_KEY_SECRET => {
            publish(store, key, ZONE_PUBLIC_KEY_SECRET).await;
        }
        _ => {}
    }
}

/// Everything, once (at start, and after missing store events).
async fn sweep(store: &SharedStore) {
    let meshes = match store.list(&ListFilter::all(Kind::Mesh)).await {
        Ok(page) => page.items,
        Err(e) => {
            tracing::warn!(error = %e, "cannot list meshes for their CAs and keys");
            Vec::new()
        }
    };
    for mesh in meshes {
        mesh_cas(store, &mesh.name).await;
        publish(
            store,
            &ResourceKey::new(Kind::Secret, mesh.name.clone(), SIGNING_KEY_SECRET),
            PUBLIC_KEY_SECRET,
        )
        .await;
    }
    publish(
        store,
        &ResourceKey::global(Kind::GlobalSecret, ZONE_SIGNING_KEY_SECRET),
        ZONE_PUBLIC_KEY_SECRET,
    )
    .await;
}

/// Keeps CAs and public keys in place until `shutdown`.
pub async fn run(store: SharedStore, mut shutdown: watch::Receiver<bool>) {
    let mut events = store.watch();
    sweep(&store).await;
    loop {
        let received = tokio::select! {
            _ = shutdown.wait_for(|s| *s) => return,
            received = events.recv() => received,
        };
        match received {
            Ok(event) => on_change(&store, &event).await,
            Err(broadcast::error::RecvError::Lagged(_)) => sweep(&store).await,
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}
