//! Why a proxy's config cannot be built. It sits below the index, the snapshot builders and
//! the directory, which all report it, so none of them has to import another for it.

use atoll_core::{Kind, ResourceKey};
use atoll_store::StoreError;

use crate::ca::CaError;

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("dataplane {0} does not exist")]
    MissingDataplane(ResourceKey),
    #[error("mesh {0:?} does not exist")]
    MissingMesh(String),
    #[error("stored {what} {name:?} is unreadable: {reason}")]
    Unreadable {
        what: &'static str,
        name: String,
        reason: String,
    },
    #[error(transparent)]
    Ca(#[from] CaError),
    #[error("cannot issue the proxy certificate: {0}")]
    Certificate(atoll_identity::IdentityError),
    #[error("cannot generate Envoy config: {0}")]
    Generate(#[from] atoll_xds::generate::GenerateError),
    #[error("{kind} {name:?} is not registered: start it with atoll-dp, which registers it")]
    MissingZoneProxy { kind: Kind, name: String },
    #[error("cannot generate zone proxy config: {0}")]
    ZoneProxy(#[from] atoll_xds::zone_proxy::ZoneProxyError),
}
